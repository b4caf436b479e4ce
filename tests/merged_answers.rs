//! Merged answers are cached documents like any other: their own ETag, a
//! 304 for a client that has them before anything is merged, served as
//! they are until a part expires, and merged again only when a part
//! changed (`nucache_merged_documents_total` counts the merges). And the
//! patterns hold for every query parameter that names an id, in every
//! spelling, with several upstreams as with one.

mod common;

use std::time::Duration;

use common::metrics::scrape;
use common::nucache::{Nucache, Reply};
use common::poll;
use common::two_feeds::{acme_bytes, feeds, named, nucache_for};
use common::upstream::{Corpus, FakeUpstream};
use http::{Method, StatusCode};
use serde_json::Value;

const LIST: &str = "/v3/flatcontainer/fake.core/index.json";

async fn merges(nucache: &Nucache) -> (f64, f64) {
    let scraped = scrape(nucache).await;
    let count = |outcome| scraped.value("nucache_merged_documents_total", &[("outcome", outcome)]);
    (count("merged"), count("reused"))
}

fn versions(reply: &Reply) -> Vec<String> {
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    reply.json()["versions"]
        .as_array()
        .map(|list| list.iter().filter_map(Value::as_str).map(str::to_string).collect())
        .unwrap_or_default()
}

#[tokio::test]
async fn a_fresh_merged_answer_is_served_as_kept_with_a_304_before_any_merge() {
    let feeds = feeds().await;
    let nucache = nucache_for(&feeds, |_| {}).await;
    let first = nucache.get(LIST).await;
    assert_eq!(first.x_cache(), Some("MISS"));
    assert_eq!(merges(&nucache).await, (1.0, 0.0));
    let etag = first.header("etag").expect("an ETag").to_string();
    let asked = (feeds.acme.requests().len(), feeds.public.requests().len());
    for _ in 0..20 {
        let again = nucache.get(LIST).await;
        assert_eq!(again.x_cache(), Some("HIT"));
        assert_eq!(versions(&again), versions(&first));
        assert_eq!(again.header("etag"), Some(etag.as_str()));
    }
    let not_modified = nucache.request(Method::GET, LIST, &[("if-none-match", &etag)]).await;
    assert_eq!(not_modified.status, StatusCode::NOT_MODIFIED);
    let zipped = nucache.request(Method::GET, LIST, &[("accept-encoding", "gzip")]).await;
    assert_eq!(zipped.header("content-encoding"), Some("gzip"));
    assert_eq!(zipped.header("etag"), Some(etag.as_str()));
    assert_eq!(
        merges(&nucache).await,
        (1.0, 0.0),
        "nothing merged again for a fresh answer"
    );
    assert_eq!(
        (feeds.acme.requests().len(), feeds.public.requests().len()),
        asked,
        "no upstream asked"
    );
}

#[tokio::test]
async fn an_expired_merged_answer_is_merged_again_only_when_a_part_changed() {
    let feeds = feeds().await;
    let nucache = nucache_for(&feeds, |c| c.ttl.versions = Duration::from_millis(300)).await;
    let first = nucache.get(LIST).await;
    let etag = first.header("etag").expect("an ETag").to_string();
    assert_eq!(merges(&nucache).await, (1.0, 0.0));
    // Expired, parts unchanged: the kept answer is confirmed, not merged.
    poll::until_true("the merged list is looked at again", async || {
        merges(&nucache).await.1 >= 1.0 || {
            nucache.get(LIST).await;
            false
        }
    })
    .await;
    assert_eq!(
        merges(&nucache).await.0,
        1.0,
        "the parts did not change: nothing merged again"
    );
    assert_eq!(nucache.get(LIST).await.header("etag"), Some(etag.as_str()));

    // A part changes: merged again, with the new version, a new ETag.
    feeds
        .acme
        .add_package("Fake.Core", "9.9.9", acme_bytes("Fake.Core", "9.9.9"));
    let updated = poll::until("the new version shows", async || {
        let reply = nucache.get(LIST).await;
        versions(&reply).contains(&"9.9.9".to_string()).then_some(reply)
    })
    .await;
    assert_ne!(updated.header("etag"), Some(etag.as_str()));
    assert_eq!(merges(&nucache).await.0, 2.0, "merged again once its part changed");
}

