//! What every blob store must do. Each backend gets one `#[test]` that runs
//! [`suite`] against a fresh, empty instance, with a way to cut the last
//! byte off a stored object (damage no trait call can do).

use sha2::{Digest, Sha512};

use super::index::Entry;
use super::index_compliance::entry;
use super::record::Record;
use super::{read_at, BlobRead, BlobStore, BlobWriter};

fn write_blob<S: BlobStore + ?Sized>(store: &S, data: &[u8]) -> BlobWriter {
    let mut writer = store.create().expect("create");
    for chunk in data.chunks(1000) {
        writer.write(chunk).expect("write");
    }
    writer
}

/// Commits `data` under `key`; returns the record it was committed with.
fn commit<S: BlobStore + ?Sized>(store: &S, key: &str, data: &[u8]) -> Record {
    let mut writer = write_blob(store, data);
    let info = writer.info();
    let record = Record::new(
        key,
        &Entry {
            size: info.size,
            sha512: info.sha512,
            xxh3: info.xxh3,
            fetched_at: crate::cache::now_ms(),
            ..entry(0)
        },
    );
    store.commit(writer, &record.name(), &record).expect("commit");
    record
}

/// The content of `name` read in pieces, if it can be opened as `size` bytes.
fn content<S: BlobStore + ?Sized>(store: &S, name: &str, size: u64) -> Option<Vec<u8>> {
    let blob: Box<dyn BlobRead> = store.open(name, size).expect("open")?;
    let mut out = Vec::new();
    loop {
        let piece = blob.read_at(out.len() as u64, 4096).expect("read");
        if piece.is_empty() {
            return Some(out);
        }
        out.extend_from_slice(&piece);
    }
}

fn names<S: BlobStore + ?Sized>(store: &S) -> Vec<String> {
    let mut names = store.names().expect("names");
    names.sort();
    names
}

/// The behaviour the cache relies on.
pub(super) fn suite<S: BlobStore + ?Sized>(store: &S, cut_last_byte: impl Fn(&str)) {
    let data: Vec<u8> = (0..10_000u32).map(|i| (i * 7 % 251) as u8).collect();

    // Bytes are readable while the blob grows; an uncommitted writer
    // leaves nothing visible.
    let writer = write_blob(store, &data);
    assert_eq!(writer.written(), data.len() as u64);
    assert_eq!(read_at(&writer.file(), 0, 20).expect("read while writing"), data[..20]);
    drop(writer);
    assert!(names(store).is_empty(), "an abandoned writer leaves nothing");
    assert_eq!(store.sweep_temp().expect("sweep"), 0, "nor a temporary file");

    // Committed: the same bytes (and never the record) and the same record
    // come back, the record by name alone, as a rebuild reads it.
    let a = commit(store, "v3/a", &data);
    assert_eq!(a.entry.sha512, hex::encode(Sha512::digest(&data)));
    assert_eq!(content(store, &a.name(), a.entry.size), Some(data.clone()));
    assert_eq!(names(store), [a.name()]);
    assert_eq!(store.record(&a.name()).expect("record"), Some(a.clone()));

    // A size that disagrees with the object is not served.
    assert_eq!(content(store, &a.name(), a.entry.size + 1), None);
    assert_eq!(content(store, &a.name(), a.entry.size - 1), None);

    // The same content under another key is an object of its own.
    let b = commit(store, "v3/b", &data);
    store.remove(&a.name()).expect("remove");
    store.remove(&a.name()).expect("removing twice is fine");
    assert_eq!(content(store, &a.name(), a.entry.size), None);
    assert_eq!(store.record(&a.name()).expect("record of nothing"), None);
    assert_eq!(content(store, &b.name(), b.entry.size), Some(data.clone()));
    assert_eq!(names(store), [b.name()]);

    // Committing a name again replaces the object and its record.
    let mut newer = b.clone();
    newer.entry.fetched_at += 1;
    let mut writer = write_blob(store, &data);
    writer.info();
    store.commit(writer, &b.name(), &newer).expect("recommit");
    assert_eq!(store.record(&b.name()).expect("record"), Some(newer.clone()));

    // A rename moves content and record, without the old name.
    let renamed = Record::new("v3/renamed", &newer.entry);
    assert!(store.rename(&b.name(), &renamed.name(), &renamed).expect("rename"));
    assert_eq!(names(store), [renamed.name()]);
    assert_eq!(store.record(&renamed.name()).expect("record"), Some(renamed.clone()));
    assert_eq!(content(store, &renamed.name(), data.len() as u64), Some(data.clone()));
    assert!(
        !store.rename(&b.name(), &renamed.name(), &renamed).expect("again"),
        "gone"
    );

    // A truncated object is neither served nor believed.
    let short = commit(store, "v3/short", b"a small object");
    cut_last_byte(&short.name());
    assert_eq!(content(store, &short.name(), short.entry.size), None);
    assert!(store.record(&short.name()).is_err(), "its record is unusable");

    // A writer that never finished (a crash) is swept and was never listed.
    std::mem::forget(write_blob(store, b"crashed mid-write"));
    assert_eq!(names(store).len(), 2);
    assert_eq!(store.sweep_temp().expect("sweep"), 1);

    // Names a store does not make are refused, not resolved.
    assert!(store.open("../../etc/passwd", 1).is_err());
    assert!(store.remove("ab/cd/../../../x").is_err());
}
