//! Tests of the fake upstream itself (tests/common/upstream).

mod common;

use std::convert::Infallible;
use std::io::Read as _;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::upstream::{fake_nupkg, Corpus, FakeOptions, FakeUpstream, Fault, Role};
use http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt as _, Full, StreamBody};
use hyper::body::Frame;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio::time::timeout;

const LIMIT: Duration = Duration::from_secs(10);

// ---------------------------------------------------------------------------
// helpers

type ReqBody = UnsyncBoxBody<Bytes, Infallible>;

struct Resp {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
}

impl Resp {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("response body is JSON")
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

fn client() -> Client<HttpConnector, ReqBody> {
    Client::builder(TokioExecutor::new()).build_http()
}

async fn send(method: Method, url: &str, headers: &[(&str, &str)], body: ReqBody) -> Result<Resp, String> {
    let mut req = Request::builder().method(method).uri(url);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let req = req.body(body).map_err(|e| e.to_string())?;
    let exchange = async {
        let resp = client().request(req).await.map_err(|e| format!("{e:?}"))?;
        let (parts, body) = resp.into_parts();
        let body = body.collect().await.map_err(|e| format!("{e:?}"))?.to_bytes();
        Ok(Resp {
            status: parts.status,
            headers: parts.headers,
            body,
        })
    };
    timeout(LIMIT, exchange).await.map_err(|_| "timed out".to_string())?
}

fn full(body: impl Into<Bytes>) -> ReqBody {
    Full::new(body.into()).boxed_unsync()
}

async fn get_with(url: &str, headers: &[(&str, &str)]) -> Resp {
    send(Method::GET, url, headers, full(Bytes::new()))
        .await
        .unwrap_or_else(|e| panic!("GET {url}: {e}"))
}

async fn get(url: &str) -> Resp {
    get_with(url, &[]).await
}

fn gunzip(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(data)
        .read_to_end(&mut out)
        .expect("valid gzip");
    out
}

/// What a raw HTTP/1.1 exchange produced on the wire.
struct Wire {
    head: String,
    body: Vec<u8>,
    /// The error that ended reading, if it was not a clean EOF.
    error: Option<std::io::ErrorKind>,
}

impl Wire {
    /// The value of a response header (`name` in lowercase).
    fn header(&self, name: &str) -> Option<String> {
        self.head.lines().find_map(|line| {
            let (key, value) = line.split_once(':')?;
            (key.eq_ignore_ascii_case(name)).then(|| value.trim().to_string())
        })
    }

    fn content_length(&self) -> usize {
        self.header("content-length")
            .and_then(|v| v.parse().ok())
            .expect("Content-Length header")
    }

    /// The body of a complete chunked message, de-chunked.
    fn dechunked(&self) -> Vec<u8> {
        let mut data = &self.body[..];
        let mut out = Vec::new();
        loop {
            let eol = data.windows(2).position(|w| w == b"\r\n").expect("chunk-size line");
            let size = std::str::from_utf8(&data[..eol]).expect("ASCII chunk size");
            let size = usize::from_str_radix(size.trim(), 16).expect("hex chunk size");
            data = &data[eol + 2..];
            if size == 0 {
                assert_eq!(data, b"\r\n", "last-chunk, then the end");
                return out;
            }
            out.extend_from_slice(&data[..size]);
            assert_eq!(&data[size..size + 2], b"\r\n", "chunk data ends in CRLF");
            data = &data[size + 2..];
        }
    }
}

fn host_port(origin: &str) -> &str {
    origin.trim_start_matches("http://")
}

/// Sends `GET path` with `Connection: close` and reads until EOF or error.
async fn raw_get(origin: &str, path: &str) -> Wire {
    raw_request(origin, "GET", path).await
}

/// Sends `method path` with `Connection: close` and reads until EOF or error.
async fn raw_request(origin: &str, method: &str, path: &str) -> Wire {
    let mut stream = TcpStream::connect(host_port(origin)).await.expect("connect");
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
        host_port(origin)
    );
    stream.write_all(req.as_bytes()).await.expect("write request");
    let mut data = Vec::new();
    let mut buf = [0u8; 8192];
    let error = loop {
        match timeout(LIMIT, stream.read(&mut buf)).await.expect("raw read timed out") {
            Ok(0) => break None,
            Ok(n) => data.extend_from_slice(&buf[..n]),
            Err(e) => break Some(e.kind()),
        }
    };
    split_wire(data, error)
}

