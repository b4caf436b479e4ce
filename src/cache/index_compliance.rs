//! What every index store must do. Each backend gets one `#[test]` that
//! runs [`suite`] against a fresh, empty instance.

use super::index::{Entry, EntryKind, IndexStore, Totals};

pub(super) fn entry(size: u64) -> Entry {
    Entry {
        kind: EntryKind::Blob,
        url: format!("http://up/{size}"),
        size,
        sha512: "00".repeat(64),
        content_type: "application/octet-stream".into(),
        etag: None,
        last_modified: None,
        fetched_at: 0,
        xxh3: Some(u128::from(size)),
    }
}

/// The behaviour the cache relies on.
pub(super) fn suite(index: &dyn IndexStore) {
    assert_eq!(index.totals(), Totals::default(), "a fresh index is empty");
    assert_eq!(index.get("v3/a").expect("get"), None);

    // Records come back as stored; a put says what it replaced.
    assert_eq!(index.put("v3/a", &entry(10)).expect("put"), None);
    assert_eq!(index.get("v3/a").expect("get"), Some(entry(10)));
    assert_eq!(index.put("v3/a", &entry(15)).expect("replace"), Some(entry(10)));
    index.put("v3/b/1", &entry(20)).expect("put");
    index.put("v3/b/2", &entry(30)).expect("put");
    index.put("v3/c", &entry(40)).expect("put");
    assert_eq!(
        index.totals(),
        Totals { entries: 4, bytes: 105 },
        "totals follow puts and replacements"
    );

    // Listing: all records in key order, pages that resume after a key, prefixes.
    let keys: Vec<String> = index.records().map(|(key, _)| key).collect();
    assert_eq!(keys, ["v3/a", "v3/b/1", "v3/b/2", "v3/c"]);
    let first = index.entries_after(None, 2).expect("page 1");
    assert_eq!(
        first.iter().map(|(k, _)| k.as_str()).collect::<Vec<_>>(),
        ["v3/a", "v3/b/1"]
    );
    let rest = index.entries_after(Some("v3/b/1"), 10).expect("page 2");
    assert_eq!(
        rest.iter().map(|(k, _)| k.as_str()).collect::<Vec<_>>(),
        ["v3/b/2", "v3/c"]
    );
    assert_eq!(rest[1].1, entry(40));
    assert!(index.entries_after(Some("v3/c"), 10).expect("past the end").is_empty());
    assert_eq!(index.keys_with_prefix("v3/b/").expect("prefix"), ["v3/b/1", "v3/b/2"]);

    // Access times are kept apart from the records.
    index
        .record_access(&[("v3/a".into(), 1_000), ("v3/c".into(), 2_000)])
        .expect("record access");
    assert_eq!(
        index.get("v3/a").expect("get"),
        Some(entry(15)),
        "an access leaves the record alone"
    );
    assert_eq!(index.totals().entries, 4, "access times are not records");
    assert_eq!(index.last_access("v3/a").expect("access"), Some(1_000));
    assert_eq!(index.last_access("v3/b/1").expect("access"), None, "never accessed");
    assert_eq!(index.remove("v3/a").expect("remove"), Some(entry(15)));
    assert_eq!(
        index.last_access("v3/a").expect("access"),
        None,
        "a removal drops its access time"
    );
    assert_eq!(index.last_access("v3/c").expect("access"), Some(2_000));
    assert_eq!(index.remove("v3/a").expect("remove twice"), None);
    assert_eq!(
        index.totals(),
        Totals { entries: 3, bytes: 90 },
        "totals follow removals"
    );

    // Package hashes are a map of their own.
    assert_eq!(index.hash("nunit/3.0.0").expect("hash"), None);
    index.put_hash("nunit/3.0.0", "ab").expect("put hash");
    assert_eq!(index.hash("nunit/3.0.0").expect("hash").as_deref(), Some("ab"));
    assert_eq!(index.totals().entries, 3, "hashes are not records");
    index.put_hash("acme/1.0.0", "cd").expect("put hash");
    let all = index.package_hashes().expect("list hashes");
    assert_eq!(
        all,
        [("acme/1.0.0".into(), "cd".into()), ("nunit/3.0.0".into(), "ab".into())]
    );
    index.remove_hash("acme/1.0.0").expect("remove hash");
    index.remove_hash("acme/1.0.0").expect("removing twice is fine");
    assert_eq!(index.hash("acme/1.0.0").expect("hash"), None);
    assert_eq!(index.package_hashes().expect("list hashes").len(), 1);
    index.flush().expect("flush");
}
