//! `nucache verify`: a blob corrupted on disk is found, dropped, and
//! fetched again on the next request — never served after detection.

mod common;

use std::path::Path;
use std::process::{Command, Output};

use common::nucache::{test_config, Nucache};
use common::process::BINARY;
use common::upstream::FakeUpstream;

const KEY: &str = "flatcontainer/fake.core/1.1.0/fake.core.1.1.0.nupkg";

#[tokio::test]
async fn verify_drops_a_corrupted_blob_and_it_is_fetched_again() {
    let upstream = FakeUpstream::start().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let first = Nucache::start_in(&upstream.index_url(), dir.path(), |_| {}).await;
    let original = first.get(&format!("/v3/{KEY}")).await;
    first.get("/v3/flatcontainer/fake.core/index.json").await;
    first.stop().await;

    // Flip one byte of the package's file, keeping its size.
    let file = common::content_file(dir.path(), &upstream.index_url(), KEY).expect("the package's content file");
    let mut bytes = std::fs::read(&file).expect("read");
    bytes[100] ^= 0xff;
    std::fs::write(&file, &bytes).expect("write");

    let config = test_config(&upstream.index_url(), dir.path());
    let report = nucache::verify_cache(&config.cache).expect("verify runs");
    assert_eq!(report.dropped, [nucache::cache_key(&upstream.index_url(), KEY)]);
    assert!(report.checked >= 3, "{report:?}");
    let again = nucache::verify_cache(&config.cache).expect("verify runs again");
    assert!(again.dropped.is_empty(), "{again:?}");

    let second = Nucache::start_in(&upstream.index_url(), dir.path(), |_| {}).await;
    let refetched = second.get(&format!("/v3/{KEY}")).await;
    assert_eq!(refetched.x_cache(), Some("MISS"));
    assert_eq!(refetched.body, original.body);
    assert_eq!(upstream.count("fake.core.1.1.0.nupkg"), 2);
    second.stop().await;
}

#[tokio::test]
async fn verify_refuses_a_cache_in_use() {
    let upstream = FakeUpstream::start().await;
    let nucache = Nucache::start(&upstream.index_url(), |_| {}).await;
    let config = test_config(&upstream.index_url(), &nucache.dir);
    let error = nucache::verify_cache(&config.cache).err().map(|e| e.to_string());
    assert!(error.is_some_and(|e| e.contains("in use")));
}

/// `nucache verify` (the command) on `dir`.
fn verify_command(dir: &Path) -> Output {
    Command::new(BINARY)
        .arg("verify")
        .env("NUCACHE_CACHE__DIR", dir)
        .env_remove("NUCACHE_CONFIG")
        .output()
        .expect("nucache verify runs")
}

#[test]
fn verify_refuses_a_directory_that_holds_no_cache_and_creates_nothing() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mistyped = dir.path().join("nucahce");
    for target in [dir.path(), mistyped.as_path()] {
        let out = verify_command(target);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{stderr}");
        assert!(
            stderr.contains(&format!("cache.dir {}: no cache here", target.display())),
            "{stderr}"
        );
    }
    assert!(!mistyped.exists(), "verify created the directory it was given");
    assert!(common::files_under(dir.path()).is_empty() && !dir.path().join("index").exists());
}

#[tokio::test]
async fn verify_names_what_it_dropped_and_exits_1() {
    let upstream = FakeUpstream::start().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let nucache = Nucache::start_in(&upstream.index_url(), dir.path(), |_| {}).await;
    nucache.get(&format!("/v3/{KEY}")).await;
    nucache.stop().await;
    let clean = verify_command(dir.path());
    assert_eq!(
        clean.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&clean.stderr)
    );

    let file = common::content_file(dir.path(), &upstream.index_url(), KEY).expect("the package's content file");
    let mut bytes = std::fs::read(&file).expect("read");
    bytes[10] ^= 0xff;
    std::fs::write(&file, &bytes).expect("write");

    let out = verify_command(dir.path());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("dropped fake.core 1.1.0 (fake.core.1.1.0.nupkg)"),
        "{stdout}"
    );
    assert!(stdout.contains("1 dropped"), "{stdout}");
}
