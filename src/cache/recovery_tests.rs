//! The cache recovers from what a crash, a lost index or an older nucache
//! leaves (`rebuild.rs`), and moves records to new keys (`rename.rs`).

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::{name_of, Cache, CacheConfig, Entry, EntryKind, IndexRebuild, Origin, Repair};
use crate::error::StorageError;

const DOC: &str = "v3/registration5-gz-semver2/acme/index.json";
const NUPKG: &str = "v3/flatcontainer/acme/1.0.0/acme.1.0.0.nupkg";

fn config(dir: &Path) -> CacheConfig {
    CacheConfig {
        dir: dir.to_path_buf(),
        ..CacheConfig::default()
    }
}

/// Opens the cache in `dir`, waiting for a cache just dropped to let go of
/// sled's lock (its flusher holds it a moment).
fn open(dir: &Path) -> (Cache, Repair) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match Cache::open(&config(dir), Duration::from_secs(60)) {
            Err(StorageError::Locked) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            other => return other.expect("open the cache"),
        }
    }
}

fn close(cache: Cache) {
    cache.flush().expect("flush");
}

fn origin(url: &str) -> Origin {
    Origin {
        url: url.to_string(),
        content_type: "application/json".into(),
        etag: Some("\"v1\"".into()),
        ..Origin::default()
    }
}

fn store_document(cache: &Cache, key: &str, body: &str) -> Entry {
    let doc = cache
        .store_document(
            key,
            EntryKind::Document,
            origin("http://up/doc"),
            Bytes::from(body.to_string()),
            true,
        )
        .expect("store a document");
    doc.entry.clone()
}

fn store_blob(cache: &Cache, key: &str, data: &[u8]) -> Entry {
    let mut writer = cache.start_blob().expect("start");
    writer.write(data).expect("write");
    cache
        .commit_blob(key, writer, origin("http://up/nupkg"))
        .expect("commit")
}

/// Every file under `content/`.
fn files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut pending = vec![dir.join("content")];
    while let Some(at) = pending.pop() {
        for item in fs::read_dir(&at).expect("list").flatten() {
            match item.path() {
                path if path.is_dir() => pending.push(path),
                path => files.push(path),
            }
        }
    }
    files.sort();
    files
}

fn object_file(dir: &Path, key: &str, entry: &Entry) -> PathBuf {
    dir.join("content").join(name_of(key, entry))
}

fn blob_content(cache: &Cache, key: &str) -> Option<Vec<u8>> {
    let entry = cache.entry(key).expect("index")?;
    let blob = cache.open_object(key, &entry).expect("open")?;
    Some(blob.read_at(0, entry.size as usize).expect("read"))
}

/// A warm cache: a document and a package.
fn warm(dir: &Path) -> (Entry, Entry) {
    let (cache, _) = open(dir);
    let doc = store_document(&cache, DOC, r#"{"count":1}"#);
    let nupkg = store_blob(&cache, NUPKG, b"PK\x03\x04 package bytes");
    close(cache);
    (doc, nupkg)
}

#[test]
fn a_lost_index_is_rebuilt_from_the_records_without_deleting_a_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (doc, nupkg) = warm(dir.path());
    let before = files(dir.path());
    fs::remove_dir_all(dir.path().join("index")).expect("lose the index");

    let (cache, repair) = open(dir.path());
    assert_eq!(repair.rebuilt, Some(IndexRebuild::Missing));
    assert_eq!((repair.adopted_files, repair.removed_orphan_files), (2, 0));
    assert_eq!(cache.entry(DOC).expect("doc"), Some(doc));
    assert_eq!(cache.entry(NUPKG).expect("nupkg"), Some(nupkg));
    assert_eq!(
        blob_content(&cache, NUPKG).as_deref(),
        Some(&b"PK\x03\x04 package bytes"[..])
    );
    assert_eq!(
        cache.document(DOC).expect("read").expect("doc").body.text().as_ref(),
        br#"{"count":1}"#
    );
    assert_eq!(files(dir.path()), before, "no file deleted");
}

#[test]
fn an_unreadable_index_is_moved_aside_and_rebuilt() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (doc, nupkg) = warm(dir.path());
    let index = dir.path().join("index");
    for file in fs::read_dir(&index).expect("index files").flatten() {
        if file.path().is_file() {
            fs::write(file.path(), vec![0xa5; 4096]).expect("garble");
        }
    }

    let (cache, repair) = open(dir.path());
    assert!(
        matches!(&repair.rebuilt, Some(IndexRebuild::Unreadable { moved_to, .. }) if moved_to.is_dir()),
        "{repair:?}"
    );
    assert_eq!(cache.entry(DOC).expect("doc"), Some(doc));
    assert_eq!(cache.entry(NUPKG).expect("nupkg"), Some(nupkg));
}

