//! `/ready`: 503 with a reason until a service index is loaded or cached,
//! 200 after (also from the cache alone, with the upstream down).

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
    assert!(reasons.contains("no service index"), "{reasons}");
    let health = nucache.get("/health").await;
    assert_eq!(health.status, StatusCode::OK, "liveness stays 200");

    upstream.clear_faults();
    assert_eq!(nucache.get("/v3/index.json").await.status, StatusCode::OK);
    let warm = nucache.get("/ready").await;
    assert_eq!(warm.status, StatusCode::OK, "{}", warm.text());
    assert_eq!(warm.json()["ready"], true);
    assert_eq!(warm.json()["reasons"], serde_json::json!([]));

    // Restarted with the upstream down: the cached index is enough.
    let dir = nucache.dir.clone();
    let temp = nucache.stop().await;
    upstream.set_fault(Fault::Refuse);
    let restarted = Nucache::start_in(&upstream.index_url(), &dir, |_| {}).await;
    let from_cache = restarted.get("/ready").await;
    assert_eq!(from_cache.status, StatusCode::OK, "{}", from_cache.text());
    restarted.stop().await;
    drop(temp);
}
