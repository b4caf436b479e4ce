//! The shared store over object_store's in-memory and local-file stores,
//! and over an S3 endpoint nobody listens on (the breaker).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::stream::{self, StreamExt, TryStreamExt};
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use sha2::{Digest, Sha512};

use super::connect::Clients;
use super::write::SINGLE_PUT;
use super::*;
use crate::metrics::{Metrics, SharedWrite, Snapshot};

const KEY: &str = "@0123456789ab/flatcontainer/a/1.0.0/a.1.0.0.nupkg";

fn config() -> SharedConfig {
    SharedConfig {
        url: "s3://bucket/fleet".into(),
        timeout: Duration::from_secs(2),
        failure_threshold: 2,
        breaker_cooldown: Duration::from_secs(3600),
        ..SharedConfig::default()
    }
}

fn store_over(backend: Arc<dyn ObjectStore>) -> (Arc<SharedStore>, Arc<Metrics>) {
    let metrics = Arc::new(Metrics::new());
    let clients = Clients {
        reads: backend.clone(),
        writes: backend,
        prefix: "fleet".into(),
    };
    (
        Arc::new(SharedStore::with_clients(clients, &config(), metrics.clone())),
        metrics,
    )
}

fn record(content: &[u8]) -> Record {
    Record {
        format: FORMAT,
        key: KEY.into(),
        kind: ObjectKind::Package,
        size: content.len() as u64,
        sha512: hex::encode(Sha512::digest(content)),
        content_type: "application/octet-stream".into(),
        url: "https://up.example/a.1.0.0.nupkg".into(),
        etag: None,
        last_modified: None,
    }
}

fn content(bytes: &[u8]) -> Content {
    let chunks: Vec<std::io::Result<Bytes>> = bytes.chunks(100_000).map(|c| Ok(Bytes::copy_from_slice(c))).collect();
    stream::iter(chunks).boxed()
}

fn name(store: &SharedStore) -> Path {
    store
        .name(
            ObjectKind::Package,
            "0123456789ab",
            "flatcontainer/a/1.0.0/a.1.0.0.nupkg",
        )
        .expect("a name")
}

fn count(metrics: &Metrics, series: &str) -> u64 {
    let text = metrics.render(&Snapshot::default());
    let line = format!("nucache_shared_{series} ");
    text.lines()
        .find_map(|l| l.strip_prefix(line.as_str()))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .map_or(0, |v| v as u64)
}

async fn read_all(store: &Arc<SharedStore>, name: &Path) -> Option<(Record, Vec<u8>)> {
    let mut object = store.open(name, KEY).await?;
    let mut body = Vec::new();
    while let Some(chunk) = object.next_chunk().await.expect("a chunk") {
        body.extend_from_slice(&chunk);
    }
    Some((object.record.clone(), body))
}

fn bytes(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 % 251) as u8).collect()
}

#[tokio::test]
async fn a_package_is_created_once_and_reads_back_record_first() {
    let memory = Arc::new(InMemory::new());
    let (store, metrics) = store_over(memory.clone());
    let package = bytes(300_000);
    let name = name(&store);
    assert_eq!(
        store.create(&name, &record(&package), content(&package)).await,
        SharedWrite::Stored
    );
    let other = bytes(300_001);
    assert_eq!(
        store.create(&name, &record(&other), content(&other)).await,
        SharedWrite::Exists,
        "the first writer wins"
    );
    let raw = memory.get(&name).await.expect("stored").bytes().await.expect("bytes");
    assert!(raw.starts_with(b"NUSHARE1"), "the record comes first");
    assert!(raw.ends_with(&package), "then the content, as written");
    let (found, body) = read_all(&store, &name).await.expect("a hit");
    assert_eq!((found, body), (record(&package), package));
    assert_eq!(
        name.to_string(),
        "fleet/packages/0123456789ab/flatcontainer/a/1.0.0/a.1.0.0.nupkg"
    );
    assert_eq!(count(&metrics, "bytes_total{direction=\"written\"}"), raw.len() as u64);
}

