//! Inside an air gap: NuGetAudit's vulnerability documents and search keep
//! answering with the upstream down. Vulnerability pages are immutable
//! (cached for good, never revalidated); the index is rewritten to nucache
//! and served from its last good copy when the upstream fails; search and
//! autocomplete answer from the cached packages (`X-Cache: STALE`).

mod common;

use std::time::Duration;

use common::nucache::Nucache;
use common::upstream::{FakeUpstream, Fault};
use http::StatusCode;

const INDEX: &str = "/v3/vulnerabilities/index.json";

#[tokio::test]
async fn vulnerability_pages_are_immutable_and_the_index_points_at_nucache() {
    let upstream = FakeUpstream::start().await;
    // TTL 0: every other document has expired by the next request.
    let nucache = Nucache::start(&upstream.index_url(), |c| c.ttl.documents = Duration::ZERO).await;
    let index = nucache.get(INDEX).await;
    assert_eq!(index.status, StatusCode::OK);
    let pages: Vec<String> = index
        .json()
        .as_array()
        .map(|pages| {
            pages
                .iter()
                .filter_map(|p| p["@id"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    assert_eq!(pages.len(), 2, "{}", index.text());
    for page in &pages {
        let path = page
            .strip_prefix(&nucache.base())
            .unwrap_or_else(|| panic!("{page} does not point at nucache"));
        assert_eq!(nucache.get(path).await.x_cache(), Some("MISS"));
        upstream.reset_log();
        let again = nucache.get(path).await;
        assert_eq!((again.status, again.x_cache()), (StatusCode::OK, Some("HIT")), "{path}");
        assert_eq!(
            upstream.count(path.trim_start_matches("/v3/")),
            0,
            "a page is never revalidated"
        );
    }
    // The index itself stays mutable: past its TTL it is refreshed.
    assert_eq!(nucache.get(INDEX).await.x_cache(), Some("UPDATING"));
}

#[tokio::test]
async fn with_the_upstream_down_the_last_good_audit_snapshot_is_served() {
    let upstream = FakeUpstream::start().await;
    let nucache = Nucache::start(&upstream.index_url(), |c| {
        c.ttl.documents = Duration::ZERO;
        c.ttl.max_stale = Duration::ZERO;
    })
    .await;
    let index = nucache.get(INDEX).await;
    let page = "/v3/vulnerabilities/base.json";
    assert_eq!(nucache.get(page).await.status, StatusCode::OK);
    upstream.set_fault(Fault::Refuse);
    let offline = nucache.get(INDEX).await;
    assert_eq!((offline.status, offline.x_cache()), (StatusCode::OK, Some("STALE")));
    assert_eq!(offline.body, index.body, "the last good copy");
    let page_offline = nucache.get(page).await;
    assert_eq!(
        (page_offline.status, page_offline.x_cache()),
        (StatusCode::OK, Some("HIT"))
    );
}

#[tokio::test]
async fn search_answers_from_the_cache_when_the_upstream_search_is_down() {
    let upstream = FakeUpstream::start().await;
    let nucache = Nucache::start(&upstream.index_url(), |_| {}).await;
    let registration = nucache
        .get("/v3/registration/registration5-gz-semver2/fake.core/index.json")
        .await;
    assert_eq!(registration.status, StatusCode::OK, "{}", registration.text());
    let versions = registration.json()["items"][0]["items"]
        .as_array()
        .map(|leaves| {
            leaves
                .iter()
                .filter_map(|l| l["catalogEntry"]["version"].as_str().map(str::to_string))
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    let version = versions
        .first()
        .cloned()
        .unwrap_or_else(|| panic!("no version: {}", registration.text()));
    let nupkg = format!("/v3/flatcontainer/fake.core/{version}/fake.core.{version}.nupkg");
    assert_eq!(nucache.get(&nupkg).await.status, StatusCode::OK);
    upstream.set_fault(Fault::Refuse);

    let search = nucache.get("/v3/query?q=fake&prerelease=true&semVerLevel=2.0.0").await;
    assert_eq!(
        (search.status, search.x_cache()),
        (StatusCode::OK, Some("STALE")),
        "{}",
        search.text()
    );
    let answer = search.json();
    assert_eq!(answer["totalHits"], 1, "{answer}");
    assert_eq!(
        answer["data"][0]["id"].as_str().map(str::to_lowercase).as_deref(),
        Some("fake.core")
    );
    assert_eq!(answer["data"][0]["versions"][0]["version"], version.as_str());
    let none = nucache.get("/v3/query?q=nothing-like-it").await;
    assert_eq!(none.json()["totalHits"], 0);

    let ids = nucache
        .get("/v3/autocomplete?q=fake.c&prerelease=true&semVerLevel=2.0.0")
        .await;
    assert_eq!((ids.status, ids.x_cache()), (StatusCode::OK, Some("STALE")));
    assert_eq!(ids.json()["data"].as_array().map(Vec::len), Some(1), "{}", ids.text());
}
