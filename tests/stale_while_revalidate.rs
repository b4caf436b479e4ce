//! stale-while-revalidate: an expired document is served at once
//! (`X-Cache: UPDATING`) while one background refresh per key asks the
//! upstream; past `ttl.max_stale` the client waits for the refresh; when the
//! upstream fails, the cached copy is served (`STALE`).

mod common;

use std::time::{Duration, Instant};

use common::nucache::Nucache;
use common::poll;
use common::upstream::{FakeUpstream, Fault};
use futures_util::future::join_all;
use http::StatusCode;

const VERSIONS: &str = "/v3/flatcontainer/fake.core/index.json";
/// The version list's path upstream (not its registration index's).
const UPSTREAM_VERSIONS: &str = "v3-flatcontainer/fake.core/index.json";
/// The upstream answers this late while a test wants it slow.
const SLOW: Duration = Duration::from_secs(4);

#[tokio::test]
async fn an_expired_version_list_is_served_at_once_while_one_refresh_runs() {
    let upstream = FakeUpstream::start().await;
    // TTL 0: every cached copy has expired by the next request.
    let nucache = Nucache::start(&upstream.index_url(), |c| c.ttl.versions = Duration::ZERO).await;
    let first = nucache.get(VERSIONS).await;
    assert_eq!((first.status, first.x_cache()), (StatusCode::OK, Some("MISS")));

    upstream.add_package("Fake.Core", "9.9.9", common::upstream::fake_nupkg("Fake.Core", "9.9.9"));
    upstream.set_fault_for(UPSTREAM_VERSIONS, Fault::Delay(SLOW));
    upstream.reset_log();
    let started = Instant::now();
    let replies = join_all((0..5).map(|_| nucache.get(VERSIONS))).await;
    let waited = started.elapsed();
    for reply in &replies {
        assert_eq!(reply.status, StatusCode::OK);
        assert_eq!(reply.x_cache(), Some("UPDATING"));
        assert_eq!(reply.body, first.body, "the cached copy, as it was");
        assert_eq!(reply.header("cache-control"), Some("public, max-age=0"));
    }
    assert!(
        waited < SLOW / 2,
        "answered after {waited:?}: the clients waited for the upstream"
    );
    poll::until_true("the refresh reaches the upstream", async || {
        upstream.count(UPSTREAM_VERSIONS) >= 1
    })
    .await;
    assert_eq!(upstream.count(UPSTREAM_VERSIONS), 1, "one refresh for five clients");

    upstream.clear_faults();
    poll::until_true("the refreshed list is served", async || {
        nucache.get(VERSIONS).await.text().contains("9.9.9")
    })
    .await;
}

#[tokio::test]
async fn past_max_stale_the_client_waits_for_the_upstream() {
    let upstream = FakeUpstream::start().await;
    let nucache = Nucache::start(&upstream.index_url(), |c| {
        c.ttl.versions = Duration::ZERO;
        c.ttl.max_stale = Duration::ZERO;
    })
    .await;
    nucache.get(VERSIONS).await;
    upstream.add_package("Fake.Core", "9.9.9", common::upstream::fake_nupkg("Fake.Core", "9.9.9"));
    let reply = nucache.get(VERSIONS).await;
    assert_eq!(
        reply.x_cache(),
        Some("MISS"),
        "a new list, fetched while the client waited"
    );
    assert!(reply.text().contains("9.9.9"));
}

#[tokio::test]
async fn an_expired_copy_is_served_stale_when_the_refresh_fails() {
    let upstream = FakeUpstream::start().await;
    let nucache = Nucache::start(&upstream.index_url(), |c| {
        c.ttl.versions = Duration::ZERO;
        c.ttl.max_stale = Duration::ZERO;
    })
    .await;
    let first = nucache.get(VERSIONS).await;
    upstream.set_fault(Fault::Status(503));
    let reply = nucache.get(VERSIONS).await;
    assert_eq!((reply.status, reply.x_cache()), (StatusCode::OK, Some("STALE")));
    assert_eq!(reply.body, first.body);
}

#[tokio::test]
async fn an_expired_service_index_is_served_at_once_while_it_refreshes() {
    let upstream = FakeUpstream::start().await;
    let nucache = Nucache::start(&upstream.index_url(), |c| c.ttl.service_index = Duration::ZERO).await;
    let first = nucache.get("/v3/index.json").await;
    assert_eq!(first.status, StatusCode::OK);
    upstream.set_fault_for("/v3/index.json", Fault::Delay(SLOW));
    upstream.reset_log();
    let started = Instant::now();
    let reply = nucache.get("/v3/index.json").await;
    assert!(started.elapsed() < SLOW / 2, "the client waited for the upstream");
    assert_eq!((reply.status, reply.x_cache()), (StatusCode::OK, Some("UPDATING")));
    assert_eq!(reply.body, first.body);
    poll::until_true("the refresh reaches the upstream", async || {
        upstream.count("/v3/index.json") >= 1
    })
    .await;
}
