//! The read path against the in-process fake upstream: rewriting, hives,
//! paging, ids and versions, miss/hit, conditional requests, HEAD.

mod common;

use common::nucache::{send, Nucache};
use common::upstream::{Corpus, FakeOptions, FakeUpstream};
use http::{Method, StatusCode};

/// Fails the test when an upstream API address appears in `text`. Human web
/// pages on the www host (license pages) may keep pointing upstream.
fn assert_no_upstream(upstream: &FakeUpstream, what: &str, text: &str) {
    let human_pages = format!("{}/packages/", upstream.www());
    let text = text.replace(&human_pages, "");
    for origin in upstream.origins() {
        assert!(
            !text.contains(&origin),
            "{what} still points at the upstream {origin}:\n{text}"
        );
    }
}

/// A document of every kind the fake serves, by nucache's paths: version
/// list, search, autocomplete, vulnerabilities, catalog, and registration
/// indexes (inlined and paged) and leaves of every hive.
fn documents_of_every_kind() -> Vec<String> {
    let mut documents = vec![
        "/v3/flatcontainer/fake.core/index.json".to_string(),
        "/v3/query?q=fake&prerelease=true&semVerLevel=2.0.0".to_string(),
        "/v3/query?q=fake".to_string(),
        "/v3/autocomplete?q=fake".to_string(),
        "/v3/vulnerabilities/index.json".to_string(),
        "/v3/catalog/index.json".to_string(),
    ];
    for hive in [
        "registration5-semver1",
        "registration5-gz-semver1",
        "registration5-gz-semver2",
    ] {
        documents.push(format!("/v3/registration/{hive}/fake.core/index.json"));
        documents.push(format!("/v3/registration/{hive}/fake.core/1.1.0.json"));
        documents.push(format!("/v3/registration/{hive}/fake.many/index.json"));
    }
    documents
}

fn ids_of(index: &serde_json::Value) -> Vec<String> {
    index["resources"]
        .as_array()
        .map(|r| r.iter().filter_map(|r| r["@id"].as_str().map(str::to_string)).collect())
        .unwrap_or_default()
}

#[tokio::test]
async fn service_index_points_every_served_resource_at_nucache() {
    let upstream = FakeUpstream::start().await;
    let nucache = Nucache::start(&upstream.index_url(), |_| {}).await;
    let reply = nucache.get("/v3/index.json").await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.x_cache(), Some("MISS"));
    let index = reply.json();
    let resources = index["resources"].as_array().cloned().unwrap_or_default();
    let www = upstream.www();
    for resource in &resources {
        let id = resource["@id"].as_str().unwrap_or_default();
        let human = id.starts_with(&www) && !id.contains("/api/");
        assert!(
            human || id.starts_with(&nucache.base()),
            "resource {resource} not rewritten"
        );
        if !human {
            assert_no_upstream(&upstream, "a served resource", &resource.to_string());
        }
    }
    let types: Vec<String> = resources.iter().map(|r| r["@type"].to_string()).collect();
    for wanted in [
        "\"SearchQueryService/3.0.0-beta\"",
        "\"SearchAutocompleteService/3.0.0-beta\"",
        "\"RegistrationsBaseUrl/Versioned\"",
        "\"RegistrationsBaseUrl/3.4.0\"",
        "\"RegistrationsBaseUrl/3.0.0-rc\"",
        "\"PackageBaseAddress/3.0.0\"",
        "\"ReadmeUriTemplate/6.13.0\"",
        "\"PackageDetailsUriTemplate/5.1.0\"",
    ] {
        assert!(types.iter().any(|t| t == wanted), "{wanted} missing from {types:?}");
    }
    for dropped in ["LegacyGallery", "SearchGalleryQueryService", "RepositorySignatures"] {
        assert!(
            !types.iter().any(|t| t.contains(dropped)),
            "{dropped} should be dropped over http"
        );
    }
    let versioned = resources
        .iter()
        .find(|r| r["@type"] == "RegistrationsBaseUrl/Versioned");
    assert_eq!(
        versioned.map(|r| r["clientVersion"].clone()),
        Some("4.3.0-alpha".into())
    );
    // Search aliases keep their upstream order.
    let search_types: Vec<&str> = resources
        .iter()
        .filter_map(|r| r["@type"].as_str())
        .filter(|t| t.starts_with("SearchQueryService"))
        .collect();
    assert_eq!(
        search_types,
        [
            "SearchQueryService",
            "SearchQueryService/3.0.0-rc",
            "SearchQueryService/3.0.0-beta",
            "SearchQueryService/3.5.0"
        ]
    );
    let ids = ids_of(&index);
    assert!(ids.contains(&format!("{}/v3/flatcontainer/", nucache.base())));
    let again = nucache.get("/v3/index.json").await;
    assert_eq!(again.x_cache(), Some("HIT"));
    assert_eq!(upstream.count("/v3/index.json"), 1);
}

