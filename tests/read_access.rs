//! `auth.read = "required"`: reads need credentials and are refused before
//! nucache does any work for them; /health stays open but shows no
//! upstream address to anonymous callers.

mod common;

use base64::Engine as _;
use bytes::Bytes;
use common::nucache::{send, Nucache};
use common::upstream::{FakeUpstream, Fault};
use http::{Method, StatusCode};
use nucache::config::{digest_hex, ReadAccess, Secret};

fn basic(user: &str, password: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
    )
}

fn read_auth(c: &mut nucache::Config) {
    c.auth.read = ReadAccess::Required;
    c.auth.users = vec![format!("agent:{}", digest_hex("s3cret"))];
    c.auth.read_keys = vec![digest_hex("read-key")];
}

/// No origin of the fake upstream appears in `text`.
fn no_upstream_address(upstream: &FakeUpstream, text: &str) {
    for origin in upstream.origins() {
        let host_port = origin.trim_start_matches("http://");
        assert!(!text.contains(host_port), "{origin} shown: {text}");
    }
}

#[tokio::test]
async fn reads_need_credentials_when_required() {
    let upstream = FakeUpstream::start().await;
    let nucache = Nucache::start(&upstream.index_url(), read_auth).await;
    // Beyond the service index nucache loads at start-up, a refused read
    // makes no upstream request at all.
    nucache.until_ready().await;
    let loaded = upstream.requests().len();
    let refused = nucache.get("/v3/flatcontainer/fake.dep/index.json").await;
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED);
    assert_eq!(upstream.requests().len(), loaded, "{:?}", upstream.requests());
    let paths = ["/v3/index.json", "/v3/flatcontainer/fake.core/index.json", "/"];
    for path in paths {
        let anonymous = nucache.get(path).await;
        assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED, "{path}");
        assert_eq!(anonymous.header("www-authenticate"), Some("Basic realm=\"nucache\""));
        let wrong = nucache
            .request(Method::GET, path, &[("authorization", &basic("agent", "guess"))])
            .await;
        assert_eq!(wrong.status, StatusCode::UNAUTHORIZED, "{path}");
        let user = nucache
            .request(Method::GET, path, &[("authorization", &basic("agent", "s3cret"))])
            .await;
        assert_eq!(user.status, StatusCode::OK, "{path}");
        let key_as_password = nucache
            .request(Method::GET, path, &[("authorization", &basic("x", "read-key"))])
            .await;
        assert_eq!(key_as_password.status, StatusCode::OK, "{path}");
        let api_key = nucache
            .request(Method::GET, path, &[("x-nuget-apikey", "read-key")])
            .await;
        assert_eq!(api_key.status, StatusCode::OK, "{path}");
    }
    assert_eq!(nucache.get("/health").await.status, StatusCode::OK);
    // Refused reads never reach the upstream: every request counts.
    let before = upstream.requests().len();
    nucache.get("/v3/flatcontainer/fake.dep/index.json").await;
    nucache
        .get("/v3/flatcontainer/fake.dep/1.0.0/fake.dep.1.0.0.nupkg")
        .await;
    assert_eq!(upstream.requests().len(), before, "{:?}", upstream.requests());
}

#[tokio::test]
async fn a_refused_read_costs_nothing_and_says_nothing_about_a_down_upstream() {
    let upstream = FakeUpstream::start().await;
    // Down from the start: no service index to route by, and a refused
    // read must not make nucache try to load one (nor say it cannot).
    for fault in [Fault::Refuse, Fault::Status(503)] {
        upstream.set_fault(fault);
        let nucache = Nucache::start(&upstream.index_url(), read_auth).await;
        let reply = nucache.get("/v3/flatcontainer/nucache.sample.core/index.json").await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{fault:?}: {}", reply.text());
        assert_eq!(reply.header("www-authenticate"), Some("Basic realm=\"nucache\""));
        no_upstream_address(&upstream, &reply.text());
        nucache.stop().await;
    }
    // Only the start-up loads of the service index reached the fake.
    let asked: Vec<String> = upstream.requests().into_iter().map(|r| r.path).collect();
    assert!(asked.iter().all(|path| path == "/v3/index.json"), "{asked:?}");
}

#[tokio::test]
async fn a_publish_call_with_a_bad_key_costs_nothing() {
    let upstream = FakeUpstream::start().await;
    let nucache = Nucache::start(&upstream.index_url(), |c| {
        read_auth(c);
        c.publish.api_key = Some(Secret::new("upstream-key"));
        c.publish.client_keys = vec![digest_hex("client-key")];
    })
    .await;
    let put = |key: Option<&'static str>| {
        let url = nucache.url("/v3/package/");
        async move {
            let headers: Vec<(&str, &str)> = key.map(|k| ("x-nuget-apikey", k)).into_iter().collect();
            send(Method::PUT, &url, &headers, Bytes::from_static(b"x")).await
        }
    };
    assert_eq!(put(None).await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(put(Some("wrong")).await.status, StatusCode::FORBIDDEN);
    let delete = send(
        Method::DELETE,
        &nucache.url("/v3/package/Fake.Core/1.0.0"),
        &[("x-nuget-apikey", "wrong")],
        Bytes::new(),
    )
    .await;
    assert_eq!(delete.status, StatusCode::FORBIDDEN);
    let asked: Vec<String> = upstream.requests().into_iter().map(|r| r.path).collect();
    assert!(
        asked.iter().all(|path| path == "/v3/index.json"),
        "only the start-up load: {asked:?}"
    );
}

#[tokio::test]
async fn health_shows_no_upstream_address_to_anonymous_callers() {
    let upstream = FakeUpstream::start().await;
    let nucache = Nucache::start(&upstream.index_url(), read_auth).await;
    let agent = basic("agent", "s3cret");
    let credentials = [("authorization", agent.as_str())];
    // A failure the breaker remembers (its error text names the upstream).
    upstream.set_fault(Fault::Refuse);
    let failed = nucache.request(Method::GET, "/v3/index.json", &credentials).await;
    assert_eq!(failed.status, StatusCode::BAD_GATEWAY);
    let anonymous = nucache.get("/health").await;
    assert_eq!(anonymous.status, StatusCode::OK);
    let health = anonymous.json();
    assert!(health["upstream"]["state"].is_string(), "{health}");
    assert!(!anonymous.text().contains("last_error\":\""), "{health}");
    no_upstream_address(&upstream, &anonymous.text());
    // Authenticated callers see where it failed.
    let authenticated = nucache.request(Method::GET, "/health", &credentials).await;
    let text = authenticated.text();
    assert!(text.contains(upstream.api().trim_start_matches("http://")), "{text}");
    assert!(text.contains("cannot connect"), "{text}");
}
