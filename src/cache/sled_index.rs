//! The index on disk, in sled: records as JSON in `entries`, last-access
//! times in `access` (so a hit never rewrites a record), package hashes in
//! `package_hashes`. The totals are counted once at open and kept running.

use std::path::Path;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use super::index::{Entry, IndexStore, Record, Totals};
use crate::error::StorageError;

const ENTRIES: &str = "entries";
const ACCESS: &str = "access";
const HASHES: &str = "package_hashes";

pub(crate) struct SledIndex {
    db: sled::Db,
    entries: sled::Tree,
    access: sled::Tree,
    /// `{lower_id}/{lower_version}` -> SHA-512 hex stated by the metadata.
    hashes: sled::Tree,
    /// `sled::Tree::len` walks the whole tree, and `/health` asks on every poll.
    count: AtomicUsize,
    bytes: AtomicU64,
}

impl SledIndex {
    pub fn open(dir: &Path) -> Result<SledIndex, StorageError> {
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
        let index = SledIndex {
            count: AtomicUsize::new(0),
            bytes: AtomicU64::new(0),
            access: db.open_tree(ACCESS)?,
            hashes: db.open_tree(HASHES)?,
            entries,
            db,
        };
        index.count_totals()?;
        Ok(index)
    }

    /// Counts the records once; a tree sled cannot walk is an error (the
    /// index is then rebuilt from the objects).
    fn count_totals(&self) -> Result<(), StorageError> {
        let (mut count, mut bytes) = (0, 0u64);
        for item in self.entries.iter() {
            let (key, raw) = item?;
            count += 1;
            let size = decode(&String::from_utf8_lossy(&key), &raw).map_or(0, |e| e.size);
            bytes = bytes.saturating_add(size);
        }
        self.count.store(count, Ordering::Relaxed);
        self.bytes.store(bytes, Ordering::Relaxed);
        Ok(())
    }
}

impl IndexStore for SledIndex {
    fn get(&self, key: &str) -> Result<Option<Entry>, StorageError> {
        match self.entries.get(key.as_bytes())? {
            None => Ok(None),
            Some(raw) => decode(key, &raw).map(Some),
        }
    }