#[tokio::test]
async fn documents_of_every_kind_carry_no_upstream_address() {
    let upstream = FakeUpstream::start().await;
    let nucache = Nucache::start(&upstream.index_url(), |_| {}).await;
    let index = nucache.get("/v3/index.json").await.json();
    let mut checked = 0;
    let documents = documents_of_every_kind();
    for path in &documents {
        let reply = nucache.get(path).await;
        assert_eq!(reply.status, StatusCode::OK, "{path}: {}", reply.text());
        assert_no_upstream(&upstream, path, &reply.text());
        checked += 1;
    }
    // Third-party URLs stay as they were.
    let registration = nucache
        .get("/v3/registration/registration5-gz-semver2/fake.core/index.json")
        .await;
    assert!(registration.text().contains("https://github.com/example/fake.core"));
    assert!(registration.text().contains("https://github.com/advisories/"));
    // Every URL nucache hands out leads somewhere nucache serves.
    let leaf = &registration.json()["items"][0]["items"][0];
    for field in ["@id", "packageContent", "registration"] {
        let url = leaf[field].as_str().unwrap_or_default();
        assert!(url.starts_with(&nucache.base()), "{field} = {url}");
        let followed = send(Method::GET, url, &[], Default::default()).await;
        assert_eq!(followed.status, StatusCode::OK, "following {field} {url}");
    }
    assert!(ids_of(&index).len() > 5);
    assert_eq!(checked, documents.len());
}

/// Some feeds write a UTF-8 byte order mark before their JSON, which
/// NuGet's client accepts: the service index and every kind of document
/// (plain and gzipped) are read, rewritten and served as JSON without it.
#[tokio::test]
async fn a_feed_whose_json_starts_with_a_byte_order_mark_is_served_like_any_other() {
    let options = FakeOptions {
        byte_order_mark: true,
        ..FakeOptions::default()
    };
    let upstream = FakeUpstream::start_with_options(Corpus::default_corpus(), options).await;
    let nucache = Nucache::start(&upstream.index_url(), |_| {}).await;
    let index = nucache.get("/v3/index.json").await;
    assert_eq!(index.status, StatusCode::OK, "{}", index.text());
    assert!(ids_of(&index.json()).len() > 5);
    for path in documents_of_every_kind() {
        let reply = nucache.get(&path).await;
        assert_eq!(reply.status, StatusCode::OK, "{path}: {}", reply.text());
        assert!(!reply.body.starts_with(b"\xef\xbb\xbf"), "{path} keeps the mark");
        assert!(reply.json().is_object() || reply.json().is_array(), "{path}");
        assert_no_upstream(&upstream, &path, &reply.text());
    }
    let path = "/v3/flatcontainer/fake.core/1.1.0/fake.core.1.1.0.nupkg";
    let package = nucache.get(path).await;
    assert_eq!(package.status, StatusCode::OK, "{}", package.text());
    assert_eq!(Some(package.body.to_vec()), upstream.nupkg_bytes("Fake.Core", "1.1.0"));
}

#[tokio::test]
async fn gzip_hives_are_served_gzip_or_identity_as_asked() {
    let upstream = FakeUpstream::start().await;
    let nucache = Nucache::start(&upstream.index_url(), |_| {}).await;
    let path = "/v3/registration/registration5-gz-semver2/fake.core/index.json";
    let zipped = nucache.request(Method::GET, path, &[("accept-encoding", "gzip")]).await;
    assert_eq!(zipped.header("content-encoding"), Some("gzip"));
    assert_eq!(zipped.body[..2], [0x1f, 0x8b]);
    let mut decoded = Vec::new();
    std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&zipped.body[..]), &mut decoded).expect("gunzip");
    let plain = nucache.get(path).await;
    assert_eq!(plain.header("content-encoding"), None);
    assert_eq!(plain.body, decoded);
    assert_eq!(
        plain.header("content-length"),
        Some(plain.body.len().to_string().as_str())
    );
    assert!(plain.json()["items"].is_array());
    // The semver2 hive lists semver2 versions; the semver1 hive does not.
    assert!(plain.text().contains("3.0.0+build.7"));
    let semver1 = nucache
        .get("/v3/registration/registration5-gz-semver1/fake.core/index.json")
        .await;
    assert!(!semver1.text().contains("3.0.0+build.7"));
    assert!(!semver1.text().contains("2.0.0-rc.1"));
    assert!(semver1
        .text()
        .contains("/v3/registration/registration5-gz-semver1/fake.core/"));
}

