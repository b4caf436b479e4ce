//! A private feed (Azure Artifacts shape): everything under a path prefix on
//! one host, chunked answers, Basic credentials, package downloads
//! redirected to a blob host that must not see the credentials.

mod common;

use bytes::Bytes;
use common::nucache::{send, Nucache};
use common::upstream::{Corpus, FakeOptions, FakeUpstream, Role};
use http::{Method, StatusCode};
use nucache::config::{digest_hex, Secret};

const USER: &str = "build-agent";
const PASSWORD: &str = "pat-0123456789";

async fn private_feed() -> FakeUpstream {
    let options = FakeOptions {
        path_prefix: "/_packaging/feed/nuget".to_string(),
        chunked: true,
        redirect_packages_to_cdn: true,
        ..FakeOptions::default()
    };
    let upstream = FakeUpstream::start_with_options(Corpus::default_corpus(), options).await;
    upstream.set_basic_auth(Some((USER, PASSWORD)));
    upstream
}

async fn nucache_for(upstream: &FakeUpstream) -> Nucache {
    nucache_with(upstream, |_| {}).await
}

async fn nucache_with(upstream: &FakeUpstream, tweak: impl FnOnce(&mut nucache::Config)) -> Nucache {
    Nucache::start(&upstream.index_url(), |c| {
        c.upstream.username = Some(USER.to_string());
        c.upstream.password = Some(Secret::new(PASSWORD));
        c.publish.api_key = Some(Secret::new("AzureDevOps"));
        c.publish.client_keys = vec![digest_hex("agent-key")];
        tweak(c);
    })
    .await
}

fn no_upstream_in(upstream: &FakeUpstream, text: &str) {
    let text = text.replace(&format!("{}/packages/", upstream.www()), "");
    for origin in upstream.origins() {
        assert!(!text.contains(&origin), "{origin} leaked: {text}");
    }
}

#[tokio::test]
async fn a_prefixed_chunked_private_feed_works_like_nuget_org() {
    let upstream = private_feed().await;
    // Version lists expire at once: every request after the first revalidates.
    let nucache = nucache_with(&upstream, |c| {
        c.ttl.versions = std::time::Duration::ZERO;
        c.ttl.max_stale = std::time::Duration::ZERO;
    })
    .await;
    let index = nucache.get("/v3/index.json").await;
    assert_eq!(index.status, StatusCode::OK, "{}", index.text());
    no_upstream_in(&upstream, &index.text());
    let types = index.json()["resources"].to_string();
    for wanted in [
        "PackageBaseAddress/3.0.0",
        "RegistrationsBaseUrl/Versioned",
        "SearchQueryService/3.0.0-beta",
        "PackagePublish/2.0.0",
    ] {
        assert!(types.contains(wanted), "{wanted} missing");
    }
    // The feed lists its V2 gallery at its publish URL (as Azure Artifacts
    // does): nucache serves no V2 gallery, at its push endpoint or anywhere.
    assert!(!types.contains("LegacyGallery"), "{types}");
    for path in [
        "/v3/flatcontainer/fake.core/index.json",
        "/v3/registration/registrations2-semver2/fake.core/index.json",
        "/v3/registration/registrations2/fake.many/index.json",
        "/v3/query?q=fake&prerelease=true&semVerLevel=2.0.0",
        "/v3/autocomplete?q=fake",
    ] {
        let reply = nucache.get(path).await;
        assert_eq!(reply.status, StatusCode::OK, "{path}: {}", reply.text());
        assert_eq!(
            reply.header("content-length"),
            Some(reply.body.len().to_string().as_str())
        );
        no_upstream_in(&upstream, &reply.text());
    }
    // A package comes from the blob host the feed redirects to.
    let package = nucache
        .get("/v3/flatcontainer/fake.core/1.1.0/fake.core.1.1.0.nupkg")
        .await;
    assert_eq!(package.status, StatusCode::OK, "{}", package.text());
    assert_eq!(Some(package.body.to_vec()), upstream.nupkg_bytes("Fake.Core", "1.1.0"));
    // Revalidation works over chunked answers too: the expired version
    // list is asked for conditionally, and the upstream's 304 confirms it.
    let versions = "/v3/flatcontainer/fake.core/index.json";
    let first = nucache.get(versions).await;
    upstream.reset_log();
    let revalidated = nucache.get(versions).await;
    assert_eq!(
        (revalidated.status, revalidated.x_cache()),
        (StatusCode::OK, Some("REVALIDATED"))
    );
    assert_eq!(revalidated.body, first.body);
    let asked: Vec<_> = upstream
        .requests()
        .into_iter()
        .filter(|r| r.path.ends_with("/fake.core/index.json"))
        .collect();
    assert_eq!(asked.len(), 1, "{asked:?}");
    assert!(
        asked[0].headers.contains_key("if-none-match"),
        "not a conditional request: {:?}",
        asked[0].headers
    );
}

#[tokio::test]
async fn credentials_go_to_the_upstream_and_never_to_another_host() {
    let upstream = private_feed().await;
    let nucache = nucache_for(&upstream).await;
    let package = nucache
        .get("/v3/flatcontainer/fake.dep/1.0.0/fake.dep.1.0.0.nupkg")
        .await;
    assert_eq!(package.status, StatusCode::OK);
    let requests = upstream.requests();
    let api: Vec<_> = requests.iter().filter(|r| r.host == Role::Api).collect();
    let cdn: Vec<_> = requests.iter().filter(|r| r.host == Role::Cdn).collect();
    assert!(
        !api.is_empty() && !cdn.is_empty(),
        "the download did not go through the redirect"
    );
    for request in &api {
        let authorization = request.headers.get("authorization").and_then(|v| v.to_str().ok());
        assert!(
            authorization.is_some_and(|a| a.starts_with("Basic ")),
            "{} had no credentials",
            request.path
        );
    }
    for request in &cdn {
        assert!(
            request.headers.get("authorization").is_none(),
            "credentials leaked to {}",
            request.path
        );
    }
}

#[tokio::test]
async fn without_credentials_the_feed_refuses_and_nucache_says_so() {
    let upstream = private_feed().await;
    let nucache = Nucache::start(&upstream.index_url(), |_| {}).await;
    let index = nucache.get("/v3/index.json").await;
    assert_eq!(index.status, StatusCode::BAD_GATEWAY);
    assert!(index.text().contains("401"), "{}", index.text());
}

#[tokio::test]
async fn pushes_reach_a_prefixed_publish_endpoint_with_credentials() {
    let upstream = private_feed().await;
    let nucache = nucache_for(&upstream).await;
    let body = Bytes::from_static(b"--b\r\n\r\nPK-not-really-a-package\r\n--b--\r\n");
    let reply = send(
        Method::PUT,
        &nucache.url("/v3/package/"),
        &[
            ("x-nuget-apikey", "agent-key"),
            ("content-type", "multipart/form-data; boundary=b"),
        ],
        body,
    )
    .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text());
    let push = upstream
        .requests()
        .into_iter()
        .find(|r| r.method == "PUT")
        .expect("the push reached the upstream");
    assert_eq!(push.path, "/_packaging/feed/nuget/v2/");
    assert!(push.headers.get("authorization").is_some());
    assert_eq!(
        push.headers.get("x-nuget-apikey").map(|v| v.as_bytes()),
        Some(&b"AzureDevOps"[..])
    );
}