#[test]
fn an_object_the_index_lacks_is_adopted_and_one_without_a_record_is_an_orphan() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_, nupkg) = warm(dir.path());
    let (cache, _) = open(dir.path());
    // A crash between the rename into place and the index write.
    cache.index.remove(NUPKG).expect("forget the record only");
    // A file without a record (cut short) and one with a damaged record.
    let stray = nupkg.clone();
    let cut = object_file(dir.path(), "v3/cut", &stray);
    let garbled = object_file(dir.path(), "v3/garbled", &stray);
    let foreign = dir.path().join("content").join("README");
    for (path, bytes) in [
        (&cut, b"content only".to_vec()),
        (&garbled, garbled_object()),
        (&foreign, b"not nucache's".to_vec()),
    ] {
        fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        fs::write(path, bytes).expect("write");
    }
    close(cache);

    let (cache, repair) = open(dir.path());
    assert_eq!(repair.rebuilt, None, "the index was readable");
    assert_eq!(
        (repair.adopted_files, repair.removed_orphan_files),
        (1, 2),
        "{repair:?}"
    );
    assert_eq!(cache.entry(NUPKG).expect("nupkg"), Some(nupkg.clone()));
    assert!(object_file(dir.path(), NUPKG, &nupkg).exists());
    assert!(!cut.exists() && !garbled.exists());
    assert!(foreign.exists(), "a file nucache cannot have written is left alone");
}

/// Content, then a footer whose JSON is damaged.
fn garbled_object() -> Vec<u8> {
    let entry = Entry {
        size: 7,
        ..super::index_compliance::entry(7)
    };
    let mut bytes = b"content".to_vec();
    let mut footer = super::record::Record::new("v3/garbled", &entry).footer();
    footer[3] = b'!';
    bytes.extend_from_slice(&footer);
    bytes
}

#[test]
fn of_two_objects_for_one_key_the_newer_is_kept() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (older, _) = warm(dir.path());
    let older_file = object_file(dir.path(), DOC, &older);
    let kept_copy = fs::read(&older_file).expect("read");
    let (cache, _) = open(dir.path());
    std::thread::sleep(Duration::from_millis(2)); // a later fetched_at
    let newer = store_document(&cache, DOC, r#"{"count":2}"#);
    close(cache);
    // The replaced object survived (a crash before it was removed).
    fs::write(&older_file, &kept_copy).expect("restore the old object");

    let (cache, repair) = open(dir.path());
    assert_eq!(repair.removed_duplicate_files, 1);
    assert_eq!(cache.entry(DOC).expect("doc"), Some(newer.clone()));
    assert!(!older_file.exists());
    drop(cache);

    // The same after the index is lost: the newer record wins.
    fs::write(&older_file, &kept_copy).expect("restore the old object again");
    fs::remove_dir_all(dir.path().join("index")).expect("lose the index");
    let (cache, repair) = open(dir.path());
    // The package and one of the document's two; the older of those went.
    assert_eq!(
        (repair.adopted_files, repair.removed_duplicate_files),
        (2, 1),
        "{repair:?}"
    );
    assert_eq!(cache.entry(DOC).expect("doc"), Some(newer));
    assert!(!older_file.exists());
}

#[test]
fn a_file_from_before_records_is_upgraded_in_place_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_, nupkg) = warm(dir.path());
    let file = object_file(dir.path(), NUPKG, &nupkg);
    // As an older nucache wrote it: the content alone.
    let legacy = fs::OpenOptions::new().write(true).open(&file).expect("open");
    legacy.set_len(nupkg.size).expect("strip the record");
    drop(legacy);

    let (cache, repair) = open(dir.path());
    assert_eq!((repair.upgraded_files, repair.removed_orphan_files), (1, 0));
    assert_eq!(repair.dropped_entries, 0);
    assert_eq!(
        blob_content(&cache, NUPKG).as_deref(),
        Some(&b"PK\x03\x04 package bytes"[..])
    );
    close(cache);
    let (_cache, again) = open(dir.path());
    assert_eq!(again.upgraded_files, 0, "once");
    // Upgraded files carry their record: a lost index is rebuilt from them.
    drop(_cache);
    fs::remove_dir_all(dir.path().join("index")).expect("lose the index");
    let (cache, _) = open(dir.path());
    assert_eq!(cache.entry(NUPKG).expect("nupkg"), Some(nupkg));
}

/// A migration as the lead's namespace change makes it: cache keys and
/// package-hash keys get an upstream's prefix, once.
fn migrate(key: &str) -> Option<String> {
    if key.starts_with("v3/up@/") || key.starts_with("up@/") {
        return None;
    }
    match key.strip_prefix("v3/") {
        Some(rest) => Some(format!("v3/up@/{rest}")),
        None => Some(format!("up@/{key}")),
    }
}

fn renamed(key: &str) -> Option<String> {
    migrate(key)
}