#[tokio::test]
async fn paged_registrations_lead_to_pages_through_nucache() {
    let upstream = FakeUpstream::start().await;
    let nucache = Nucache::start(&upstream.index_url(), |_| {}).await;
    let index = nucache
        .get("/v3/registration/registration5-semver1/fake.many/index.json")
        .await
        .json();
    let pages = index["items"].as_array().cloned().unwrap_or_default();
    assert_eq!(pages.len(), 4);
    let mut leaves = 0;
    for page in pages {
        assert!(
            page.get("items").is_none(),
            "pages of a >128-version package are not inlined"
        );
        let url = page["@id"].as_str().unwrap_or_default();
        assert!(url.starts_with(&nucache.base()), "page @id {url}");
        let fetched = send(Method::GET, url, &[], Default::default()).await;
        assert_eq!(fetched.status, StatusCode::OK, "{url}");
        assert_no_upstream(&upstream, url, &fetched.text());
        leaves += fetched.json()["items"].as_array().map_or(0, Vec::len);
    }
    assert_eq!(leaves, 200);
}

#[tokio::test]
async fn ids_match_in_any_case_and_versions_normalize() {
    let upstream = FakeUpstream::start().await;
    let nucache = Nucache::start(&upstream.index_url(), |_| {}).await;
    let expected = upstream
        .nupkg_bytes("Fake.Dep", "1.0.0.5")
        .expect("corpus has Fake.Dep 1.0.0.5");
    let spellings = [
        "/v3/flatcontainer/fake.dep/1.0.0.5/fake.dep.1.0.0.5.nupkg",
        "/v3/flatcontainer/FAKE.DEP/1.0.0.5/FAKE.DEP.1.0.0.5.nupkg",
        "/v3/flatcontainer/Fake.Dep/01.00.0.05/Fake.Dep.01.00.0.05.nupkg",
    ];
    for path in spellings {
        let reply = nucache.get(path).await;
        assert_eq!(reply.status, StatusCode::OK, "{path}");
        assert_eq!(reply.body, expected, "{path}");
    }
    assert_eq!(upstream.count(".nupkg"), 1, "one upstream download for every spelling");
    let four_part = nucache
        .get("/v3/flatcontainer/Fake.Core/1.0.0.0/Fake.Core.1.0.0.0.nupkg")
        .await;
    assert_eq!(four_part.status, StatusCode::OK);
    assert_eq!(
        Some(four_part.body.to_vec()),
        upstream.nupkg_bytes("Fake.Core", "1.0.0")
    );
    let mixed = nucache.get("/v3/flatcontainer/FAKE.MIXEDCASE/index.json").await;
    assert_eq!(mixed.json()["versions"][0], "1.0.0");
}

#[tokio::test]
async fn miss_then_hit_then_304() {
    let upstream = FakeUpstream::start().await;
    let nucache = Nucache::start(&upstream.index_url(), |_| {}).await;
    let path = "/v3/flatcontainer/fake.core/1.1.0/fake.core.1.1.0.nupkg";
    let first = nucache.get(path).await;
    assert_eq!((first.status, first.x_cache()), (StatusCode::OK, Some("MISS")));
    let second = nucache.get(path).await;
    assert_eq!((second.status, second.x_cache()), (StatusCode::OK, Some("HIT")));
    assert_eq!(first.body, second.body);
    assert_eq!(Some(first.body.to_vec()), upstream.nupkg_bytes("Fake.Core", "1.1.0"));
    assert_eq!(upstream.count("fake.core.1.1.0.nupkg"), 1);
    let etag = second.header("etag").expect("an ETag").to_string();
    assert_eq!(first.header("etag"), Some(etag.as_str()));
    let cached = nucache.request(Method::GET, path, &[("if-none-match", &etag)]).await;
    assert_eq!(cached.status, StatusCode::NOT_MODIFIED);
    assert!(cached.body.is_empty());
    let other = nucache
        .request(Method::GET, path, &[("if-none-match", "\"nope\"")])
        .await;
    assert_eq!(other.status, StatusCode::OK);

    let doc = nucache.get("/v3/flatcontainer/fake.core/index.json").await;
    let doc_etag = doc.header("etag").expect("documents have ETags").to_string();
    let doc_again = nucache
        .request(
            Method::GET,
            "/v3/flatcontainer/fake.core/index.json",
            &[("if-none-match", &doc_etag)],
        )
        .await;
    assert_eq!(
        (doc_again.status, doc_again.x_cache()),
        (StatusCode::NOT_MODIFIED, Some("HIT"))
    );
}

