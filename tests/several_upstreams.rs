//! nucache fronting two upstreams at once (two Rust fakes): a private feed
//! `acme` (priority 1, owning `Acme.*` and sharing `*`) and a public one
//! `nugetorg` (priority 10). Version lists, registrations and search are
//! merged, package files come from the highest-priority upstream that
//! lists the version, an `Acme.*` id is never asked of the public feed
//! (dependency confusion), and an upstream that is down leaves the others'
//! answers plus its cached copies, named in `X-Nucache-Missing-Upstreams`.

mod common;

use std::time::Duration;

use std::io::Write;

use bytes::Bytes;
use common::nucache::{get, send, Nucache};
use common::two_feeds::{acme_bytes, feeds, nucache_for};
use common::upstream::{fake_nupkg, FakeUpstream, Fault};
use http::{Method, StatusCode};
use nucache::config::{digest_hex, Secret};
use nucache::Config;
use serde_json::Value;

fn versions(reply: &common::nucache::Reply) -> Vec<String> {
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    reply.json()["versions"]
        .as_array()
        .map(|list| list.iter().filter_map(Value::as_str).map(str::to_string).collect())
        .unwrap_or_default()
}

/// The versions a fake lists itself for `id`.
async fn listed_by(flat: &str, id: &str) -> Vec<String> {
    versions(&get(&format!("{flat}{id}/index.json")).await)
}

