//! A fleet's shared store (`[shared]`) against a real S3 server
//! (SeaweedFS, see `common::seaweed`), with nucache nodes that share one
//! bucket and no peers, in front of the fake upstream (which counts its
//! requests): what one node fetched, another serves without the upstream;
//! two nodes racing on a key leave one object; a stopped store costs
//! nothing but the sharing; a flipped byte in the bucket is never served
//! whole; a node started empty while the upstream is down serves what the
//! store has; a node killed mid-download leaves no object behind.

mod common;

use std::time::Duration;

use common::metrics::{scrape, scrape_until};
use common::nucache::{Nucache, Reply};
use common::poll::until_true;
use common::seaweed::Seaweed;
use common::upstream::{fake_nupkg, FakeUpstream, Fault};
use http::StatusCode;
use sha2::{Digest, Sha512};

const CORE: &str = "/v3/flatcontainer/fake.core/1.1.0/fake.core.1.1.0.nupkg";
const DEP: &str = "/v3/flatcontainer/fake.dep/1.0.1/fake.dep.1.0.1.nupkg";
const VERSIONS: &str = "/v3/flatcontainer/fake.core/index.json";
/// Larger than one PUT: shared as a multipart upload.
const BIG: &str = "/v3/flatcontainer/fake.big/1.0.0/fake.big.1.0.0.nupkg";
const BIG_SIZE: usize = 12 * 1024 * 1024;

/// The object the store keeps `path` (below `/v3/`) of `upstream` as, in
/// `folder` (`packages` or `documents`).
fn object(upstream: &FakeUpstream, folder: &str, path: &str) -> String {
    let local = path.strip_prefix("/v3/").expect("a /v3/ path");
    let key = nucache::cache_key(&upstream.index_url(), local);
    let (namespace, local) = key[1..].split_once('/').expect("@namespace/local");
    format!("{folder}/{namespace}/{local}")
}

fn sha512(bytes: &[u8]) -> String {
    hex::encode(Sha512::digest(bytes))
}

async fn upstream_with_big_package() -> FakeUpstream {
    let upstream = FakeUpstream::start().await;
    let mut big = fake_nupkg("Fake.Big", "1.0.0");
    big.resize(BIG_SIZE, 7);
    upstream.add_package("Fake.Big", "1.0.0", big);
    upstream
}

async fn node(upstream: &FakeUpstream, s3: &Seaweed) -> Nucache {
    Nucache::start(&upstream.index_url(), |config| s3.configure(config)).await
}

/// A node that answers admin calls with `key`.
async fn admin_node(upstream: &FakeUpstream, s3: &Seaweed, key: &str) -> Nucache {
    Nucache::start(&upstream.index_url(), |config| {
        s3.configure(config);
        config.admin.keys = vec![nucache::config::digest_hex(key)];
    })
    .await
}

/// A node that fetched `CORE` and shared it.
async fn node_that_shared_core(upstream: &FakeUpstream, s3: &Seaweed) -> Nucache {
    let a = node(upstream, s3).await;
    a.until_hit(CORE).await;
    until_stored(s3, &[object(upstream, "packages", CORE)]).await;
    a
}

/// Waits until every object of `names` is in the bucket.
async fn until_stored(s3: &Seaweed, names: &[String]) {
    until_true("the objects are in the shared store", async || {
        let listed = s3.names("").await;
        names.iter().all(|name| listed.contains(name))
    })
    .await;
}

fn whole(reply: &Reply, expected: &[u8], what: &str) {
    assert_eq!(reply.status, StatusCode::OK, "{what}: {}", reply.text());
    assert_eq!(reply.body_error, None, "{what}");
    assert_eq!(sha512(&reply.body), sha512(expected), "{what}: SHA-512");
}

fn package(upstream: &FakeUpstream, path: &str) -> Vec<u8> {
    let file = path.rsplit('/').next().expect("a file name");
    let (id, version) = match file {
        "fake.core.1.1.0.nupkg" => ("Fake.Core", "1.1.0"),
        "fake.dep.1.0.1.nupkg" => ("Fake.Dep", "1.0.1"),
        "fake.big.1.0.0.nupkg" => ("Fake.Big", "1.0.0"),
        other => panic!("no such test package: {other}"),
    };
    upstream.nupkg_bytes(id, version).expect("the upstream has it")
}

