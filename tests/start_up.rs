//! nucache started as an operator starts it: the real binary, with the
//! environment a deployment gives it.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use bytes::Bytes;
use common::nucache::send;
use common::process::{Launch, BINARY};
use common::upstream::FakeUpstream;
use http::Method;

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
        env: env.iter().map(|(k, v)| (*k, v.to_string())).collect(),
        ..Launch::new(&index, &cache)
    }
    .spawn();
    process.ready().await;
    let served = process.get("/v3/index.json").await;
    assert!(served.status.is_success(), "{}", served.status);
    // The access line of the request above follows the start-up warnings.
    let log = process.wait_for_log("path=/v3/index.json", 1).await;
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

/// `nucache ARGS` with `env`, nothing inherited that configures it.
fn nucache(args: &[&str], env: &[(&str, &str)]) -> Command {
    let mut command = Command::new(BINARY);
    command.args(args).env_remove("RUST_LOG").env_remove("NUCACHE_CONFIG");
    for (name, value) in env {
        command.env(name, value);
    }
    command
}

/// Runs `nucache ARGS` to completion with a scratch cache directory.
fn run(args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut command = nucache(args, env);
    if !env.iter().any(|(name, _)| *name == "NUCACHE_CACHE__DIR") {
        command.env("NUCACHE_CACHE__DIR", dir.path().join("cache"));
    }
    finish(command)
}

/// The output of a command expected to exit by itself (killed after 20 s).
fn finish(mut command: Command) -> std::process::Output {
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("nucache runs");
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while child.try_wait().ok().flatten().is_none() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    child.wait_with_output().expect("output")
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

/// A cache directory that cannot be created: the message names `cache.dir`
/// and the path, and nucache exits 1.
#[test]
fn a_cache_directory_that_cannot_be_created_is_named_with_its_key() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("a-file");
    std::fs::write(&file, b"not a directory").expect("write");
    let cache = file.join("cache");
    let cache = cache.to_string_lossy();
    let out = run(
        &["serve"],
        &[("NUCACHE_CACHE__DIR", &cache), ("NUCACHE_LISTEN", "127.0.0.1:0")],
    );
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!("cache.dir {cache}: cannot open the cache")),
        "{stderr}"
    );
}

/// The default directory is someone's home: the message says so.
#[test]
fn the_default_cache_directory_says_where_it_came_from() {
    let dir = tempfile::tempdir().expect("temp dir");
    let home = dir.path().join("home-is-a-file");
    std::fs::write(&home, b"x").expect("write");
    let mut command = nucache(&["serve"], &[("NUCACHE_LISTEN", "127.0.0.1:0")]);
    command
        .env_remove("NUCACHE_CACHE__DIR")
        .env_remove("XDG_CACHE_HOME")
        .env_remove("CACHE_DIRECTORY")
        .env("HOME", &home);
    let out = finish(command);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let expected = format!(
        "cache.dir {}/.cache/nucache (the default, ~/.cache/nucache of the user running nucache",
        home.display()
    );
    assert!(stderr.contains(&expected), "{stderr}");
}

/// A second nucache, and `nucache verify`, on a cache in use: both refuse,
/// naming the directory.
#[tokio::test]
async fn a_cache_in_use_is_named_by_serve_and_verify() {
    let upstream = FakeUpstream::start().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let cache = dir.path().join("cache");
    let index = upstream.index_url();
    let mut first = Launch::new(&index, &cache).spawn();
    first.ready().await;
    let cache_text = cache.to_string_lossy();
    let env = [("NUCACHE_CACHE__DIR", &*cache_text), ("NUCACHE_LISTEN", "127.0.0.1:0")];
    for args in [&["serve"][..], &["verify"][..]] {
        let out = run(args, &env);
        let stderr = text(&out.stderr);
        assert!(!out.status.success(), "{args:?}: {stderr}");
        assert!(
            stderr.contains(&format!("cache.dir {cache_text}")),
            "{args:?}: {stderr}"
        );
        assert!(stderr.contains("in use by another process"), "{args:?}: {stderr}");
    }
}

