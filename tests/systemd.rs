//! The shipped unit file: `systemd-analyze verify` accepts it (with
//! ExecStart pointed at the binary just built), and it gives nucache more
//! time to stop than nucache gives in-flight responses.

mod common;

use std::process::Command;
use std::time::Duration;

use common::process::BINARY;

const UNIT: &str = include_str!("../systemd/nucache.service");

/// Whether a tool the test needs is missing: skipped on a developer's
/// machine, a failure in CI (`CI=true`), where `.ci/run` installs it.
fn missing(tool: &str) -> bool {
    let found = Command::new(tool)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "{tool} is not installed, and CI=true: .ci/run installs it"
        );
        eprintln!("SKIPPED: {tool} is not installed (apt-get install systemd); the unit was not verified");
    }
    !found
}

#[test]
fn systemd_analyze_verifies_the_unit() {
    if missing("systemd-analyze") {
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let unit = dir.path().join("nucache.service");
    std::fs::write(&unit, UNIT.replace("/usr/local/bin/nucache", BINARY)).expect("unit");
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&unit)
        .output()
        .expect("systemd-analyze runs");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success() && said.trim().is_empty(), "{said}");
}

#[test]
fn the_unit_outlasts_the_drain() {
    let setting = |name: &str| {
        UNIT.lines()
            .find_map(|line| line.strip_prefix(name)?.strip_prefix('='))
            .map(str::trim)
            .unwrap_or_else(|| panic!("the unit sets no {name}"))
    };
    let stop = humantime::parse_duration(setting("TimeoutStopSec"))
        .or_else(|_| setting("TimeoutStopSec").parse().map(Duration::from_secs))
        .expect("TimeoutStopSec is a duration");
    let drain = nucache::Config::default().server.shutdown_timeout;
    assert!(
        stop > drain,
        "TimeoutStopSec {stop:?} must exceed server.shutdown_timeout {drain:?}"
    );
    assert!(
        !UNIT.contains("NUCACHE_CACHE__DIR"),
        "the unit must not override the config file's cache.dir"
    );
    assert!(setting("CacheDirectory") == "nucache" && setting("LoadCredential").starts_with("config.toml:"));
}
