//! Tiers chained with no special mode: an edge nucache whose upstream is a
//! regional nucache in front of the fake upstream. `Via` carries every
//! node's id up the chain (a loop is refused with 508 at once), `Age`
//! keeps TTLs from stacking, RFC 9211 `Cache-Status` names each tier, a
//! stale answer is never kept as fresh, and a client's session id and
//! conditional requests pass through both tiers.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::nucache::{send, Nucache, Reply};
use common::poll;
use common::process::{free_port, Launch, Process};
use common::upstream::FakeUpstream;
use http::{Method, StatusCode};
use nucache::Config;

const VERSIONS: &str = "/v3/flatcontainer/fake.core/index.json";
/// The version list's path on the fake upstream.
const UPSTREAM_VERSIONS: &str = "v3-flatcontainer/fake.core/index.json";
const NUPKG: &str = "/v3/flatcontainer/fake.core/1.1.0/fake.core.1.1.0.nupkg";

/// The fake upstream, a regional nucache in front of it, an edge nucache
/// in front of the regional; both ready.
struct Chain {
    upstream: FakeUpstream,
    regional: Nucache,
    edge: Nucache,
}

impl Chain {
    async fn start(regional: impl FnOnce(&mut Config), edge: impl FnOnce(&mut Config)) -> Chain {
        let upstream = FakeUpstream::start().await;
        let regional = Nucache::start(&upstream.index_url(), regional).await;
        regional.until_ready().await;
        let edge = Nucache::start(&regional.url("/v3/index.json"), edge).await;
        edge.until_ready().await;
        Chain {
            upstream,
            regional,
            edge,
        }
    }

    /// The node ids of the regional and the edge, from their cache directories.
    fn ids(&self) -> (String, String) {
        (node_id(&self.regional.dir), node_id(&self.edge.dir))
    }

    /// Fails unless every API address in `text` is the edge's: no regional
    /// or upstream one (the gallery's human pages on the www host, which
    /// browsers open, keep pointing at the gallery).
    fn assert_points_at_edge(&self, what: &str, text: &str) {
        let api = self
            .upstream
            .origins()
            .into_iter()
            .filter(|o| *o != self.upstream.www());
        for other in api.chain([self.regional.base()]) {
            assert!(!text.contains(&other), "{what} points at {other}:\n{text}");
        }
        assert!(text.contains(&self.edge.base()), "{what} names no edge URL:\n{text}");
    }
}

/// The id a nucache keeps in its cache directory.
fn node_id(dir: &Path) -> String {
    let text = std::fs::read_to_string(dir.join("node-id")).expect("the cache directory keeps the node id");
    text.trim().to_string()
}

/// The members of an answer's `Cache-Status`, the origin's side first
/// (node ids hold no comma).
fn members(reply: &Reply) -> Vec<String> {
    let value = reply.header("cache-status").unwrap_or_default();
    value
        .split(", ")
        .filter(|m| !m.is_empty())
        .map(str::to_string)
        .collect()
}

/// Fails unless the `Cache-Status` of `reply` has one member per prefix,
/// each starting with it, in order (`what` says which answer it was).
fn assert_tiers(what: &str, reply: &Reply, prefixes: &[String]) {
    let tiers = members(reply);
    assert_eq!(tiers.len(), prefixes.len(), "{what}: {tiers:?}");
    for (member, prefix) in tiers.iter().zip(prefixes) {
        assert!(member.starts_with(prefix.as_str()), "{what}: {tiers:?}, not {prefix:?}");
    }
}

/// The `ttl` parameter of a member.
fn ttl_of(member: &str) -> i64 {
    let ttl = member.split("; ").find_map(|param| param.strip_prefix("ttl="));
    ttl.and_then(|t| t.parse().ok())
        .unwrap_or_else(|| panic!("no ttl in {member:?}"))
}

#[tokio::test]
async fn a_restore_through_an_edge_points_at_the_edge_and_names_both_tiers() {
    let chain = Chain::start(|_| {}, |_| {}).await;
    let (regional, edge) = chain.ids();
    assert_ne!(regional, edge, "each nucache has its own id");
    assert!(edge.starts_with("nucache-"), "{edge}");

    let index = chain.edge.get("/v3/index.json").await;
    assert_eq!(index.status, StatusCode::OK, "{}", index.text());
    chain.assert_points_at_edge("the service index", &index.text());
    let registration = "/v3/registration/registration5-gz-semver2/fake.core/index.json";
    assert!(index.text().contains(
        &chain
            .edge
            .url(&registration[..registration.len() - "fake.core/index.json".len()])
    ));

    let restore = [VERSIONS, registration, NUPKG];
    for path in restore {
        let cold = chain.edge.get(path).await;
        assert_eq!(
            (cold.status, cold.x_cache()),
            (StatusCode::OK, Some("MISS")),
            "{path}: {}",
            cold.text()
        );
        let missed = |node: &str| format!("{node}; fwd=miss; fwd-status=200");
        assert_tiers(path, &cold, &[missed(&regional), missed(&edge)]);
        assert_eq!(cold.header("via"), Some(format!("1.1 {edge}").as_str()), "{path}");
        assert!(cold.header("age").is_some(), "{path}: a cached answer says its age");
        if path == NUPKG {
            let bytes = chain.upstream.nupkg_bytes("Fake.Core", "1.1.0").expect("the package");
            assert_eq!(cold.body.as_ref(), bytes.as_slice(), "the package, whole");
        } else if path == registration {
            chain.assert_points_at_edge(path, &cold.text());
        }
    }
    for path in restore {
        let warm = chain.edge.until_hit(path).await;
        assert_tiers(path, &warm, &[format!("{edge}; hit")]);
    }
}

