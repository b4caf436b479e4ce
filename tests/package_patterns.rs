//! NuGet's packageSourceMapping rules on the upstream's `packages`
//! patterns: an id they do not give to the upstream is a 404 that never
//! reaches it (the dependency-confusion protection, one upstream at a time).

mod common;

use common::nucache::Nucache;
use common::upstream::FakeUpstream;
use http::StatusCode;

#[tokio::test]
async fn an_id_outside_the_patterns_is_404_and_never_asked_of_the_upstream() {
    let upstream = FakeUpstream::start().await;
    let nucache = Nucache::start(&upstream.index_url(), |c| {
        c.upstream.packages = vec!["Fake.Core".to_string(), "Fake.M*".to_string()];
    })
    .await;
    for allowed in [
        "/v3/flatcontainer/fake.core/index.json",
        "/v3/flatcontainer/FAKE.CORE/1.0.0/fake.core.1.0.0.nupkg",
        "/v3/flatcontainer/fake.many/index.json",
        "/v3/flatcontainer/fake.mixedcase/1.0.0/fake.mixedcase.nuspec",
    ] {
        let reply = nucache.get(allowed).await;
        assert_eq!(reply.status, StatusCode::OK, "{allowed}: {}", reply.text());
    }
    upstream.reset_log();
    for refused in [
        "/v3/flatcontainer/fake.dep/index.json",
        "/v3/flatcontainer/fake.dep/1.0.0/fake.dep.1.0.0.nupkg",
        "/v3/flatcontainer/fake.core.extra/index.json",
        "/v3/registration/gz-semver2/fake.dep/index.json",
    ] {
        let reply = nucache.get(refused).await;
        assert_eq!(reply.status, StatusCode::NOT_FOUND, "{refused}: {}", reply.text());
    }
    let asked: Vec<String> = upstream
        .requests()
        .iter()
        .map(|r| r.path.clone())
        .filter(|p| p.contains("fake.dep") || p.contains("fake.core.extra"))
        .collect();
    assert!(
        asked.is_empty(),
        "the upstream was asked for ids it does not own: {asked:?}"
    );
    let health = nucache.get("/health").await.json();
    assert_eq!(health["upstreams"], serde_json::json!(["default"]));
}