fn split_wire(data: Vec<u8>, error: Option<std::io::ErrorKind>) -> Wire {
    let at = data
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(data.len(), |i| i + 4);
    Wire {
        head: String::from_utf8_lossy(&data[..at]).into_owned(),
        body: data[at..].to_vec(),
        error,
    }
}

/// Waits (bounded) until the fake has recorded `n` requests matching `path`.
async fn wait_recorded(up: &FakeUpstream, path: &str, n: usize) {
    let deadline = Instant::now() + LIMIT;
    while up.count(path) < n {
        assert!(Instant::now() < deadline, "request to {path} never arrived");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn nupkg_path(id: &str, ver: &str) -> String {
    format!("/v3-flatcontainer/{id}/{ver}/{id}.{ver}.nupkg")
}

// ---------------------------------------------------------------------------
// documents

#[tokio::test]
async fn service_index_has_nuget_org_shape() {
    let up = FakeUpstream::start().await;
    let resp = get(&up.index_url()).await;
    assert_eq!(resp.status, StatusCode::OK);
    let doc = resp.json();
    assert_eq!(doc["version"], "3.0.0");
    assert_eq!(doc["@context"]["@vocab"], "http://schema.nuget.org/services#");
    let (api, search, www) = (up.api(), up.search(), up.www());
    let expected: Vec<(String, String)> = [
        ("SearchQueryService", format!("{search}/query")),
        ("SearchQueryService/3.0.0-rc", format!("{search}/query")),
        ("SearchQueryService/3.0.0-beta", format!("{search}/query")),
        ("SearchQueryService/3.5.0", format!("{search}/query")),
        ("SearchAutocompleteService", format!("{search}/autocomplete")),
        ("SearchAutocompleteService/3.0.0-rc", format!("{search}/autocomplete")),
        ("SearchAutocompleteService/3.0.0-beta", format!("{search}/autocomplete")),
        ("SearchAutocompleteService/3.5.0", format!("{search}/autocomplete")),
        ("SearchGalleryQueryService/3.0.0-rc", format!("{search}/")),
        ("RegistrationsBaseUrl", format!("{api}/v3/registration5-semver1/")),
        (
            "RegistrationsBaseUrl/3.0.0-beta",
            format!("{api}/v3/registration5-semver1/"),
        ),
        (
            "RegistrationsBaseUrl/3.0.0-rc",
            format!("{api}/v3/registration5-semver1/"),
        ),
        (
            "RegistrationsBaseUrl/3.4.0",
            format!("{api}/v3/registration5-gz-semver1/"),
        ),
        (
            "RegistrationsBaseUrl/3.6.0",
            format!("{api}/v3/registration5-gz-semver2/"),
        ),
        (
            "RegistrationsBaseUrl/Versioned",
            format!("{api}/v3/registration5-gz-semver2/"),
        ),
        ("PackageBaseAddress/3.0.0", format!("{api}/v3-flatcontainer/")),
        ("PackagePublish/2.0.0", format!("{api}/api/v2/package")),
        ("SymbolPackagePublish/4.9.0", format!("{api}/api/v2/symbolpackage")),
        ("LegacyGallery", format!("{www}/api/v2")),
        ("LegacyGallery/2.0.0", format!("{www}/api/v2")),
        (
            "ReportAbuseUriTemplate/3.0.0-beta",
            format!("{www}/packages/{{id}}/{{version}}/ReportAbuse"),
        ),
        (
            "ReportAbuseUriTemplate/3.0.0-rc",
            format!("{www}/packages/{{id}}/{{version}}/ReportAbuse"),
        ),
        (
            "PackageDetailsUriTemplate/5.1.0",
            format!("{www}/packages/{{id}}/{{version}}?_src=template"),
        ),
        (
            "OwnerDetailsUriTemplate/6.11.0",
            format!("{www}/profiles/{{owner}}?_src=template"),
        ),
        (
            "ReadmeUriTemplate/6.13.0",
            format!("{api}/v3-flatcontainer/{{lower_id}}/{{lower_version}}/readme"),
        ),
        (
            "PackageDisplayMetadataUriTemplate/3.0.0-rc",
            format!("{api}/v3/registration5-semver1/{{id-lower}}/index.json"),
        ),
        (
            "PackageVersionDisplayMetadataUriTemplate/3.0.0-rc",
            format!("{api}/v3/registration5-semver1/{{id-lower}}/{{version-lower}}.json"),
        ),
        (
            "RepositorySignatures/4.7.0",
            format!("{api}/v3-index/repository-signatures/4.7.0/index.json"),
        ),
        (
            "RepositorySignatures/5.0.0",
            format!("{api}/v3-index/repository-signatures/5.0.0/index.json"),
        ),
        ("Catalog/3.0.0", format!("{api}/v3/catalog0/index.json")),
        (
            "VulnerabilityInfo/6.7.0",
            format!("{api}/v3/vulnerabilities/index.json"),
        ),
    ]
    .into_iter()
    .map(|(t, id)| (t.to_string(), id))
    .collect();
    let resources = doc["resources"].as_array().expect("resources array");
    let actual: Vec<(String, String)> = resources
        .iter()
        .map(|r| {
            (
                r["@type"].as_str().unwrap().to_string(),
                r["@id"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(actual, expected);
    for r in resources {
        assert!(r["comment"].as_str().is_some_and(|c| !c.is_empty()), "no comment: {r}");
        let versioned = r["@type"] == "RegistrationsBaseUrl/Versioned";
        assert_eq!(r.get("clientVersion").is_some(), versioned, "{r}");
    }
    let versioned = resources
        .iter()
        .find(|r| r["@type"] == "RegistrationsBaseUrl/Versioned")
        .unwrap();
    assert_eq!(versioned["clientVersion"], "4.3.0-alpha");
    let flat = resources
        .iter()
        .find(|r| r["@type"] == "PackageBaseAddress/3.0.0")
        .unwrap();
    let example = format!("{api}/v3-flatcontainer/{{id-lower}}/{{version-lower}}/{{id-lower}}.{{version-lower}}.nupkg");
    assert!(flat["comment"].as_str().unwrap().contains(&example));
}

#[tokio::test]
async fn flat_container_serves_versions_packages_and_nuspecs() {
    let up = FakeUpstream::start().await;
    let api = up.api();
    let core = get(&format!("{api}/v3-flatcontainer/fake.core/index.json"))
        .await
        .json();
    assert_eq!(
        core["versions"],
        serde_json::json!(["1.0.0", "1.1.0", "1.2.0-beta", "1.3.0", "2.0.0-rc.1", "3.0.0"])
    );
    let dep = get(&format!("{api}/v3-flatcontainer/fake.dep/index.json")).await.json();
    assert_eq!(dep["versions"], serde_json::json!(["1.0.0", "1.0.0.5", "1.0.1"]));

    let resp = get(&format!("{api}{}", nupkg_path("fake.core", "3.0.0"))).await;
    assert_eq!(resp.status, StatusCode::OK);
    assert_eq!(resp.header("content-type"), Some("application/octet-stream"));
    let served = up.nupkg_bytes("Fake.Core", "3.0.0+build.7").expect("known package");
    assert_eq!(resp.body, served);
    assert_eq!(resp.header("content-length"), Some(served.len().to_string().as_str()));
    assert!(served.len() >= 20 * 1024 && served.len() < 25 * 1024);
    assert_eq!(served, fake_nupkg("Fake.Core", "3.0.0+build.7"), "deterministic bytes");

    let nuspec = get(&format!("{api}/v3-flatcontainer/fake.core/1.1.0/fake.core.nuspec")).await;
    let xml = String::from_utf8(nuspec.body.to_vec()).unwrap();
    assert!(
        xml.contains("<id>Fake.Core</id>") && xml.contains("<version>1.1.0</version>"),
        "{xml}"
    );
    assert!(xml.contains("<dependency id=\"Fake.Dep\""), "{xml}");

    let mixed = get(&format!("{api}/v3-flatcontainer/fake.mixedcase/index.json")).await;
    assert_eq!(mixed.status, StatusCode::OK);
    for path in [
        "/v3-flatcontainer/Fake.MixedCASE/index.json",
        "/v3-flatcontainer/Fake.Core/1.0.0/Fake.Core.1.0.0.nupkg",
        "/v3-flatcontainer/fake.core/9.9.9/fake.core.9.9.9.nupkg",
        "/v3-flatcontainer/no.such.package/index.json",
        "/v3/no-such-document.json",
    ] {
        assert_eq!(
            get(&format!("{api}{path}")).await.status,
            StatusCode::NOT_FOUND,
            "{path}"
        );
    }
}

#[tokio::test]
async fn gz_hives_are_gzip_and_semver1_hives_hide_semver2() {
    let up = FakeUpstream::start().await;
    let api = up.api();
    let versions = |doc: &Value| -> Vec<String> {
        doc["items"][0]["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|leaf| leaf["catalogEntry"]["version"].as_str().unwrap().to_string())
            .collect()
    };

    let gz2 = get(&format!("{api}/v3/registration5-gz-semver2/fake.core/index.json")).await;
    assert_eq!(gz2.status, StatusCode::OK);
    assert_eq!(gz2.header("content-encoding"), Some("gzip"));
    assert_eq!(&gz2.body[..2], &[0x1f, 0x8b], "gzip magic");
    let doc: Value = serde_json::from_slice(&gunzip(&gz2.body)).unwrap();
    let all = ["1.0.0", "1.1.0", "1.2.0-beta", "1.3.0", "2.0.0-rc.1", "3.0.0+build.7"];
    assert_eq!(versions(&doc), all);

    let gz1 = get(&format!("{api}/v3/registration5-gz-semver1/fake.core/index.json")).await;
    assert_eq!(gz1.header("content-encoding"), Some("gzip"));
    let doc: Value = serde_json::from_slice(&gunzip(&gz1.body)).unwrap();
    assert_eq!(versions(&doc), all[..4]);

    let plain = get(&format!("{api}/v3/registration5-semver1/fake.core/index.json")).await;
    assert_eq!(plain.header("content-encoding"), None);
    let doc = plain.json();
    assert_eq!(versions(&doc), all[..4]);
    let leaves = doc["items"][0]["items"].as_array().unwrap();
    let entry = |v: &str| &leaves.iter().find(|l| l["catalogEntry"]["version"] == v).unwrap()["catalogEntry"];
    let dep = &entry("1.1.0")["dependencyGroups"][0];
    assert_eq!(dep["targetFramework"], "netstandard2.0");
    assert_eq!(dep["dependencies"][0]["range"], "[1.0.0, )");
    let hive = format!("{api}/v3/registration5-semver1/");
    assert_eq!(
        dep["dependencies"][0]["registration"],
        format!("{hive}fake.dep/index.json")
    );
    assert_eq!(entry("1.0.0")["vulnerabilities"][0]["severity"], "2");
    assert_eq!(entry("1.3.0")["listed"], false);
    assert_eq!(entry("1.3.0")["published"], "1900-01-01T00:00:00+00:00");
    assert_eq!(entry("1.0.0")["projectUrl"], "https://github.com/example/fake.core");
    let leaf = get(&format!("{hive}fake.core/1.0.0.json")).await.json();
    assert!(leaf["catalogEntry"].is_string());
    assert_eq!(leaf["registration"], format!("{hive}fake.core/index.json"));

    let missing = get(&format!("{hive}fake.core/3.0.0.json")).await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND, "semver2 leaf in a semver1 hive");
    up.add_package("Fake.OnlyNew", "1.0.0-alpha.1", vec![1, 2, 3]);
    let only_new = get(&format!("{hive}fake.onlynew/index.json")).await;
    assert_eq!(only_new.status, StatusCode::NOT_FOUND);
    let gz = get(&format!("{api}/v3/registration5-gz-semver2/fake.onlynew/index.json")).await;
    assert_eq!(gz.status, StatusCode::OK);
}

#[tokio::test]
async fn registration_pages_at_128_versions() {
    let up = FakeUpstream::start().await;
    let url = format!("{}/v3/registration5-semver1/fake.many/index.json", up.api());
    let index = get(&url).await.json();
    assert_eq!(index["count"], 4);
    let pages = index["items"].as_array().unwrap();
    let counts: Vec<u64> = pages.iter().map(|p| p["count"].as_u64().unwrap()).collect();
    assert_eq!(counts, [64, 64, 64, 8]);
    assert_eq!(pages[0]["lower"], "1.0.0");
    assert_eq!(pages[3]["upper"], "1.199.0");
    for page in pages {
        assert!(page.get("items").is_none() && page.get("parent").is_none(), "{page}");
        let page_url = page["@id"].as_str().unwrap();
        let doc = get(page_url).await.json();
        assert_eq!(doc["@id"], page_url);
        assert_eq!(doc["parent"], url);
        assert_eq!(
            doc["items"].as_array().unwrap().len() as u64,
            page["count"].as_u64().unwrap()
        );
    }

    let mut corpus = Corpus::empty();
    for minor in 0..127 {
        corpus.add("Edge.127", &format!("1.{minor}.0"), vec![0], true);
        corpus.add("Edge.128", &format!("1.{minor}.0"), vec![0], true);
    }
    corpus.add("Edge.128", "2.0.0", vec![0], true);
    let edge = FakeUpstream::start_with(corpus).await;
    let hive = format!("{}/v3/registration5-semver1", edge.api());
    let inlined = get(&format!("{hive}/edge.127/index.json")).await.json();
    assert_eq!(inlined["count"], 2);
    for page in inlined["items"].as_array().unwrap() {
        assert!(page["@id"].as_str().unwrap().contains("/index.json#page/"));
        assert_eq!(page["parent"], format!("{hive}/edge.127/index.json"));
        assert!(page["items"].is_array());
    }
    let paged = get(&format!("{hive}/edge.128/index.json")).await.json();
    assert_eq!(paged["count"], 2);
    assert!(paged["items"][0].get("items").is_none());
}

#[tokio::test]
async fn search_and_autocomplete_show_listed_versions_only() {
    let up = FakeUpstream::start().await;
    let search = up.search();
    let doc = get(&format!("{search}/query?q=fake&take=10")).await.json();
    assert_eq!(doc["totalHits"], 4);
    assert_eq!(
        doc["@context"]["@base"],
        format!("{}/v3/registration5-semver1/", up.api())
    );
    let core = doc["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["id"] == "Fake.Core")
        .unwrap();
    assert_eq!(core["version"], "1.1.0", "no prerelease, no semver2, no unlisted");

    let doc = get(&format!(
        "{search}/query?q=packageid:fake.core&prerelease=true&semVerLevel=2.0.0"
    ))
    .await
    .json();
    assert_eq!(doc["totalHits"], 1);
    assert_eq!(
        doc["@context"]["@base"],
        format!("{}/v3/registration5-gz-semver2/", up.api())
    );
    assert_eq!(doc["data"][0]["version"], "3.0.0+build.7");
    let listed: Vec<&str> = doc["data"][0]["versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["version"].as_str().unwrap())
        .collect();
    assert_eq!(listed, ["1.0.0", "1.1.0", "1.2.0-beta", "2.0.0-rc.1", "3.0.0+build.7"]);

    let ids = get(&format!("{search}/autocomplete?q=fake.m")).await.json();
    assert_eq!(ids["data"], serde_json::json!(["Fake.Many", "Fake.MixedCASE"]));
    let vers = get(&format!("{search}/autocomplete?id=Fake.Core&prerelease=true"))
        .await
        .json();
    assert_eq!(vers["data"], serde_json::json!(["1.0.0", "1.1.0", "1.2.0-beta"]));
}

// ---------------------------------------------------------------------------
// HTTP behaviour

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

// ---------------------------------------------------------------------------
// faults

#[tokio::test]
async fn fault_status_is_scoped_and_spares_www() {
    let up = FakeUpstream::start().await;
    up.set_fault_for("/v3-flatcontainer/", Fault::Status(503));
    let flat = get(&format!("{}/v3-flatcontainer/fake.core/index.json", up.api())).await;
    assert_eq!(flat.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(get(&up.index_url()).await.status, StatusCode::OK);
    up.set_fault(Fault::Status(500));
    assert_eq!(get(&up.index_url()).await.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(
        get(&format!("{}/query", up.search())).await.status,
        StatusCode::INTERNAL_SERVER_ERROR
    );
    assert_eq!(get(&format!("{}/profiles/x", up.www())).await.status, StatusCode::OK);
    up.clear_faults();
    assert_eq!(get(&up.index_url()).await.status, StatusCode::OK);
}

#[tokio::test]
async fn fault_refuse_closes_the_port_and_clearing_rebinds_it() {
    let up = FakeUpstream::start().await;
    assert_eq!(get(&up.index_url()).await.status, StatusCode::OK);
    up.set_fault(Fault::Refuse);
    for origin in [up.api(), up.search()] {
        let err = TcpStream::connect(host_port(&origin)).await.expect_err("refused");
        assert_eq!(err.kind(), std::io::ErrorKind::ConnectionRefused);
    }
    assert_eq!(get(&format!("{}/profiles/x", up.www())).await.status, StatusCode::OK);
    up.clear_faults();
    assert_eq!(get(&up.index_url()).await.status, StatusCode::OK);
}

#[tokio::test]
async fn fault_truncate_sends_half_the_announced_body() {
    let up = FakeUpstream::start().await;
    up.set_fault(Fault::Truncate);
    let wire = raw_get(&up.api(), &nupkg_path("fake.core", "1.0.0")).await;
    let len = up.nupkg_bytes("Fake.Core", "1.0.0").unwrap().len();
    assert!(wire.head.starts_with("HTTP/1.1 200"), "{}", wire.head);
    assert_eq!(wire.content_length(), len);
    assert_eq!(wire.body.len(), len / 2);
    let json = raw_get(&up.api(), "/v3/index.json").await;
    assert_eq!(json.body.len(), json.content_length() / 2, "JSON is truncated too");
}

#[tokio::test]
async fn fault_longer_body_sends_more_than_content_length() {
    let up = FakeUpstream::start().await;
    up.set_fault(Fault::LongerBody);
    let wire = raw_get(&up.api(), &nupkg_path("fake.core", "1.0.0")).await;
    let served = up.nupkg_bytes("Fake.Core", "1.0.0").unwrap();
    assert_eq!(wire.content_length(), served.len());
    assert!(wire.body.len() > served.len());
    assert_eq!(&wire.body[..served.len()], &served[..]);
}

#[tokio::test]
async fn fault_reset_aborts_the_connection() {
    let up = FakeUpstream::start().await;
    up.set_fault(Fault::Reset);
    let wire = raw_get(&up.api(), "/v3/index.json").await;
    assert!(wire.head.is_empty(), "{}", wire.head);
    assert_eq!(wire.error, Some(std::io::ErrorKind::ConnectionReset));
    assert_eq!(up.count("/v3/index.json"), 1, "recorded before the fault");
}

#[tokio::test]
async fn fault_corrupt_flips_nupkg_bytes_only() {
    let up = FakeUpstream::start().await;
    up.set_fault(Fault::Corrupt);
    let resp = get(&format!("{}{}", up.api(), nupkg_path("fake.dep", "1.0.1"))).await;
    let served = up.nupkg_bytes("Fake.Dep", "1.0.1").unwrap();
    assert_eq!(resp.body.len(), served.len());
    assert_ne!(resp.body, served);
    assert_eq!(get(&up.index_url()).await.json()["version"], "3.0.0");
}

#[tokio::test]
async fn fault_bad_json_serves_an_html_page() {
    let up = FakeUpstream::start().await;
    up.set_fault(Fault::BadJson);
    let resp = get(&format!(
        "{}/v3/registration5-gz-semver2/fake.core/index.json",
        up.api()
    ))
    .await;
    assert_eq!(resp.status, StatusCode::OK);
    assert!(resp.header("content-type").unwrap().starts_with("text/html"));
    assert_eq!(resp.header("content-encoding"), None);
    assert!(serde_json::from_slice::<Value>(&resp.body).is_err());
    let nupkg = get(&format!("{}{}", up.api(), nupkg_path("fake.dep", "1.0.0"))).await;
    assert_eq!(nupkg.header("content-type"), Some("application/octet-stream"));
}

#[tokio::test]
async fn fault_redirect_loop_points_at_itself() {
    let up = FakeUpstream::start().await;
    up.set_fault(Fault::RedirectLoop);
    let url = format!("{}/query?q=a", up.search());
    let resp = get(&url).await;
    assert_eq!(resp.status, StatusCode::FOUND);
    assert_eq!(resp.header("location"), Some(url.as_str()));
}

#[tokio::test]
async fn fault_delay_holds_the_response_head() {
    let up = FakeUpstream::start().await;
    up.set_fault(Fault::Delay(Duration::from_millis(300)));
    let started = Instant::now();
    assert_eq!(get(&up.index_url()).await.status, StatusCode::OK);
    assert!(started.elapsed() >= Duration::from_millis(300));
}

#[tokio::test]
async fn fault_hang_answers_once_the_fault_changes() {
    let up = FakeUpstream::start().await;
    up.set_fault(Fault::Hang);
    let url = up.index_url();
    let mut pending = tokio::spawn(async move { get(&url).await.status });
    wait_recorded(&up, "/v3/index.json", 1).await;
    let early = timeout(Duration::from_millis(200), &mut pending).await;
    assert!(early.is_err(), "a hung request was answered: {early:?}");
    up.clear_faults();
    assert_eq!(timeout(LIMIT, pending).await.unwrap().unwrap(), StatusCode::OK);
}

#[tokio::test]
async fn fault_stall_body_sends_half_then_closes_when_cleared() {
    let up = FakeUpstream::start().await;
    up.set_fault_for(".nupkg", Fault::StallBody);
    let mut stream = TcpStream::connect(host_port(&up.api())).await.unwrap();
    let req = format!("GET {} HTTP/1.1\r\nHost: x\r\n\r\n", nupkg_path("fake.core", "1.0.0"));
    stream.write_all(req.as_bytes()).await.unwrap();
    let len = up.nupkg_bytes("Fake.Core", "1.0.0").unwrap().len();
    let mut data = Vec::new();
    let mut buf = [0u8; 8192];
    while split_wire(data.clone(), None).body.len() < len / 2 {
        let n = timeout(LIMIT, stream.read(&mut buf)).await.unwrap().unwrap();
        assert!(n > 0, "closed before half the body");
        data.extend_from_slice(&buf[..n]);
    }
    let more = timeout(Duration::from_millis(200), stream.read(&mut buf)).await;
    assert!(more.is_err(), "expected a stall, got {more:?}");
    up.clear_faults();
    let n = timeout(LIMIT, stream.read(&mut buf)).await.unwrap().unwrap_or(0);
    assert_eq!(n, 0, "closed after the stall, no more body");
    assert_eq!(split_wire(data, None).body.len(), len / 2);
}

#[tokio::test]
async fn dropping_the_fake_closes_ports_and_connections() {
    let up = FakeUpstream::start().await;
    up.set_fault(Fault::Hang);
    let url = up.index_url();
    let pending = tokio::spawn(async move { send(Method::GET, &url, &[], full(Bytes::new())).await });
    wait_recorded(&up, "/v3/index.json", 1).await;
    let origins = up.origins();
    drop(up);
    let result = timeout(LIMIT / 4, pending)
        .await
        .expect("hung request ended by drop")
        .unwrap();
    assert!(result.is_err(), "{:?}", result.map(|r| r.status));
    for origin in origins {
        assert!(
            TcpStream::connect(host_port(&origin)).await.is_err(),
            "{origin} still open"
        );
    }
    // Every task the fake spawned (accept loops, connections) has ended.
    let metrics = tokio::runtime::Handle::current().metrics();
    let deadline = Instant::now() + LIMIT;
    while metrics.num_alive_tasks() > 0 {
        assert!(
            Instant::now() < deadline,
            "{} tasks still alive",
            metrics.num_alive_tasks()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

// ---------------------------------------------------------------------------
// private feeds, chunked bodies, cdn redirects

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
    match doc {
        Value::String(s) if s.starts_with("http://127.0.0.1:") => vec![s.clone()],
        Value::Array(items) => items.iter().flat_map(urls_in).collect(),
        Value::Object(map) => map.values().flat_map(urls_in).collect(),
        _ => Vec::new(),
    }
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
    let versions = |doc: &Value| -> Vec<String> {
        doc["items"][0]["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|leaf| leaf["catalogEntry"]["version"].as_str().unwrap().to_string())
            .collect()
    };
    let semver1 = get(&format!("{feed}/v3/registrations2/fake.core/index.json")).await;
    assert_eq!(semver1.header("content-encoding"), None);
    assert_eq!(versions(&semver1.json()), ["1.0.0", "1.1.0", "1.2.0-beta", "1.3.0"]);
    let semver2 = get(&format!("{feed}/v3/registrations2-semver2/fake.core/index.json")).await;
    assert_eq!(semver2.header("content-encoding"), None);
    assert_eq!(versions(&semver2.json()).last().unwrap(), "3.0.0+build.7");
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
