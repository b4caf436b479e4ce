//! `/ready`: 503 with a reason until every upstream's service index is
//! loaded, which nucache does at start-up with no client request (from the
//! upstream, or from the cache alone with the upstream down); 200 after.

mod common;

use common::nucache::Nucache;
use common::upstream::{FakeUpstream, Fault};
use http::StatusCode;

#[tokio::test]
async fn ready_once_a_service_index_is_loaded_and_from_the_cache_after_a_restart() {
    let upstream = FakeUpstream::start().await;
    upstream.set_fault(Fault::Refuse);
    let nucache = Nucache::start(&upstream.index_url(), |_| {}).await;
    let cold = nucache.get("/ready").await;
    assert_eq!(cold.status, StatusCode::SERVICE_UNAVAILABLE, "{}", cold.text());
    assert_eq!(cold.json()["ready"], false);
    let reasons = cold.json()["reasons"].to_string();
    assert!(
        reasons.contains("service index of upstream default is not loaded"),
        "{reasons}"
    );
    let health = nucache.get("/health").await;
    assert_eq!(health.status, StatusCode::OK, "liveness stays 200");

    // No client asks for anything: nucache loads the index by itself once
    // the upstream answers (a Kubernetes readiness probe on an empty
    // volume would otherwise wait for ever).
    upstream.reset_log();
    upstream.clear_faults();
    nucache.until_ready().await;
    assert_eq!(upstream.count("/index.json"), 1, "{:?}", upstream.requests());
    assert_eq!(
        upstream.requests().len(),
        1,
        "the index only: {:?}",
        upstream.requests()
    );
    let warm = nucache.get("/ready").await;
    assert_eq!(warm.status, StatusCode::OK, "{}", warm.text());
    assert_eq!(warm.json()["ready"], true);
    assert_eq!(warm.json()["reasons"], serde_json::json!([]));

    // Restarted with the upstream down: the cached index is enough.
    let dir = nucache.dir.clone();
    let temp = nucache.stop().await;
    upstream.set_fault(Fault::Refuse);
    let restarted = Nucache::start_in(&upstream.index_url(), &dir, |_| {}).await;
    restarted.until_ready().await;
    restarted.stop().await;
    drop(temp);
}