#[test]
fn renamed_keys_keep_their_record_object_access_time_and_hash() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (doc, nupkg) = warm(dir.path());
    let (cache, _) = open(dir.path());
    cache.index.record_access(&[(NUPKG.to_string(), 1234)]).expect("access");
    cache.index.put_hash("acme/1.0.0", "ab").expect("hash");

    assert_eq!(cache.rename_keys(migrate).expect("rename"), 2);
    let new_nupkg = renamed(NUPKG).expect("new key");
    assert_eq!(cache.entry(NUPKG).expect("old"), None);
    assert_eq!(cache.entry(&new_nupkg).expect("new"), Some(nupkg.clone()));
    assert_eq!(cache.entry(&renamed(DOC).expect("new key")).expect("new"), Some(doc));
    assert_eq!(cache.index.last_access(&new_nupkg).expect("access"), Some(1234));
    assert_eq!(
        cache.package_hash("up@/acme/1.0.0").expect("hash").as_deref(),
        Some("ab")
    );
    assert_eq!(cache.package_hash("acme/1.0.0").expect("hash"), None);
    assert_eq!(
        blob_content(&cache, &new_nupkg).as_deref(),
        Some(&b"PK\x03\x04 package bytes"[..])
    );
    assert_eq!(files(dir.path()).len(), 2, "moved, not copied");
    assert_eq!(cache.rename_keys(migrate).expect("again"), 0, "idempotent");
    close(cache);

    // The objects' own records moved too: a rebuilt index has the new keys.
    fs::remove_dir_all(dir.path().join("index")).expect("lose the index");
    let (cache, _) = open(dir.path());
    assert_eq!(cache.entry(&new_nupkg).expect("new"), Some(nupkg));
    assert_eq!(cache.entry(NUPKG).expect("old"), None);
}

#[test]
fn a_rename_cut_short_anywhere_loses_nothing() {
    let new_nupkg = renamed(NUPKG).expect("new key");
    // Each step of a move, done by hand, then a crash.
    type Step = fn(&Cache, &Entry);
    let steps: [(&str, Step); 3] = [
        ("after the new record", |cache, entry| {
            cache
                .index
                .put(&renamed(NUPKG).expect("new"), entry)
                .map(drop)
                .expect("put");
        }),
        ("after the object's record", |cache, entry| {
            let to = renamed(NUPKG).expect("new");
            cache.index.put(&to, entry).map(drop).expect("put");
            let record = super::record::Record::new(&to, entry);
            // Rewrite the record, not the name: rename onto itself.
            let old = name_of(NUPKG, entry);
            assert!(cache.blobs.rename(&old, &old, &record).expect("record"));
        }),
        ("after the object's name", |cache, entry| {
            let to = renamed(NUPKG).expect("new");
            cache.index.put(&to, entry).map(drop).expect("put");
            let record = super::record::Record::new(&to, entry);
            let (old, new) = (name_of(NUPKG, entry), name_of(&to, entry));
            assert!(cache.blobs.rename(&old, &new, &record).expect("rename"));
        }),
    ];
    // Run again after a restart (repair first), or in the same process.
    for (when, step) in steps {
        for restart in [true, false] {
            let dir = tempfile::tempdir().expect("tempdir");
            let (_, nupkg) = warm(dir.path());
            let (cache, _) = open(dir.path());
            step(&cache, &nupkg);
            let cache = match restart {
                true => {
                    close(cache);
                    let (cache, repair) = open(dir.path());
                    assert_eq!(repair.removed_orphan_files, 0, "{when}: nothing deleted");
                    cache
                }
                false => cache,
            };
            cache.rename_keys(migrate).expect("run again");
            let when = format!("{when}, restart {restart}");
            assert_eq!(cache.entry(NUPKG).expect("old"), None, "{when}");
            assert_eq!(cache.entry(&new_nupkg).expect("new"), Some(nupkg.clone()), "{when}");
            let content = blob_content(&cache, &new_nupkg);
            assert_eq!(content.as_deref(), Some(&b"PK\x03\x04 package bytes"[..]), "{when}");
            let record = cache.blobs.record(&name_of(&new_nupkg, &nupkg)).expect("record");
            assert_eq!(record.map(|r| r.key), Some(new_nupkg.clone()), "{when}");
        }
    }
}

#[test]
fn when_both_keys_hold_an_object_the_newer_wins() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_, older) = warm(dir.path());
    let (cache, _) = open(dir.path());
    std::thread::sleep(Duration::from_millis(2)); // a later fetched_at
    let new_nupkg = renamed(NUPKG).expect("new key");
    let newer = store_blob(&cache, &new_nupkg, b"PK\x03\x04 newer bytes");
    assert_eq!(cache.rename_keys(migrate).expect("rename"), 1, "the document");
    assert_eq!(cache.entry(&new_nupkg).expect("new"), Some(newer));
    assert_eq!(cache.entry(NUPKG).expect("old"), None);
    assert!(
        !object_file(dir.path(), NUPKG, &older).exists(),
        "the older object went"
    );
    assert_eq!(files(dir.path()).len(), 2);
}
