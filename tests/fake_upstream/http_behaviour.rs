//! The fake's HTTP behaviour: validators, the request log, basic auth,
//! publishing, packages added at run time and chunked downloads.

use std::convert::Infallible;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Method, StatusCode};
use http_body_util::{BodyExt as _, StreamBody};
use hyper::body::Frame;
use sha2::{Digest as _, Sha256};

use crate::client::{full, get, get_with, nupkg_path, send};
use crate::common::upstream::{fake_nupkg, Corpus, FakeUpstream, Fault, Role};

#[tokio::test]
async fn etag_gives_304_and_head_has_the_same_headers() {
    let up = FakeUpstream::start().await;
    let url = format!("{}/v3-flatcontainer/fake.core/index.json", up.api());
    let first = get(&url).await;
    let etag = first.header("etag").expect("ETag").to_string();
    assert!(etag.starts_with('"') && etag.ends_with('"'));
    assert!(first.header("last-modified").is_some_and(|v| v.ends_with(" GMT")));

    let again = get_with(&url, &[("If-None-Match", &etag)]).await;
    assert_eq!(again.status, StatusCode::NOT_MODIFIED);
    assert!(again.body.is_empty());
    assert_eq!(again.header("etag"), Some(etag.as_str()));
    assert_eq!(again.header("content-type"), None);
    let index = get(&up.index_url()).await;
    assert_eq!(index.header("last-modified"), Some("Wed, 01 Jan 2020 00:00:00 GMT"));
    assert_eq!(again.header("content-type"), None);
    let index = get(&up.index_url()).await;
    assert_eq!(index.header("last-modified"), Some("Wed, 01 Jan 2020 00:00:00 GMT"));

    let head = send(Method::HEAD, &url, &[], full(Bytes::new())).await.unwrap();
    assert_eq!(head.status, StatusCode::OK);
    assert!(head.body.is_empty());
    assert_eq!(head.header("etag"), Some(etag.as_str()));
    assert_eq!(
        head.header("content-length"),
        Some(first.body.len().to_string().as_str())
    );

    up.add_package("Fake.Core", "4.0.0", vec![4]);
    let changed = get_with(&url, &[("If-None-Match", &etag)]).await;
    assert_eq!(changed.status, StatusCode::OK);
    assert!(changed.json()["versions"].as_array().unwrap().contains(&"4.0.0".into()));
    assert_ne!(changed.header("etag"), Some(etag.as_str()));
}

#[tokio::test]
async fn requests_are_recorded_in_order_and_counted() {
    let up = FakeUpstream::start().await;
    get_with(&up.index_url(), &[("X-Test", "1")]).await;
    get(&format!("{}/query?q=fake&take=1", up.search())).await;
    get(&format!("{}/packages/Fake.Core/1.0.0", up.www())).await;
    up.set_fault(Fault::Status(500));
    assert_eq!(get(&up.index_url()).await.status, StatusCode::INTERNAL_SERVER_ERROR);
    up.clear_faults();
    let body = vec![7u8; 1000];
    send(Method::PUT, &format!("{}/api/v2/package/", up.api()), &[], full(body))
        .await
        .unwrap();

    let log = up.requests();
    let seen: Vec<(Role, &str, &str)> = log
        .iter()
        .map(|r| (r.host, r.method.as_str(), r.path.as_str()))
        .collect();
    assert_eq!(
        seen,
        [
            (Role::Api, "GET", "/v3/index.json"),
            (Role::Search, "GET", "/query?q=fake&take=1"),
            (Role::Www, "GET", "/packages/Fake.Core/1.0.0"),
            (Role::Api, "GET", "/v3/index.json"),
            (Role::Api, "PUT", "/api/v2/package/"),
        ]
    );
    assert_eq!(log[0].headers.get("x-test").unwrap(), "1");
    assert_eq!(log[4].body_len, 1000);
    assert_eq!(up.count("/v3/index.json"), 2);
    assert_eq!(up.count("q=fake"), 1);
    up.reset_log();
    assert_eq!(up.count("/"), 0);
    assert!(up.requests().is_empty());
}

#[tokio::test]
async fn basic_auth_guards_api_and_search_but_not_www() {
    let up = FakeUpstream::start().await;
    up.set_basic_auth(Some(("user", "pass")));
    let denied = get(&up.index_url()).await;
    assert_eq!(denied.status, StatusCode::UNAUTHORIZED);
    assert!(denied
        .header("www-authenticate")
        .is_some_and(|v| v.starts_with("Basic")));
    let query = format!("{}/query?q=x", up.search());
    assert_eq!(get(&query).await.status, StatusCode::UNAUTHORIZED);
    let wrong = [("Authorization", "Basic dXNlcjp3cm9uZw==")]; // user:wrong
    assert_eq!(get_with(&up.index_url(), &wrong).await.status, StatusCode::UNAUTHORIZED);
    let right = [("Authorization", "Basic dXNlcjpwYXNz")]; // user:pass
    assert_eq!(get_with(&up.index_url(), &right).await.status, StatusCode::OK);
    assert_eq!(
        get(&format!("{}/profiles/someone", up.www())).await.status,
        StatusCode::OK
    );
    up.set_basic_auth(None);
    assert_eq!(get(&up.index_url()).await.status, StatusCode::OK);
}

