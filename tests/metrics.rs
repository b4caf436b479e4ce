//! `/metrics`: Prometheus text whose counters follow what clients saw
//! (a miss, hits, a stale answer, an upstream failure).

mod common;

use std::time::Duration;

use common::metrics::{scrape, scrape_until, scrape_with};
use common::nucache::Nucache;
use common::poll;
use common::upstream::{FakeUpstream, Fault};
use http::{Method, StatusCode};
use nucache::config::{digest_hex, ReadAccess};

const NUPKG: &str = "/v3/flatcontainer/fake.core/1.1.0/fake.core.1.1.0.nupkg";
const VERSIONS: &str = "/v3/flatcontainer/fake.core/index.json";
const NEVER_CACHED: &str = "/v3/flatcontainer/fake.dep/index.json";
const REQUESTS: &str = "nucache_requests_total";

fn requests(kind: &'static str, cache: &'static str) -> [(&'static str, &'static str); 2] {
    [("kind", kind), ("cache", cache)]
}

#[tokio::test]
async fn counters_follow_a_miss_hits_a_stale_answer_and_an_upstream_failure() {
    let upstream = FakeUpstream::start().await;
    // Version lists expire at once and are never served past their TTL
    // without asking: with the upstream failing, the cached one is STALE.
    let nucache = Nucache::start(&upstream.index_url(), |c| {
        c.ttl.versions = Duration::ZERO;
        c.ttl.max_stale = Duration::ZERO;
    })
    .await;
    let before = scrape(&nucache).await;
    assert_eq!(before.sum(REQUESTS, &[("kind", "package")]), 0.0);
    assert_eq!(before.value("nucache_cache_entries", &[]), 0.0);
    assert_eq!(before.value("nucache_storage_writable", &[]), 1.0);

    // A miss, then HEADs until it is a hit, then one GET that is a hit.
    let size = upstream.nupkg_bytes("Fake.Core", "1.1.0").expect("corpus").len() as f64;
    let miss = nucache.get(NUPKG).await;
    assert_eq!((miss.status, miss.x_cache()), (StatusCode::OK, Some("MISS")));
    let heads = poll::until_hit(Method::HEAD, &nucache.url(NUPKG)).await;
    let (misses, mut hits) = (1.0 + f64::from(heads.misses), 1.0);
    let hit = nucache.get(NUPKG).await;
    assert_eq!(hit.x_cache(), Some("HIT"));
    hits += 1.0;
    let after_hits = scrape_until(&nucache, "the hit counted", |s| {
        s.value(REQUESTS, &requests("package", "HIT")) >= hits
    })
    .await;
    assert_eq!(after_hits.value(REQUESTS, &requests("package", "HIT")), hits);
    assert_eq!(after_hits.value(REQUESTS, &requests("package", "MISS")), misses);
    let by_source = |s: &common::metrics::Scrape, source| s.value("nucache_served_bytes_total", &[("source", source)]);
    assert_eq!(
        by_source(&after_hits, "upstream"),
        size,
        "the miss's body, once (HEADs send none)"
    );
    assert_eq!(by_source(&after_hits, "cache"), size, "the hit's body");
    let api = upstream.api();
    let api_origin = api.trim_end_matches('/');
    assert!(
        after_hits.value(
            "nucache_upstream_requests_total",
            &[("origin", api_origin), ("status", "200")]
        ) >= 2.0,
        "the service index and the package: {:?}",
        after_hits.names()
    );
    assert!(after_hits.value("nucache_upstream_request_duration_seconds_count", &[]) >= 2.0);
    assert!(
        after_hits.value("nucache_cache_entries", &[]) >= 2.0,
        "the index and the package"
    );
    assert!(after_hits.value("nucache_cache_size_bytes", &[]) >= size);

    // A version list cached, then the upstream fails: STALE for it, 502 for
    // what was never cached.
    assert_eq!(nucache.get(VERSIONS).await.x_cache(), Some("MISS"));
    upstream.set_fault(Fault::Status(500));
    let stale = nucache.get(VERSIONS).await;
    assert_eq!((stale.status, stale.x_cache()), (StatusCode::OK, Some("STALE")));
    let failed = nucache.get(NEVER_CACHED).await;
    assert_eq!(failed.status, StatusCode::BAD_GATEWAY, "{}", failed.text());
    let after_outage = scrape_until(&nucache, "the failure counted", |s| {
        s.value(REQUESTS, &requests("versions", "none")) >= 1.0
    })
    .await;
    assert_eq!(after_outage.value(REQUESTS, &requests("versions", "MISS")), 1.0);
    assert_eq!(after_outage.value(REQUESTS, &requests("versions", "STALE")), 1.0);
    assert_eq!(after_outage.value(REQUESTS, &requests("versions", "none")), 1.0);
    assert!(
        after_outage.value(
            "nucache_upstream_requests_total",
            &[("origin", api_origin), ("status", "500")]
        ) >= 2.0,
        "the stale list's and the failed list's requests"
    );
    assert!(
        by_source(&after_outage, "cache") > size,
        "the stale list came from the cache"
    );
    assert_eq!(
        after_outage.value(REQUESTS, &requests("package", "HIT")),
        hits,
        "nothing else moved"
    );
}

#[tokio::test]
async fn an_unreachable_upstream_and_its_open_breaker_are_reported() {
    let upstream = FakeUpstream::start().await;
    let nucache = Nucache::start(&upstream.index_url(), |c| c.upstream.breaker_threshold = 1).await;
    upstream.set_fault(Fault::Refuse);
    let failed = nucache.get("/v3/index.json").await;
    assert_eq!(failed.status, StatusCode::BAD_GATEWAY);
    let api = upstream.api();
    let origin = api.trim_end_matches('/');
    let scraped = scrape_until(&nucache, "the breaker opens", |s| {
        s.value("nucache_breaker_open", &[("origin", origin)]) == 1.0
    })
    .await;
    assert!(
        scraped.value(
            "nucache_upstream_requests_total",
            &[("origin", origin), ("status", "error")]
        ) >= 1.0
    );
    assert_eq!(scraped.value(REQUESTS, &requests("service_index", "none")), 1.0);
}

#[tokio::test]
async fn metrics_need_read_credentials_when_reads_do() {
    let upstream = FakeUpstream::start().await;
    let nucache = Nucache::start(&upstream.index_url(), |c| {
        c.auth.read = ReadAccess::Required;
        c.auth.read_keys = vec![digest_hex("read-key")];
    })
    .await;
    let anonymous = nucache.get("/metrics").await;
    assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED);
    assert!(!anonymous.text().contains("nucache_"), "{}", anonymous.text());
    let scraped = scrape_with(&nucache, &[("x-nuget-apikey", "read-key")]).await;
    assert_eq!(
        scraped.value(REQUESTS, &requests("other", "none")),
        1.0,
        "the refused scrape"
    );
}