#[tokio::test]
async fn a_large_package_goes_in_parts_and_appears_whole() {
    let memory = Arc::new(InMemory::new());
    let (store, _) = store_over(memory.clone());
    let package = bytes(SINGLE_PUT as usize + 3 * 1024 * 1024);
    let name = name(&store);
    assert_eq!(
        store.create(&name, &record(&package), content(&package)).await,
        SharedWrite::Stored
    );
    let (_, body) = read_all(&store, &name).await.expect("a hit");
    assert!(body == package, "the parts make the whole content");
    assert_eq!(
        store.create(&name, &record(&package), content(&package)).await,
        SharedWrite::Exists
    );
}

#[tokio::test]
async fn a_local_copy_that_fails_mid_way_leaves_no_object() {
    for size in [1000, SINGLE_PUT as usize + 1024 * 1024] {
        let memory = Arc::new(InMemory::new());
        let (store, metrics) = store_over(memory.clone());
        let package = bytes(size);
        let half: Vec<std::io::Result<Bytes>> = vec![
            Ok(Bytes::copy_from_slice(&package[..size / 2])),
            Err(std::io::Error::other(
                "cached file does not match its recorded checksum",
            )),
        ];
        let name = name(&store);
        let written = store.create(&name, &record(&package), stream::iter(half).boxed()).await;
        assert_eq!(written, SharedWrite::Skipped, "{size} bytes");
        let listed: Vec<_> = memory.list(None).try_collect().await.expect("listing");
        assert!(listed.is_empty(), "{size} bytes: {listed:?}");
        assert_eq!(count(&metrics, "bytes_total{direction=\"written\"}"), 0);
    }
}

/// Writes `object` under `name` as it is (a damaged one).
async fn put_raw(memory: &InMemory, name: &Path, object: Vec<u8>) {
    memory.put(name, PutPayload::from(object)).await.expect("put");
}

#[tokio::test]
async fn an_object_that_contradicts_its_record_is_deleted_and_counted() {
    let memory = Arc::new(InMemory::new());
    let (store, metrics) = store_over(memory.clone());
    let name = name(&store);
    let package = bytes(5000);
    let header = record(&package).header().to_vec();
    // Cut short: its length disagrees with the record before any content goes out.
    put_raw(&memory, &name, [header, package[..4000].to_vec()].concat()).await;
    assert!(store.open(&name, KEY).await.is_none());
    assert!(memory.head(&name).await.is_err(), "deleted");
    // Another key's object under this name.
    let mut other = record(&package);
    other.key = "@0123456789ab/elsewhere".into();
    put_raw(&memory, &name, [other.header().to_vec(), package.clone()].concat()).await;
    assert!(store.open(&name, KEY).await.is_none());
    assert!(memory.head(&name).await.is_err(), "deleted");
    // Not an object of nucache's at all.
    put_raw(&memory, &name, b"PK\x03\x04 not a record".to_vec()).await;
    assert!(store.open(&name, KEY).await.is_none());
    assert_eq!(count(&metrics, "reads_total{outcome=\"corrupt\"}"), 3);
    assert!(store.open(&name, KEY).await.is_none());
    assert_eq!(count(&metrics, "reads_total{outcome=\"miss\"}"), 1);
    // A newer nucache's object is a miss, and left alone.
    let newer = Record {
        format: FORMAT + 1,
        ..record(&package)
    };
    put_raw(&memory, &name, [newer.header().to_vec(), package.clone()].concat()).await;
    assert!(store.open(&name, KEY).await.is_none());
    assert!(memory.head(&name).await.is_ok(), "kept");
    assert_eq!(count(&metrics, "reads_total{outcome=\"corrupt\"}"), 3);
}

#[tokio::test]
async fn a_whole_document_is_checked_against_its_sha512() {
    let memory = Arc::new(InMemory::new());
    let (store, metrics) = store_over(memory.clone());
    let name = name(&store);
    let document = b"{\"versions\":[\"1.0.0\"]}".to_vec();
    store
        .overwrite(&name, &record(&document), Bytes::from(document.clone()))
        .await;
    let found = store
        .read_whole(&name, KEY, 1 << 20)
        .await
        .map(|(_, body)| body.to_vec());
    assert_eq!(found, Some(document.clone()));
    assert_eq!(count(&metrics, "reads_total{outcome=\"hit\"}"), 1);
    let mut flipped = [record(&document).header().to_vec(), document.clone()].concat();
    let last = flipped.len() - 3;
    flipped[last] ^= 0x01;
    put_raw(&memory, &name, flipped).await;
    assert!(store.read_whole(&name, KEY, 1 << 20).await.is_none(), "never used");
    assert!(memory.head(&name).await.is_err(), "deleted");
    assert_eq!(count(&metrics, "reads_total{outcome=\"corrupt\"}"), 1);
}

