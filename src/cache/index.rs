//! The cache index in sled: one record per cached object (what it is,
//! where it came from, its size and SHA-512, the upstream validators), and
//! last-access times kept apart so that a hit never rewrites a record.

use std::path::Path;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::error::StorageError;

const ENTRIES: &str = "entries";
const ACCESS: &str = "access";
const HASHES: &str = "package_hashes";

/// What kind of object an entry holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EntryKind {
    /// Package bytes exactly as the upstream sent them (immutable).
    Blob,
    /// A rewritten metadata document, stored as a template.
    Document,
    /// The upstream service index, stored as received (decoded).
    ServiceIndex,
}

/// One cached object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub kind: EntryKind,
    /// The upstream URL it was fetched from.
    pub url: String,
    pub size: u64,
    /// SHA-512 of the stored bytes, hex.
    pub sha512: String,
    pub content_type: String,
    /// Upstream validators, for revalidation.
    #[serde(default)]
    pub etag: Option<String>,
    #[serde(default)]
    pub last_modified: Option<String>,
    /// When the upstream last confirmed it (ms since the epoch).
    pub fetched_at: u64,
    /// XXH3-128 of the stored bytes, checked on every read (absent in
    /// records written before it was kept: those are checked by SHA-512).
    #[serde(default)]
    pub xxh3: Option<u128>,
}

pub(crate) struct Index {
    db: sled::Db,
    entries: sled::Tree,
    access: sled::Tree,
    /// `{lower_id}/{lower_version}` -> SHA-512 hex stated by the metadata.
    hashes: sled::Tree,
    /// Records in `entries`, kept as a running count: `sled::Tree::len`
    /// walks the whole tree, and `/health` asks for it on every poll.
    count: AtomicUsize,
    /// Sum of the records' sizes, kept the same way (the cap's measure).
    bytes: AtomicU64,
}

impl Index {
    pub fn open(dir: &Path) -> Result<Index, StorageError> {
        let db = sled::Config::new()
            .path(dir)
            .cache_capacity(64 * 1024 * 1024)
            .flush_every_ms(Some(500))
            .open()
            .map_err(|error| match error {
                // sled holds an exclusive lock on its files.
                sled::Error::Io(io) if io.to_string().contains("could not acquire lock") => StorageError::Locked,
                other => StorageError::Index(other),
            })?;
        let entries = db.open_tree(ENTRIES)?;
        let (count, bytes) = totals(&entries);
        Ok(Index {
            count: AtomicUsize::new(count),
            bytes: AtomicU64::new(bytes),
            entries,
            access: db.open_tree(ACCESS)?,
            hashes: db.open_tree(HASHES)?,
            db,
        })
    }

    pub fn get(&self, key: &str) -> Result<Option<Entry>, StorageError> {
        match self.entries.get(key.as_bytes())? {
            None => Ok(None),
            Some(raw) => decode(key, &raw).map(Some),
        }
    }

    pub fn put(&self, key: &str, entry: &Entry) -> Result<(), StorageError> {
        let raw = serde_json::to_vec(entry).map_err(|e| StorageError::Record {
            key: key.to_string(),
            reason: e.to_string(),
        })?;
        match self.entries.insert(key.as_bytes(), raw)? {
            None => {
                self.count.fetch_add(1, Ordering::Relaxed);
            }
            Some(old) => {
                self.bytes.fetch_sub(size_of_record(&old), Ordering::Relaxed);
            }
        }
        self.bytes.fetch_add(entry.size, Ordering::Relaxed);
        Ok(())
    }

    pub fn remove(&self, key: &str) -> Result<Option<Entry>, StorageError> {
        self.access.remove(key.as_bytes())?;
        match self.entries.remove(key.as_bytes())? {
            None => Ok(None),
            Some(raw) => {
                self.count.fetch_sub(1, Ordering::Relaxed);
                self.bytes.fetch_sub(size_of_record(&raw), Ordering::Relaxed);
                decode(key, &raw).map(Some)
            }
        }
    }

