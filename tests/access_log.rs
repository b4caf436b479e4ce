//! The access log answers "who did this?": client address (and the one a
//! trusted proxy forwarded), user agent, authenticated identity (never the
//! key), the package of pushes and deletes; every field logfmt-parseable.

mod common;

use std::collections::HashMap;
use std::io::Write;

use bytes::Bytes;
use common::nucache::send;
use common::process::{Launch, Process};
use common::upstream::FakeUpstream;
use http::{Method, StatusCode};
use nucache::config::digest_hex;

const CLIENT_KEY: &str = "client-secret-0815";
const PASSWORD: &str = "wonderland-7";

/// A real (tiny) .nupkg: a zip with a nuspec.
fn nupkg(id: &str, version: &str) -> Vec<u8> {
    let mut out = std::io::Cursor::new(Vec::new());
    {
        let mut zip = zip::ZipWriter::new(&mut out);
        zip.start_file(format!("{id}.nuspec"), zip::write::SimpleFileOptions::default())
            .expect("zip entry");
        let nuspec = format!(
            "<?xml version=\"1.0\"?><package><metadata><id>{id}</id><version>{version}</version></metadata></package>"
        );
        zip.write_all(nuspec.as_bytes()).expect("zip write");
        zip.finish().expect("zip finish");
    }
    out.into_inner()
}

/// The `key=value` / `key="quoted \"value\""` pairs after the level, or
/// an error naming what a logfmt parser would trip on.
fn logfmt(line: &str) -> Result<HashMap<String, String>, String> {
    let rest = line
        .split_once(" INFO ")
        .or_else(|| line.split_once(" WARN "))
        .map(|(_, rest)| rest)
        .ok_or_else(|| format!("no level in {line:?}"))?;
    let mut fields = HashMap::new();
    let mut chars = rest.chars().peekable();
    loop {
        while chars.peek() == Some(&' ') {
            chars.next();
        }
        if chars.peek().is_none() {
            return Ok(fields);
        }
        let key: String = chars.by_ref().take_while(|c| *c != '=').collect();
        if key.is_empty() || key.contains(' ') {
            return Err(format!("bad key {key:?} in {line:?}"));
        }
        let mut value = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            loop {
                match chars.next() {
                    Some('\\') => value.extend(chars.next()),
                    Some('"') => break,
                    Some(c) => value.push(c),
                    None => return Err(format!("unterminated quote in {line:?}")),
                }
            }
            if !matches!(chars.peek(), None | Some(' ')) {
                return Err(format!("text after a quoted value of {key} in {line:?}"));
            }
        } else {
            value = chars.by_ref().take_while(|c| *c != ' ').collect();
            if value.contains('"') {
                return Err(format!("stray quote in {key}={value} in {line:?}"));
            }
        }
        fields.insert(key, value);
    }
}

/// The access line of the request whose `x-request-id` is `id`.
async fn access_line(process: &Process, id: &str) -> HashMap<String, String> {
    // Span prefixes (`request{id=...}`) carry the id too; only access
    // lines go on with the method.
    let needle = format!(" id={id} method=");
    let log = process.wait_for_log(&needle, 1).await;
    let line = log.lines().find(|l| l.contains(&needle)).unwrap_or_default();
    logfmt(line).unwrap_or_else(|e| panic!("{e}"))
}

fn basic(user: &str, password: &str) -> String {
    use base64::Engine as _;
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
    )
}