#[tokio::test]
async fn what_one_node_fetched_another_serves_without_the_upstream() {
    let Some(s3) = Seaweed::start("what_one_node_fetched_another_serves_without_the_upstream").await else {
        return;
    };
    let upstream = upstream_with_big_package().await;
    let a = node(&upstream, &s3).await;
    for path in ["/v3/index.json", VERSIONS, CORE, DEP, BIG] {
        assert_eq!(a.get(path).await.status, StatusCode::OK, "{path} through A");
    }
    let packages: Vec<String> = [CORE, DEP, BIG]
        .iter()
        .map(|p| object(&upstream, "packages", p))
        .collect();
    until_stored(&s3, &packages).await;
    let stored = s3.get(&packages[0]).await.expect("the object");
    assert!(stored.starts_with(b"NUSHARE1"), "the record first");
    assert!(
        stored.ends_with(&package(&upstream, CORE)),
        "then the package as the upstream sent it"
    );

    upstream.reset_log();
    let b = node(&upstream, &s3).await;
    for path in [CORE, DEP, BIG] {
        whole(&b.get(path).await, &package(&upstream, path), path);
    }
    assert_eq!(upstream.count(".nupkg"), 0, "B asked the upstream for no package");
    let scraped = scrape(&b).await;
    let hits = scraped.value("nucache_shared_reads_total", &[("outcome", "hit")]);
    assert_eq!(hits, 3.0, "three packages read from the store");
    let read = scraped.value("nucache_shared_bytes_total", &[("direction", "read")]);
    assert!(read > BIG_SIZE as f64, "{read} bytes read");
    // B keeps them: the next request is a local hit.
    assert_eq!(b.until_hit(BIG).await.body.len(), BIG_SIZE);
}

#[tokio::test]
async fn two_nodes_racing_on_one_cold_key_leave_one_object_and_whole_packages() {
    let Some(s3) = Seaweed::start("two_nodes_racing_on_one_cold_key_leave_one_object_and_whole_packages").await else {
        return;
    };
    let upstream = FakeUpstream::start().await;
    let (a, b) = (node(&upstream, &s3).await, node(&upstream, &s3).await);
    a.until_ready().await;
    b.until_ready().await;
    // ~0.5 s per download: both nodes are fetching before either shares.
    upstream.set_body_chunking(1024, Duration::from_millis(25));
    let clients = (0..4).flat_map(|_| [a.get(CORE), b.get(CORE)]);
    let replies = futures_util::future::join_all(clients).await;
    let expected = package(&upstream, CORE);
    for reply in &replies {
        whole(reply, &expected, "a racing client");
    }
    assert_eq!(upstream.count("fake.core.1.1.0.nupkg"), 2, "each node fetched it once");
    let writes = async |node: &Nucache, outcome: &str| {
        scrape(node)
            .await
            .value("nucache_shared_writes_total", &[("outcome", outcome)])
    };
    // Documents are overwritten (never `exists`): one `exists` is the
    // package's loser, and with one object there was one creator.
    until_true("the second writer found the package there", async || {
        writes(&a, "exists").await + writes(&b, "exists").await == 1.0
    })
    .await;
    let failed = writes(&a, "error").await + writes(&b, "error").await;
    assert_eq!(failed, 0.0, "no write failed");
    let name = object(&upstream, "packages", CORE);
    assert_eq!(s3.names("packages").await, vec![name.clone()], "one object");
    let stored = s3.get(&name).await.expect("the object");
    assert!(stored.ends_with(&expected));
}

