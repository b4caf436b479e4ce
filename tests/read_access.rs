//! `auth.read = "required"`: reads need credentials, /health stays open.

mod common;

use base64::Engine as _;
use common::nucache::Nucache;
use common::upstream::FakeUpstream;
use http::{Method, StatusCode};
use nucache::config::{digest_hex, ReadAccess};

fn basic(user: &str, password: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
    )
}

#[tokio::test]
async fn reads_need_credentials_when_required() {
    let upstream = FakeUpstream::start().await;
    let nucache = Nucache::start(&upstream.index_url(), |c| {
        c.auth.read = ReadAccess::Required;
        c.auth.users = vec![format!("agent:{}", digest_hex("s3cret"))];
        c.auth.read_keys = vec![digest_hex("read-key")];
    })
    .await;
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
    // Refused reads never reach the upstream.
    let before = upstream.count("fake.dep");
    nucache.get("/v3/flatcontainer/fake.dep/index.json").await;
    assert_eq!(upstream.count("fake.dep"), before);
}
