//! Start-up repair and index rebuilds: the index and the objects are made
//! to agree again after a crash, a lost index or an upgrade.
//!
//! - a record whose object is gone or of the wrong size is dropped;
//! - an object with a valid record the index lacks (a crash between its
//!   commit and the index write, or an index rebuilt from nothing) is
//!   adopted; when two objects claim one key (a replaced document whose
//!   old object survived a crash), the newer `fetched_at` is kept and the
//!   other removed;
//! - only objects without a usable record that the index does not know
//!   are orphans, and deleted;
//! - a missing or unreadable index (sled cannot open it, or its records
//!   cannot be read) is rebuilt from the objects' records; an unreadable
//!   one is moved aside to `index.unreadable` first;
//! - files written before objects carried records, which the index knows,
//!   are given theirs in place (`upgrade_legacy`), once.
//!
//! What only the index holds is lost with it: access times (the evictor
//! then goes by `fetched_at`), the package hashes documents stated (their
//! next fetch states them again), and a 304's later `fetched_at` (the
//! document is revalidated sooner).

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use super::fs_store::FsBlobStore;
use super::index::IndexStore;
use super::record::Record;
use super::sled_index::SledIndex;
use super::{name_of, Cache};
use crate::error::{RecordProblem, StorageError};

const INDEX_DIR: &str = "index";
/// Where an index sled cannot read is moved (replacing an older one).
const UNREADABLE_INDEX_DIR: &str = "index.unreadable";

/// Why the index was rebuilt from the objects' records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IndexRebuild {
    /// There was no index directory.
    Missing,
    /// The index could not be read; it was moved to `moved_to`.
    Unreadable { error: String, moved_to: PathBuf },
    /// `nucache rebuild-index`.
    Requested,
}

/// What the start-up check (or a rebuild) found and repaired.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Repair {
    /// Records in the index afterwards.
    pub entries: usize,
    /// Records whose object was gone or of the wrong size.
    pub dropped_entries: usize,
    pub removed_temp_files: usize,
    /// Objects without a usable record that the index did not know.
    pub removed_orphan_files: usize,
    /// Objects with a valid record the index lacked, now in it.
    pub adopted_files: usize,
    /// Older objects of a key a newer object holds.
    pub removed_duplicate_files: usize,
    /// Files written before objects carried records, given theirs.
    pub upgraded_files: usize,
    /// Set when the index was rebuilt from the objects' records.
    pub rebuilt: Option<IndexRebuild>,
}

impl Repair {
    /// One line for what was out of the ordinary.
    pub(super) fn log(&self) {
        if self.upgraded_files > 0 {
            tracing::info!(
                upgraded = self.upgraded_files,
                "cache objects written by an older nucache were given their records (once)"
            );
        }
        match &self.rebuilt {
            Some(why) => tracing::warn!(
                reason = ?why,
                objects = self.adopted_files,
                removed_duplicates = self.removed_duplicate_files,
                removed_orphans = self.removed_orphan_files,
                "cache index rebuilt from the objects' records"
            ),
            None if self.adopted_files > 0 || self.removed_duplicate_files > 0 => tracing::info!(
                adopted = self.adopted_files,
                removed_duplicates = self.removed_duplicate_files,
                "cache objects the index lacked (a crash after their commit) were put back in it"
            ),
            None => {}
        }
    }
}

/// Opens the index under `cache_dir`; says why it must be rebuilt when it
/// was missing or unreadable (an unreadable one is moved aside first).
pub(super) fn open_index(cache_dir: &Path) -> Result<(SledIndex, Option<IndexRebuild>), StorageError> {
    let dir = cache_dir.join(INDEX_DIR);
    if !dir.exists() {
        return Ok((SledIndex::open(&dir)?, Some(IndexRebuild::Missing)));
    }
    let error = match SledIndex::open(&dir) {
        Ok(index) => return Ok((index, None)),
        Err(StorageError::Locked) => return Err(StorageError::Locked),
        Err(error) => error,
    };
    let moved_to = cache_dir.join(UNREADABLE_INDEX_DIR);
    if moved_to.exists() {
        std::fs::remove_dir_all(&moved_to).map_err(StorageError::io("removing an older unreadable index"))?;
    }
    std::fs::rename(&dir, &moved_to).map_err(StorageError::io("moving an unreadable index aside"))?;
    let why = IndexRebuild::Unreadable {
        error: crate::error::chain(&error),
        moved_to,
    };
    Ok((SledIndex::open(&dir)?, Some(why)))
}

