//! The fake as a private feed (everything under a path prefix on the api
//! host), with chunked bodies, and with `.nupkg` downloads redirected to a
//! CDN.

use bytes::Bytes;
use http::{Method, StatusCode};
use serde_json::Value;
use tokio::net::TcpStream;

use crate::client::{full, get, get_with, host_port, leaf_versions, nupkg_path, raw_get, raw_request, send};
use crate::common::upstream::{Corpus, FakeOptions, FakeUpstream, Fault, Role};

const PREFIX: &str = "/_packaging/feed/nuget";

async fn start_private(options: FakeOptions) -> FakeUpstream {
    let options = FakeOptions {
        path_prefix: PREFIX.into(),
        ..options
    };
    FakeUpstream::start_with_options(Corpus::default_corpus(), options).await
}

/// Every string in `doc` that is a URL on one of the fake's hosts.
fn urls_in(doc: &Value) -> Vec<String> {
    let mut urls = crate::common::urls_in(doc);
    urls.retain(|url| url.starts_with("http://127.0.0.1:"));
    urls
}

#[tokio::test]
async fn private_feed_lists_only_prefixed_urls_on_the_api_host() {
    let up = start_private(FakeOptions::default()).await;
    let feed = format!("{}{PREFIX}", up.api());
    assert_eq!(up.index_url(), format!("{feed}/v3/index.json"));
    let doc = get(&up.index_url()).await.json();
    let resources = doc["resources"].as_array().expect("resources array");
    let actual: Vec<(&str, &str)> = resources
        .iter()
        .map(|r| (r["@type"].as_str().unwrap(), r["@id"].as_str().unwrap()))
        .collect();
    let (query, autocomplete) = (format!("{feed}/v3/query2/"), format!("{feed}/v3/autocomplete/"));
    let (semver1, semver2) = (
        format!("{feed}/v3/registrations2/"),
        format!("{feed}/v3/registrations2-semver2/"),
    );
    let (flat, publish) = (format!("{feed}/v3/flatcontainer/"), format!("{feed}/v2/"));
    let expected: Vec<(&str, &str)> = vec![
        ("SearchQueryService", &query),
        ("SearchQueryService/3.0.0-rc", &query),
        ("SearchQueryService/3.0.0-beta", &query),
        ("SearchQueryService/3.5.0", &query),
        ("SearchAutocompleteService", &autocomplete),
        ("SearchAutocompleteService/3.0.0-rc", &autocomplete),
        ("SearchAutocompleteService/3.0.0-beta", &autocomplete),
        ("SearchAutocompleteService/3.5.0", &autocomplete),
        ("RegistrationsBaseUrl", &semver1),
        ("RegistrationsBaseUrl/3.0.0-beta", &semver1),
        ("RegistrationsBaseUrl/3.0.0-rc", &semver1),
        ("RegistrationsBaseUrl/3.6.0", &semver2),
        ("RegistrationsBaseUrl/Versioned", &semver2),
        ("PackageBaseAddress/3.0.0", &flat),
        ("PackagePublish/2.0.0", &publish),
        ("LegacyGallery/2.0.0", &publish),
    ]
    .into_iter()
    .map(|(t, id)| (t, id.as_str()))
    .collect();
    assert_eq!(actual, expected);
    let urls = urls_in(&doc);
    assert_eq!(urls.len(), expected.len());
    for url in urls {
        assert!(url.starts_with(&format!("{feed}/")), "{url}");
    }
    let versioned = &resources[12];
    assert_eq!(versioned["clientVersion"], "4.3.0-alpha");
    assert!(resources[13]["comment"]
        .as_str()
        .unwrap()
        .contains(&format!("{flat}{{id-lower}}/")));

    // Documents below the prefix carry it too (license links go to www).
    let reg = get(&format!("{semver2}fake.core/index.json")).await;
    assert_eq!(reg.status, StatusCode::OK);
    assert_eq!(reg.header("content-encoding"), None, "plain JSON");
    let urls = urls_in(&reg.json());
    assert!(urls.len() > 20, "{urls:?}");
    for url in urls {
        let served = [&semver2, &flat, &up.www()];
        assert!(served.iter().any(|base| url.starts_with(*base)), "{url}");
    }
    let leaf = get(&format!("{semver1}fake.core/1.0.0.json")).await.json();
    assert_eq!(
        leaf["packageContent"],
        format!("{flat}fake.core/1.0.0/fake.core.1.0.0.nupkg")
    );
    let found = get(&format!("{query}?q=fake.core&prerelease=true")).await.json();
    assert_eq!(found["@context"]["@base"], semver1.as_str());
    assert_eq!(
        found["data"][0]["registration"],
        format!("{semver1}fake.core/index.json")
    );
    let ac = get(&format!("{autocomplete}?q=fake.d")).await.json();
    assert_eq!(ac["data"], serde_json::json!(["Fake.Dep"]));
    let versions = get(&format!("{flat}fake.core/index.json")).await.json();
    assert_eq!(versions["versions"][0], "1.0.0");

    // Nothing outside the prefix, no nuget.org-only resources, no search host.
    let api = up.api();
    for url in [
        format!("{api}/v3/index.json"),
        format!("{api}/v3-flatcontainer/fake.core/index.json"),
        format!("{api}/_packaging/feed/nugetx/v3/index.json"),
        format!("{api}/v3/registration5-semver1/fake.core/index.json"),
        format!("{feed}/v3/registration5-gz-semver2/fake.core/index.json"),
        format!("{feed}/v3/catalog0/index.json"),
        format!("{feed}/v3/vulnerabilities/index.json"),
        format!("{feed}/v3-index/repository-signatures/5.0.0/index.json"),
        format!("{}/query?q=fake", up.search()),
    ] {
        assert_eq!(get(&url).await.status, StatusCode::NOT_FOUND, "{url}");
    }
}