    fn put(&self, key: &str, entry: &Entry) -> Result<Option<Entry>, StorageError> {
        let raw = serde_json::to_vec(entry).map_err(|source| StorageError::Record {
            key: key.to_string(),
            source,
        })?;
        let replaced = self.entries.insert(key.as_bytes(), raw)?;
        let replaced = replaced.and_then(|raw| decode(key, &raw).ok());
        match &replaced {
            Some(old) => {
                self.bytes.fetch_sub(old.size, Ordering::Relaxed);
            }
            None => {
                self.count.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.bytes.fetch_add(entry.size, Ordering::Relaxed);
        Ok(replaced)
    }

    fn remove(&self, key: &str) -> Result<Option<Entry>, StorageError> {
        self.access.remove(key.as_bytes())?;
        let Some(raw) = self.entries.remove(key.as_bytes())? else {
            return Ok(None);
        };
        self.count.fetch_sub(1, Ordering::Relaxed);
        let entry = decode(key, &raw);
        if let Ok(old) = &entry {
            self.bytes.fetch_sub(old.size, Ordering::Relaxed);
        }
        entry.map(Some)
    }

    fn records(&self) -> Box<dyn Iterator<Item = Record> + '_> {
        Box::new(self.entries.iter().filter_map(|item| {
            let (key, raw) = item.ok()?;
            let key = String::from_utf8_lossy(&key).into_owned();
            let entry = decode(&key, &raw);
            Some((key, entry))
        }))
    }

    fn entries_after(&self, after: Option<&str>, limit: usize) -> Result<Vec<(String, Entry)>, StorageError> {
        use std::ops::Bound;
        let start = match after {
            Some(key) => Bound::Excluded(key.as_bytes().to_vec()),
            None => Bound::Unbounded,
        };
        let mut out = Vec::with_capacity(limit.min(1024));
        for item in self.entries.range::<Vec<u8>, _>((start, Bound::Unbounded)) {
            if out.len() >= limit {
                break;
            }
            let (key, raw) = item?;
            let key = String::from_utf8_lossy(&key).into_owned();
            if let Ok(entry) = decode(&key, &raw) {
                out.push((key, entry));
            }
        }
        Ok(out)
    }

    fn keys_with_prefix(&self, prefix: &str) -> Result<Vec<String>, StorageError> {
        let mut keys = Vec::new();
        for item in self.entries.scan_prefix(prefix.as_bytes()) {
            let (key, _) = item?;
            keys.push(String::from_utf8_lossy(&key).into_owned());
        }
        Ok(keys)
    }

    fn totals(&self) -> Totals {
        Totals {
            entries: self.count.load(Ordering::Relaxed),
            bytes: self.bytes.load(Ordering::Relaxed),
        }
    }

    fn record_access(&self, batch: &[(String, u64)]) -> Result<(), StorageError> {
        let mut writes = sled::Batch::default();
        for (key, at) in batch {
            writes.insert(key.as_bytes(), &at.to_be_bytes());
        }
        self.access.apply_batch(writes)?;
        Ok(())
    }

    fn last_access(&self, key: &str) -> Result<Option<u64>, StorageError> {
        // A malformed value counts as never accessed.
        Ok(self
            .access
            .get(key.as_bytes())?
            .map(|raw| <[u8; 8]>::try_from(raw.as_ref()).map_or(0, u64::from_be_bytes)))
    }

    fn put_hash(&self, package: &str, sha512_hex: &str) -> Result<(), StorageError> {
        self.hashes.insert(package.as_bytes(), sha512_hex.as_bytes())?;
        Ok(())
    }

    fn hash(&self, package: &str) -> Result<Option<String>, StorageError> {
        Ok(self
            .hashes
            .get(package.as_bytes())?
            .map(|raw| String::from_utf8_lossy(&raw).into_owned()))
    }

    fn package_hashes(&self) -> Result<Vec<(String, String)>, StorageError> {
        let mut all = Vec::new();
        for item in self.hashes.iter() {
            let (package, hash) = item?;
            all.push((
                String::from_utf8_lossy(&package).into_owned(),
                String::from_utf8_lossy(&hash).into_owned(),
            ));
        }
        Ok(all)
    }

    fn remove_hash(&self, package: &str) -> Result<(), StorageError> {
        self.hashes.remove(package.as_bytes())?;
        Ok(())
    }

    fn flush(&self) -> Result<(), StorageError> {
        self.db.flush()?;
        Ok(())
    }
}

fn decode(key: &str, raw: &[u8]) -> Result<Entry, StorageError> {
    serde_json::from_slice(raw).map_err(|source| StorageError::Record {
        key: key.to_string(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::index_compliance::{entry, suite};

    fn open_when_unlocked(path: &Path) -> SledIndex {
        // sled's background flusher lets go of its file lock a moment after
        // a drop: poll for it.
        for _ in 0..100 {
            match SledIndex::open(path) {
                Err(StorageError::Locked) => std::thread::sleep(std::time::Duration::from_millis(20)),
                other => return other.expect("open"),
            }
        }
        panic!("the index stayed locked");
    }

    #[test]
    fn sled_index_passes_the_suite() {
        let dir = tempfile::tempdir().expect("tempdir");
        suite(&SledIndex::open(&dir.path().join("index")).expect("open"));
    }

    #[test]
    fn the_totals_start_from_what_is_on_disk() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("index");
        let index = SledIndex::open(&path).expect("open");
        index.put("a", &entry(10)).expect("put a");
        index.put("b", &entry(20)).expect("put b");
        index.put("a", &entry(30)).expect("replace a");
        index.remove("b").expect("remove b");
        index.flush().expect("flush");
        drop(index);
        let reopened = open_when_unlocked(&path);
        assert_eq!(reopened.totals(), Totals { entries: 1, bytes: 30 });
    }
}