#[tokio::test]
async fn head_answers_headers_without_a_body() {
    let upstream = FakeUpstream::start().await;
    let nucache = Nucache::start(&upstream.index_url(), |_| {}).await;
    let path = "/v3/flatcontainer/fake.core/1.0.0/fake.core.1.0.0.nupkg";
    let size = upstream
        .nupkg_bytes("Fake.Core", "1.0.0")
        .map(|b| b.len())
        .unwrap_or_default();
    for expected_cache in ["MISS", "HIT"] {
        let head = nucache.request(Method::HEAD, path, &[]).await;
        assert_eq!(head.status, StatusCode::OK);
        assert!(head.body.is_empty());
        assert_eq!(head.header("content-length"), Some(size.to_string().as_str()));
        assert_eq!(head.x_cache(), Some(expected_cache));
        // The HEAD miss downloads in the background; wait for it before the HIT.
        nucache.until_hit(path).await;
    }
    let doc = nucache.request(Method::HEAD, "/v3/index.json", &[]).await;
    assert_eq!(doc.status, StatusCode::OK);
    assert!(doc.body.is_empty());
    assert!(doc.header("content-length").is_some_and(|l| l != "0"));
}

#[tokio::test]
async fn an_upstream_404_stays_a_404_and_is_remembered() {
    let upstream = FakeUpstream::start().await;
    let nucache = Nucache::start(&upstream.index_url(), |_| {}).await;
    for path in [
        "/v3/flatcontainer/no.such.package/index.json",
        "/v3/flatcontainer/fake.core/9.9.9/fake.core.9.9.9.nupkg",
        "/v3/registration/registration5-semver1/no.such.package/index.json",
    ] {
        let first = nucache.get(path).await;
        assert_eq!(first.status, StatusCode::NOT_FOUND, "{path}");
        let second = nucache.get(path).await;
        assert_eq!(second.status, StatusCode::NOT_FOUND, "{path}");
    }
    assert_eq!(
        upstream.count("no.such.package/index.json"),
        2,
        "each 404 asked upstream once"
    );
    assert_eq!(upstream.count("9.9.9"), 1);
}