#[tokio::test]
async fn a_client_s_session_id_and_via_reach_the_upstream_through_both_tiers() {
    let chain = Chain::start(|_| {}, |_| {}).await;
    let (regional, edge) = chain.ids();
    let client = [
        ("x-nuget-session-id", "0f8fad5b-d9cb-469f-a165-70867728950e"),
        ("x-nuget-client-version", "6.11.0"),
        ("via", "1.1 corp-proxy"),
    ];
    for path in [VERSIONS, NUPKG] {
        let reply = send(Method::GET, &chain.edge.url(path), &client, Bytes::new()).await;
        assert_eq!(reply.status, StatusCode::OK, "{path}: {}", reply.text());
    }
    let expected_via = format!("1.1 corp-proxy, 1.1 {edge}, 1.1 {regional}");
    for asked in [UPSTREAM_VERSIONS, "fake.core.1.1.0.nupkg"] {
        let requests = chain.upstream.requests();
        let request = requests
            .iter()
            .find(|r| r.path.contains(asked))
            .expect("the upstream was asked");
        let header = |name: &str| request.headers.get(name).and_then(|v| v.to_str().ok());
        assert_eq!(header("x-nuget-session-id"), Some(client[0].1), "{asked}");
        assert_eq!(header("x-nuget-client-version"), Some(client[1].1), "{asked}");
        assert_eq!(header("via"), Some(expected_via.as_str()), "{asked}");
    }
}

#[tokio::test]
async fn the_regional_s_age_shortens_the_edge_s_ttl() {
    let minute = |c: &mut Config| c.ttl.versions = Duration::from_secs(60);
    let chain = Chain::start(minute, minute).await;
    // The upstream is a cache too, and had its copy for 57 of the 60 s.
    chain.upstream.set_response_headers(UPSTREAM_VERSIONS, &[("age", "57")]);
    let cold = chain.edge.get(VERSIONS).await;
    assert_eq!(cold.x_cache(), Some("MISS"));
    let age: u64 = cold.header("age").and_then(|a| a.parse().ok()).expect("Age");
    assert!(
        (57..=59).contains(&age),
        "the edge's copy is as old as the upstream's: Age {age}"
    );
    let tiers = members(&cold);
    assert_eq!(tiers.len(), 2, "{tiers:?}");
    for member in &tiers {
        let ttl = ttl_of(member);
        assert!(
            (0..=3).contains(&ttl),
            "each tier keeps it for what is left of 60 s, not 60 s more: {tiers:?}"
        );
    }
    // A stacked TTL would keep it fresh at the edge for a minute.
    poll::until_true("the edge's copy expires with the upstream's", async || {
        chain.edge.get(VERSIONS).await.x_cache() != Some("HIT")
    })
    .await;
}

#[tokio::test]
async fn a_stale_answer_from_the_tier_above_is_kept_as_expired() {
    // The edge would keep a fresh copy an hour: only the regional's
    // Cache-Status can tell it the copy is stale.
    let chain = Chain::start(|_| {}, |c| c.ttl.versions = Duration::from_secs(3600)).await;
    let (regional, edge) = chain.ids();
    // The upstream is a cache that served its copy past its freshness.
    chain
        .upstream
        .set_response_headers(UPSTREAM_VERSIONS, &[("cache-status", "cdn; hit; ttl=-30")]);
    let cold = chain.edge.get(VERSIONS).await;
    assert_eq!((cold.status, cold.x_cache()), (StatusCode::OK, Some("MISS")));
    let tiers = members(&cold);
    assert_eq!(tiers.len(), 3, "{tiers:?}");
    assert_eq!(tiers[0], "cdn; hit; ttl=-30");
    assert!(tiers[1].starts_with(&regional) && ttl_of(&tiers[1]) <= 0, "{tiers:?}");
    assert!(tiers[2].starts_with(&edge) && ttl_of(&tiers[2]) <= 0, "{tiers:?}");
    for (tier, nucache) in [("edge", &chain.edge), ("regional", &chain.regional)] {
        let next = nucache.get(VERSIONS).await;
        assert_eq!(
            next.x_cache(),
            Some("UPDATING"),
            "the {tier} kept it as expired, not fresh"
        );
    }
}

