//! Single-flight misses, broken downloads, the upstream down, restarts and
//! hostile paths.

mod common;

use std::time::{Duration, Instant};

use common::nucache::Nucache;
use common::poll;
use common::upstream::{FakeUpstream, Fault};
use futures_util::future::join_all;
use http::{Method, StatusCode};

const NUPKG: &str = "/v3/flatcontainer/fake.core/1.1.0/fake.core.1.1.0.nupkg";

#[tokio::test]
async fn concurrent_misses_share_one_upstream_download() {
    let upstream = FakeUpstream::start().await;
    // A slow body, so that every request arrives while the download runs.
    upstream.set_body_chunking(2048, Duration::from_millis(10));
    let nucache = Nucache::start(&upstream.index_url(), |_| {}).await;
    nucache.get("/v3/index.json").await;
    let expected = upstream.nupkg_bytes("Fake.Core", "1.1.0").expect("corpus");
    let replies = join_all((0..20).map(|_| nucache.get(NUPKG))).await;
    for reply in &replies {
        assert_eq!(reply.status, StatusCode::OK);
        assert!(reply.body_error.is_none(), "{:?}", reply.body_error);
        assert_eq!(reply.body, expected);
    }
    assert_eq!(upstream.count("fake.core.1.1.0.nupkg"), 1);
    assert!(replies.iter().filter(|r| r.x_cache() == Some("MISS")).count() >= 1);
    // The last bytes reach clients just before the commit: wait for it.
    poll::until_hit(Method::HEAD, &nucache.url(NUPKG)).await;
    assert_eq!(upstream.count("fake.core.1.1.0.nupkg"), 1);
}

#[tokio::test]
async fn a_client_hanging_up_does_not_cancel_the_download() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let upstream = FakeUpstream::start().await;
    upstream.set_body_chunking(1024, Duration::from_millis(5));
    let nucache = Nucache::start(&upstream.index_url(), |_| {}).await;
    nucache.get("/v3/index.json").await;
    let size = upstream.nupkg_bytes("Fake.Core", "1.1.0").map_or(0, |b| b.len());
    // A client that starts the download, gets the head and some of the
    // body, then hangs up mid-way.
    let mut client = tokio::net::TcpStream::connect(nucache.addr).await.expect("connect");
    let request = format!("GET {NUPKG} HTTP/1.1\r\nHost: a\r\n\r\n");
    client.write_all(request.as_bytes()).await.expect("write");
    let mut received = Vec::new();
    let mut buffer = [0u8; 4096];
    let body_started = |data: &[u8]| {
        data.windows(4)
            .position(|w| w == b"\r\n\r\n")
            .is_some_and(|head| data.len() > head + 4)
    };
    while !body_started(&received) {
        let n = tokio::time::timeout(Duration::from_secs(5), client.read(&mut buffer))
            .await
            .expect("no body within 5 s")
            .expect("read");
        assert!(n > 0, "closed before the body");
        received.extend_from_slice(&buffer[..n]);
    }
    assert!(received.len() < size, "the whole package arrived before the hang-up");
    assert_eq!(upstream.count("fake.core.1.1.0.nupkg"), 1);
    drop(client);
    // Wait for the download to end without asking for the package: a
    // request for it would start a download of its own.
    let deadline = Instant::now() + Duration::from_secs(5);
    while nucache.get("/health").await.json()["downloads_in_flight"] != 0 {
        assert!(Instant::now() < deadline, "the download never ended");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // It completed anyway and became a cache entry.
    let cached = nucache.get(NUPKG).await;
    assert_eq!(
        cached.x_cache(),
        Some("HIT"),
        "the abandoned download was not committed"
    );
    assert_eq!(Some(cached.body.to_vec()), upstream.nupkg_bytes("Fake.Core", "1.1.0"));
    assert_eq!(upstream.count("fake.core.1.1.0.nupkg"), 1);
}

#[tokio::test]
async fn a_truncated_upstream_body_never_becomes_a_cache_entry() {
    let upstream = FakeUpstream::start().await;
    let nucache = Nucache::start(&upstream.index_url(), |_| {}).await;
    nucache.get("/v3/index.json").await;
    upstream.set_fault_for(".nupkg", Fault::Truncate);
    let broken = nucache.get(NUPKG).await;
    let expected = upstream.nupkg_bytes("Fake.Core", "1.1.0").expect("corpus");
    assert!(
        broken.status != StatusCode::OK || broken.body_error.is_some() || broken.body.len() < expected.len(),
        "a truncated download must not look complete"
    );
    upstream.clear_faults();
    let healed = nucache.get(NUPKG).await;
    assert_eq!(healed.status, StatusCode::OK);
    assert_eq!(healed.x_cache(), Some("MISS"), "the broken download was cached");
    assert_eq!(healed.body, expected);
    poll::until_hit(Method::HEAD, &nucache.url(NUPKG)).await;
    let temp_files = std::fs::read_dir(nucache.dir.join("tmp"))
        .map(|d| d.count())
        .unwrap_or(0);
    assert_eq!(temp_files, 0, "temporary files left behind");
}