#[tokio::test]
async fn bodies_are_rendered_for_the_host_the_client_used() {
    let upstream = FakeUpstream::start().await;
    let nucache = Nucache::start(&upstream.index_url(), |_| {}).await;
    let path = "/v3/registration/registration5-semver1/fake.core/index.json";
    let one = nucache
        .request(Method::GET, path, &[("host", "one.example:5000")])
        .await;
    let two = nucache.request(Method::GET, path, &[("host", "two.example")]).await;
    assert!(one.text().contains("http://one.example:5000/v3/"));
    assert!(!one.text().contains("two.example"));
    assert!(two.text().contains("http://two.example/v3/"));
    assert!(!two.text().contains("one.example"));
    assert_ne!(one.header("etag"), two.header("etag"));
    let forwarded = nucache
        .request(
            Method::GET,
            path,
            &[("x-forwarded-host", "evil.example"), ("x-forwarded-proto", "https")],
        )
        .await;
    assert!(
        !forwarded.text().contains("evil.example"),
        "forwarded headers are ignored unless trusted"
    );
    let bad_host = nucache.request(Method::GET, path, &[("host", "bad\"host")]).await;
    assert_eq!(bad_host.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn behind_a_trusted_proxy_the_appended_forwarded_values_count_and_answers_vary() {
    let upstream = FakeUpstream::start().await;
    let trusted = Nucache::start(&upstream.index_url(), |c| c.trust_forwarded_headers = true).await;
    let path = "/v3/registration/registration5-semver1/fake.core/index.json";
    // The client claims evil.example; the proxy appends what it saw.
    let headers = [
        ("x-forwarded-host", "evil.example, nuget.corp"),
        ("x-forwarded-proto", "http, https"),
    ];
    for path in ["/v3/index.json", path] {
        let reply = trusted.request(Method::GET, path, &headers).await;
        assert_eq!(reply.status, StatusCode::OK, "{path}");
        assert!(
            reply.text().contains("https://nuget.corp/v3/"),
            "{path}: {}",
            reply.text()
        );
        assert!(!reply.text().contains("evil.example"), "{path}");
        assert_eq!(
            reply.header("vary"),
            Some("Accept-Encoding, Host, X-Forwarded-Host, X-Forwarded-Proto"),
            "{path}"
        );
    }
    let plain = Nucache::start(&upstream.index_url(), |_| {}).await;
    assert_eq!(plain.get(path).await.header("vary"), Some("Accept-Encoding, Host"));
    let fixed = Nucache::start(&upstream.index_url(), |c| {
        c.public_url = Some("https://nuget.corp".to_string());
    })
    .await;
    assert_eq!(fixed.get(path).await.header("vary"), Some("Accept-Encoding"));
}

#[tokio::test]
async fn wrong_methods_and_unknown_paths() {
    let upstream = FakeUpstream::start().await;
    let nucache = Nucache::start(&upstream.index_url(), |c| {
        c.publish.client_keys = vec![nucache::config::digest_hex("client-key")];
    })
    .await;
    nucache.until_ready().await;
    let post = nucache.request(Method::POST, "/v3/index.json", &[]).await;
    assert_eq!(post.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(post.header("allow"), Some("GET, HEAD"));
    // Routing comes first: a method a resource does not have is a 405
    // whatever the credentials (without a key, with a wrong one, with a
    // good one); the key is checked for the resources that take it.
    let versions = "/v3/flatcontainer/fake.core/index.json";
    for method in [Method::DELETE, Method::POST, Method::PUT] {
        for key in [None, Some("wrong"), Some("client-key")] {
            let headers: Vec<(&str, &str)> = key.map(|k| ("x-nuget-apikey", k)).into_iter().collect();
            let refused = nucache.request(method.clone(), versions, &headers).await;
            assert_eq!(refused.status, StatusCode::METHOD_NOT_ALLOWED, "{method} {key:?}");
            assert_eq!(refused.header("allow"), Some("GET, HEAD"));
        }
    }
    let get_on_push = nucache.request(Method::GET, "/v3/package/", &[]).await;
    assert_eq!(get_on_push.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(get_on_push.header("allow"), Some("PUT"));
    let anonymous_push = nucache.request(Method::PUT, "/v3/package/", &[]).await;
    assert_eq!(
        anonymous_push.status,
        StatusCode::UNAUTHORIZED,
        "the push endpoint takes a key"
    );
    for path in [
        "/nope",
        "/v3/nope/x",
        "/v3/flatcontainer/fake.core/1.0.0/other.nupkg",
        "/v3/flatcontainer/a/b/c/d",
    ] {
        assert_eq!(nucache.get(path).await.status, StatusCode::NOT_FOUND, "{path}");
    }
}

#[tokio::test]
async fn search_is_cached_by_its_whole_query() {
    let upstream = FakeUpstream::start().await;
    let nucache = Nucache::start(&upstream.index_url(), |_| {}).await;
    let stable = nucache.get("/v3/query?q=fake.core").await;
    let with_prerelease = nucache
        .get("/v3/query?q=fake.core&prerelease=true&semVerLevel=2.0.0")
        .await;
    assert_eq!(stable.x_cache(), Some("MISS"));
    assert_eq!(with_prerelease.x_cache(), Some("MISS"));
    assert_eq!(stable.json()["data"][0]["version"], "1.1.0");
    assert_eq!(with_prerelease.json()["data"][0]["version"], "3.0.0+build.7");
    assert_eq!(nucache.get("/v3/query?q=fake.core").await.x_cache(), Some("HIT"));
    assert_eq!(upstream.count("/query?q=fake.core"), 2);
    let upstream_paths: Vec<String> = upstream.requests().into_iter().map(|r| r.path).collect();
    assert!(upstream_paths.contains(&"/query?q=fake.core&prerelease=true&semVerLevel=2.0.0".to_string()));
}
