//! nucache as a process: kill -9 at random moments, SIGTERM with a download
//! in flight, and a cache directory that fills up or turns read-only.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::poll;
use common::process::{Launch, Process, Rng};
use common::upstream::{Corpus, FakeUpstream};
use http::StatusCode;

const KIB: usize = 1024;

/// `count` packages `Big.N` 1.0.0 of `size` bytes each.
async fn upstream_with_big_packages(count: usize, size: usize) -> FakeUpstream {
    let mut corpus = Corpus::empty();
    for n in 0..count {
        corpus.add(&format!("Big.{n}"), "1.0.0", bytes_of(n, size), true);
    }
    FakeUpstream::start_with(corpus).await
}

fn bytes_of(n: usize, size: usize) -> Vec<u8> {
    let mut rng = Rng::new(n as u64 + 1);
    (0..size).map(|_| rng.below(256) as u8).collect()
}

fn path_of(n: usize) -> String {
    format!("/v3/flatcontainer/big.{n}/1.0.0/big.{n}.1.0.0.nupkg")
}

fn launch<'a>(upstream: &'a str, cache: &'a Path) -> Launch<'a> {
    Launch::new(upstream, cache)
}

/// nucache with its cache directory on a tmpfs of `kib` KiB (in its own
/// mount namespace), retrying storage every second.
async fn on_a_small_tmpfs(upstream: &FakeUpstream, kib: u64) -> (tempfile::TempDir, PathBuf, Process) {
    let dir = tempfile::tempdir().expect("temp dir");
    let cache = dir.path().join("cache");
    std::fs::create_dir_all(&cache).expect("cache dir");
    let index = upstream.index_url();
    let mut process = Launch {
        env: vec![("NUCACHE_CACHE__STORAGE_RETRY", "1s".to_string())],
        tmpfs_kib: Some(kib),
        ..launch(&index, &cache)
    }
    .spawn();
    process.ready().await;
    (dir, cache, process)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_kill_9_cycles_never_serve_a_partial_package() {
    const PACKAGES: usize = 10;
    const SIZE: usize = 192 * KIB;
    let upstream = upstream_with_big_packages(PACKAGES, SIZE).await;
    // Each download takes ~36 ms: kills land before, during and after them.
    upstream.set_body_chunking(16 * KIB, Duration::from_millis(3));
    let dir = tempfile::tempdir().expect("temp dir");
    let cache = dir.path().join("cache");
    let index = upstream.index_url();
    let mut rng = Rng::new(42);
    let (mut hits, mut cycles) = (0, 0);
    let mut left_behind = Vec::new();
    for _ in 0..50 {
        let mut process = launch(&index, &cache).spawn();
        process.ready().await;
        // Files nucache writes now may be there; those of the killed one not.
        let survivors: Vec<_> = common::files_under(&cache.join("tmp"))
            .into_iter()
            .filter(|file| left_behind.contains(file))
            .collect();
        assert!(
            survivors.is_empty(),
            "temporary files survived a restart: {survivors:?}"
        );
        // Whatever is served from the cache is whole.
        for _ in 0..3 {
            let n = rng.below(PACKAGES as u64) as usize;
            let reply = process.get(&path_of(n)).await;
            if reply.x_cache() == Some("HIT") {
                assert_eq!(
                    reply.body,
                    bytes_of(n, SIZE),
                    "Big.{n} served from the cache is not whole"
                );
                hits += 1;
            }
        }
        // Downloads in flight, then SIGKILL at a random moment (a random
        // wait, on purpose: no signal to wait for).
        let downloads: Vec<_> = (0..4)
            .map(|_| {
                let url = process.url(&path_of(rng.below(PACKAGES as u64) as usize));
                tokio::spawn(async move { common::nucache::get(&url).await })
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(rng.below(80))).await;
        process.kill();
        left_behind = common::files_under(&cache.join("tmp"));
        for download in downloads {
            let _ = download.await;
        }
        cycles += 1;
    }
    // A last clean start and stop: the index and the files agree.
    let mut process = launch(&index, &cache).spawn();
    process.ready().await;
    for n in 0..PACKAGES {
        let reply = process.get(&path_of(n)).await;
        assert_eq!(reply.body, bytes_of(n, SIZE), "Big.{n}");
    }
    let log = process.log_with("cache checked").await;
    assert_eq!(
        process.terminate(Duration::from_secs(10)).map(|s| s.success()),
        Some(true)
    );
    assert_eq!(cycles, 50);
    assert!(
        hits > 10,
        "only {hits} cache hits in 50 cycles: the test did not exercise the cache"
    );
    assert!(log.contains("cache checked"), "{log}");
    assert_index_matches_files(&cache);
}

/// Every index record has its file and every file its record.
fn assert_index_matches_files(cache: &Path) {
    let db = sled::open(cache.join("index")).expect("the index opens");
    let entries = db.open_tree("entries").expect("entries tree");
    let records = entries.len();
    let files = common::files_under(&cache.join("content")).len();
    assert_eq!(records, files, "{records} index records but {files} content files");
    assert!(common::files_under(&cache.join("tmp")).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_a_download_in_flight_finish_then_exits_0() {
    const SIZE: usize = 512 * KIB;
    let upstream = upstream_with_big_packages(1, SIZE).await;
    upstream.set_body_chunking(16 * KIB, Duration::from_millis(20));
    let dir = tempfile::tempdir().expect("temp dir");
    let cache = dir.path().join("cache");
    let index = upstream.index_url();
    let mut process = launch(&index, &cache).spawn();
    process.ready().await;
    let (url, port, log) = (process.url(&path_of(0)), process.port, process.log.clone());
    let download = tokio::spawn(async move { common::nucache::get(&url).await });
    // The download is in flight once the upstream has its request (the
    // body then takes about 640 ms).
    poll::until_true("the download reaches the upstream", async || {
        upstream.count("big.0.1.0.0.nupkg") == 1
    })
    .await;
    let status = tokio::task::spawn_blocking(move || {
        let status = process.terminate(Duration::from_secs(10));
        (status, process)
    });
    // While draining, nucache accepts no new connections.
    poll::until_true("nucache says it is draining", async || {
        std::fs::read_to_string(&log).is_ok_and(|log| log.contains("no longer accepting connections"))
    })
    .await;
    assert!(!download.is_finished(), "the download ended before the drain began");
    let refused = tokio::net::TcpStream::connect(("127.0.0.1", port)).await;
    assert!(refused.is_err(), "a new connection was accepted while draining");
    let reply = download.await.expect("download task");
    assert_eq!(reply.status, StatusCode::OK);
    assert!(reply.body_error.is_none(), "{:?}", reply.body_error);
    assert_eq!(reply.body, bytes_of(0, SIZE));
    let (status, process) = status.await.expect("terminate");
    assert_eq!(status.map(|s| s.code()), Some(Some(0)), "{}", process.log_text());
    assert!(process.log_text().contains("stopped"));
    drop(process);
    // It was committed and flushed: a restart serves it from the cache.
    let mut again = launch(&index, &cache).spawn();
    again.ready().await;
    assert_eq!(again.get(&path_of(0)).await.x_cache(), Some("HIT"));
}

/// Fills the file system that holds `dir` (as `process` sees it).
fn fill(process: &Process, dir: &Path) -> PathBuf {
    use std::io::Write;
    let filler = process.inside(&dir.join("filler"));
    let mut file = std::fs::File::create(&filler).expect("filler file");
    let block = vec![0u8; 64 * KIB];
    while file.write_all(&block).is_ok() {}
    let _ = file.sync_all();
    filler
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_passes_responses_through_and_caching_resumes() {
    if !common::process::namespaces_available("a_full_disk_passes_responses_through_and_caching_resumes") {
        return;
    }
    const SIZE: usize = 256 * KIB;
    let upstream = upstream_with_big_packages(4, SIZE).await;
    let (_dir, cache, process) = on_a_small_tmpfs(&upstream, 4096).await;
    assert_eq!(process.get("/v3/index.json").await.status, StatusCode::OK);
    let filler = fill(&process, &cache);
    for attempt in 0..3 {
        let reply = process.get(&path_of(0)).await;
        assert_eq!(reply.status, StatusCode::OK, "attempt {attempt}: {}", reply.text());
        assert_eq!(reply.body, bytes_of(0, SIZE), "attempt {attempt}");
        assert_eq!(reply.x_cache(), Some("MISS"), "attempt {attempt}");
    }
    let health = process.get("/health").await.json();
    assert_eq!(health["storage"]["writable"], false, "{health}");
    let log = process.log_with("serving without caching").await;
    assert_eq!(log.matches("serving without caching").count(), 1, "{log}");
    // Space is back: once storage_retry (1 s) has passed, a miss is
    // stored again and the next request is a hit.
    std::fs::remove_file(&filler).expect("remove filler");
    let cached = process.until_hit(&path_of(1)).await;
    assert_eq!(cached.body, bytes_of(1, SIZE));
    process.log_with("caching resumed").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_only_cache_directory_passes_responses_through() {
    if !common::process::namespaces_available("a_read_only_cache_directory_passes_responses_through") {
        return;
    }
    const SIZE: usize = 64 * KIB;
    let upstream = upstream_with_big_packages(3, SIZE).await;
    let (_dir, cache, process) = on_a_small_tmpfs(&upstream, 8192).await;
    assert_eq!(process.get(&path_of(0)).await.body, bytes_of(0, SIZE));
    // The cache directory turns read-only under nucache: a read-only bind
    // mount over it. (A read-only remount of the file system itself is
    // refused while the index has files open for writing; the index keeps
    // writing through the descriptors it holds.)
    let dir_text = cache.display().to_string();
    let read_only = format!("mount --bind '{dir_text}' '{dir_text}' && mount -o remount,bind,ro '{dir_text}'");
    assert_eq!(process.exec_inside(&read_only), Ok(()), "make the cache read-only");
    let cached = process.get(&path_of(0)).await;
    assert_eq!(
        (cached.x_cache(), cached.body.clone()),
        (Some("HIT"), bytes_of(0, SIZE).into())
    );
    for _ in 0..2 {
        let reply = process.get(&path_of(1)).await;
        assert_eq!((reply.status, reply.x_cache()), (StatusCode::OK, Some("MISS")));
        assert_eq!(reply.body, bytes_of(1, SIZE));
    }
    assert_eq!(
        process.exec_inside(&format!("umount '{dir_text}'")),
        Ok(()),
        "make it writable again"
    );
    // Once storage_retry (1 s) has passed, caching resumes.
    let cached = process.until_hit(&path_of(2)).await;
    assert_eq!(cached.body, bytes_of(2, SIZE));
}

/// Temporary files left in the cache's `tmp` (as `process` sees it).
fn temp_files(process: &Process, cache: &Path) -> usize {
    std::fs::read_dir(process.inside(&cache.join("tmp")))
        .map(|d| d.count())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disk_that_fills_mid_download_never_breaks_the_response() {
    if !common::process::namespaces_available("a_disk_that_fills_mid_download_never_breaks_the_response") {
        return;
    }
    const SIZE: usize = 8 * 1024 * KIB;
    let upstream = upstream_with_big_packages(1, SIZE).await;
    // 3 MiB: the first MiBs of the package fit, the rest does not.
    let (_dir, cache, process) = on_a_small_tmpfs(&upstream, 3 * 1024).await;
    assert_eq!(process.get("/v3/index.json").await.status, StatusCode::OK);
    let reply = process.get(&path_of(0)).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.body_error, None, "the response broke: {}", process.log_text());
    assert_eq!(reply.body.len(), SIZE);
    assert!(reply.body == bytes_of(0, SIZE), "wrong bytes");
    assert_eq!(temp_files(&process, &cache), 0, "the temporary file is dropped");
    process.log_with("disk failed mid-download").await;
    // Nothing was committed: the next request is another (whole) miss.
    let again = process.get(&path_of(0)).await;
    assert_eq!((again.x_cache(), again.body_error.clone()), (Some("MISS"), None));
    assert!(again.body == bytes_of(0, SIZE));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_misses_on_a_full_disk_share_one_upstream_download() {
    if !common::process::namespaces_available("concurrent_misses_on_a_full_disk_share_one_upstream_download") {
        return;
    }
    const SIZE: usize = 1024 * KIB;
    let upstream = upstream_with_big_packages(1, SIZE).await;
    // A body that takes a while, so that all requests arrive during it.
    upstream.set_body_chunking(64 * KIB, Duration::from_millis(20));
    let (_dir, cache, process) = on_a_small_tmpfs(&upstream, 4096).await;
    assert_eq!(process.get("/v3/index.json").await.status, StatusCode::OK);
    fill(&process, &cache);
    upstream.reset_log();
    let path = path_of(0);
    let replies = futures_util::future::join_all((0..8).map(|_| process.get(&path))).await;
    for reply in &replies {
        assert_eq!((reply.status, reply.body_error.clone()), (StatusCode::OK, None));
        assert!(reply.body == bytes_of(0, SIZE), "wrong bytes");
    }
    assert_eq!(
        upstream.count("big.0.1.0.0.nupkg"),
        1,
        "one upstream download for 8 clients"
    );
    assert_eq!(temp_files(&process, &cache), 0);
}