#[tokio::test]
async fn with_the_store_stopped_a_node_serves_from_its_disk_and_the_upstream_and_says_degraded() {
    let Some(mut s3) = Seaweed::start("with_the_store_stopped_a_node_serves_from_its_disk_and_the_upstream").await
    else {
        return;
    };
    let upstream = FakeUpstream::start().await;
    let a = node_that_shared_core(&upstream, &s3).await;
    s3.stop();

    whole(&a.until_hit(CORE).await, &package(&upstream, CORE), "cached");
    let misses: Vec<String> = (0..6)
        .map(|minor| format!("/v3/flatcontainer/fake.many/1.{minor}.0/fake.many.1.{minor}.0.nupkg"))
        .collect();
    for path in &misses {
        let reply = a.get(path).await;
        let version = path.split('/').nth(4).expect("a version");
        whole(&reply, &fake_nupkg("Fake.Many", version), path);
        assert_eq!(reply.x_cache(), Some("MISS"));
    }
    assert_eq!(
        upstream.count("fake.many."),
        misses.len(),
        "every miss from the upstream"
    );

    let ready = a.get("/ready").await;
    assert_eq!(ready.status, StatusCode::OK, "{}", ready.text());
    assert_eq!(ready.json()["status"], "degraded", "{}", ready.text());
    assert!(ready.text().contains("shared store"), "{}", ready.text());
    let health = a.get("/health").await.json();
    assert_eq!(
        (&health["status"], &health["shared"]["state"]),
        (&"degraded".into(), &"open".into())
    );
    // Each miss tried the store once at most (no retries), and once the
    // breaker opened (3 failed calls) the store was not asked at all.
    let scraped = scrape(&a).await;
    let reads = |outcome| scraped.value("nucache_shared_reads_total", &[("outcome", outcome)]);
    assert_eq!(
        reads("error") + reads("skipped"),
        misses.len() as f64,
        "one read per miss"
    );
    assert!(
        reads("error") <= 3.0,
        "{} failed reads: the breaker opened at 3 failures",
        reads("error")
    );
    assert!(reads("skipped") >= 3.0);
    assert!(scraped.value("nucache_shared_writes_total", &[("outcome", "skipped")]) >= 1.0);
    assert_eq!(scraped.value("nucache_shared_breaker_open", &[]), 1.0);
    let page = a
        .request(http::Method::GET, "/", &[("accept", "text/html")])
        .await
        .text();
    assert!(page.contains("Shared store") && page.contains("unreachable"), "{page}");
}

#[tokio::test]
async fn a_flipped_byte_in_a_stored_object_is_never_served_whole_and_is_fetched_again() {
    let Some(s3) = Seaweed::start("a_flipped_byte_in_a_stored_object_is_never_served_whole").await else {
        return;
    };
    let upstream = FakeUpstream::start().await;
    let _a = node_that_shared_core(&upstream, &s3).await;
    let name = object(&upstream, "packages", CORE);
    let mut rotten = s3.get(&name).await.expect("the object").to_vec();
    let at = rotten.len() - 100;
    rotten[at] ^= 0x01;
    s3.put(&name, rotten).await;

    let b = node(&upstream, &s3).await;
    let expected = package(&upstream, CORE);
    let served = b.get(CORE).await;
    assert!(
        served.body_error.is_some() && served.body.len() < expected.len(),
        "never whole: {} of {} bytes, {:?}",
        served.body.len(),
        expected.len(),
        served.body_error
    );
    assert_eq!(upstream.count("fake.core.1.1.0.nupkg"), 1, "that came from the store");
    scrape_until(&b, "the corrupt object counted", |s| {
        s.value("nucache_shared_reads_total", &[("outcome", "corrupt")]) == 1.0
    })
    .await;

    whole(&b.get(CORE).await, &expected, "fetched again");
    assert_eq!(upstream.count("fake.core.1.1.0.nupkg"), 2, "from the upstream");
    // B shares its good copy in place of the deleted one.
    until_true("the object is whole again", async || {
        s3.get(&name).await.is_some_and(|object| object.ends_with(&expected))
    })
    .await;
}

#[tokio::test]
async fn a_node_started_empty_while_the_upstream_is_down_serves_what_the_store_has() {
    let Some(s3) = Seaweed::start("a_node_started_empty_while_the_upstream_is_down").await else {
        return;
    };
    let upstream = FakeUpstream::start().await;
    let a = node(&upstream, &s3).await;
    let listed = a.until_hit(VERSIONS).await.json();
    a.until_hit(CORE).await;
    let shared = [
        object(&upstream, "documents", "/v3/index.json"),
        object(&upstream, "documents", VERSIONS),
        object(&upstream, "packages", CORE),
    ];
    until_stored(&s3, &shared).await;

    upstream.set_fault(Fault::Refuse);
    let c = node(&upstream, &s3).await;
    c.until_ready().await;
    let versions = c.get(VERSIONS).await;
    assert_eq!(
        (versions.status, versions.x_cache()),
        (StatusCode::OK, Some("STALE")),
        "{}",
        versions.text()
    );
    assert_eq!(versions.json(), listed);
    whole(
        &c.get(CORE).await,
        &package(&upstream, CORE),
        "a package the fleet fetched",
    );
    let never_fetched = c.get(DEP).await;
    assert!(never_fetched.status.is_server_error(), "{}", never_fetched.status);
    // Kept as already expired: asked of the upstream again, served stale.
    assert_eq!(c.get(VERSIONS).await.x_cache(), Some("STALE"));
    assert_eq!(upstream.count(".nupkg"), 1, "A's download only");
}

