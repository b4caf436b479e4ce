//! An upstream is known by its service index URL, however many there are
//! and whatever they are called: adding, removing or renaming an upstream
//! keeps every cached entry of the others valid (served as a HIT with no
//! upstream request). And what worked with one upstream works with several:
//! offline search answers from every upstream's cached packages (as far as
//! the patterns let each serve them), the status page names every upstream.

mod common;

use std::time::Duration;

use common::nucache::Nucache;
use common::two_feeds::{feeds, named, nucache_for};
use common::upstream::{FakeUpstream, Fault};
use http::StatusCode;

const NUPKG: &str = "/v3/flatcontainer/fake.core/1.1.0/fake.core.1.1.0.nupkg";
const LIST: &str = "/v3/flatcontainer/fake.dep/index.json";

#[tokio::test]
async fn adding_renaming_and_removing_upstreams_keeps_every_cached_entry() {
    let public = FakeUpstream::start().await;
    let other = FakeUpstream::start().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let long_ttl = |c: &mut nucache::Config| c.ttl.versions = Duration::from_secs(3600);

    // One upstream, the old [upstream] table.
    let one = Nucache::start_in(&public.index_url(), dir.path(), long_ttl).await;
    one.until_hit(NUPKG).await;
    one.until_hit(LIST).await;
    one.stop().await;
    let asked = public.requests().len();

    // A second upstream added, before it; the first renamed.
    let (public_url, other_url) = (public.index_url(), other.index_url());
    let two = Nucache::start_in(&public_url, dir.path(), |c| {
        long_ttl(c);
        let first = named(&c.upstream, &other_url, 1, &["Other.*"]);
        let second = named(&c.upstream, &public_url, 10, &[]);
        c.upstreams.insert("other".into(), first);
        c.upstreams.insert("nugetorg".into(), second);
    })
    .await;
    two.until_ready().await;
    let package = two.get(NUPKG).await;
    assert_eq!(package.x_cache(), Some("HIT"), "{}", package.text());
    assert_eq!(two.get(LIST).await.x_cache(), Some("HIT"));
    two.stop().await;

    // The first one removed: the other's entries are still its own.
    let again = Nucache::start_in(&public_url, dir.path(), |c| {
        long_ttl(c);
        c.upstreams
            .insert("public".into(), named(&c.upstream, &public_url, 1, &[]));
    })
    .await;
    again.until_ready().await;
    assert_eq!(again.get(NUPKG).await.x_cache(), Some("HIT"));
    assert_eq!(again.get(LIST).await.x_cache(), Some("HIT"));
    let since: Vec<String> = public.requests().into_iter().skip(asked).map(|r| r.path).collect();
    assert!(
        since
            .iter()
            .all(|path| path.ends_with("/index.json") && !path.contains("fake.")),
        "only service indexes were asked again: {since:?}"
    );
}

#[tokio::test]
async fn offline_search_answers_from_every_upstream_s_cache_as_the_patterns_allow() {
    let feeds = feeds().await;
    let nucache = nucache_for(&feeds, |_| {}).await;
    for path in [
        "/v3/flatcontainer/acme.core/2.0.0/acme.core.2.0.0.nupkg",
        "/v3/flatcontainer/fake.dep/1.0.0/fake.dep.1.0.0.nupkg",
        "/v3/registration/registrations2-semver2/acme.core/index.json",
        "/v3/registration/registrations2-semver2/fake.dep/index.json",
    ] {
        let reply = nucache.get(path).await;
        assert_eq!(reply.status, StatusCode::OK, "{path}: {}", reply.text());
    }
    feeds.acme.set_fault(Fault::Refuse);
    feeds.public.set_fault(Fault::Refuse);
    let search = nucache.get("/v3/query?q=e&prerelease=true&semVerLevel=2.0.0").await;
    assert_eq!(
        (search.status, search.x_cache()),
        (StatusCode::OK, Some("STALE")),
        "{}",
        search.text()
    );
    let mut ids: Vec<String> = search.json()["data"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| p["id"].as_str().map(str::to_lowercase))
        .collect();
    ids.sort();
    assert_eq!(ids, ["acme.core", "fake.dep"], "{}", search.text());
    let versions = nucache.get("/v3/autocomplete?id=acme.core").await;
    assert_eq!(versions.x_cache(), Some("STALE"));
    assert_eq!(versions.json()["data"], serde_json::json!(["2.0.0"]));
}

#[tokio::test]
async fn the_status_page_and_the_home_line_name_every_upstream() {
    let feeds = feeds().await;
    let nucache = nucache_for(&feeds, |_| {}).await;
    let page = nucache
        .request(http::Method::GET, "/", &[("accept", "text/html")])
        .await
        .text();
    let header = page
        .lines()
        .find(|l| l.contains("in front of"))
        .unwrap_or_default()
        .to_string();
    for origin in [feeds.acme.api(), feeds.public.api()] {
        assert!(header.contains(&origin), "{origin} missing from {header}");
    }
    assert!(
        !page.contains("api.nuget.org"),
        "neither upstream is nuget.org: {header}"
    );
    let home = nucache.get("/").await.text();
    assert!(home.contains(&feeds.acme.index_url()) && home.contains(&feeds.public.index_url()));
}
