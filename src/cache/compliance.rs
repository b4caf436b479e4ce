//! What every blob store must do. Each backend gets one `#[test]` that runs
//! [`suite`] against a fresh instance.

use std::io::Read;

use sha2::{Digest, Sha512};

use super::{read_at, BlobStore, FsBlobStore};

fn write_blob(store: &dyn BlobStore, data: &[u8]) -> super::BlobWriter {
    let mut writer = store.create().expect("create");
    for chunk in data.chunks(1000) {
        writer.write(chunk).expect("write");
    }
    writer
}

fn read_all(store: &dyn BlobStore, key: &str, info: &super::BlobInfo) -> Option<Vec<u8>> {
    let mut file = store.open(key, info).expect("open")?;
    let mut out = Vec::new();
    file.read_to_end(&mut out).expect("read");
    Some(out)
}

/// The behaviour the cache relies on.
pub(super) fn suite(store: &dyn BlobStore) {
    let data: Vec<u8> = (0..10_000u32).map(|i| (i * 7 % 251) as u8).collect();

    // Bytes written are readable while the blob grows, and commit reports size and hash.
    let writer = write_blob(store, &data);
    assert_eq!(writer.written(), data.len() as u64);
    assert_eq!(
        read_at(&writer.file(), 0, 20).expect("read while writing"),
        data[..20].to_vec()
    );
    let info = store.commit(writer, "a/key").expect("commit");
    assert_eq!(info.size, data.len() as u64);
    assert_eq!(info.sha512, hex::encode(Sha512::digest(&data)));
    assert_eq!(read_all(store, "a/key", &info), Some(data.clone()));

    // The same content under another key is independent of the first.
    let other = store.commit(write_blob(store, &data), "b/key").expect("commit b");
    store.remove("a/key", &info).expect("remove");
    assert_eq!(read_all(store, "a/key", &info), None);
    assert_eq!(read_all(store, "b/key", &other), Some(data.clone()));

    // A record that disagrees with the file about its size is not served.
    let mut wrong = other.clone();
    wrong.size += 1;
    assert_eq!(read_all(store, "b/key", &wrong), None);

    // An abandoned writer leaves nothing; a leaked temporary file is swept.
    drop(write_blob(store, b"abandoned"));
    assert_eq!(store.sweep_temp().expect("sweep"), 0);
    std::mem::forget(write_blob(store, b"crashed mid-write"));
    assert_eq!(store.sweep_temp().expect("sweep"), 1);

    // Blobs nobody references are swept; referenced ones stay.
    let orphan = store.commit(write_blob(store, b"orphan"), "c/key").expect("commit c");
    let removed = store
        .sweep_orphans(&[("b/key".to_string(), other.sha512.clone())])
        .expect("sweep orphans");
    assert_eq!(removed, 1);
    assert_eq!(read_all(store, "c/key", &orphan), None);
    assert_eq!(read_all(store, "b/key", &other), Some(data));
}

#[test]
fn file_store_passes_the_suite() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = FsBlobStore::open(dir.path()).expect("open store");
    suite(&store);
}
