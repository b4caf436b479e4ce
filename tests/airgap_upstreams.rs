//! A bundle is served as the upstream it came from, by a nucache with any
//! number of upstreams: its files go to that upstream's namespace (the
//! primary or not), only for the ids the patterns let it serve, and its
//! service index is that upstream's offline copy. A bundle of an upstream
//! this nucache does not front is refused whole: it never stands in for
//! another feed (a public squatter's `Acme.Core` as the private feed's).

mod common;

use common::airgap::{exported_from, import_with, Exported};
use common::nucache::{test_config, Nucache};
use common::two_feeds::{feeds, named};
use common::upstream::Fault;
use http::StatusCode;
use nucache::Config;

const NUPKG: &str = "/v3/flatcontainer/fake.core/1.1.0/fake.core.1.1.0.nupkg";

/// A configuration with these upstreams: `(name, URL, priority, patterns)`.
fn with_upstreams(cache: &std::path::Path, upstreams: &[(&str, &str, u32, &[&str])]) -> Config {
    let mut config = test_config(upstreams[0].1, cache);
    for (name, url, priority, patterns) in upstreams {
        let upstream = named(&config.upstream, url, *priority, patterns);
        config.upstreams.insert(name.to_string(), upstream);
    }
    config
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bundle_imports_into_a_nucache_with_several_upstreams_primary_or_not() {
    let feeds = feeds().await;
    let Exported {
        upstream, work, bundle, ..
    } = exported_from(feeds.public, "Fake.Core [1.1.0]\n").await;
    upstream.set_fault(Fault::Refuse);
    let (acme, public) = (feeds.acme.index_url(), upstream.index_url());
    for (run, bundle_first) in [("primary", true), ("secondary", false)] {
        let cache = work.path().join(format!("cache-{run}"));
        let (first, second) = match bundle_first {
            true => (
                ("nugetorg", public.as_str(), 1, &[][..]),
                ("acme", acme.as_str(), 10, &["Acme.*"][..]),
            ),
            false => (
                ("acme", acme.as_str(), 1, &["Acme.*"][..]),
                ("nugetorg", public.as_str(), 10, &[][..]),
            ),
        };
        let config = with_upstreams(&cache, &[first, second]);
        let imported = import_with(&bundle, &cache, config.clone()).await.expect("import");
        assert_eq!((imported.packages, imported.refused), (2, 0), "{run}: {imported}");
        let b = Nucache::start_with(config).await;
        b.until_ready().await;
        let package = b.get(NUPKG).await;
        assert_eq!(
            (package.status, package.x_cache()),
            (StatusCode::OK, Some("HIT")),
            "{run}"
        );
        assert_eq!(Some(package.body.to_vec()), upstream.nupkg_bytes("Fake.Core", "1.1.0"));
        let list = b.get("/v3/flatcontainer/fake.core/index.json").await;
        assert_eq!(list.status, StatusCode::OK, "{run}: {}", list.text());
        assert!(list.text().contains("1.1.0"), "{run}: {}", list.text());
        b.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bundle_of_an_upstream_this_nucache_does_not_front_is_refused_whole() {
    let feeds = feeds().await;
    let Exported { work, bundle, .. } = exported_from(feeds.public, "Acme.Core [3.0.0]\n").await;
    // A nucache in front of the private feed alone: the public bundle's
    // Acme.Core would stand in for the private one.
    let cache = work.path().join("cache-private");
    let config = with_upstreams(&cache, &[("acme", &feeds.acme.index_url(), 1, &["Acme.*"])]);
    let refused = import_with(&bundle, &cache, config).await;
    let message = refused.err().unwrap_or_default();
    assert!(message.contains("not an upstream of this nucache"), "{message}");
    assert!(!cache.exists(), "nothing written");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bundle_s_packages_of_ids_the_patterns_give_to_another_upstream_are_left_out() {
    let feeds = feeds().await;
    let Exported {
        upstream, work, bundle, ..
    } = exported_from(feeds.public, "Acme.Core [3.0.0]\nFake.Dep [1.0.0]\n").await;
    upstream.set_fault(Fault::Refuse);
    let cache = work.path().join("cache-b");
    let (acme, public) = (feeds.acme.index_url(), upstream.index_url());
    let config = with_upstreams(
        &cache,
        &[("acme", &acme, 1, &["Acme.*"]), ("nugetorg", &public, 10, &[])],
    );
    let imported = import_with(&bundle, &cache, config.clone()).await.expect("import");
    assert_eq!(imported.packages, 1, "only Fake.Dep: {imported}");
    assert!(imported.refused >= 1, "the squatter's files left out: {imported}");
    let b = Nucache::start_with(config).await;
    b.until_ready().await;
    let list = b.get("/v3/flatcontainer/acme.core/index.json").await;
    assert_eq!(list.status, StatusCode::OK, "{}", list.text());
    assert!(!list.text().contains("3.0.0"), "{}", list.text());
    let squatted = b.get("/v3/flatcontainer/acme.core/3.0.0/acme.core.3.0.0.nupkg").await;
    assert_eq!(squatted.status, StatusCode::NOT_FOUND);
    let dep = b.get("/v3/flatcontainer/fake.dep/1.0.0/fake.dep.1.0.0.nupkg").await;
    assert_eq!((dep.status, dep.x_cache()), (StatusCode::OK, Some("HIT")));
}