#[tokio::test]
async fn conditional_requests_are_answered_304_through_both_tiers() {
    // The edge keeps nothing fresh: every request revalidates its copy
    // against the regional, which answers from its own.
    let chain = Chain::start(
        |_| {},
        |c| {
            c.ttl.versions = Duration::ZERO;
            c.ttl.max_stale = Duration::ZERO;
        },
    )
    .await;
    let (regional, edge) = chain.ids();
    let first = chain.edge.get(VERSIONS).await;
    assert_eq!(first.x_cache(), Some("MISS"));
    let again = chain.edge.get(VERSIONS).await;
    assert_eq!((again.status, again.x_cache()), (StatusCode::OK, Some("REVALIDATED")));
    assert_eq!(again.body, first.body);
    // The regional answered 304 from its copy.
    let revalidated = [format!("{regional}; hit"), format!("{edge}; fwd=stale; fwd-status=304")];
    assert_tiers("revalidated", &again, &revalidated);
    assert_eq!(
        chain.upstream.count(UPSTREAM_VERSIONS),
        1,
        "only the first request reached the upstream"
    );

    let etag = again.header("etag").expect("ETag").to_string();
    let modified = again.header("last-modified").expect("Last-Modified").to_string();
    for validator in [
        ("if-none-match", etag.as_str()),
        ("if-modified-since", modified.as_str()),
    ] {
        let conditional = send(Method::GET, &chain.edge.url(VERSIONS), &[validator], Bytes::new()).await;
        assert_eq!(conditional.status, StatusCode::NOT_MODIFIED, "{validator:?}");
        assert_eq!(conditional.x_cache(), Some("REVALIDATED"), "{validator:?}");
        assert!(conditional.body.is_empty());
    }
    let changed = [("if-none-match", "\"another\"")];
    let full = send(Method::GET, &chain.edge.url(VERSIONS), &changed, Bytes::new()).await;
    assert_eq!((full.status, full.body.clone()), (StatusCode::OK, first.body.clone()));
}

/// The sum of the samples of `metric` in a node's `/metrics`.
async fn sampled(node: &Process, metric: &str) -> f64 {
    let metrics = node.get("/metrics").await.text();
    metrics
        .lines()
        .filter(|line| line.starts_with(metric))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Upstream requests a node has sent.
async fn upstream_requests(node: &Process) -> f64 {
    sampled(node, "nucache_upstream_requests_total{").await
}

/// Requests a node refused as loops.
async fn loops_refused(node: &Process) -> f64 {
    sampled(node, "nucache_loops_refused_total ").await
}

/// A nucache process on `port` in front of `upstream`; an answer that
/// waited for a read timeout would take 10 s.
fn looping(upstream: &str, dir: &Path, port: u16) -> Process {
    let launch = Launch {
        env: vec![("NUCACHE_UPSTREAM__READ_TIMEOUT", "10s".to_string())],
        ..Launch::new(upstream, dir)
    };
    launch.spawn_on(port)
}

#[tokio::test]
async fn a_loop_of_two_nucaches_is_refused_at_once_and_neither_spins() {
    let temp = tempfile::tempdir().expect("temp dir");
    let (dir_a, dir_b) = (temp.path().join("a"), temp.path().join("b"));
    let (port_a, port_b) = (free_port(), free_port());
    let index = |port: u16| format!("http://127.0.0.1:{port}/v3/index.json");
    let (upstream_of_a, upstream_of_b) = (index(port_b), index(port_a));
    let mut a = looping(&upstream_of_a, &dir_a, port_a);
    let mut b = looping(&upstream_of_b, &dir_b, port_b);
    a.ready().await;
    b.ready().await;
    let (id_a, id_b) = (node_id(&dir_a), node_id(&dir_b));

    // The loop closes where a request comes back: at A for a request A
    // sent on, or at B should A's request have joined a fetch B's start-up
    // load caused at A. Either way the node's own words come back.
    let reason = |id: &str| {
        format!("this request has passed through this nucache ({id}) already: its upstream chain loops back to it")
    };
    for (asked, node) in [("A", &a), ("B", &b)] {
        let started = Instant::now();
        let refused = node.get("/v3/index.json").await;
        let took = started.elapsed();
        assert_eq!(refused.status, StatusCode::LOOP_DETECTED, "{asked}: {}", refused.text());
        let text = refused.text().trim().to_string();
        assert!(text == reason(&id_a) || text == reason(&id_b), "{asked}: {text}");
        assert!(took < Duration::from_secs(5), "{asked} refused after {took:?}");
        assert!(refused.header("via").is_some(), "{asked}");
        node.log_with(&text).await;
    }

    // Neither spins: each further request costs one hop each way and no
    // retry (the start-up loaders of both add a few on a growing pause).
    let before = upstream_requests(&a).await + upstream_requests(&b).await;
    for _ in 0..5 {
        assert_eq!(a.get("/v3/index.json").await.status, StatusCode::LOOP_DETECTED);
        assert_eq!(b.get("/v3/index.json").await.status, StatusCode::LOOP_DETECTED);
    }
    let sent = upstream_requests(&a).await + upstream_requests(&b).await - before;
    assert!(sent <= 10.0 * 2.0 + 8.0, "{sent} upstream requests for 10 refused ones");
    let refused = loops_refused(&a).await + loops_refused(&b).await;
    assert!(
        refused >= 12.0,
        "each of the 12 refusals counted where it happened: {refused}"
    );
}