#[tokio::test]
async fn private_feed_hives_and_publishing() {
    let up = start_private(FakeOptions::default()).await;
    let feed = format!("{}{PREFIX}", up.api());
    let semver1 = get(&format!("{feed}/v3/registrations2/fake.core/index.json")).await;
    assert_eq!(semver1.header("content-encoding"), None);
    assert_eq!(
        leaf_versions(&semver1.json()),
        ["1.0.0", "1.1.0", "1.2.0-beta", "1.3.0"]
    );
    let semver2 = get(&format!("{feed}/v3/registrations2-semver2/fake.core/index.json")).await;
    assert_eq!(semver2.header("content-encoding"), None);
    assert_eq!(leaf_versions(&semver2.json()).last().unwrap(), "3.0.0+build.7");
    let paged = get(&format!("{feed}/v3/registrations2/fake.many/index.json"))
        .await
        .json();
    assert_eq!(paged["count"], 4);
    let page_url = paged["items"][1]["@id"].as_str().unwrap();
    assert!(page_url.starts_with(&format!("{feed}/v3/registrations2/fake.many/page/")));
    assert_eq!(get(page_url).await.json()["count"], 64);

    let key = [("X-NuGet-ApiKey", "any")];
    let pushed = send(Method::PUT, &format!("{feed}/v2/"), &key, full(vec![5u8; 100]))
        .await
        .unwrap();
    assert_eq!(pushed.status, StatusCode::CREATED);
    assert_eq!(up.last_push_len(), Some(100));
    let pkg = format!("{feed}/v2/Fake.Dep/1.0.1");
    let unlisted = send(Method::DELETE, &pkg, &key, full(Bytes::new())).await.unwrap();
    assert_eq!(unlisted.status, StatusCode::NO_CONTENT);
    let ac = get(&format!("{feed}/v3/autocomplete/?id=fake.dep")).await.json();
    assert_eq!(ac["data"], serde_json::json!(["1.0.0", "1.0.0.5"]));
    let nuget_org_path = format!("{}/api/v2/package/", up.api());
    let elsewhere = send(Method::PUT, &nuget_org_path, &key, full(vec![1u8])).await.unwrap();
    assert_eq!(elsewhere.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn chunked_mode_sends_bodies_without_content_length() {
    let options = FakeOptions {
        chunked: true,
        ..FakeOptions::default()
    };
    let up = start_private(options).await;
    let flat = format!("{PREFIX}/v3/flatcontainer/fake.core/index.json");
    let wire = raw_get(&up.api(), &flat).await;
    assert!(wire.head.starts_with("HTTP/1.1 200"), "{}", wire.head);
    assert_eq!(wire.header("transfer-encoding").as_deref(), Some("chunked"));
    assert_eq!(wire.header("content-length"), None, "{}", wire.head);
    let doc: Value = serde_json::from_slice(&wire.dechunked()).unwrap();
    assert_eq!(doc["versions"][0], "1.0.0");

    let nupkg = format!("{PREFIX}/v3/flatcontainer/fake.dep/1.0.0/fake.dep.1.0.0.nupkg");
    let wire = raw_get(&up.api(), &nupkg).await;
    assert_eq!(wire.header("transfer-encoding").as_deref(), Some("chunked"));
    assert_eq!(wire.header("content-length"), None);
    assert_eq!(wire.dechunked(), up.nupkg_bytes("Fake.Dep", "1.0.0").unwrap());
    let missing = raw_get(&up.api(), "/v3/index.json").await;
    assert!(missing.head.starts_with("HTTP/1.1 404"), "{}", missing.head);
    assert_eq!(missing.header("transfer-encoding").as_deref(), Some("chunked"));

    // HEAD and 304 are unchanged.
    let head = raw_request(&up.api(), "HEAD", &flat).await;
    assert!(head.body.is_empty());
    assert_eq!(head.header("transfer-encoding"), None);
    assert!(head.content_length() > 0);
    let url = format!("{}{flat}", up.api());
    let etag = get(&url).await.header("etag").unwrap().to_string();
    let not_modified = get_with(&url, &[("If-None-Match", &etag)]).await;
    assert_eq!(not_modified.status, StatusCode::NOT_MODIFIED);
    assert_eq!(not_modified.header("transfer-encoding"), None);

    // Without the option the same GET is framed by Content-Length.
    let plain = start_private(FakeOptions::default()).await;
    let wire = raw_get(&plain.api(), &flat).await;
    assert_eq!(wire.header("transfer-encoding"), None);
    assert_eq!(wire.content_length(), wire.body.len());
}

#[tokio::test]
async fn nupkg_downloads_redirect_to_the_cdn() {
    let options = FakeOptions {
        redirect_packages_to_cdn: true,
        ..FakeOptions::default()
    };
    let up = FakeUpstream::start_with_options(Corpus::default_corpus(), options).await;
    let cdn = up.cdn().expect("cdn origin");
    assert_eq!(up.origins(), [up.api(), up.search(), up.www(), cdn.clone()]);
    let url = format!("{}{}", up.api(), nupkg_path("fake.core", "1.1.0"));
    let redirect = get(&url).await;
    assert_eq!(redirect.status, StatusCode::SEE_OTHER);
    let location = redirect.header("location").expect("Location").to_string();
    assert!(location.starts_with(&format!("{cdn}/")), "{location}");
    let served = get(&location).await;
    assert_eq!(served.status, StatusCode::OK);
    assert_eq!(served.body, up.nupkg_bytes("Fake.Core", "1.1.0").unwrap());
    assert_eq!(served.header("content-type"), Some("application/octet-stream"));
    let head = send(Method::HEAD, &url, &[], full(Bytes::new())).await.unwrap();
    assert_eq!(head.status, StatusCode::SEE_OTHER);

    // The blob URL needs its signature; other flat files are not redirected.
    let unsigned = location.split_once('?').unwrap().0;
    assert_eq!(get(unsigned).await.status, StatusCode::FORBIDDEN);
    let nuspec = format!("{}/v3-flatcontainer/fake.core/1.1.0/fake.core.nuspec", up.api());
    assert_eq!(get(&nuspec).await.status, StatusCode::OK);
    let missing = format!("{}{}", up.api(), nupkg_path("fake.core", "9.9.9"));
    assert_eq!(get(&missing).await.status, StatusCode::NOT_FOUND);

    // Faults stop at the api host.
    up.set_fault(Fault::Status(503));
    assert_eq!(get(&url).await.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(get(&location).await.status, StatusCode::OK);
    let hosts: Vec<Role> = up.requests().iter().map(|r| r.host).collect();
    assert_eq!(hosts.iter().filter(|h| **h == Role::Cdn).count(), 3);

    drop(up);
    assert!(TcpStream::connect(host_port(&cdn)).await.is_err(), "cdn still open");
}

#[tokio::test]
async fn basic_auth_guards_the_private_feed_but_not_the_cdn() {
    let options = FakeOptions {
        redirect_packages_to_cdn: true,
        ..FakeOptions::default()
    };
    let up = start_private(options).await;
    up.set_basic_auth(Some(("user", "pass")));
    let feed = format!("{}{PREFIX}", up.api());
    let auth = [("Authorization", "Basic dXNlcjpwYXNz")]; // user:pass
    let nupkg = format!("{feed}/v3/flatcontainer/fake.core/1.0.0/fake.core.1.0.0.nupkg");
    for url in [
        up.index_url(),
        format!("{feed}/v3/query2/?q=fake"),
        format!("{feed}/v3/registrations2/fake.core/index.json"),
    ] {
        let denied = get(&url).await;
        assert_eq!(denied.status, StatusCode::UNAUTHORIZED, "{url}");
        assert_eq!(denied.header("www-authenticate"), Some("Basic realm=\"fake\""));
        assert_eq!(get_with(&url, &auth).await.status, StatusCode::OK, "{url}");
    }
    assert_eq!(get(&nupkg).await.status, StatusCode::UNAUTHORIZED);
    let redirect = get_with(&nupkg, &auth).await;
    assert_eq!(redirect.status, StatusCode::SEE_OTHER);
    let location = redirect.header("location").unwrap();
    let served = get(location).await;
    assert_eq!(served.status, StatusCode::OK, "the cdn needs no credentials");
    assert_eq!(served.body, up.nupkg_bytes("Fake.Core", "1.0.0").unwrap());
    let cdn_requests: Vec<_> = up.requests().into_iter().filter(|r| r.host == Role::Cdn).collect();
    assert_eq!(cdn_requests.len(), 1);
    assert!(cdn_requests[0].path.starts_with("/blobs/fake.core/1.0.0/"));
    assert!(cdn_requests[0].headers.get("authorization").is_none());
}