#[tokio::test]
async fn racing_creators_leave_one_object_on_local_files() {
    let dir = tempfile::tempdir().expect("temp dir");
    let local = object_store::local::LocalFileSystem::new_with_prefix(dir.path()).expect("local store");
    let (store, metrics) = store_over(Arc::new(local));
    let package = bytes(200_000);
    let name = name(&store);
    let record = record(&package);
    let writers = (0..8).map(|_| store.create(&name, &record, content(&package)));
    let outcomes = futures_util::future::join_all(writers).await;
    let stored = outcomes.iter().filter(|o| **o == SharedWrite::Stored).count();
    let exists = outcomes.iter().filter(|o| **o == SharedWrite::Exists).count();
    assert_eq!((stored, exists), (1, 7), "{outcomes:?}");
    let (_, body) = read_all(&store, &name).await.expect("a hit");
    assert!(body == package);
    assert_eq!(count(&metrics, "reads_total{outcome=\"error\"}"), 0);
}

#[tokio::test]
async fn a_purge_deletes_named_objects_and_folders() {
    let memory = Arc::new(InMemory::new());
    let (store, _) = store_over(memory.clone());
    let package = bytes(100);
    let names = [
        "flatcontainer/a/1.0.0/a.1.0.0.nupkg",
        "flatcontainer/a/2.0.0/a.2.0.0.nupkg",
        "flatcontainer/ab/1.0.0/ab.1.0.0.nupkg",
    ];
    for local in names {
        let name = store.name(ObjectKind::Package, "0123456789ab", local).expect("name");
        store.create(&name, &record(&package), content(&package)).await;
    }
    let version_list = store
        .name(ObjectKind::Document, "0123456789ab", "flatcontainer/a/index.json")
        .expect("name");
    store
        .overwrite(&version_list, &record(&package), Bytes::from(package.clone()))
        .await;
    let folder = store
        .folder(ObjectKind::Package, "0123456789ab", "flatcontainer/a/")
        .expect("folder");
    let deleted = store
        .delete_all(vec![version_list.clone()], vec![folder])
        .await
        .expect("purged");
    assert_eq!(deleted, 3);
    let left: Vec<String> = memory
        .list(None)
        .map_ok(|m| m.location.to_string())
        .try_collect()
        .await
        .expect("listing");
    assert_eq!(
        left,
        vec!["fleet/packages/0123456789ab/flatcontainer/ab/1.0.0/ab.1.0.0.nupkg"]
    );
}

#[tokio::test]
async fn an_unreachable_store_opens_the_breaker_and_is_then_skipped() {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a port");
        listener.local_addr().expect("address").port()
    };
    let unreachable = SharedConfig {
        endpoint: Some(format!("http://127.0.0.1:{port}")),
        allow_http: true,
        ..config()
    };
    let metrics = Arc::new(Metrics::new());
    let store = SharedStore::connect(&unreachable, metrics.clone())
        .expect("configured")
        .expect("a store");
    let name = name(&store);
    for _ in 0..2 {
        assert!(store.open(&name, KEY).await.is_none());
    }
    assert!(store.is_down(), "two failures open it");
    assert!(store.open(&name, KEY).await.is_none());
    assert_eq!(count(&metrics, "reads_total{outcome=\"error\"}"), 2);
    assert_eq!(
        count(&metrics, "reads_total{outcome=\"skipped\"}"),
        1,
        "no call while open"
    );
    let package = bytes(10);
    store.create_later(name, record(&package), move || async move { Some(content(&package)) });
    assert_eq!(
        count(&metrics, "writes_total{outcome=\"skipped\"}"),
        1,
        "writes are skipped at once"
    );
    let status = store.status();
    assert_eq!(status.state, State::Open);
    assert!(status.last_error.is_some_and(|e| !e.is_empty()));
}
