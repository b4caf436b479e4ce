//! Verified reads: a blob that rots on disk is never served whole. Every
//! read is checked against the checksum recorded at commit; a mismatch
//! breaks the transfer off before its last byte and drops the entry, and the
//! background scrub finds rot before any client asks. A blob that cannot be
//! read at all is fetched from the upstream instead of failing.

mod common;

use std::time::{Duration, Instant};

use common::nucache::Nucache;
use common::poll;
use common::upstream::FakeUpstream;
use http::{Method, StatusCode};

/// Larger than what nucache keeps in memory (4 MiB): read from its file on
/// every hit.
const KEY: &str = "flatcontainer/big.one/1.0.0/big.one.1.0.0.nupkg";
const SIZE: usize = 5 * 1024 * 1024 + 12345;

fn path() -> String {
    format!("/v3/{KEY}")
}

/// The fake upstream, with the big package.
async fn upstream() -> FakeUpstream {
    let upstream = FakeUpstream::start().await;
    let bytes: Vec<u8> = (0..SIZE as u64)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    upstream.add_package("Big.One", "1.0.0", bytes);
    upstream
}

/// HEADs the package until it is served from the cache.
async fn until_a_hit(nucache: &Nucache) {
    poll::until_hit(Method::HEAD, &nucache.url(&path())).await;
}

/// Caches the package, then flips 64 bytes in the middle of its file.
async fn cached_then_rotten(nucache: &Nucache) -> Vec<u8> {
    let original = nucache.get(&path()).await;
    assert_eq!(original.status, StatusCode::OK);
    until_a_hit(nucache).await;
    let file = common::content_file(&nucache.dir, &nucache.upstream, KEY).expect("the package's content file");
    let mut bytes = std::fs::read(&file).expect("read");
    let middle = bytes.len() / 2;
    bytes[middle..middle + 64].iter_mut().for_each(|b| *b ^= 0x5a);
    std::fs::write(&file, &bytes).expect("write");
    original.body.to_vec()
}

#[tokio::test]
async fn a_blob_corrupted_on_disk_breaks_off_and_is_fetched_again() {
    let upstream = upstream().await;
    let nucache = Nucache::start(&upstream.index_url(), |_| {}).await;
    let good = cached_then_rotten(&nucache).await;

    let broken = nucache.get(&path()).await;
    assert_eq!(broken.status, StatusCode::OK, "the head went out before the check");
    assert!(broken.body_error.is_some(), "the transfer must break off");
    assert!(broken.body.len() < good.len(), "never the whole (corrupt) file");

    let refetched = nucache.get(&path()).await;
    assert_eq!(refetched.x_cache(), Some("MISS"), "the corrupt entry was dropped");
    assert_eq!(refetched.body, good);
    assert!(refetched.body_error.is_none());
    assert_eq!(upstream.count("big.one.1.0.0.nupkg"), 2);
    until_a_hit(&nucache).await;
    assert_eq!(nucache.get(&path()).await.body, good, "good bytes from then on");
}

#[tokio::test]
async fn with_verify_reads_off_the_stored_bytes_are_sent_as_they_are() {
    let upstream = upstream().await;
    let nucache = Nucache::start(&upstream.index_url(), |c| c.cache.verify_reads = false).await;
    let good = cached_then_rotten(&nucache).await;
    let served = nucache.get(&path()).await;
    assert_eq!(served.x_cache(), Some("HIT"));
    assert!(served.body_error.is_none());
    assert_eq!(served.body.len(), good.len());
    assert_ne!(served.body, good, "unchecked: the rot goes out");
}

#[tokio::test]
async fn the_scrub_finds_rot_before_a_client_asks() {
    let upstream = upstream().await;
    let nucache = Nucache::start(&upstream.index_url(), |c| {
        c.cache.scrub_interval = Duration::from_millis(100);
    })
    .await;
    let good = cached_then_rotten(&nucache).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while common::content_file(&nucache.dir, &nucache.upstream, KEY).is_some() {
        assert!(Instant::now() < deadline, "the scrub never dropped the rotten file");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(upstream.count("big.one.1.0.0.nupkg"), 1, "no client asked meanwhile");
    let refetched = nucache.get(&path()).await;
    assert_eq!(refetched.x_cache(), Some("MISS"));
    assert_eq!(refetched.body, good);
}

#[tokio::test]
async fn a_blob_that_cannot_be_read_is_fetched_from_the_upstream() {
    let upstream = upstream().await;
    let nucache = Nucache::start(&upstream.index_url(), |_| {}).await;
    let good = nucache.get(&path()).await.body;
    until_a_hit(&nucache).await;
    // A symlink loop in place of the file: opening it fails with ELOOP, an
    // I/O error that is not "not found" (root ignores permission bits).
    let file = common::content_file(&nucache.dir, &nucache.upstream, KEY).expect("content file");
    std::fs::remove_file(&file).expect("remove");
    std::os::unix::fs::symlink(&file, &file).expect("symlink loop");

    let reply = nucache.get(&path()).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    assert_eq!(reply.body, good);
    assert!(reply.body_error.is_none());
    assert_eq!(upstream.count("big.one.1.0.0.nupkg"), 2);
    let health = nucache.get("/health").await.json();
    assert_eq!(
        health["storage"]["writable"], false,
        "the failing disk is reported: {health}"
    );
}