#[tokio::test]
async fn version_lists_are_the_union_and_packages_come_from_the_upstream_that_lists_them() {
    let feeds = feeds().await;
    let nucache = nucache_for(&feeds, |_| {}).await;
    let merged = versions(&nucache.get("/v3/flatcontainer/Fake.Core/index.json").await);
    let public = listed_by(&format!("{}/v3-flatcontainer/", feeds.public.api()), "fake.core").await;
    eprintln!("fake.core: public {public:?}, merged {merged:?}");
    let mut expected = public.clone();
    expected.push("9.0.0-acme".to_string());
    assert_eq!(merged, expected, "NuGet order, 1.0.0 once, acme's 9.0.0-acme last");

    // Only acme has 9.0.0-acme; only the public feed has 1.1.0.
    let own = nucache
        .get("/v3/flatcontainer/fake.core/9.0.0-acme/fake.core.9.0.0-acme.nupkg")
        .await;
    assert_eq!(own.status, StatusCode::OK, "{}", own.text());
    assert_eq!(own.body.as_ref(), acme_bytes("Fake.Core", "9.0.0-acme").as_slice());
    let public_only = nucache
        .get("/v3/flatcontainer/fake.core/1.1.0/fake.core.1.1.0.nupkg")
        .await;
    assert_eq!(public_only.status, StatusCode::OK, "{}", public_only.text());
    assert_eq!(public_only.body.as_ref(), fake_nupkg("Fake.Core", "1.1.0").as_slice());
    // Both list 1.0.0: acme is asked first and its bytes are served.
    let both = nucache
        .get("/v3/flatcontainer/fake.core/1.0.0/fake.core.1.0.0.nupkg")
        .await;
    assert_eq!(both.status, StatusCode::OK, "{}", both.text());
    assert_eq!(both.body.as_ref(), acme_bytes("Fake.Core", "1.0.0").as_slice());
    let public_downloads = feeds.public.count("fake.core.1.0.0.nupkg");
    eprintln!(
        "fake.core 1.0.0 .nupkg requests: acme {}, public {public_downloads}",
        feeds.acme.count("fake.core.1.0.0.nupkg")
    );
    assert_eq!(
        public_downloads, 0,
        "the lower-priority upstream is not asked for a version acme has"
    );
    // A version nobody lists is a 404.
    let none = nucache
        .get("/v3/flatcontainer/fake.core/7.0.0/fake.core.7.0.0.nupkg")
        .await;
    assert_eq!(none.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn an_id_a_private_pattern_owns_is_never_asked_of_the_public_upstream() {
    let feeds = feeds().await;
    let nucache = nucache_for(&feeds, |_| {}).await;
    let list = versions(&nucache.get("/v3/flatcontainer/acme.core/index.json").await);
    assert_eq!(list, ["1.0.0", "2.0.0"], "the public feed's 3.0.0 is not offered");
    let nupkg = nucache
        .get("/v3/flatcontainer/acme.core/1.0.0/acme.core.1.0.0.nupkg")
        .await;
    assert_eq!(nupkg.status, StatusCode::OK, "{}", nupkg.text());
    assert_eq!(nupkg.body.as_ref(), acme_bytes("Acme.Core", "1.0.0").as_slice());
    let squatted = nucache
        .get("/v3/flatcontainer/acme.core/3.0.0/acme.core.3.0.0.nupkg")
        .await;
    assert_eq!(squatted.status, StatusCode::NOT_FOUND);
    let registration = nucache
        .get("/v3/registration/registrations2-semver2/acme.core/index.json")
        .await;
    assert_eq!(registration.status, StatusCode::OK, "{}", registration.text());
    assert!(!registration.text().contains("3.0.0"));
    let search = nucache.get("/v3/query?q=acme&prerelease=true").await;
    assert_eq!(search.status, StatusCode::OK, "{}", search.text());
    let (acme_asked, public_asked) = (feeds.acme.count("acme.core"), feeds.public.count("acme.core"));
    eprintln!("requests naming acme.core: acme {acme_asked}, public {public_asked}");
    assert!(
        acme_asked >= 3,
        "acme served the version list, the package and the registration"
    );
    assert_eq!(public_asked, 0, "the public feed was asked for an Acme.* id");
}

#[tokio::test]
async fn registrations_merge_per_hive_with_leaves_pointing_at_nucache() {
    let feeds = feeds().await;
    let nucache = nucache_for(&feeds, |_| {}).await;
    let reply = nucache
        .get("/v3/registration/registrations2-semver2/fake.core/index.json")
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    let index = reply.json();
    let leaves: Vec<&Value> = index["items"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|page| page["items"].as_array().into_iter().flatten())
        .collect();
    let listed: Vec<&str> = leaves
        .iter()
        .filter_map(|leaf| leaf["catalogEntry"]["version"].as_str())
        .collect();
    eprintln!("merged registration of fake.core: {listed:?}");
    assert!(
        listed.contains(&"9.0.0-acme") && listed.contains(&"1.1.0"),
        "{listed:?}"
    );
    assert_eq!(listed.iter().filter(|v| **v == "1.0.0").count(), 1);
    let text = reply.text();
    // Human pages (licenseUrl, projectUrl) stay upstream, as with one upstream.
    let without_pages = text
        .replace(&format!("{}/packages/", feeds.public.www()), "")
        .replace(&format!("{}/packages/", feeds.acme.www()), "");
    for origin in feeds.acme.origins().iter().chain(&feeds.public.origins()) {
        let at = without_pages.find(origin.as_str());
        let context = at.map(|at| &without_pages[at.saturating_sub(80)..(at + 120).min(without_pages.len())]);
        assert_eq!(context, None, "{origin} leaked");
    }
    // The public leaf's package content resolves through nucache.
    let leaf = leaves
        .iter()
        .find(|leaf| leaf["catalogEntry"]["version"] == "1.1.0")
        .and_then(|leaf| leaf["packageContent"].as_str())
        .unwrap_or_default();
    assert!(leaf.starts_with(&nucache.base()), "{leaf}");
    let content = get(leaf).await;
    assert_eq!(content.status, StatusCode::OK, "{leaf}: {}", content.text());
    // Fake.Many: 200 public versions, paged beyond 128, each page served.
    let many = nucache
        .get("/v3/registration/registrations2-semver2/fake.many/index.json")
        .await
        .json();
    let pages: Vec<String> = many["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| p["@id"].as_str().map(str::to_string))
        .collect();
    assert_eq!(pages.len(), 4, "200 versions in pages of 64");
    let page = get(&pages[3]).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.text());
    assert_eq!(page.json()["count"], 8);
}

#[tokio::test]
async fn one_upstream_down_leaves_the_others_answer_and_its_cached_copy() {
    let feeds = feeds().await;
    let nucache = nucache_for(&feeds, |c| {
        for upstream in c.upstreams.values_mut() {
            upstream.retries = 0;
        }
        // Every version list is asked for again (no stale-while-revalidate).
        c.ttl.versions = Duration::ZERO;
        c.ttl.max_stale = Duration::ZERO;
    })
    .await;
    let path = "/v3/flatcontainer/fake.core/index.json";
    let both = versions(&nucache.get(path).await);
    assert!(both.contains(&"1.1.0".to_string()) && both.contains(&"9.0.0-acme".to_string()));
    feeds.public.set_fault(Fault::Refuse);
    let degraded = nucache.get(path).await;
    assert_eq!(
        degraded.header("x-nucache-missing-upstreams"),
        Some("nugetorg"),
        "{:?}",
        degraded.headers
    );
    assert_eq!(
        versions(&degraded),
        both,
        "the public list from the cache, acme's fresh"
    );
    // An id never cached: acme's versions alone, still naming the missing one.
    let cold = nucache.get("/v3/flatcontainer/fake.dep/index.json").await;
    eprintln!(
        "public down: fake.dep -> {} {:?}, missing {:?}",
        cold.status,
        cold.text(),
        cold.header("x-nucache-missing-upstreams")
    );
    assert_eq!(
        cold.status,
        StatusCode::BAD_GATEWAY,
        "acme has no fake.dep, the public feed is down"
    );
    let acme_only = nucache.get("/v3/flatcontainer/acme.only/index.json").await;
    assert_eq!(versions(&acme_only), ["1.0.0"]);
    assert_eq!(
        acme_only.header("x-nucache-missing-upstreams"),
        None,
        "acme owns Acme.*"
    );
    feeds.acme.set_fault(Fault::Refuse);
    feeds.public.clear_faults();
    let other_way = nucache.get(path).await;
    assert_eq!(other_way.header("x-nucache-missing-upstreams"), Some("acme"));
    assert_eq!(versions(&other_way), both);
    // Every upstream down: the cached copies of both, naming both.
    feeds.public.set_fault(Fault::Refuse);
    let cached = nucache.get(path).await;
    assert_eq!(cached.header("x-nucache-missing-upstreams"), Some("acme,nugetorg"));
    assert_eq!(versions(&cached), both);
}

#[tokio::test]
async fn search_and_autocomplete_merge_without_a_squatter_of_a_private_id() {
    let feeds = feeds().await;
    let nucache = nucache_for(&feeds, |_| {}).await;
    let reply = nucache.get("/v3/query?q=core&prerelease=true&semVerLevel=2.0.0").await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    let answer = reply.json();
    let ids: Vec<&str> = answer["data"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| p["id"].as_str())
        .collect();
    eprintln!("search q=core: totalHits {}, ids {ids:?}", answer["totalHits"]);
    assert_eq!(ids, ["Acme.Core", "Fake.Core"], "acme's answer first, each id once");
    assert_eq!(
        answer["totalHits"], 2,
        "the squatted Acme.Core and the second Fake.Core counted out"
    );
    let versions_of = |i: usize| -> Vec<String> {
        answer["data"][i]["versions"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|v| v["version"].as_str().map(str::to_string))
            .collect()
    };
    assert_eq!(versions_of(0), ["1.0.0", "2.0.0"], "no public Acme.Core version");
    let fake_core = versions_of(1);
    assert!(fake_core.contains(&"9.0.0-acme".to_string()) && fake_core.contains(&"1.1.0".to_string()));
    assert_eq!(answer["data"][1]["version"], "9.0.0-acme");
    assert!(!reply.text().contains(&feeds.public.search()), "search URLs rewritten");

    let ids = nucache.get("/v3/autocomplete?q=core&prerelease=true").await;
    assert_eq!(ids.status, StatusCode::OK, "{}", ids.text());
    assert_eq!(ids.json()["data"], serde_json::json!(["Acme.Core", "Fake.Core"]));
    let acme_versions = nucache.get("/v3/autocomplete?id=acme.core&prerelease=true").await;
    assert_eq!(acme_versions.json()["data"], serde_json::json!(["1.0.0", "2.0.0"]));
    let public_asked = feeds.public.count("acme.core");
    eprintln!("autocomplete id=acme.core: public asked {public_asked} times");
    assert_eq!(public_asked, 0);

    feeds.acme.set_fault(Fault::Refuse);
    let degraded = nucache.get("/v3/query?q=dep&prerelease=true").await;
    assert_eq!(degraded.status, StatusCode::OK, "{}", degraded.text());
    assert_eq!(degraded.header("x-nucache-missing-upstreams"), Some("acme"));
    assert_eq!(degraded.json()["data"][0]["id"], "Fake.Dep");
}

const CLIENT_KEY: &str = "client-key-2718";
const SERVER_KEY: &str = "server-key-3141";
const BOUNDARY: &str = "several-upstreams-boundary";

/// `nuget push`'s body for a real (tiny) .nupkg: a zip with a nuspec.
fn push_body(id: &str, version: &str) -> Bytes {
    let mut zipped = std::io::Cursor::new(Vec::new());
    {
        let mut zip = zip::ZipWriter::new(&mut zipped);
        zip.start_file(format!("{id}.nuspec"), zip::write::SimpleFileOptions::default())
            .expect("zip entry");
        let nuspec = format!(
            "<?xml version=\"1.0\"?><package><metadata><id>{id}</id><version>{version}</version></metadata></package>"
        );
        zip.write_all(nuspec.as_bytes()).expect("zip write");
        zip.finish().expect("zip finish");
    }
    let mut body = format!(
        "--{BOUNDARY}\r\nContent-Type: application/octet-stream\r\nContent-Disposition: form-data; name=package; filename=package.nupkg\r\n\r\n"
    )
    .into_bytes();
    body.extend_from_slice(&zipped.into_inner());
    body.extend_from_slice(format!("\r\n--{BOUNDARY}--\r\n").as_bytes());
    Bytes::from(body)
}

async fn push(nucache: &Nucache, id: &str) -> common::nucache::Reply {
    let content_type = format!("multipart/form-data; boundary={BOUNDARY}");
    let headers = [("content-type", content_type.as_str()), ("x-nuget-apikey", CLIENT_KEY)];
    send(
        Method::PUT,
        &nucache.url("/v3/package/"),
        &headers,
        push_body(id, "1.0.0"),
    )
    .await
}

fn puts(upstream: &FakeUpstream) -> usize {
    upstream.requests().iter().filter(|r| r.method == "PUT").count()
}

#[tokio::test]
async fn pushes_go_to_the_publish_upstream_with_the_server_key() {
    let feeds = feeds().await;
    feeds.acme.set_api_key(Some(SERVER_KEY));
    feeds.public.set_api_key(Some(SERVER_KEY));
    let keys = |c: &mut Config| {
        c.publish.api_key = Some(Secret::new(SERVER_KEY));
        c.publish.client_keys = vec![digest_hex(CLIENT_KEY)];
    };
    // By default: the highest-priority upstream with PackagePublish (acme).
    let nucache = nucache_for(&feeds, keys).await;
    let list = "/v3/flatcontainer/acme.pushed/index.json";
    assert_eq!(nucache.get(list).await.status, StatusCode::NOT_FOUND);
    // The fake learns of a package by being told; the push through nucache
    // makes nucache forget the 404 it remembered in acme's namespace.
    feeds
        .acme
        .add_package("Acme.Pushed", "1.0.0", acme_bytes("Acme.Pushed", "1.0.0"));
    let pushed = push(&nucache, "Acme.Pushed").await;
    assert_eq!(pushed.status, StatusCode::CREATED, "{}", pushed.text());
    assert_eq!((puts(&feeds.acme), puts(&feeds.public)), (1, 0));
    let listed = versions(&nucache.get(list).await);
    assert_eq!(listed, ["1.0.0"]);
    drop(nucache);
    // publish.upstream names another.
    let nucache = nucache_for(&feeds, |c| {
        keys(c);
        c.publish.upstream = Some("nugetorg".to_string());
    })
    .await;
    let pushed = push(&nucache, "Public.Pushed").await;
    assert_eq!(pushed.status, StatusCode::CREATED, "{}", pushed.text());
    eprintln!("PUTs: acme {}, public {}", puts(&feeds.acme), puts(&feeds.public));
    assert_eq!((puts(&feeds.acme), puts(&feeds.public)), (1, 1));
    let key = feeds
        .public
        .requests()
        .iter()
        .find(|r| r.method == "PUT")
        .and_then(|r| r.headers.get("x-nuget-apikey").map(|v| v.as_bytes().to_vec()));
    assert_eq!(key.as_deref(), Some(SERVER_KEY.as_bytes()));
}

#[tokio::test]
async fn health_shows_each_upstreams_breaker() {
    let feeds = feeds().await;
    let nucache = nucache_for(&feeds, |c| {
        for upstream in c.upstreams.values_mut() {
            upstream.retries = 0;
            upstream.breaker_threshold = 2;
            upstream.breaker_cooldown = Duration::from_secs(30);
        }
    })
    .await;
    let health = nucache.get("/health").await.json();
    assert_eq!(health["status"], "ok", "{health}");
    let states = |health: &Value| -> Vec<(String, String)> {
        health["upstreams"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|u| {
                (
                    u["name"].as_str().unwrap_or("").to_string(),
                    u["state"].as_str().unwrap_or("").to_string(),
                )
            })
            .collect()
    };
    let closed = vec![
        ("acme".to_string(), "closed".to_string()),
        ("nugetorg".to_string(), "closed".to_string()),
    ];
    assert_eq!(states(&health), closed);
    feeds.public.set_fault(Fault::Status(503));
    for id in ["fake.dep", "fake.many", "fake.mixedcase"] {
        nucache.get(&format!("/v3/flatcontainer/{id}/index.json")).await;
    }
    let health = nucache.get("/health").await.json();
    eprintln!("health with the public upstream failing: {}", health["upstreams"]);
    assert_eq!(
        states(&health),
        [
            ("acme".to_string(), "closed".to_string()),
            ("nugetorg".to_string(), "open".to_string())
        ]
    );
    assert_eq!(health["status"], "degraded");
}
