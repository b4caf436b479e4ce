//! The disk cap: with `cache.max_size` far below the working set, the
//! cache stays under it (by `nucache_cache_size_bytes` and by the files on
//! disk); what goes is what was used least recently (a hit keeps an old
//! package, newer ones nobody asked for again go first); and eviction
//! during concurrent downloads and reads never breaks a response.

mod common;

use std::time::Duration;

use common::metrics::{scrape, scrape_until};
use common::nucache::Nucache;
use common::upstream::{fake_nupkg, FakeUpstream};
use futures_util::future::join_all;
use http::StatusCode;
use nucache::config::{ByteSize, MinFree};

const PACKAGES: usize = 40;
/// About a quarter of the 40 packages of 20-24 KiB.
const CAP: u64 = 256 * 1024;

fn id(i: usize) -> String {
    format!("Evict.P{i:02}")
}

fn path(i: usize) -> String {
    let lower = id(i).to_lowercase();
    format!("/v3/flatcontainer/{lower}/1.0.0/{lower}.1.0.0.nupkg")
}

/// An upstream with the 40 packages; their total size.
async fn upstream_with_packages() -> (FakeUpstream, u64) {
    let upstream = FakeUpstream::start().await;
    let mut total = 0;
    for i in 0..PACKAGES {
        let bytes = fake_nupkg(&id(i), "1.0.0");
        total += bytes.len() as u64;
        upstream.add_package(&id(i), "1.0.0", bytes);
    }
    (upstream, total)
}

fn capped(c: &mut nucache::Config) {
    c.cache.max_size = Some(ByteSize(CAP));
    // The test's file system decides nothing here.
    c.cache.min_free = MinFree::Bytes(ByteSize(0));
}

/// Bytes of content the cache's files on disk hold (without the record
/// each ends with).
fn bytes_on_disk(nucache: &Nucache) -> u64 {
    common::files_under(&nucache.dir.join("content"))
        .iter()
        .filter_map(|file| std::fs::read(file).ok())
        .map(|bytes| common::stored_content(&bytes).len() as u64)
        .sum()
}

#[tokio::test]
async fn under_a_cap_far_below_the_working_set_the_cache_stays_under_it() {
    let (upstream, working_set) = upstream_with_packages().await;
    let nucache = Nucache::start(&upstream.index_url(), capped).await;
    // Used in order: package 0 is the least recently used, 39 the most.
    for i in 0..PACKAGES {
        nucache.until_hit(&path(i)).await;
    }
    let scraped = scrape_until(&nucache, "the cache is back under its cap", |s| {
        s.value("nucache_cache_size_bytes", &[]) <= CAP as f64
    })
    .await;
    let reported = scraped.value("nucache_cache_size_bytes", &[]) as u64;
    let on_disk = bytes_on_disk(&nucache);
    assert!(on_disk <= CAP, "{on_disk} bytes of files on disk, cap {CAP}");
    assert_eq!(on_disk, reported, "the running total is what the files hold");
    let evictions = scraped.value("nucache_evictions_total", &[]);
    let evicted_bytes = scraped.value("nucache_evicted_bytes_total", &[]);
    assert!(evictions >= (PACKAGES - 11) as f64, "{evictions} evictions");
    assert!(
        evicted_bytes >= (working_set - CAP) as f64,
        "{evicted_bytes} bytes evicted"
    );
    println!(
        "eviction figures: cap {CAP} B, working set {working_set} B ({PACKAGES} packages), \
         after: {on_disk} B on disk = nucache_cache_size_bytes {reported}, {evictions} evictions, {evicted_bytes} B evicted"
    );

    // The five most recent are still cached; then the five least recent are gone.
    for i in PACKAGES - 5..PACKAGES {
        assert_eq!(nucache.get(&path(i)).await.x_cache(), Some("HIT"), "{}", id(i));
    }
    for i in 0..5 {
        let reply = nucache.get(&path(i)).await;
        assert_eq!(
            (reply.status, reply.x_cache()),
            (StatusCode::OK, Some("MISS")),
            "{}",
            id(i)
        );
        assert_eq!(reply.body, fake_nupkg(&id(i), "1.0.0"));
    }

    // A smaller cap at the next start is enforced at once.
    let dir = nucache.dir.clone();
    let temp = nucache.stop().await;
    let smaller = 64 * 1024;
    let restarted = Nucache::start_in(&upstream.index_url(), &dir, |c| {
        capped(c);
        c.cache.max_size = Some(ByteSize(smaller));
    })
    .await;
    scrape_until(&restarted, "the start-up run evicts", |s| {
        s.value("nucache_cache_size_bytes", &[]) <= smaller as f64
    })
    .await;
    assert!(bytes_on_disk(&restarted) <= smaller);
    restarted.stop().await;
    drop(temp);
}

