//! Moving cached objects to new keys (a change of the cache-key
//! namespace), in place and without copying content: the index record and
//! its access time, the object's record and name, and the package hashes.
//!
//! Each key moves in an order that a crash at any point leaves repairable:
//! the record at the new key first, then the object (its record rewritten,
//! then renamed), then the old key's record. Start-up repair drops
//! whichever record has no object, and the object keeps its content under
//! one of the two names; the migration, run again, finishes the rest.

use super::index::Entry;
use super::record::Record;
use super::{name_of, Cache};
use crate::error::StorageError;

impl Cache {
    /// Moves every record whose key `rename` maps to another key there:
    /// index record, access time, the object's record and name, and the
    /// package hashes (their keys, `{prefix}{lower_id}/{lower_version}`,
    /// go through `rename` too). Keys it maps to `None` or to themselves
    /// stay. When both keys hold an object, the newer `fetched_at` wins.
    ///
    /// Blocking; call it once at start-up, before serving. Idempotent, and
    /// a crash midway loses no content (see the module comment). Returns
    /// how many records moved.
    pub fn rename_keys(&self, rename: impl Fn(&str) -> Option<String>) -> Result<usize, StorageError> {
        let records: Vec<_> = self.index.records().collect();
        let mut moved = 0;
        for (key, entry) in records {
            let Some(to) = rename(&key).filter(|to| *to != key) else {
                continue;
            };
            // An unreadable record (start-up repair drops those) stays.
            if let Ok(entry) = entry {
                if self.move_key(&key, &to, &entry)? {
                    moved += 1;
                }
            }
        }
        for (package, hash) in self.index.package_hashes()? {
            if let Some(to) = rename(&package).filter(|to| *to != package) {
                self.index.put_hash(&to, &hash)?;
                self.index.remove_hash(&package)?;
            }
        }
        self.index.flush()?;
        if moved > 0 {
            tracing::info!(moved, "cache records moved to their new keys");
        }
        Ok(moved)
    }

    /// Moves `from`'s record and object to `to`; `false` when `to` already
    /// held a newer object (`from` is dropped) or the object is gone.
    fn move_key(&self, from: &str, to: &str, entry: &Entry) -> Result<bool, StorageError> {
        for key in [from, to] {
            self.hot.invalidate(key);
            self.hot_blobs.invalidate(key);
        }
        if let Some(existing) = self.index.get(to)?.filter(|e| e.sha512 != entry.sha512) {
            if existing.fetched_at >= entry.fetched_at {
                self.remove(from)?;
                return Ok(false);
            }
            self.blobs.remove(&name_of(to, &existing))?;
        }
        let accessed = self.index.last_access(from)?;
        self.index.put(to, entry)?;
        if let Some(at) = accessed {
            self.index.record_access(&[(to.to_string(), at)])?;
        }
        let (old, new) = (name_of(from, entry), name_of(to, entry));
        // Not there under the old name: moved before a crash, or gone.
        let there =
            self.blobs.rename(&old, &new, &Record::new(to, entry))? || self.blobs.open(&new, entry.size)?.is_some();
        if !there {
            self.index.remove(to)?;
        }
        self.index.remove(from)?;
        Ok(there)
    }
}