/// Gives every file the index knows that was written before objects
/// carried records its record, in place; returns how many.
pub(super) fn upgrade_legacy(blobs: &FsBlobStore, index: &dyn IndexStore) -> Result<usize, StorageError> {
    let mut upgraded = 0;
    for (key, entry) in index.records() {
        let Ok(entry) = entry else { continue };
        let record = Record::new(&key, &entry);
        if blobs.add_record(&record.name(), &record)? {
            upgraded += 1;
        }
    }
    Ok(upgraded)
}

impl Cache {
    /// Makes the index and the objects agree (see the module comment).
    pub(super) fn repair(&self) -> Result<Repair, StorageError> {
        let mut report = Repair {
            removed_temp_files: self.blobs.sweep_temp()?,
            ..Repair::default()
        };
        let mut live = HashSet::new();
        let records: Vec<_> = self.index.records().collect();
        for (key, record) in records {
            let usable = match record {
                Ok(entry) => self.open_object(&key, &entry)?.map(|_| name_of(&key, &entry)),
                Err(_) => None,
            };
            match usable {
                Some(name) => {
                    live.insert(name);
                }
                None => {
                    self.index.remove(&key)?;
                    report.dropped_entries += 1;
                }
            }
        }
        for name in self.blobs.names()? {
            if !live.contains(&name) {
                self.adopt(&name, &mut report)?;
            }
        }
        report.entries = self.index.totals().entries;
        Ok(report)
    }

    /// Rebuilds the index from the objects' records alone: every record is
    /// dropped, every object adopted (`nucache rebuild-index`).
    pub fn rebuild_index(&self) -> Result<Repair, StorageError> {
        let keys: Vec<String> = self.index.records().map(|(key, _)| key).collect();
        for key in keys {
            self.index.remove(&key)?;
        }
        self.hot.invalidate_all();
        self.hot_blobs.invalidate_all();
        let mut report = self.repair()?;
        report.rebuilt = Some(IndexRebuild::Requested);
        report.log();
        Ok(report)
    }

    /// An object the index does not point at: adopted when its record is
    /// usable (the newer of two for one key wins), else deleted.
    fn adopt(&self, name: &str, report: &mut Repair) -> Result<(), StorageError> {
        let record = match self.blobs.record(name) {
            Ok(Some(record)) => record,
            Ok(None) => return Ok(()),
            Err(StorageError::ObjectRecord {
                problem: RecordProblem::Io(error),
                ..
            }) => {
                // The disk, not the object, failed: leave it for next time.
                tracing::warn!(object = name, %error, "cannot read a cache object's record; left alone");
                return Ok(());
            }
            Err(_) => {
                self.blobs.remove(name)?;
                report.removed_orphan_files += 1;
                return Ok(());
            }
        };
        let own_name = record.name();
        // Under another name than its record gives (a key migration cut
        // short between the two): moved where its record says.
        if own_name != name && !self.blobs.rename(name, &own_name, &record)? {
            return Ok(());
        }
        let (key, entry) = (record.key, record.entry);
        let Some(current) = self.index.get(&key)? else {
            self.index.put(&key, &entry)?;
            report.adopted_files += 1;
            return Ok(());
        };
        if current.sha512 == entry.sha512 {
            return Ok(());
        }
        if entry.fetched_at > current.fetched_at {
            self.index.put(&key, &entry)?;
            self.blobs.remove(&name_of(&key, &current))?;
        } else {
            self.blobs.remove(&own_name)?;
        }
        report.removed_duplicate_files += 1;
        Ok(())
    }
}