#[tokio::test]
async fn the_upstream_down_serves_what_was_cached() {
    let upstream = FakeUpstream::start().await;
    let nucache = Nucache::start(&upstream.index_url(), |c| {
        c.ttl.versions = Duration::ZERO;
        c.ttl.service_index = Duration::ZERO;
        // Expired copies are refreshed while the client waits (no swr).
        c.ttl.max_stale = Duration::ZERO;
    })
    .await;
    let versions = "/v3/flatcontainer/fake.core/index.json";
    assert_eq!(nucache.get(versions).await.x_cache(), Some("MISS"));
    assert_eq!(nucache.get(NUPKG).await.status, StatusCode::OK);
    for fault in [Fault::Refuse, Fault::Status(503)] {
        upstream.set_fault(fault);
        let stale = nucache.get(versions).await;
        assert_eq!((stale.status, stale.x_cache()), (StatusCode::OK, Some("STALE")));
        assert!(stale.json()["versions"].is_array());
        let index = nucache.get("/v3/index.json").await;
        assert_eq!((index.status, index.x_cache()), (StatusCode::OK, Some("STALE")));
        let package = nucache.get(NUPKG).await;
        assert_eq!((package.status, package.x_cache()), (StatusCode::OK, Some("HIT")));
        let started = Instant::now();
        let never_cached = nucache.get("/v3/flatcontainer/fake.dep/index.json").await;
        assert_eq!(never_cached.status, StatusCode::BAD_GATEWAY, "{}", never_cached.text());
        assert!(!never_cached.text().is_empty(), "a 502 says why");
        assert!(started.elapsed() < Duration::from_secs(5));
        upstream.clear_faults();
    }
    // Back up: the next request revalidates.
    let back = nucache.get(versions).await;
    assert_eq!(back.x_cache(), Some("REVALIDATED"));
}

#[tokio::test]
async fn a_hanging_upstream_gives_504_within_the_timeout() {
    let upstream = FakeUpstream::start().await;
    let nucache = Nucache::start(&upstream.index_url(), |c| {
        c.upstream.read_timeout = Duration::from_millis(500);
    })
    .await;
    nucache.get("/v3/index.json").await;
    upstream.set_fault(Fault::Hang);
    let started = Instant::now();
    let reply = nucache.get("/v3/flatcontainer/fake.dep/index.json").await;
    assert_eq!(reply.status, StatusCode::GATEWAY_TIMEOUT, "{}", reply.text());
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "took {:?}",
        started.elapsed()
    );
    upstream.clear_faults();
}

#[tokio::test]
async fn the_cache_survives_a_restart_with_the_upstream_gone() {
    let upstream = FakeUpstream::start().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let first = Nucache::start_in(&upstream.index_url(), dir.path(), |_| {}).await;
    let versions = first.get("/v3/flatcontainer/fake.core/index.json").await;
    let package = first.get(NUPKG).await;
    let registration = first
        .get("/v3/registration/registration5-gz-semver2/fake.core/index.json")
        .await;
    let first_base = first.base();
    first.stop().await;

    upstream.set_fault(Fault::Refuse);
    let second = Nucache::start_in(&upstream.index_url(), dir.path(), |_| {}).await;
    let index = second.get("/v3/index.json").await;
    assert_eq!(index.status, StatusCode::OK, "{}", index.text());
    let again = second.get(NUPKG).await;
    assert_eq!((again.status, again.x_cache()), (StatusCode::OK, Some("HIT")));
    assert_eq!(again.body, package.body);
    let versions_again = second.get("/v3/flatcontainer/fake.core/index.json").await;
    assert_eq!(versions_again.body, versions.body);
    // The restarted nucache has another port: the same document, rendered for it.
    let registration_again = second
        .get("/v3/registration/registration5-gz-semver2/fake.core/index.json")
        .await;
    assert_eq!(registration_again.x_cache(), Some("HIT"));
    assert_eq!(
        registration_again.text(),
        registration.text().replace(&first_base, &second.base())
    );
    second.stop().await;
}

#[tokio::test]
async fn a_cached_blob_whose_file_is_gone_is_dropped_not_served() {
    let upstream = FakeUpstream::start().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let first = Nucache::start_in(&upstream.index_url(), dir.path(), |_| {}).await;
    assert_eq!(first.get(NUPKG).await.status, StatusCode::OK);
    first.stop().await;
    // Damage the cache: shorten every content file.
    for file in walk(&dir.path().join("content")) {
        let data = std::fs::read(&file).expect("read");
        std::fs::write(&file, &data[..data.len() / 2]).expect("write");
    }
    let second = Nucache::start_in(&upstream.index_url(), dir.path(), |_| {}).await;
    let reply = second.get(NUPKG).await;
    assert_eq!((reply.status, reply.x_cache()), (StatusCode::OK, Some("MISS")));
    assert_eq!(Some(reply.body.to_vec()), upstream.nupkg_bytes("Fake.Core", "1.1.0"));
    second.stop().await;
}