#[tokio::test]
async fn publish_checks_key_detects_duplicates_and_unlists() {
    let up = FakeUpstream::start().await;
    let api = up.api();
    let push_url = format!("{api}/api/v2/package/");
    up.set_api_key(Some("secret"));
    let denied = send(Method::PUT, &push_url, &[], full(vec![1u8; 10])).await.unwrap();
    assert_eq!(denied.status, StatusCode::FORBIDDEN);
    assert_eq!(denied.json()["error"], "The specified API key is invalid.");

    // A chunked upload (no Content-Length): three frames.
    let chunked = || {
        let frames = (0..3u8).map(|i| Ok::<_, Infallible>(Frame::data(Bytes::from(vec![i; 70_000]))));
        StreamBody::new(futures_util::stream::iter(frames)).boxed_unsync()
    };
    let key = [("X-NuGet-ApiKey", "secret")];
    let created = send(Method::PUT, &push_url, &key, chunked()).await.unwrap();
    assert_eq!(created.status, StatusCode::CREATED);
    let mut hasher = Sha256::new();
    (0..3u8).for_each(|i| hasher.update(vec![i; 70_000]));
    assert_eq!(up.last_push_sha256(), Some(hex::encode(hasher.finalize())));
    assert_eq!(up.last_push_len(), Some(210_000));
    assert_eq!(up.requests().last().unwrap().body_len, 210_000);
    let again = send(Method::PUT, &push_url, &key, chunked()).await.unwrap();
    assert_eq!(again.status, StatusCode::CONFLICT);
    let other = send(Method::PUT, &format!("{api}/api/v2/package"), &key, full(vec![9u8; 5]))
        .await
        .unwrap();
    assert_eq!(other.status, StatusCode::CREATED);
    let symbols = send(
        Method::PUT,
        &format!("{api}/api/v2/symbolpackage"),
        &key,
        full(vec![9u8; 5]),
    )
    .await
    .unwrap();
    assert_eq!(symbols.status, StatusCode::CREATED);

    let pkg = format!("{api}/api/v2/package/Fake.Core/1.0.0");
    let unlisted = send(Method::DELETE, &pkg, &key, full(Bytes::new())).await.unwrap();
    assert_eq!(unlisted.status, StatusCode::NO_CONTENT);
    let leaf = get(&format!("{api}/v3/registration5-semver1/fake.core/index.json"))
        .await
        .json();
    assert_eq!(leaf["items"][0]["items"][0]["catalogEntry"]["listed"], false);
    let ac = get(&format!("{}/autocomplete?id=fake.core", up.search())).await.json();
    assert_eq!(ac["data"], serde_json::json!(["1.1.0"]));
    let flat = get(&format!("{api}/v3-flatcontainer/fake.core/index.json"))
        .await
        .json();
    assert_eq!(flat["versions"][0], "1.0.0", "unlisted stays in the flat index");
    let relisted = send(Method::POST, &pkg, &key, full(Bytes::new())).await.unwrap();
    assert_eq!(relisted.status, StatusCode::OK);
    let ac = get(&format!("{}/autocomplete?id=fake.core", up.search())).await.json();
    assert_eq!(ac["data"], serde_json::json!(["1.0.0", "1.1.0"]));
    let unknown = format!("{api}/api/v2/package/No.Such/1.0.0");
    assert_eq!(
        send(Method::DELETE, &unknown, &key, full(Bytes::new()))
            .await
            .unwrap()
            .status,
        StatusCode::NOT_FOUND
    );
    let no_key = send(Method::DELETE, &pkg, &[], full(Bytes::new())).await.unwrap();
    assert_eq!(no_key.status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn runtime_packages_and_chunked_downloads() {
    let up = FakeUpstream::start_with(Corpus::empty()).await;
    let api = up.api();
    let bytes = fake_nupkg("Fake.New", "2.0.0");
    up.add_package("Fake.New", "2.0.0", bytes.clone());
    let flat = get(&format!("{api}/v3-flatcontainer/fake.new/index.json")).await.json();
    assert_eq!(flat["versions"], serde_json::json!(["2.0.0"]));
    let reg = get(&format!("{api}/v3/registration5-semver1/fake.new/index.json"))
        .await
        .json();
    assert_eq!(reg["items"][0]["upper"], "2.0.0");
    let found = get(&format!("{}/query?q=fake.new", up.search())).await.json();
    assert_eq!(found["data"][0]["id"], "Fake.New");

    up.set_body_chunking(4096, Duration::from_millis(40));
    let started = Instant::now();
    let resp = get(&format!("{api}{}", nupkg_path("fake.new", "2.0.0"))).await;
    assert_eq!(resp.body, bytes);
    let gaps = bytes.len().div_ceil(4096) - 1;
    assert!(
        started.elapsed() >= Duration::from_millis(40) * gaps as u32,
        "{:?}",
        started.elapsed()
    );
    // Only .nupkg bodies are paced: paced, the ~6 KB index would take >= 1 s.
    up.set_body_chunking(1024, Duration::from_millis(200));
    let started = Instant::now();
    let index = get(&up.index_url()).await;
    assert!(index.body.len() > 5 * 1024);
    assert!(started.elapsed() < Duration::from_secs(1), "{:?}", started.elapsed());
}