    /// Every record; unreadable ones come back as errors with their key.
    pub fn iter(&self) -> impl Iterator<Item = (String, Result<Entry, StorageError>)> + '_ {
        self.entries.iter().filter_map(|item| {
            let (key, raw) = item.ok()?;
            let key = String::from_utf8_lossy(&key).into_owned();
            let entry = decode(&key, &raw);
            Some((key, entry))
        })
    }

    /// Up to `limit` records whose keys follow `after` (from the first
    /// when `None`), in key order; unreadable records are skipped.
    pub fn entries_after(&self, after: Option<&str>, limit: usize) -> Result<Vec<(String, Entry)>, StorageError> {
        use std::ops::Bound;
        let start = match after {
            Some(key) => Bound::Excluded(key.as_bytes().to_vec()),
            None => Bound::Unbounded,
        };
        let mut out = Vec::with_capacity(limit);
        for item in self.entries.range::<Vec<u8>, _>((start, Bound::Unbounded)) {
            let (key, raw) = item?;
            let key = String::from_utf8_lossy(&key).into_owned();
            if let Ok(entry) = decode(&key, &raw) {
                out.push((key, entry));
            }
            if out.len() == limit {
                break;
            }
        }
        Ok(out)
    }

    pub fn keys_with_prefix(&self, prefix: &str) -> Result<Vec<String>, StorageError> {
        let mut keys = Vec::new();
        for item in self.entries.scan_prefix(prefix.as_bytes()) {
            let (key, _) = item?;
            keys.push(String::from_utf8_lossy(&key).into_owned());
        }
        Ok(keys)
    }

    /// How many records there are (O(1)).
    pub fn len(&self) -> usize {
        self.count.load(Ordering::Relaxed)
    }

    /// The sum of the records' sizes (O(1)).
    pub fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }

    /// Stores a batch of last-access times in one go.
    pub fn record_access(&self, batch: &[(String, u64)]) -> Result<(), StorageError> {
        let mut writes = sled::Batch::default();
        for (key, at) in batch {
            writes.insert(key.as_bytes(), &at.to_be_bytes());
        }
        self.access.apply_batch(writes)?;
        Ok(())
    }

    pub fn put_hash(&self, package: &str, sha512_hex: &str) -> Result<(), StorageError> {
        self.hashes.insert(package.as_bytes(), sha512_hex.as_bytes())?;
        Ok(())
    }

    pub fn hash(&self, package: &str) -> Result<Option<String>, StorageError> {
        Ok(self
            .hashes
            .get(package.as_bytes())?
            .map(|raw| String::from_utf8_lossy(&raw).into_owned()))
    }

    pub fn flush(&self) -> Result<(), StorageError> {
        self.db.flush()?;
        Ok(())
    }
}

/// Records and bytes in `entries`, counted once at opening.
fn totals(entries: &sled::Tree) -> (usize, u64) {
    entries
        .iter()
        .filter_map(Result::ok)
        .fold((0, 0), |(count, bytes), (_, raw)| {
            (count + 1, bytes + size_of_record(&raw))
        })
}

/// The size a raw record states (0 when unreadable: it counts for nothing).
fn size_of_record(raw: &[u8]) -> u64 {
    #[derive(Deserialize)]
    struct Size {
        size: u64,
    }
    serde_json::from_slice::<Size>(raw).map_or(0, |record| record.size)
}

fn decode(key: &str, raw: &[u8]) -> Result<Entry, StorageError> {
    serde_json::from_slice(raw).map_err(|e| StorageError::Record {
        key: key.to_string(),
        reason: e.to_string(),
    })
}

/// Milliseconds since the epoch.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(size: u64) -> Entry {
        Entry {
            kind: EntryKind::Blob,
            url: "http://up/x".into(),
            size,
            sha512: "00".repeat(64),
            content_type: "application/octet-stream".into(),
            etag: None,
            last_modified: None,
            fetched_at: 0,
            xxh3: None,
        }
    }

    #[test]
    fn the_running_totals_follow_puts_replacements_and_removals() {
        let dir = tempfile::tempdir().expect("tempdir");
        let index = Index::open(&dir.path().join("index")).expect("open");
        index.put("a", &entry(1)).expect("put a");
        index.put("b", &entry(2)).expect("put b");
        index.put("a", &entry(3)).expect("replace a");
        assert_eq!((index.len(), index.bytes()), (2, 5));
        index.remove("a").expect("remove a");
        index.remove("missing").expect("remove missing");
        assert_eq!((index.len(), index.bytes()), (1, 2));
        index.flush().expect("flush");
        drop(index);
        // sled's background flusher lets go of its file lock a moment after
        // the drop: poll for it.
        let mut reopened = Index::open(&dir.path().join("index"));
        for _ in 0..100 {
            if !matches!(reopened, Err(StorageError::Locked)) {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
            reopened = Index::open(&dir.path().join("index"));
        }
        let reopened = reopened.expect("reopen");
        assert_eq!(
            (reopened.len(), reopened.bytes()),
            (1, 2),
            "the totals start from what is on disk"
        );
    }
}