#[tokio::test]
async fn access_lines_name_the_client_the_agent_the_identity_and_the_package() {
    let upstream = FakeUpstream::start().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let cache = dir.path().join("cache");
    let index = upstream.index_url();
    let mut process = Launch {
        env: vec![
            ("NUCACHE_TRUST_FORWARDED_HEADERS", "true".to_string()),
            ("NUCACHE_AUTH__READ", "required".to_string()),
            ("NUCACHE_AUTH__USERS", format!("[\"alice:{}\"]", digest_hex(PASSWORD))),
            (
                "NUCACHE_PUBLISH__CLIENT_KEYS",
                format!("[\"{}\"]", digest_hex(CLIENT_KEY)),
            ),
            ("NUCACHE_PUBLISH__API_KEY", "upstream-key".to_string()),
        ],
        ..Launch::new(&index, &cache)
    }
    .spawn();
    process.ready().await;
    let alice = basic("alice", PASSWORD);

    let read = send(
        Method::GET,
        &process.url("/v3/flatcontainer/fake.core/index.json"),
        &[
            ("authorization", &alice),
            ("user-agent", "NuGet Command Line/6.12.1 (Linux)"),
            ("x-forwarded-for", "6.6.6.6, 10.1.2.3"),
        ],
        Bytes::new(),
    )
    .await;
    assert_eq!(read.status, StatusCode::OK);
    let line = access_line(&process, read.header("x-request-id").unwrap_or("?")).await;
    assert!(line["client"].starts_with("127.0.0.1:"), "{line:?}");
    assert_eq!(line["forwarded_for"], "10.1.2.3");
    assert_eq!(line["user"], "alice");
    assert_eq!(line["agent"], "NuGet Command Line/6.12.1 (Linux)");

    let content_type = "multipart/form-data; boundary=b0undary";
    let mut body = b"--b0undary\r\nContent-Type: application/octet-stream\r\nContent-Disposition: form-data; name=package; filename=package.nupkg\r\n\r\n".to_vec();
    body.extend(nupkg("Pushed.Package", "1.2.3"));
    body.extend_from_slice(b"\r\n--b0undary--\r\n");
    let push = send(
        Method::PUT,
        &process.url("/v3/package/"),
        &[("x-nuget-apikey", CLIENT_KEY), ("content-type", content_type)],
        Bytes::from(body),
    )
    .await;
    assert_eq!(push.status, StatusCode::CREATED, "{}", push.text());
    let line = access_line(&process, push.header("x-request-id").unwrap_or("?")).await;
    assert_eq!(line["package"], "Pushed.Package/1.2.3");
    assert_eq!(line["user"], format!("key:{}", &digest_hex(CLIENT_KEY)[..8]));

    let delete = send(
        Method::DELETE,
        &process.url("/v3/package/fake.core/1.1.0"),
        &[("x-nuget-apikey", CLIENT_KEY)],
        Bytes::new(),
    )
    .await;
    let line = access_line(&process, delete.header("x-request-id").unwrap_or("?")).await;
    assert_eq!(line["package"], "fake.core/1.1.0");
    assert_eq!(line["method"], "DELETE");

    // A refusal's reason has spaces: quoted, so the line still parses.
    let refused = send(
        Method::GET,
        &process.url("/v3/flatcontainer/fake.core/index.json"),
        &[("authorization", &basic("alice", "wrong"))],
        Bytes::new(),
    )
    .await;
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED);
    let line = access_line(&process, refused.header("x-request-id").unwrap_or("?")).await;
    assert_eq!(line["error"], "client error: invalid credentials");
    assert_eq!(line["user"], "-");

    let log = process.log_text();
    for secret in [CLIENT_KEY, PASSWORD, "upstream-key"] {
        assert!(!log.contains(secret), "{secret} is in the log");
    }
}

#[tokio::test]
async fn with_log_format_json_every_line_is_a_json_object_and_each_request_has_one() {
    let upstream = FakeUpstream::start().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let cache = dir.path().join("cache");
    let index = upstream.index_url();
    let mut process = Launch {
        env: vec![("NUCACHE_LOG__FORMAT", "json".to_string())],
        ..Launch::new(&index, &cache)
    }
    .spawn();
    process.ready().await;
    let read = send(
        Method::GET,
        &process.url("/v3/flatcontainer/fake.core/index.json"),
        &[("user-agent", "agent \"quoted\" 1.0")],
        Bytes::new(),
    )
    .await;
    assert_eq!(read.status, StatusCode::OK);
    let id = read.header("x-request-id").unwrap_or("?").to_string();
    let needle = format!("\"id\":\"{id}\",\"method\"");
    let log = process.wait_for_log(&needle, 1).await;
    let mut access_lines = Vec::new();
    for line in log.lines().filter(|l| !l.trim().is_empty()) {
        let value: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not a JSON line ({e}): {line}"));
        if line.contains(&needle) {
            access_lines.push(value);
        }
    }
    assert_eq!(access_lines.len(), 1, "one line for the request: {log}");
    let line = &access_lines[0];
    assert_eq!(line["method"], "GET");
    assert_eq!(line["path"], "/v3/flatcontainer/fake.core/index.json");
    assert_eq!(line["status"], 200);
    assert_eq!(line["cache"], "MISS");
    assert_eq!(line["agent"], "agent \"quoted\" 1.0");
    assert_eq!(line["level"], "INFO");
}

#[tokio::test]
async fn an_upstream_body_that_breaks_off_is_logged_as_the_upstream_s_failure() {
    let upstream = FakeUpstream::start().await;
    let bytes: Vec<u8> = (0..3 * 1024 * 1024u32).map(|i| (i % 251) as u8).collect();
    upstream.add_package("Broken.Off", "1.0.0", bytes);
    let dir = tempfile::tempdir().expect("temp dir");
    let cache = dir.path().join("cache");
    let index = upstream.index_url();
    let mut process = Launch::new(&index, &cache).spawn();
    process.ready().await;
    let path = "/v3/flatcontainer/broken.off/1.0.0/broken.off.1.0.0.nupkg";
    upstream.set_fault_for("broken.off.1.0.0.nupkg", common::upstream::Fault::Truncate);
    let broken = send(Method::GET, &process.url(path), &[], Bytes::new()).await;
    assert!(
        broken.status == StatusCode::BAD_GATEWAY || broken.body_error.is_some(),
        "never served whole: {} {:?}",
        broken.status,
        broken.body_error
    );
    let line = access_line(&process, broken.header("x-request-id").unwrap_or("?")).await;
    assert_eq!(line["failed"], "upstream", "{line:?}");
    assert!(
        line["error"].contains("broken off") || line["error"].contains("upstream"),
        "{line:?}"
    );

    // The client's own mistakes are the client's; nothing broke upstream.
    let refused = send(Method::POST, &process.url(path), &[], Bytes::new()).await;
    let line = access_line(&process, refused.header("x-request-id").unwrap_or("?")).await;
    assert_eq!(line["failed"], "client", "{line:?}");
}
