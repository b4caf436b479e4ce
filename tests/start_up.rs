//! nucache started as an operator starts it: the real binary, with the
//! environment a deployment gives it.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::process::{Launch, BINARY};
use common::upstream::FakeUpstream;

/// Kubernetes injects `NUCACHE_PORT`, `NUCACHE_SERVICE_HOST`... into every
/// pod of a namespace with a Service named `nucache`: they must not stop
/// start-up, and a variable that matches no key is named once.
#[tokio::test]
async fn kubernetes_service_link_variables_do_not_stop_start_up() {
    let upstream = FakeUpstream::start().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let cache = dir.path().join("cache");
    let index = upstream.index_url();
    let env = [
        ("NUCACHE_PORT", "tcp://10.0.0.7:5000"),
        ("NUCACHE_PORT_5000_TCP", "tcp://10.0.0.7:5000"),
        ("NUCACHE_PORT_5000_TCP_ADDR", "10.0.0.7"),
        ("NUCACHE_SERVICE_HOST", "10.0.0.7"),
        ("NUCACHE_SERVICE_PORT", "5000"),
        ("NUCACHE_MISTAKE", "1"),
    ];
    let mut process = Launch {
        upstream_index: &index,
        cache_dir: &cache,
        env: env.iter().map(|(k, v)| (*k, v.to_string())).collect(),
        tmpfs_kib: None,
    }
    .spawn();
    process.ready().await;
    let served = process.get("/v3/index.json").await;
    assert!(served.status.is_success(), "{}", served.status);
    let log = process.log_text();
    let warnings: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("match no configuration key"))
        .collect();
    assert_eq!(warnings.len(), 1, "{log}");
    assert!(warnings[0].contains("NUCACHE_MISTAKE"), "{log}");
    assert!(
        !warnings[0].contains("NUCACHE_PORT") && !warnings[0].contains("SERVICE"),
        "{log}"
    );
}

/// Runs `nucache ARGS` to completion with a scratch cache directory.
fn run(args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut command = Command::new(BINARY);
    command
        .args(args)
        .env("NUCACHE_CACHE__DIR", dir.path().join("cache"))
        .env_remove("RUST_LOG")
        .env_remove("NUCACHE_CONFIG");
    for (name, value) in env {
        command.env(name, value);
    }
    command.output().expect("nucache runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn check_config_prints_toml_on_stdout_and_the_start_up_warnings_on_stderr() {
    let out = run(
        &["check-config"],
        &[("NUCACHE_LISTEN", "127.0.0.1:0"), ("RUST_LOG", "nucache=loud")],
    );
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(out.status.success(), "{stderr}");
    let parsed: toml::Table = toml::from_str(&stdout).unwrap_or_else(|e| panic!("not TOML ({e}): {stdout}"));
    assert_eq!(parsed.get("listen").and_then(|v| v.as_str()), Some("127.0.0.1:0"));
    assert!(stderr.contains("publish.client_keys is empty"), "{stderr}");
    assert!(
        stderr.contains("RUST_LOG=\"nucache=loud\" is not a valid filter"),
        "{stderr}"
    );
    assert!(stderr.contains("ok: cache.dir"), "{stderr}");
}

#[test]
fn check_config_fails_when_the_listen_address_is_taken() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = taken.local_addr().expect("address").to_string();
    let out = run(&["check-config"], &[("NUCACHE_LISTEN", &addr)]);
    let stderr = text(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!("listen {addr}: the address is in use")),
        "{stderr}"
    );
}

#[test]
fn nuget_config_prints_the_snippet_alone_on_stdout() {
    let out = run(&["nuget-config"], &[("NUCACHE_PUBLIC_URL", "https://nuget.corp/feed")]);
    let stdout = text(&out.stdout);
    assert!(out.status.success());
    assert!(stdout.starts_with("<?xml"), "{stdout}");
    assert!(stdout.trim_end().ends_with("</configuration>"), "{stdout}");
    assert!(
        stdout.contains("value=\"https://nuget.corp/feed/v3/index.json\""),
        "{stdout}"
    );
}

#[test]
fn help_names_the_environment_variables() {
    let out = run(&["--help"], &[]);
    let help = text(&out.stdout);
    for name in ["NUCACHE_CONFIG", "NUCACHE_", "__", "RUST_LOG"] {
        assert!(help.contains(name), "{name} missing from --help: {help}");
    }
}

/// With `listen` on port 0, the snippet `serve` prints names the port it got.
#[test]
fn serve_prints_the_snippet_with_the_bound_port() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut child = Command::new(BINARY)
        .env("NUCACHE_LISTEN", "127.0.0.1:0")
        .env("NUCACHE_CACHE__DIR", dir.path())
        .env("NUCACHE_UPSTREAM__SERVICE_INDEX", "http://127.0.0.1:9/v3/index.json")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("nucache starts");
    let stdout = child.stdout.take().expect("stdout");
    let (lines, received) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if lines.send(line).is_err() {
                break;
            }
        }
    });
    let mut snippet = Vec::new();
    while let Ok(line) = received.recv_timeout(Duration::from_secs(20)) {
        let done = line.contains("</configuration>");
        snippet.push(line);
        if done {
            break;
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    let snippet = snippet.join("\n");
    assert!(
        snippet.starts_with("<?xml"),
        "stdout holds more than the snippet: {snippet}"
    );
    let value = snippet
        .split("value=\"http://127.0.0.1:")
        .nth(1)
        .and_then(|rest| rest.split('/').next())
        .unwrap_or_default();
    assert!(value.parse::<u16>().is_ok_and(|port| port != 0), "{snippet}");
}
