//! Publishing through nucache against the fake upstream: keys, forwarding,
//! status passthrough, freshness after a change, and no key in the logs.

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};

use bytes::Bytes;
use common::nucache::{send, Nucache};
use common::upstream::{FakeUpstream, Role};
use http::{Method, StatusCode};
use nucache::config::{digest_hex, PublishMode, Secret};

const UPSTREAM_KEY: &str = "upstream-secret-4711";
const CLIENT_KEY: &str = "client-secret-0815";
const BOUNDARY: &str = "nucache-test-boundary";

/// Everything logged by this test binary, at every level.
fn captured_logs() -> Arc<Mutex<Vec<u8>>> {
    static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOGS.get_or_init(|| {
        let buffer = Arc::new(Mutex::new(Vec::new()));
        let writer = buffer.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new("trace"))
            .with_writer(move || CaptureWriter(writer.clone()))
            .finish();
        let _ = tracing::subscriber::set_global_default(subscriber);
        buffer
    })
    .clone()
}

struct CaptureWriter(Arc<Mutex<Vec<u8>>>);

impl Write for CaptureWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        if let Ok(mut buffer) = self.0.lock() {
            buffer.extend_from_slice(data);
        }
        Ok(data.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A real (tiny) .nupkg: a zip with a nuspec.
fn nupkg(id: &str, version: &str) -> Vec<u8> {
    let mut out = std::io::Cursor::new(Vec::new());
    {
        let mut zip = zip::ZipWriter::new(&mut out);
        let options = zip::write::SimpleFileOptions::default();
        zip.start_file(format!("{id}.nuspec"), options).expect("zip entry");
        let nuspec = format!(
            "<?xml version=\"1.0\"?><package><metadata><id>{id}</id><version>{version}</version></metadata></package>"
        );
        zip.write_all(nuspec.as_bytes()).expect("zip write");
        zip.finish().expect("zip finish");
    }
    out.into_inner()
}

/// The body `nuget push` sends.
fn multipart(package: &[u8]) -> Bytes {
    let mut body = format!(
        "--{BOUNDARY}\r\nContent-Type: application/octet-stream\r\nContent-Disposition: form-data; name=package; filename=package.nupkg\r\n\r\n"
    )
    .into_bytes();
    body.extend_from_slice(package);
    body.extend_from_slice(format!("\r\n--{BOUNDARY}--\r\n").as_bytes());
    Bytes::from(body)
}

async fn push(nucache: &Nucache, key: Option<&str>, body: Bytes) -> common::nucache::Reply {
    let content_type = format!("multipart/form-data; boundary={BOUNDARY}");
    let mut headers = vec![("content-type", content_type.as_str())];
    if let Some(key) = key {
        headers.push(("x-nuget-apikey", key));
    }
    send(Method::PUT, &nucache.url("/v3/package/"), &headers, body).await
}

async fn start(upstream: &FakeUpstream) -> Nucache {
    captured_logs();
    upstream.set_api_key(Some(UPSTREAM_KEY));
    Nucache::start(&upstream.index_url(), |c| {
        c.publish.api_key = Some(Secret::new(UPSTREAM_KEY));
        c.publish.client_keys = vec![digest_hex(CLIENT_KEY)];
    })
    .await
}

fn publish_requests(upstream: &FakeUpstream) -> Vec<common::upstream::Recorded> {
    upstream
        .requests()
        .into_iter()
        .filter(|r| r.host == Role::Api && r.path.starts_with("/api/v2/"))
        .collect()
}

#[tokio::test]
async fn the_service_index_lists_publish_resources_at_nucache() {
    let upstream = FakeUpstream::start().await;
    let nucache = start(&upstream).await;
    let index = nucache.get("/v3/index.json").await.json();
    let resources = index["resources"].as_array().cloned().unwrap_or_default();
    let id_of = |kind: &str| resources.iter().find(|r| r["@type"] == kind).map(|r| r["@id"].clone());
    assert_eq!(
        id_of("PackagePublish/2.0.0"),
        Some(format!("{}/v3/package", nucache.base()).into())
    );
    assert_eq!(
        id_of("SymbolPackagePublish/4.9.0"),
        Some(format!("{}/v3/symbolpackage", nucache.base()).into())
    );
}

#[tokio::test]
async fn a_push_with_a_client_key_arrives_with_the_upstream_key() {
    let upstream = FakeUpstream::start().await;
    let nucache = start(&upstream).await;
    let body = multipart(&nupkg("Pushed.Package", "1.0.0"));
    let reply = push(&nucache, Some(CLIENT_KEY), body.clone()).await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text());
    let pushes = publish_requests(&upstream);
    assert_eq!(pushes.len(), 1);
    let received = &pushes[0];
    assert_eq!(received.method, "PUT");
    assert_eq!(
        received.headers.get("x-nuget-apikey").map(|v| v.as_bytes()),
        Some(UPSTREAM_KEY.as_bytes())
    );
    assert_eq!(received.body_len, body.len());
    assert_eq!(upstream.last_push_sha256(), Some(hex::encode(sha2_256(&body))));
    // The same package again: the upstream's 409 and its message come back.
    let duplicate = push(&nucache, Some(CLIENT_KEY), body).await;
    assert_eq!(duplicate.status, StatusCode::CONFLICT);
    assert!(duplicate.text().contains("already exists"), "{}", duplicate.text());
}