#[tokio::test]
async fn one_page_of_a_merged_registration_is_served_by_its_own_url() {
    let mut many = Corpus::default_corpus();
    for minor in 0..140 {
        many.add_generated("Big.List", &format!("1.{minor}.0"), true);
    }
    let public = FakeUpstream::start_with(many).await;
    let feeds = feeds().await;
    let acme_url = feeds.acme.index_url();
    let nucache = Nucache::start(&acme_url, |c| {
        let acme = named(&c.upstream, &acme_url, 1, &["Acme.*", "*"]);
        c.upstreams.insert("acme".to_string(), acme);
        c.upstreams
            .insert("public".to_string(), named(&c.upstream, &public.index_url(), 10, &[]));
    })
    .await;
    feeds
        .acme
        .add_package("Big.List", "2.0.0-acme", acme_bytes("Big.List", "2.0.0-acme"));
    let hive = "/v3/registration/registrations2-semver2/big.list";
    let index = nucache.get(&format!("{hive}/index.json")).await;
    assert_eq!(index.status, StatusCode::OK, "{}", index.text());
    let pages: Vec<(String, u64)> = index.json()["items"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| {
            (
                p["@id"].as_str().unwrap_or("").to_string(),
                p["count"].as_u64().unwrap_or(0),
            )
        })
        .collect();
    assert_eq!(
        pages.iter().map(|(_, n)| *n).collect::<Vec<_>>(),
        [64, 64, 13],
        "141 versions: three pages"
    );
    let mut listed = Vec::new();
    for (url, count) in &pages {
        let path = url.strip_prefix(&nucache.base()).expect("a page of nucache");
        let page = nucache.get(path).await;
        assert_eq!(page.status, StatusCode::OK, "{path}: {}", page.text());
        let leaves = page.json()["items"].as_array().cloned().unwrap_or_default();
        assert_eq!(leaves.len() as u64, *count);
        listed.extend(
            leaves
                .iter()
                .filter_map(|l| l["catalogEntry"]["version"].as_str().map(str::to_string)),
        );
    }
    assert_eq!(listed.len(), 141);
    assert_eq!(listed.last().map(String::as_str), Some("2.0.0-acme"));
    let missing = nucache.get(&format!("{hive}/page/9.0.0/9.9.9.json")).await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
}

/// Every spelling of a query naming the private id `Acme.Core`.
const PRIVATE_QUERIES: [&str; 8] = [
    "/v3/autocomplete?id=Acme.Core",
    "/v3/autocomplete?id=acme%2Ecore",
    "/v3/autocomplete?ID=acme.core",
    "/v3/autocomplete?Id=ACME%2ECORE&prerelease=true",
    "/v3/query?q=packageid:Acme.Core",
    "/v3/query?q=PackageId%3Aacme.core&prerelease=true",
    "/v3/query?Q=packageid%3Aacme%2Ecore",
    "/v3/query?q=packageid:%22Acme.Core%22",
];

#[tokio::test]
async fn a_private_id_in_any_spelling_never_reaches_the_public_upstream() {
    let feeds = feeds().await;
    let nucache = nucache_for(&feeds, |_| {}).await;
    nucache.until_ready().await;
    for path in PRIVATE_QUERIES {
        let before = feeds.public.requests().len();
        let reply = nucache.get(path).await;
        assert_eq!(reply.status, StatusCode::OK, "{path}: {}", reply.text());
        let asked: Vec<String> = feeds
            .public
            .requests()
            .into_iter()
            .skip(before)
            .map(|r| r.path)
            .collect();
        assert!(asked.is_empty(), "{path} reached the public upstream: {asked:?}");
        let text = reply.text();
        assert!(!text.contains("3.0.0"), "{path}: the squatter's 3.0.0 in {text}");
    }
    let versions = nucache.get("/v3/autocomplete?id=acme%2Ecore").await;
    assert_eq!(versions.json()["data"], serde_json::json!(["1.0.0", "2.0.0"]));
}

#[tokio::test]
async fn with_one_upstream_an_id_its_patterns_do_not_give_it_is_not_asked_either() {
    let upstream = FakeUpstream::start().await;
    let nucache = Nucache::start(&upstream.index_url(), |c| c.upstream.packages = vec!["Fake.*".into()]).await;
    nucache.until_ready().await;
    for path in PRIVATE_QUERIES {
        let before = upstream.requests().len();
        let reply = nucache.get(path).await;
        assert_eq!(reply.status, StatusCode::OK, "{path}: {}", reply.text());
        assert_eq!(reply.json()["totalHits"], 0, "{path}");
        assert_eq!(upstream.requests().len(), before, "{path} was asked upstream");
    }
    let own = nucache.get("/v3/autocomplete?id=Fake.Core").await;
    assert_eq!(own.status, StatusCode::OK, "{}", own.text());
    assert!(
        own.json()["totalHits"].as_u64().is_some_and(|n| n > 0),
        "{}",
        own.text()
    );
}