#[tokio::test]
async fn a_node_killed_mid_download_leaves_no_object_in_the_store() {
    use common::process::Launch;
    let Some(s3) = Seaweed::start("a_node_killed_mid_download_leaves_no_object_in_the_store").await else {
        return;
    };
    let upstream = upstream_with_big_package().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let cache = dir.path().join("cache");
    let index = upstream.index_url();
    let launch = Launch {
        env: s3.env(),
        ..Launch::new(&index, &cache)
    };
    let mut process = launch.spawn();
    process.ready().await;
    until_true("the node's service index is loaded", async || {
        process.get("/ready").await.status == StatusCode::OK
    })
    .await;
    // 12 MiB at 256 KiB per 100 ms: about 5 s.
    upstream.set_body_chunking(256 * 1024, Duration::from_millis(100));
    let url = process.url(BIG);
    let download =
        tokio::spawn(async move { common::nucache::try_send(http::Method::GET, &url, &[], Default::default()).await });
    until_true("the download is under way", async || upstream.in_flight() > 0).await;
    process.kill();
    let _ = download.await;
    let name = object(&upstream, "packages", BIG);
    assert!(
        !s3.names("").await.contains(&name),
        "no object for a download that never ended"
    );

    // The same node restarted finishes it, and then it is shared (the
    // listing above could see it).
    upstream.set_body_chunking(usize::MAX, Duration::ZERO);
    let mut again = launch.spawn();
    again.ready().await;
    let reply = again.get(BIG).await;
    whole(&reply, &package(&upstream, BIG), "after the restart");
    until_stored(&s3, &[name]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_reads_a_package_the_node_lacks_from_the_store() {
    use common::airgap::{export_options, ADMIN_KEY};
    let Some(s3) = Seaweed::start("export_reads_a_package_the_node_lacks_from_the_store").await else {
        return;
    };
    let upstream = FakeUpstream::start().await;
    let _a = node_that_shared_core(&upstream, &s3).await;
    upstream.reset_log();
    let b = admin_node(&upstream, &s3, ADMIN_KEY).await;
    let work = tempfile::tempdir().expect("temp dir");
    let wanted = work.path().join("wanted.txt");
    std::fs::write(&wanted, "Fake.Core [1.1.0]\n").expect("input file");
    let bundle = work.path().join("bundle");
    let options = nucache::airgap::ExportOptions {
        only: vec![wanted],
        ..export_options(&bundle, &b.url("/v3/index.json"), None)
    };
    let summary = nucache::airgap::export(options, &nucache::Config::default())
        .await
        .expect("export");
    assert_eq!(summary.packages, 1, "{summary}");
    let exported = std::fs::read(bundle.join("packages/fake.core/1.1.0/fake.core.1.1.0.nupkg")).expect("in the bundle");
    assert_eq!(sha512(&exported), sha512(&package(&upstream, CORE)));
    assert_eq!(upstream.count(".nupkg"), 0, "B read it from the shared store");
}

#[tokio::test]
async fn a_purge_removes_the_package_from_the_store_too() {
    let Some(s3) = Seaweed::start("a_purge_removes_the_package_from_the_store_too").await else {
        return;
    };
    let upstream = FakeUpstream::start().await;
    let a = admin_node(&upstream, &s3, "purge-key").await;
    a.until_hit(VERSIONS).await;
    a.until_hit(CORE).await;
    a.until_hit(DEP).await;
    let gone = [
        object(&upstream, "packages", CORE),
        object(&upstream, "documents", VERSIONS),
    ];
    let kept = object(&upstream, "packages", DEP);
    until_stored(&s3, &[gone[0].clone(), gone[1].clone(), kept.clone()]).await;

    let purged = a
        .request(
            http::Method::POST,
            "/admin/purge/Fake.Core/1.1.0",
            &[("x-nuget-apikey", "purge-key")],
        )
        .await;
    assert_eq!(purged.status, StatusCode::OK, "{}", purged.text());
    assert_eq!(purged.json()["shared"]["purged_objects"], 2, "{}", purged.text());
    let listed = s3.names("").await;
    assert!(gone.iter().all(|name| !listed.contains(name)), "{listed:?}");
    assert!(listed.contains(&kept), "another package stays: {listed:?}");
}