fn sha2_256(data: &[u8]) -> Vec<u8> {
    use sha2::Digest;
    sha2::Sha256::digest(data).to_vec()
}

#[tokio::test]
async fn wrong_or_missing_client_keys_never_reach_the_upstream() {
    let upstream = FakeUpstream::start().await;
    let nucache = start(&upstream).await;
    let body = multipart(&nupkg("Refused", "1.0.0"));
    assert_eq!(
        push(&nucache, None, body.clone()).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        push(&nucache, Some("wrong-key"), body.clone()).await.status,
        StatusCode::FORBIDDEN
    );
    // The upstream key itself is not a client key.
    assert_eq!(
        push(&nucache, Some(UPSTREAM_KEY), body).await.status,
        StatusCode::FORBIDDEN
    );
    let delete = send(
        Method::DELETE,
        &nucache.url("/v3/package/Fake.Core/1.0.0"),
        &[("x-nuget-apikey", "wrong-key")],
        Bytes::new(),
    )
    .await;
    assert_eq!(delete.status, StatusCode::FORBIDDEN);
    assert!(
        publish_requests(&upstream).is_empty(),
        "a refused call reached the upstream"
    );
    let refused = push(&nucache, Some("wrong-key"), Bytes::from_static(b"x")).await;
    assert!(!refused.text().contains("wrong-key"), "the key was echoed");
}

#[tokio::test]
async fn publishing_without_client_keys_is_refused_with_a_hint() {
    let upstream = FakeUpstream::start().await;
    let nucache = Nucache::start(&upstream.index_url(), |_| {}).await;
    let reply = push(&nucache, Some(CLIENT_KEY), multipart(&nupkg("A", "1.0.0"))).await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN);
    assert!(reply.text().contains("publish.client_keys"), "{}", reply.text());
    assert!(publish_requests(&upstream).is_empty());
}

#[tokio::test]
async fn passthrough_forwards_the_client_key() {
    let upstream = FakeUpstream::start().await;
    upstream.set_api_key(Some(UPSTREAM_KEY));
    let nucache = Nucache::start(&upstream.index_url(), |c| c.publish.mode = PublishMode::Passthrough).await;
    let good = push(&nucache, Some(UPSTREAM_KEY), multipart(&nupkg("Through", "1.0.0"))).await;
    assert_eq!(good.status, StatusCode::CREATED);
    let bad = push(
        &nucache,
        Some("not-the-upstream-key"),
        multipart(&nupkg("Through", "2.0.0")),
    )
    .await;
    assert_eq!(bad.status, StatusCode::FORBIDDEN, "the upstream's own 403 comes back");
    let keys: Vec<Option<String>> = publish_requests(&upstream)
        .iter()
        .map(|r| {
            r.headers
                .get("x-nuget-apikey")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        })
        .collect();
    assert_eq!(
        keys,
        [Some(UPSTREAM_KEY.to_string()), Some("not-the-upstream-key".to_string())]
    );
}

