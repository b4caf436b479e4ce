//! A fleet without a shared store: nucache processes on 127.0.0.1 that
//! name each other as peers, in front of one fake upstream. Each package
//! is downloaded from the upstream once for the whole fleet (its owner's
//! download); an owner killed mid-download, or never started, costs a
//! duplicate download at worst, never a client's package; peers prove
//! themselves with the fleet key and are never forwarded again. The last
//! test runs the whole fleet at once: peers and a shared SeaweedFS bucket.

mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use common::metrics::{scrape_url, Scrape};
use common::poll;
use common::process::{free_port, Launch, Process, Rng};
use common::upstream::{Corpus, FakeUpstream};
use http::{Method, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use sha2::{Digest, Sha512};

const KEY: &str = "fleet-key-of-the-tests";
const KIB: usize = 1024;

/// `count` packages `Big.N` 1.0.0 of `size` bytes each.
fn corpus(count: usize, size: usize) -> Corpus {
    let mut corpus = Corpus::empty();
    for n in 0..count {
        corpus.add(&format!("Big.{n}"), "1.0.0", bytes_of(n, size), true);
    }
    corpus
}

fn bytes_of(n: usize, size: usize) -> Vec<u8> {
    let mut rng = Rng::new(n as u64 + 7);
    (0..size).map(|_| rng.below(256) as u8).collect()
}

/// The local path (below `/v3/`) of `Big.N`'s package file.
fn local_of(n: usize) -> String {
    format!("flatcontainer/big.{n}/1.0.0/big.{n}.1.0.0.nupkg")
}

fn path_of(n: usize) -> String {
    format!("/v3/{}", local_of(n))
}

/// How many times the upstream was asked for `Big.N`'s package file.
fn downloads(upstream: &FakeUpstream, n: usize) -> usize {
    upstream.count(&format!("/big.{n}.1.0.0.nupkg"))
}

fn sha512(bytes: &[u8]) -> String {
    hex::encode(Sha512::digest(bytes))
}

/// Nodes that list each other as peers; some may be listed but not running.
struct Fleet {
    _dir: tempfile::TempDir,
    index: String,
    /// Every listed node's URL, in order.
    urls: Vec<String>,
    /// `None`: listed, not running.
    nodes: Vec<Option<Process>>,
}

impl Fleet {
    /// `listed` nodes in every peers list, the first `running` of them
    /// started (with `env` too), each seeing the others that run as up.
    async fn start(upstream: &FakeUpstream, listed: usize, running: usize, env: &[(&'static str, String)]) -> Fleet {
        let mut ports: Vec<u16> = Vec::new();
        while ports.len() < listed {
            let port = free_port();
            if !ports.contains(&port) {
                ports.push(port);
            }
        }
        let urls: Vec<String> = ports.iter().map(|port| format!("http://127.0.0.1:{port}")).collect();
        let peers = serde_json::to_string(&urls).expect("peers as JSON");
        let dir = tempfile::tempdir().expect("temp dir");
        let index = upstream.index_url();
        let mut nodes = Vec::new();
        for (n, url) in urls.iter().enumerate() {
            if n >= running {
                nodes.push(None);
                continue;
            }
            let cache = dir.path().join(format!("node{n}"));
            std::fs::create_dir_all(&cache).expect("cache dir");
            let mut settings = vec![
                ("NUCACHE_FLEET__NODE", url.clone()),
                ("NUCACHE_FLEET__PEERS", peers.clone()),
                ("NUCACHE_FLEET__KEY", KEY.to_string()),
                ("NUCACHE_FLEET__HEALTH_INTERVAL", "100ms".to_string()),
                ("NUCACHE_FLEET__DOWN_AFTER", "2".to_string()),
            ];
            settings.extend(env.iter().cloned());
            let mut process = Launch {
                env: settings,
                ..Launch::new(&index, &cache)
            }
            .spawn_on(ports[n]);
            process.ready().await;
            nodes.push(Some(process));
        }
        let fleet = Fleet {
            _dir: dir,
            index,
            urls,
            nodes,
        };
        fleet.until_peers_seen().await;
        fleet
    }

    fn node(&self, n: usize) -> &Process {
        self.nodes[n].as_ref().expect("a running node")
    }

    fn running(&self) -> impl Iterator<Item = (usize, &Process)> {
        self.nodes
            .iter()
            .enumerate()
            .filter_map(|(n, node)| Some((n, node.as_ref()?)))
    }

    /// Which listed node owns `Big.N`'s package file with every node up.
    fn owner_among(&self, n: usize, nodes: &[usize]) -> usize {
        let key = nucache::cache_key(&self.index, &local_of(n));
        let names: Vec<&str> = nodes.iter().map(|&i| self.urls[i].as_str()).collect();
        let owner = nucache::fleet_owner(&key, &names).expect("an owner");
        self.urls.iter().position(|url| *url == owner).expect("a listed owner")
    }

    /// A package (of `count`) that `owner` owns among every listed node.
    fn package_owned_by(&self, owner: usize, count: usize) -> usize {
        let all: Vec<usize> = (0..self.urls.len()).collect();
        (0..count)
            .find(|&n| self.owner_among(n, &all) == owner)
            .expect("some package owned by that node")
    }

    /// Waits until every running node's `/health` says every other running
    /// node is up.
    async fn until_peers_seen(&self) {
        for (n, node) in self.running() {
            let others: Vec<&String> = self
                .running()
                .filter(|(m, _)| *m != n)
                .map(|(m, _)| &self.urls[m])
                .collect();
            poll::until_true("the running peers are seen up", async || {
                let health = node.get("/health").await.json();
                let peers = health["fleet"]["peers"].as_array().cloned().unwrap_or_default();
                others.iter().all(|url| {
                    peers
                        .iter()
                        .any(|p| p["url"].as_str() == Some(url.as_str()) && p["up"] == true)
                })
            })
            .await;
        }
    }

    async fn metrics(&self, n: usize) -> Scrape {
        scrape_url(&self.node(n).url("/metrics"), &[]).await
    }
}

fn forwards(scrape: &Scrape, outcome: &str) -> f64 {
    scrape.value("nucache_fleet_forwards_total", &[("outcome", outcome)])
}

/// A GET whose body bytes are counted into `received` as they arrive.
async fn streamed(url: String, received: Arc<AtomicU64>) -> Result<Vec<u8>, String> {
    let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
    let uri = url.parse().map_err(|e| format!("{e}"))?;
    let response = tokio::time::timeout(Duration::from_secs(30), client.get(uri))
        .await
        .map_err(|_| "no answer within 30 s".to_string())?
        .map_err(|e| e.to_string())?;
    if response.status() != StatusCode::OK {
        return Err(format!("answered {}", response.status()));
    }
    let mut body = response.into_body();
    let mut data = Vec::new();
    loop {
        let frame = tokio::time::timeout(Duration::from_secs(30), body.frame())
            .await
            .map_err(|_| "body stalled for 30 s".to_string())?;
        let Some(frame) = frame else { return Ok(data) };
        let frame = frame.map_err(|e| format!("body broken off after {} bytes: {e}", data.len()))?;
        if let Some(chunk) = frame.data_ref() {
            data.extend_from_slice(chunk);
            received.fetch_add(chunk.len() as u64, Ordering::SeqCst);
        }
    }
}

/// Eight clients on each of the first three nodes ask for `Big.0` (of
/// `size` bytes) at once: every body is the package, and the upstream
/// served it once for the fleet. The package's SHA-512.
async fn eight_clients_per_node_get_one_download(fleet: &Fleet, upstream: &FakeUpstream, size: usize) -> String {
    let clients: Vec<_> = (0..24)
        .map(|c| {
            let url = fleet.node(c % 3).url(&path_of(0));
            tokio::spawn(async move { common::nucache::get(&url).await })
        })
        .collect();
    let expected = sha512(&bytes_of(0, size));
    for client in clients {
        let reply = client.await.expect("client task");
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
        assert_eq!(reply.body_error, None);
        assert_eq!(sha512(&reply.body), expected, "a body that is not the package");
    }
    assert_eq!(downloads(upstream, 0), 1, "one upstream download for the fleet");
    expected
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_with_eight_clients_each_download_a_cold_package_once() {
    const SIZE: usize = 256 * KIB;
    let upstream = FakeUpstream::start_with(corpus(1, SIZE)).await;
    // ~160 ms of body: the 24 requests overlap the download.
    upstream.set_body_chunking(16 * KIB, Duration::from_millis(10));
    let fleet = Fleet::start(&upstream, 3, 3, &[]).await;
    eight_clients_per_node_get_one_download(&fleet, &upstream, SIZE).await;
    let owner = fleet.owner_among(0, &[0, 1, 2]);
    for n in (0..3).filter(|&n| n != owner) {
        let scrape = fleet.metrics(n).await;
        let used = forwards(&scrape, "hit") + forwards(&scrape, "miss");
        assert_eq!(used, 1.0, "node {n} asked its owner once");
        assert_eq!(forwards(&scrape, "fallback"), 0.0, "node {n}");
        let bytes = scrape.value("nucache_fleet_forwarded_bytes_total", &[]);
        assert_eq!(bytes, SIZE as f64, "node {n}");
    }
    let served = fleet
        .metrics(owner)
        .await
        .value("nucache_fleet_served_to_peers_total", &[]);
    assert_eq!(served, 2.0, "the owner served each other node once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_owner_killed_mid_download_leaves_whole_packages_on_the_other_nodes() {
    const SIZE: usize = 2048 * KIB;
    let upstream = FakeUpstream::start_with(corpus(8, SIZE)).await;
    // ~1.3 s per download: the owner dies well inside it.
    upstream.set_body_chunking(32 * KIB, Duration::from_millis(20));
    let mut fleet = Fleet::start(&upstream, 3, 3, &[]).await;
    let owner = fleet.owner_among(0, &[0, 1, 2]);
    let received: Vec<Arc<AtomicU64>> = (0..16).map(|_| Arc::default()).collect();
    let others: Vec<usize> = (0..3).filter(|&n| n != owner).collect();
    let clients: Vec<_> = received
        .iter()
        .enumerate()
        .map(|(c, counter)| {
            let url = fleet.node(others[c % 2]).url(&path_of(0));
            tokio::spawn(streamed(url, counter.clone()))
        })
        .collect();
    poll::until_true("every client has its first bytes", async || {
        received.iter().all(|r| r.load(Ordering::SeqCst) > 0)
    })
    .await;
    fleet.nodes[owner].as_mut().expect("the owner runs").kill();
    let at_kill: Vec<u64> = received.iter().map(|r| r.load(Ordering::SeqCst)).collect();
    assert!(
        at_kill.iter().all(|&n| n < SIZE as u64),
        "the owner was killed mid-download: {at_kill:?}"
    );
    let expected = sha512(&bytes_of(0, SIZE));
    for client in clients {
        let body = client.await.expect("client task").expect("a whole answer");
        assert_eq!(body.len(), SIZE);
        assert_eq!(sha512(&body), expected, "a body that is not the package");
    }
    for &n in &others {
        let scrape = fleet.metrics(n).await;
        assert_eq!(forwards(&scrape, "error"), 1.0, "node {n}: its forward broke off once");
        // Committed whole: the next answer is a hit of the same bytes.
        let hit = fleet.node(n).until_hit(&path_of(0)).await;
        assert_eq!(sha512(&hit.body), expected, "node {n}'s cached copy");
    }
    // The owner's download and each other node's rest of it, at most.
    assert!(downloads(&upstream, 0) <= 3, "{} downloads", downloads(&upstream, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listed_peer_that_is_not_running_leaves_its_keys_to_the_next_owner() {
    const SIZE: usize = 64 * KIB;
    let upstream = FakeUpstream::start_with(corpus(32, SIZE)).await;
    // Node 2 is in every list but never starts.
    let fleet = Fleet::start(&upstream, 3, 2, &[]).await;
    let n = fleet.package_owned_by(2, 32);
    let health = fleet.node(0).get("/health").await.json();
    let listed = health["fleet"]["peers"].as_array().cloned().unwrap_or_default();
    let absent = listed
        .iter()
        .find(|p| p["url"].as_str() == Some(fleet.urls[2].as_str()));
    assert_eq!(
        absent.map(|p| p["up"].clone()),
        Some(serde_json::Value::Bool(false)),
        "{health}"
    );
    let clients: Vec<_> = (0..8)
        .map(|c| {
            let url = fleet.node(c % 2).url(&path_of(n));
            tokio::spawn(async move { common::nucache::get(&url).await })
        })
        .collect();
    for client in clients {
        let reply = client.await.expect("client task");
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
        assert_eq!(reply.body, bytes_of(n, SIZE));
    }
    assert_eq!(downloads(&upstream, n), 1, "the next owner downloaded it, once");
    for node in 0..2 {
        let scrape = fleet.metrics(node).await;
        assert_eq!(
            forwards(&scrape, "fallback"),
            0.0,
            "node {node} never asked the absent peer"
        );
        let up = |peer: usize| scrape.value("nucache_fleet_peer_up", &[("peer", fleet.urls[peer].as_str())]);
        assert_eq!((up(1 - node), up(2)), (1.0, 0.0), "node {node}'s gauges");
    }
    let page = fleet.node(0).get_with("/", &[("accept", "text/html")]).await.text();
    let table = page.split("<table id=\"fleet\">").nth(1).unwrap_or_default();
    assert!(table.contains(&fleet.urls[2]) && table.contains("down"), "{page}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_fleet_key_is_refused_and_the_right_one_reads_a_closed_feed() {
    let upstream = FakeUpstream::start_with(corpus(1, 32 * KIB)).await;
    let read_key = nucache::config::digest_hex("read-key");
    let closed = [
        ("NUCACHE_AUTH__READ", "required".to_string()),
        ("NUCACHE_AUTH__READ_KEYS", format!("[\"{read_key}\"]")),
    ];
    let fleet = Fleet::start(&upstream, 2, 1, &closed).await;
    let node = fleet.node(0);
    let url = node.url(&path_of(0));
    let send = async |headers: &[(&str, &str)]| common::nucache::send(Method::GET, &url, headers, Bytes::new()).await;

    let wrong = send(&[("x-nucache-fleet-key", "not-the-key")]).await;
    assert_eq!(wrong.status, StatusCode::FORBIDDEN);
    assert!(wrong.text().contains("not this fleet's key"), "{}", wrong.text());
    let log = node.log_with("status=403").await;
    assert!(!log.contains("not-the-key"), "the presented key was logged: {log}");

    // Anonymous callers of a closed feed see the peers' states, no address.
    let health = common::nucache::get(&node.url("/health")).await.json();
    assert_eq!(health["fleet"]["peers"][0]["up"], false, "{health}");
    assert!(!health.to_string().contains("127.0.0.1"), "{health}");

    let hop_alone = send(&[("x-nucache-fleet-hop", fleet.urls[1].as_str())]).await;
    assert_eq!(
        hop_alone.status,
        StatusCode::UNAUTHORIZED,
        "the hop header proves nothing"
    );

    let peer = send(&[
        ("x-nucache-fleet-key", KEY),
        ("x-nucache-fleet-hop", fleet.urls[1].as_str()),
    ])
    .await;
    assert_eq!(peer.status, StatusCode::OK, "{}", peer.text());
    assert_eq!(peer.body, bytes_of(0, 32 * KIB));
    node.log_with("fleet-peer").await;
    let scrape = scrape_url(&node.url("/metrics"), &[("x-nuget-apikey", "read-key")]).await;
    assert_eq!(scrape.value("nucache_fleet_refused_peers_total", &[]), 1.0);
    assert_eq!(scrape.value("nucache_fleet_served_to_peers_total", &[]), 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forwarded_request_is_never_forwarded_again() {
    const SIZE: usize = 32 * KIB;
    let upstream = FakeUpstream::start_with(corpus(32, SIZE)).await;
    let fleet = Fleet::start(&upstream, 3, 3, &[]).await;
    let (n, m) = {
        let mut owned = (0..32).filter(|&n| fleet.owner_among(n, &[0, 1, 2]) == 2);
        (owned.next().expect("a package"), owned.next().expect("another"))
    };
    let served = async || fleet.metrics(2).await.value("nucache_fleet_served_to_peers_total", &[]);

    // As a peer would ask node 0 (the key and a hop): node 0 downloads it
    // itself, though node 2 owns it.
    let hop = [
        ("x-nucache-fleet-key", KEY),
        ("x-nucache-fleet-hop", fleet.urls[1].as_str()),
    ];
    let reply = fleet.node(0).get_with(&path_of(n), &hop).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    assert_eq!(reply.body, bytes_of(n, SIZE));
    assert_eq!(served().await, 0.0, "node 0 forwarded a peer's request");
    assert_eq!(downloads(&upstream, n), 1);
    let scrape = fleet.metrics(0).await;
    assert_eq!(scrape.sum("nucache_fleet_forwards_total", &[]), 0.0);

    // The hop header without the key is a client's request: forwarded.
    let hop_alone = [("x-nucache-fleet-hop", fleet.urls[1].as_str())];
    let reply = fleet.node(0).get_with(&path_of(m), &hop_alone).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    assert_eq!(served().await, 1.0, "node 0 asked the owner");
    assert_eq!(downloads(&upstream, m), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_owner_costs_a_duplicate_download_not_an_error() {
    const SIZE: usize = 32 * KIB;
    let upstream = FakeUpstream::start_with(corpus(16, SIZE)).await;
    let env = [("NUCACHE_FLEET__FORWARD_TIMEOUT", "300ms".to_string())];
    let fleet = Fleet::start(&upstream, 2, 2, &env).await;
    let n = fleet.package_owned_by(1, 16);
    // The owner still holds its socket but answers nothing (SIGSTOP).
    let signal = |name: &str| {
        let pid = fleet.node(1).pid().to_string();
        let status = std::process::Command::new("kill").args([name, &pid]).status();
        assert!(status.is_ok_and(|s| s.success()), "kill {name}");
    };
    signal("-STOP");
    let started = std::time::Instant::now();
    let reply = fleet.node(0).get(&path_of(n)).await;
    let took = started.elapsed();
    // Counted while the owner still sleeps: once woken, it may yet serve
    // the request it had been sent (its duplicate download).
    let downloaded = downloads(&upstream, n);
    signal("-CONT");
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    assert_eq!(reply.body, bytes_of(n, SIZE));
    assert!(took < Duration::from_secs(3), "waited {took:?} for a stalled owner");
    assert_eq!(downloaded, 1, "node 0 downloaded it itself");
    let scrape = fleet.metrics(0).await;
    assert_eq!(forwards(&scrape, "fallback"), 1.0);
}

/// The whole fleet at once: peers and a shared SeaweedFS bucket. Three
/// nodes with eight clients each download a cold package from the upstream
/// once; the package lands in the bucket once; a fourth node, not a peer,
/// started empty while the upstream is down, serves it from the bucket.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_shared_store_too_the_fleet_downloads_once_and_a_node_started_in_an_outage_serves_it() {
    use common::seaweed::Seaweed;
    use common::upstream::Fault;
    let Some(s3) = Seaweed::start("with_the_shared_store_too_the_fleet_downloads_once").await else {
        return;
    };
    const SIZE: usize = 256 * KIB;
    let upstream = FakeUpstream::start_with(corpus(1, SIZE)).await;
    upstream.set_body_chunking(16 * KIB, Duration::from_millis(10));
    let fleet = Fleet::start(&upstream, 3, 3, &s3.env()).await;
    let expected = eight_clients_per_node_get_one_download(&fleet, &upstream, SIZE).await;
    let stored = || async {
        let names = s3.names("packages/").await;
        names.iter().filter(|name| name.ends_with("/big.0.1.0.0.nupkg")).count()
    };
    poll::until_true("the package in the bucket", async || stored().await == 1).await;

    upstream.set_fault(Fault::Refuse);
    let cache = tempfile::tempdir().expect("temp dir");
    let mut late = Launch {
        env: s3.env(),
        ..Launch::new(&fleet.index, cache.path())
    }
    .spawn_on(free_port());
    late.ready().await;
    let reply = late.get(&path_of(0)).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    assert_eq!(sha512(&reply.body), expected, "the bucket's copy, whole");
    assert_eq!(downloads(&upstream, 0), 1, "still the owner's download only");
    assert_eq!(stored().await, 1, "one object for the key");
}