/// The cache fills in the order of the packages; a hit then makes the
/// oldest package the most recently used, so eviction (which reads the
/// access times hits record, flushed into the index before it chooses)
/// must pass it over for newer packages nobody asked for again. An
/// evictor that goes by age (FIFO) evicts it first.
#[tokio::test]
async fn a_hit_keeps_an_old_package_while_newer_untouched_ones_are_evicted() {
    const BEFORE_THE_CAP: usize = 8;
    const IN_ALL: usize = 14;
    let (upstream, _) = upstream_with_packages().await;
    let nucache = Nucache::start(&upstream.index_url(), capped).await;
    for i in 0..BEFORE_THE_CAP {
        nucache.until_hit(&path(i)).await;
    }
    let nothing_evicted = scrape(&nucache).await.value("nucache_evictions_total", &[]);
    assert_eq!(
        nothing_evicted, 0.0,
        "the first {BEFORE_THE_CAP} packages fit under the cap"
    );
    let touched = nucache.get(&path(0)).await;
    assert_eq!(touched.x_cache(), Some("HIT"), "the oldest package is hit");
    // Past the cap: the evictor makes room, more than once.
    for i in BEFORE_THE_CAP..IN_ALL {
        nucache.until_hit(&path(i)).await;
    }
    let scraped = scrape_until(&nucache, "evicted back under the cap", |s| {
        s.value("nucache_evictions_total", &[]) >= 2.0 && s.value("nucache_cache_size_bytes", &[]) <= CAP as f64
    })
    .await;
    let evictions = scraped.value("nucache_evictions_total", &[]);
    let oldest = nucache.get(&path(0)).await;
    assert_eq!(
        (oldest.status, oldest.x_cache()),
        (StatusCode::OK, Some("HIT")),
        "the package hit last was evicted ({evictions} evictions)"
    );
    let untouched = nucache.get(&path(1)).await;
    assert_eq!(
        (untouched.status, untouched.x_cache()),
        (StatusCode::OK, Some("MISS")),
        "{} was stored after {} and never asked for again, yet it was kept ({evictions} evictions)",
        id(1),
        id(0)
    );
}

#[tokio::test]
async fn eviction_during_concurrent_downloads_and_reads_never_breaks_a_response() {
    let (upstream, _) = upstream_with_packages().await;
    // Slow bodies: downloads are in flight while the evictor runs.
    upstream.set_body_chunking(4096, Duration::from_millis(2));
    let nucache = Nucache::start(&upstream.index_url(), capped).await;
    let expected: Vec<Vec<u8>> = (0..PACKAGES).map(|i| fake_nupkg(&id(i), "1.0.0")).collect();
    let mut answered = 0;
    for round in 0..4 {
        // 40 requests at once, over every package in a shifted order, so
        // some are misses, some hits of objects about to be evicted.
        let order: Vec<usize> = (0..PACKAGES).map(|i| (i * 7 + round * 13) % PACKAGES).collect();
        let nucache = &nucache;
        let replies = join_all(order.iter().map(|&i| async move { nucache.get(&path(i)).await })).await;
        for (&i, reply) in order.iter().zip(&replies) {
            assert_eq!(reply.status, StatusCode::OK, "{}: {}", id(i), reply.text());
            assert!(reply.body_error.is_none(), "{}: {:?}", id(i), reply.body_error);
            assert!(reply.body == expected[i], "{}: wrong bytes", id(i));
            answered += 1;
        }
    }
    let scraped = scrape_until(&nucache, "the cache is back under its cap", |s| {
        s.value("nucache_cache_size_bytes", &[]) <= CAP as f64
    })
    .await;
    assert!(scraped.value("nucache_evictions_total", &[]) > 0.0);
    assert!(bytes_on_disk(&nucache) <= CAP);
    assert_eq!(answered, 4 * PACKAGES);
    let misses = scrape(&nucache)
        .await
        .value("nucache_requests_total", &[("kind", "package"), ("cache", "MISS")]);
    println!("concurrent eviction: {answered} responses whole, {misses} of them misses");
}
