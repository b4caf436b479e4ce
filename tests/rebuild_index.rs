//! The cache describes itself: every stored object carries its own record,
//! so a lost index is rebuilt from the files (at start-up, or by `nucache
//! rebuild-index`) instead of the files being deleted as orphans (issue 19,
//! item 6).

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::nucache::Nucache;
use common::process::BINARY;
use common::upstream::FakeUpstream;
use http::StatusCode;

const PACKAGES: [&str; 4] = [
    "/v3/flatcontainer/fake.core/1.0.0/fake.core.1.0.0.nupkg",
    "/v3/flatcontainer/fake.core/1.1.0/fake.core.1.1.0.nupkg",
    "/v3/flatcontainer/fake.dep/1.0.1/fake.dep.1.0.1.nupkg",
    "/v3/flatcontainer/fake.core/1.1.0/fake.core.nuspec",
];
const DOCUMENTS: [&str; 3] = [
    "/v3/index.json",
    "/v3/flatcontainer/fake.core/index.json",
    "/v3/registration/registration5-gz-semver2/fake.core/index.json",
];

/// Every file under `content/` with its size.
fn content_files(dir: &Path) -> BTreeMap<PathBuf, u64> {
    common::files_under(&dir.join("content"))
        .into_iter()
        .map(|file| {
            let size = std::fs::metadata(&file).map(|m| m.len()).unwrap_or(0);
            (file, size)
        })
        .collect()
}

/// Fetches every package and document through a nucache on `dir`, then
/// stops it; returns the package bytes it served.
async fn warm(upstream: &FakeUpstream, dir: &Path) -> Vec<Vec<u8>> {
    let nucache = Nucache::start_in(&upstream.index_url(), dir, |_| {}).await;
    for path in DOCUMENTS {
        let reply = nucache.get(path).await;
        assert_eq!(reply.status, StatusCode::OK, "{path}: {}", reply.text());
    }
    let mut bodies = Vec::new();
    for path in PACKAGES {
        let reply = nucache.get(path).await;
        assert_eq!(
            (reply.status, reply.x_cache()),
            (StatusCode::OK, Some("MISS")),
            "{path}"
        );
        // The last byte goes out only after the commit: it is on disk.
        assert!(reply.body_error.is_none());
        bodies.push(reply.body.to_vec());
    }
    nucache.stop().await;
    bodies
}

/// Serves everything again from the cache on `dir`: every package a HIT
/// with the same bytes, and not one request reaches the upstream.
async fn all_hits(upstream: &FakeUpstream, dir: &Path, bodies: &[Vec<u8>]) {
    upstream.reset_log();
    let nucache = Nucache::start_in(&upstream.index_url(), dir, |_| {}).await;
    for (path, body) in PACKAGES.iter().zip(bodies) {
        let reply = nucache.get(path).await;
        assert_eq!(reply.x_cache(), Some("HIT"), "{path}");
        assert!(reply.body == *body, "{path}: the same bytes");
    }
    for path in DOCUMENTS {
        let reply = nucache.get(path).await;
        assert_eq!((reply.status, reply.x_cache()), (StatusCode::OK, Some("HIT")), "{path}");
    }
    let seen: Vec<String> = upstream.requests().into_iter().map(|r| r.path).collect();
    assert!(seen.is_empty(), "the upstream was asked: {seen:?}");
    nucache.stop().await;
}

#[tokio::test]
async fn a_warm_cache_whose_index_is_deleted_serves_every_package_as_a_hit() {
    let upstream = FakeUpstream::start().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let bodies = warm(&upstream, dir.path()).await;
    let files = content_files(dir.path());
    assert_eq!(files.len(), PACKAGES.len() + DOCUMENTS.len(), "{files:#?}");

    std::fs::remove_dir_all(dir.path().join("index")).expect("delete the index");
    all_hits(&upstream, dir.path(), &bodies).await;
    assert_eq!(content_files(dir.path()), files, "no file deleted, added or changed");
}

fn rebuild_index_command(dir: &Path) -> Output {
    Command::new(BINARY)
        .arg("rebuild-index")
        .env("NUCACHE_CACHE__DIR", dir)
        .env_remove("NUCACHE_CONFIG")
        .output()
        .expect("nucache rebuild-index runs")
}

#[tokio::test]
async fn rebuild_index_rebuilds_a_stopped_caches_index_from_its_files() {
    let upstream = FakeUpstream::start().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let bodies = warm(&upstream, dir.path()).await;
    let files = content_files(dir.path());

    let out = rebuild_index_command(dir.path());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let expected = format!("index rebuilt from {} objects' records", files.len());
    assert!(stdout.contains(&expected), "{stdout}");
    all_hits(&upstream, dir.path(), &bodies).await;
    assert_eq!(content_files(dir.path()), files);
}

#[tokio::test]
async fn rebuild_index_refuses_a_cache_in_use_and_a_directory_without_one() {
    let upstream = FakeUpstream::start().await;
    let nucache = Nucache::start(&upstream.index_url(), |_| {}).await;
    let out = rebuild_index_command(&nucache.dir);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("in use"));

    let empty = tempfile::tempdir().expect("temp dir");
    let out = rebuild_index_command(empty.path());
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no cache here"));
    assert!(common::files_under(empty.path()).is_empty(), "nothing created");
}