#[tokio::test]
async fn oversized_pushes_get_413_before_reaching_the_upstream() {
    let upstream = FakeUpstream::start().await;
    let nucache = Nucache::start(&upstream.index_url(), |c| {
        c.publish.api_key = Some(Secret::new(UPSTREAM_KEY));
        c.publish.client_keys = vec![digest_hex(CLIENT_KEY)];
        c.publish.max_size = nucache::config::ByteSize(1000);
    })
    .await;
    let reply = push(&nucache, Some(CLIENT_KEY), Bytes::from(vec![7u8; 5000])).await;
    assert_eq!(reply.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(publish_requests(&upstream).is_empty());
}

#[tokio::test]
async fn a_push_delete_and_relist_show_through_nucache_at_once() {
    let upstream = FakeUpstream::start().await;
    let nucache = start(&upstream).await;
    let versions = "/v3/flatcontainer/fake.dep/index.json";
    let registration = "/v3/registration/registration5-semver1/fake.dep/index.json";
    let before = nucache.get(versions).await.json();
    assert!(!before["versions"].to_string().contains("7.0.0"));
    nucache.get(registration).await;

    // The upstream learns of 7.0.0 when it is pushed through nucache.
    upstream.add_package("Fake.Dep", "7.0.0", nupkg("Fake.Dep", "7.0.0"));
    let pushed = push(&nucache, Some(CLIENT_KEY), multipart(&nupkg("Fake.Dep", "7.0.0"))).await;
    assert_eq!(pushed.status, StatusCode::CREATED);
    let after = nucache.get(versions).await;
    assert_eq!(after.x_cache(), Some("MISS"), "the version list was not dropped");
    assert!(after.json()["versions"].to_string().contains("7.0.0"));

    let listed = |doc: &serde_json::Value| doc.to_string().contains("\"listed\":false");
    assert!(!listed(&nucache.get(registration).await.json()));
    let delete = send(
        Method::DELETE,
        &nucache.url("/v3/package/Fake.Dep/7.0.0"),
        &[("x-nuget-apikey", CLIENT_KEY)],
        Bytes::new(),
    )
    .await;
    assert_eq!(delete.status, StatusCode::NO_CONTENT);
    let unlisted = nucache.get(registration).await;
    assert_eq!(unlisted.x_cache(), Some("MISS"));
    assert!(listed(&unlisted.json()), "the unlist is not visible through nucache");
    let relist = send(
        Method::POST,
        &nucache.url("/v3/package/Fake.Dep/7.0.0"),
        &[("x-nuget-apikey", CLIENT_KEY)],
        Bytes::new(),
    )
    .await;
    assert_eq!(relist.status, StatusCode::OK);
    assert!(!listed(&nucache.get(registration).await.json()));
    // The package itself stayed cached; only metadata was dropped.
    let keys: Vec<String> = publish_requests(&upstream).iter().map(|r| r.method.clone()).collect();
    assert_eq!(keys, ["PUT", "DELETE", "POST"]);
}

#[tokio::test]
async fn publish_calls_are_never_retried() {
    let upstream = FakeUpstream::start().await;
    let nucache = start(&upstream).await;
    nucache.get("/v3/index.json").await;
    upstream.set_fault_for("/api/v2/package", common::upstream::Fault::Status(503));
    let reply = push(&nucache, Some(CLIENT_KEY), multipart(&nupkg("Once", "1.0.0"))).await;
    assert_eq!(
        reply.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "the upstream's status comes back"
    );
    assert_eq!(publish_requests(&upstream).len(), 1);
}

#[tokio::test]
async fn no_key_appears_in_the_logs() {
    let logs = captured_logs();
    let upstream = FakeUpstream::start().await;
    let nucache = start(&upstream).await;
    push(&nucache, Some(CLIENT_KEY), multipart(&nupkg("Logged", "1.0.0"))).await;
    push(
        &nucache,
        Some("wrong-key-in-logs"),
        multipart(&nupkg("Logged", "2.0.0")),
    )
    .await;
    push(&nucache, None, multipart(&nupkg("Logged", "3.0.0"))).await;
    nucache.get("/v3/index.json").await;
    let text = logs
        .lock()
        .map(|l| String::from_utf8_lossy(&l).into_owned())
        .unwrap_or_default();
    assert!(text.contains("/v3/package/"), "the log capture saw nothing");
    for secret in [UPSTREAM_KEY, CLIENT_KEY, "wrong-key-in-logs"] {
        assert!(!text.contains(secret), "{secret} appears in the logs");
    }
}

#[tokio::test]
async fn a_push_forgets_every_remembered_404_of_the_package() {
    let upstream = FakeUpstream::start().await;
    let nucache = start(&upstream).await;
    let paths = [
        "/v3/flatcontainer/brand.new/1.0.0/brand.new.1.0.0.nupkg",
        "/v3/flatcontainer/brand.new/index.json",
        "/v3/registration/registration5-semver1/brand.new/index.json",
    ];
    for path in paths {
        assert_eq!(nucache.get(path).await.status, StatusCode::NOT_FOUND, "{path}");
    }
    // The upstream learns of it when it is pushed through nucache.
    let package = nupkg("Brand.New", "1.0.0");
    upstream.add_package("Brand.New", "1.0.0", package.clone());
    let pushed = push(&nucache, Some(CLIENT_KEY), multipart(&package)).await;
    assert_eq!(pushed.status, StatusCode::CREATED, "{}", pushed.text());
    for path in paths {
        let reply = nucache.get(path).await;
        assert_eq!(
            (reply.status, reply.x_cache()),
            (StatusCode::OK, Some("MISS")),
            "{path}: a remembered 404 outlived the push"
        );
    }
    let downloaded = nucache.get(paths[0]).await;
    assert_eq!(downloaded.body, package);
}