#[tokio::test]
async fn hostile_paths_are_refused_without_touching_the_disk() {
    let upstream = FakeUpstream::start().await;
    let nucache = Nucache::start(&upstream.index_url(), |_| {}).await;
    nucache.get("/v3/index.json").await;
    let before = walk(&nucache.dir).len();
    let hostile = [
        "/v3/flatcontainer/../../../etc/passwd",
        "/v3/flatcontainer/%2e%2e/%2e%2e/etc/passwd",
        "/v3/flatcontainer/..%2f..%2fetc%2fpasswd/index.json",
        "/v3/flatcontainer/..%5c..%5cwin.ini/index.json",
        "/v3/flatcontainer/a%00b/index.json",
        "/v3/flatcontainer/%c0%ae%c0%ae/index.json",
        "/v3/flatcontainer/fake.core/1.0.0-RC.01/fake.core.nuspec",
        "/v3/registration/registration5-semver1/%2e%2e/index.json",
    ];
    for path in hostile {
        let reply = nucache.get(path).await;
        assert!(
            matches!(reply.status, StatusCode::BAD_REQUEST | StatusCode::NOT_FOUND),
            "{path} answered {}",
            reply.status
        );
    }
    let long_id = format!("/v3/flatcontainer/{}/index.json", "a".repeat(101));
    assert_eq!(nucache.get(&long_id).await.status, StatusCode::BAD_REQUEST);
    assert_eq!(walk(&nucache.dir).len(), before, "a hostile request created a file");
    let upstream_paths: Vec<String> = upstream.requests().into_iter().map(|r| r.path).collect();
    assert!(
        upstream_paths
            .iter()
            .all(|p| !p.contains("..") && !p.contains("passwd")),
        "a hostile path reached the upstream: {upstream_paths:?}"
    );
}

/// Files below `root`, the index's own files left out.
fn walk(root: &std::path::Path) -> Vec<std::path::PathBuf> {
    common::files_under(root)
        .into_iter()
        .filter(|path| !path.to_string_lossy().contains("/index/"))
        .collect()
}

#[tokio::test]
async fn a_redirect_loop_or_a_5xx_is_a_502_and_caches_nothing() {
    let upstream = FakeUpstream::start().await;
    let nucache = Nucache::start(&upstream.index_url(), |_| {}).await;
    nucache.get("/v3/index.json").await;
    upstream.set_fault_for("fake.dep", Fault::RedirectLoop);
    let looped = nucache.get("/v3/flatcontainer/fake.dep/index.json").await;
    assert_eq!(looped.status, StatusCode::BAD_GATEWAY);
    assert!(looped.text().contains("redirects"), "{}", looped.text());
    // The first request and 5 redirects, then nucache gives up.
    assert_eq!(upstream.count("fake.dep/index.json"), 6);
    upstream.set_fault_for("fake.dep", Fault::Status(500));
    let failed = nucache
        .get("/v3/flatcontainer/fake.dep/1.0.0/fake.dep.1.0.0.nupkg")
        .await;
    assert_eq!(failed.status, StatusCode::BAD_GATEWAY);
    assert!(failed.text().contains("500"), "{}", failed.text());
    // One retry (the test configuration), then the failure.
    assert_eq!(upstream.count("fake.dep.1.0.0.nupkg"), 2);
    upstream.clear_faults();
    let healed = nucache
        .get("/v3/flatcontainer/fake.dep/1.0.0/fake.dep.1.0.0.nupkg")
        .await;
    assert_eq!((healed.status, healed.x_cache()), (StatusCode::OK, Some("MISS")));
    let versions = nucache.get("/v3/flatcontainer/fake.dep/index.json").await;
    assert_eq!((versions.status, versions.x_cache()), (StatusCode::OK, Some("MISS")));
}

#[tokio::test]
async fn invalid_json_from_the_upstream_is_a_502_and_keeps_the_cached_copy() {
    let upstream = FakeUpstream::start().await;
    let nucache = Nucache::start(&upstream.index_url(), |c| {
        c.ttl.versions = Duration::ZERO;
        c.ttl.max_stale = Duration::ZERO;
    })
    .await;
    let path = "/v3/flatcontainer/fake.core/index.json";
    let good = nucache.get(path).await;
    upstream.set_fault(Fault::BadJson);
    let stale = nucache.get(path).await;
    assert_eq!((stale.status, stale.x_cache()), (StatusCode::OK, Some("STALE")));
    assert_eq!(stale.body, good.body);
    let never = nucache.get("/v3/flatcontainer/fake.dep/index.json").await;
    assert_eq!(never.status, StatusCode::BAD_GATEWAY);
    assert!(never.text().contains("JSON"), "{}", never.text());
}
