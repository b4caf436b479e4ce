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

#[test]
fn the_unit_waits_for_nucache_to_say_it_is_ready() {
    assert!(UNIT.lines().any(|line| line.trim() == "Type=notify"));
}

/// What systemd would see: `READY=1` on `$NOTIFY_SOCKET` once nucache
/// listens (a connection then succeeds at once), `STOPPING=1` on SIGTERM.
#[tokio::test]
async fn nucache_notifies_ready_once_listening_and_stopping_on_sigterm() {
    use std::os::unix::net::UnixDatagram;

    let upstream = common::upstream::FakeUpstream::start().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let socket_path = dir.path().join("notify.sock");
    let socket = UnixDatagram::bind(&socket_path).expect("notify socket");
    socket.set_read_timeout(Some(Duration::from_secs(20))).expect("timeout");
    let cache = dir.path().join("cache");
    let index = upstream.index_url();
    let mut process = common::process::Launch {
        env: vec![("NOTIFY_SOCKET", socket_path.display().to_string())],
        ..common::process::Launch::new(&index, &cache)
    }
    .spawn();
    let receive = |socket: UnixDatagram| {
        tokio::task::spawn_blocking(move || {
            let mut buffer = [0u8; 512];
            let received = socket
                .recv(&mut buffer)
                .map(|n| String::from_utf8_lossy(&buffer[..n]).into_owned());
            (socket, received)
        })
    };
    let (socket, ready) = receive(socket).await.expect("joined");
    let ready = ready.unwrap_or_else(|e| panic!("no notification ({e}): {}", process.log_text()));
    assert_eq!(ready.trim(), "READY=1");
    let health = process.get("/health").await;
    assert_eq!(health.status, http::StatusCode::OK, "answers as soon as it said so");

    let stopping = receive(socket);
    let exit = process.terminate(Duration::from_secs(10));
    let (_, stopping) = stopping.await.expect("joined");
    assert_eq!(stopping.expect("a second notification").trim(), "STOPPING=1");
    assert!(exit.is_some_and(|status| status.success()), "{exit:?}");
}