/// SIGHUP never stops nucache: it re-reads the key file (the next publish
/// call carries the new key upstream) and the log filter, says so, and
/// keeps serving.
#[tokio::test]
async fn sighup_reloads_the_key_file_and_the_log_filter_and_keeps_serving() {
    let upstream = FakeUpstream::start().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let cache = dir.path().join("cache");
    let key_file = dir.path().join("upstream-key");
    let config_file = dir.path().join("nucache.toml");
    std::fs::write(&key_file, "first-key\n").expect("key file");
    std::fs::write(&config_file, "log_filter = \"info\"\n").expect("config");
    let index = upstream.index_url();
    let client_digests = format!("[\"{}\"]", nucache::config::digest_hex("client-key"));
    let mut process = Launch {
        env: vec![
            ("NUCACHE_CONFIG", config_file.display().to_string()),
            ("NUCACHE_PUBLISH__API_KEY_FILE", key_file.display().to_string()),
            ("NUCACHE_PUBLISH__CLIENT_KEYS", client_digests),
            ("RUST_LOG", String::new()),
        ],
        ..Launch::new(&index, &cache)
    }
    .spawn();
    process.ready().await;
    let unlist = |process: &common::process::Process| {
        let url = process.url("/v3/package/fake.core/1.1.0");
        async move { send(Method::DELETE, &url, &[("x-nuget-apikey", "client-key")], Bytes::new()).await }
    };
    unlist(&process).await;
    assert_eq!(upstream_keys(&upstream), ["first-key"]);

    std::fs::write(&key_file, "second-key\n").expect("key file");
    std::fs::write(&config_file, "log_filter = \"warn\"\n").expect("config");
    process.hangup();
    let log = process.wait_for_log("SIGHUP: configuration reloaded", 1).await;
    assert!(process.exited().is_none(), "SIGHUP stopped nucache: {log}");
    assert!(
        log.contains("publish.api_key") && log.contains("log_filter \"warn\""),
        "{log}"
    );
    assert!(!log.contains("second-key"), "a key was logged: {log}");
    unlist(&process).await;
    assert_eq!(upstream_keys(&upstream), ["first-key", "second-key"]);

    // At "warn", a request leaves no access line at info.
    let marker = "/health?after-the-reload";
    assert!(process.get(marker).await.status.is_success());
    process.hangup();
    process.wait_for_log("SIGHUP: configuration reloaded", 2).await;
    assert!(
        !process.log_text().contains("after-the-reload"),
        "{}",
        process.log_text()
    );
    assert!(process.exited().is_none());
}

/// The keys the upstream received on publish calls, in order.
fn upstream_keys(upstream: &FakeUpstream) -> Vec<String> {
    upstream
        .requests()
        .into_iter()
        .filter(|r| r.path.starts_with("/api/v2/"))
        .filter_map(|r| r.headers.get("x-nuget-apikey")?.to_str().ok().map(str::to_string))
        .collect()
}

/// A port nothing listens on (bound, then released).
fn closed_port_index() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("address").port();
    drop(listener);
    format!("http://127.0.0.1:{port}/v3/index.json")
}

#[tokio::test]
async fn the_start_up_probe_logs_what_the_upstream_serves() {
    let upstream = FakeUpstream::start().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let cache = dir.path().join("cache");
    let index = upstream.index_url();
    let mut process = Launch::new(&index, &cache).spawn();
    process.ready().await;
    let log = process.wait_for_log("upstream probe", 1).await;
    let line = log.lines().find(|l| l.contains("upstream probe")).unwrap_or_default();
    assert!(
        line.contains("INFO upstream probe: ") && line.contains(&index),
        "{line}"
    );
    assert!(line.contains("resources served through nucache"), "{line}");
    assert!(
        line.contains("registration hives: ") && line.contains("gz-semver2"),
        "{line}"
    );
}

#[tokio::test]
async fn a_failed_start_up_probe_says_why_and_nucache_serves_anyway() {
    let dir = tempfile::tempdir().expect("temp dir");
    let cache = dir.path().join("cache");
    let index = closed_port_index();
    let mut process = Launch::new(&index, &cache).spawn();
    process.ready().await;
    let log = process.wait_for_log("upstream probe failed", 1).await;
    let line = log
        .lines()
        .find(|l| l.contains("upstream probe failed"))
        .unwrap_or_default();
    assert!(
        line.contains("WARN") && line.contains(&index) && line.contains("cannot connect"),
        "{line}"
    );
    assert!(process.get("/health").await.status.is_success());
}

#[tokio::test]
async fn check_config_probe_exits_non_zero_when_the_upstream_is_unusable() {
    let upstream = FakeUpstream::start().await;
    let good = upstream.index_url();
    let probe = |index: String| {
        tokio::task::spawn_blocking(move || {
            run(
                &["check-config", "--probe"],
                &[
                    ("NUCACHE_UPSTREAM__SERVICE_INDEX", &index),
                    ("NUCACHE_LISTEN", "127.0.0.1:0"),
                ],
            )
        })
    };
    let out = probe(good.clone()).await.expect("ran");
    let stderr = text(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!("ok: upstream {good}: a NuGet V3 service index")),
        "{stderr}"
    );

    let bad = closed_port_index();
    let out = probe(bad.clone()).await.expect("ran");
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!("error: upstream {bad}: cannot connect")),
        "{stderr}"
    );

    // A JSON document that is not a service index is refused too.
    let index = common::nucache::get(&good).await.json();
    let flat = index["resources"]
        .as_array()
        .and_then(|r| r.iter().find(|r| r["@type"] == "PackageBaseAddress/3.0.0"))
        .and_then(|r| r["@id"].as_str())
        .map(str::to_string)
        .expect("the fake lists a PackageBaseAddress");
    let not_an_index = format!("{}/fake.core/index.json", flat.trim_end_matches('/'));
    let out = probe(not_an_index).await.expect("ran");
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("not a NuGet V3 service index"), "{stderr}");
}

#[test]
fn a_service_index_url_without_index_json_gets_a_warning_with_the_fix() {
    let out = run(
        &["check-config"],
        &[
            ("NUCACHE_UPSTREAM__SERVICE_INDEX", "https://feed.example/nuget/v3/"),
            ("NUCACHE_LISTEN", "127.0.0.1:0"),
        ],
    );
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("did you mean https://feed.example/nuget/v3/index.json?"),
        "{stderr}"
    );
}
