//! The cache: an index (sled) over blob files, with hot documents in memory
//! (moka). Keys are canonical local paths below `/v3/` (see `route.rs`).
//!
//! - `index`: the records, behind [`IndexStore`] (`sled_index` on disk;
//!   `index_compliance`: what every index store must do);
//! - `blobs`: the file store (temporary file, hash, fsync, rename);
//! - `status`: HIT / MISS / STALE / REVALIDATED;
//! - `compliance` (tests): what every blob store must do.

mod blobs;
#[cfg(test)]
mod compliance;
mod health;
mod hot;
mod index;
#[cfg(test)]
mod index_compliance;
mod reader;
pub(crate) mod scrub;
mod sled_index;
mod status;

use std::fs::File;
use std::io::Read;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use sha2::{Digest, Sha512};

use crate::config::CacheConfig;
use crate::error::StorageError;
use crate::nuget::PackageHash;
use crate::rewrite::Template;

pub(crate) use blobs::{read_at, BlobInfo, BlobStore, BlobWriter, FsBlobStore};
pub(crate) use health::StorageHealth;
pub(crate) use hot::{blob_etag, HotBlob};
pub(crate) use index::IndexStore;
pub use index::{now_ms, Entry, EntryKind, Totals};
pub(crate) use reader::{BlobReader, ReadError};
pub use status::CacheStatus;

/// Where an object came from upstream; completed into an [`Entry`] when stored.
#[derive(Debug, Clone, Default)]
pub(crate) struct Origin {
    pub url: String,
    pub content_type: String,
    pub etag: Option<String>,
    pub last_modified: Option<String>,
}

/// A document in memory: its record and its (template) body.
#[derive(Debug)]
pub(crate) struct HotDoc {
    pub entry: Entry,
    pub body: Template,
    /// Last hit (ms since the epoch), recorded without a lock.
    accessed: AtomicU64,
}

impl HotDoc {
    pub fn is_fresh(&self, ttl: Duration) -> bool {
        now_ms().saturating_sub(self.entry.fetched_at) < ttl.as_millis() as u64
    }

    /// Notes a hit; written to the index by [`Cache::flush_access`].
    pub fn touch(&self) {
        self.accessed.store(now_ms(), Ordering::Relaxed);
    }
}

/// A blob made hot, and its file opened when its bytes are not in memory.
pub(crate) type LoadedBlob = (Arc<HotBlob>, Option<File>);

/// Cache keys named exactly or by prefix (a package's documents).
#[derive(Debug, Clone, Default)]
pub(crate) struct KeySet {
    pub exact: Vec<String>,
    pub prefixes: Vec<String>,
}

impl KeySet {
    pub fn contains(&self, key: &str) -> bool {
        self.exact.iter().any(|exact| exact == key)
            || self.prefixes.iter().any(|prefix| key.starts_with(prefix.as_str()))
    }
}

/// What a purge removed from disk.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Purged {
    pub objects: usize,
    pub bytes: u64,
}

/// What `nucache verify` found.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Verification {
    pub checked: usize,
    /// Bytes of the objects found intact.
    pub bytes: u64,
    /// Keys whose bytes did not match their record, now dropped.
    pub dropped: Vec<String>,
}

/// Whether `dir` holds a cache (its index): `verify` refuses a mistyped
/// directory rather than create an empty cache there and report success.
pub fn is_cache_dir(dir: &std::path::Path) -> bool {
    dir.join("index").is_dir()
}

/// Opens the cache under `config.dir` (nucache must not be running on it)
/// and verifies every object; see [`Cache::verify`].
pub fn verify_cache(config: &CacheConfig) -> Result<Verification, StorageError> {
    let (cache, _repair) = Cache::open(config, Duration::ZERO)?;
    let report = cache.verify()?;
    cache.flush()?;
    Ok(report)
}

/// What the start-up check found and repaired.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Repair {
    pub entries: usize,
    pub dropped_entries: usize,
    pub removed_temp_files: usize,
    pub removed_orphan_files: usize,
}

pub(crate) struct Cache {
    index: Box<dyn IndexStore>,
    blobs: Box<dyn BlobStore>,
    hot: moka::sync::Cache<String, Arc<HotDoc>>,
    /// Committed blobs as they are served (small ones with their bytes).
    hot_blobs: moka::sync::Cache<String, Arc<HotBlob>>,
    /// Keys the upstream recently answered 404 for (`ttl.not_found`).
    missing: moka::sync::Cache<String, ()>,
    /// Access times up to this moment (ms) are in the index.
    access_flushed: AtomicU64,
    /// Whether the disk takes writes.
    pub health: StorageHealth,
    /// Check every blob read against its checksum (`cache.verify_reads`).
    verify_reads: bool,
}

impl Cache {
    /// Opens (creating) the cache under `config.dir` and repairs what a
    /// crash may have left: temporary files, records without their file,
    /// files without their record. Upstream 404s are remembered for
    /// `not_found_ttl`.
    pub fn open(config: &CacheConfig, not_found_ttl: Duration) -> Result<(Cache, Repair), StorageError> {
        std::fs::create_dir_all(&config.dir).map_err(StorageError::io("creating the cache directory"))?;
        let index = Box::new(sled_index::SledIndex::open(&config.dir.join("index"))?);
        let blobs = Box::new(FsBlobStore::open(&config.dir)?);
        let hot = moka::sync::Cache::builder()
            .max_capacity(config.memory.bytes() / 2)
            .weigher(|_key: &String, doc: &Arc<HotDoc>| doc.body.weight().try_into().unwrap_or(u32::MAX))
            // Publishing drops a package's documents by key prefix.
            .support_invalidation_closures()
            .build();
        // `cache.memory` bounds both hot layers together, half each.
        let hot_blobs = moka::sync::Cache::builder()
            .max_capacity(config.memory.bytes() / 2)
            .weigher(|_key: &String, blob: &Arc<HotBlob>| blob.weight())
            .build();
        let missing = moka::sync::Cache::builder()
            .max_capacity(100_000)
            .time_to_live(not_found_ttl.max(Duration::from_millis(1)))
            // Publishing forgets a package's 404s by key prefix.
            .support_invalidation_closures()
            .build();
        let cache = Cache {
            index,
            blobs,
            hot,
            hot_blobs,
            missing,
            access_flushed: AtomicU64::new(0),
            health: StorageHealth::new(config.storage_retry),
            verify_reads: config.verify_reads,
        };
        let repair = cache.repair()?;
        Ok((cache, repair))
    }

    /// Re-hashes every cached object and drops those whose bytes no longer
    /// match their record: they are fetched again on the next request.
    pub fn verify(&self) -> Result<Verification, StorageError> {
        let mut report = Verification::default();
        let records: Vec<(String, Result<Entry, StorageError>)> = self.index.records().collect();
        for (key, record) in records {
            let intact = match &record {
                Ok(entry) => self.hashes_to(&key, entry)?,
                Err(_) => false,
            };
            report.checked += 1;
            if intact {
                report.bytes += record.map(|e| e.size).unwrap_or(0);
            } else {
                self.remove(&key)?;
                report.dropped.push(key);
            }
        }
        Ok(report)
    }

    pub(crate) fn hashes_to(&self, key: &str, entry: &Entry) -> Result<bool, StorageError> {
        let Some(file) = self.blobs.open(key, &info(entry))? else {
            return Ok(false);
        };
        reader::intact(file, entry.size, (entry.xxh3, &entry.sha512)).map_err(StorageError::io("re-hashing a blob"))
    }

    fn repair(&self) -> Result<Repair, StorageError> {
        let mut report = Repair {
            removed_temp_files: self.blobs.sweep_temp()?,
            ..Repair::default()
        };
        let mut live = Vec::new();
        let records: Vec<(String, Result<Entry, StorageError>)> = self.index.records().collect();
        for (key, record) in records {
            let usable = match record {
                Ok(entry) => self.blobs.open(&key, &info(&entry))?.is_some().then_some(entry),
                Err(_) => None,
            };
            match usable {
                Some(entry) => live.push((key, entry.sha512)),
                None => {
                    self.index.remove(&key)?;
                    report.dropped_entries += 1;
                }
            }
        }
        report.entries = live.len();
        report.removed_orphan_files = self.blobs.sweep_orphans(&live)?;
        Ok(report)
    }

    /// A cached document: from memory, else from disk (verified against its
    /// SHA-512; a mismatch drops the entry).
    pub fn document(&self, key: &str) -> Result<Option<Arc<HotDoc>>, StorageError> {
        if let Some(doc) = self.hot.get(key) {
            return Ok(Some(doc));
        }
        let Some(entry) = self.index.get(key)? else {
            return Ok(None);
        };
        let Some(body) = self.read_verified(key, &entry)? else {
            tracing::warn!(key, "cached document missing or corrupt; dropped");
            self.remove(key)?;
            return Ok(None);
        };
        Ok(Some(self.remember(key, entry, body)))
    }

    fn read_verified(&self, key: &str, entry: &Entry) -> Result<Option<Bytes>, StorageError> {
        let Some(mut file) = self.blobs.open(key, &info(entry))? else {
            return Ok(None);
        };
        let mut body = Vec::with_capacity(entry.size as usize);
        file.read_to_end(&mut body)
            .map_err(StorageError::io("reading a document"))?;
        let matches = hex::encode(Sha512::digest(&body)) == entry.sha512;
        Ok(matches.then(|| Bytes::from(body)))
    }

    fn remember(&self, key: &str, entry: Entry, body: Bytes) -> Arc<HotDoc> {
        let content_id = entry.sha512.clone();
        let doc = Arc::new(HotDoc {
            entry,
            body: Template::new(body, &content_id),
            accessed: AtomicU64::new(0),
        });
        self.hot.insert(key.to_string(), doc.clone());
        doc
    }

    /// Stores a document (blocking I/O). `persist: false` keeps it in
    /// memory only (search answers).
    pub fn store_document(
        &self,
        key: &str,
        kind: EntryKind,
        origin: Origin,
        body: Bytes,
        persist: bool,
    ) -> Result<Arc<HotDoc>, StorageError> {
        let in_memory = BlobInfo {
            size: body.len() as u64,
            sha512: hex::encode(Sha512::digest(&body)),
            xxh3: None,
        };
        let mut entry = entry_of(kind, origin.clone(), in_memory);
        if persist && !self.health.bypass() {
            if let Ok(stored) = self.watch(self.write_document(key, kind, origin, &body)) {
                entry = stored;
            }
        }
        Ok(self.remember(key, entry, body))
    }

    fn write_document(&self, key: &str, kind: EntryKind, origin: Origin, body: &[u8]) -> Result<Entry, StorageError> {
        let mut writer = self.blobs.create()?;
        writer.write(body).map_err(StorageError::io("writing a document"))?;
        let entry = entry_of(kind, origin, self.blobs.commit(writer, key)?);
        let replaced = self.index.put(key, &entry)?;
        self.discard_replaced(key, replaced, &entry);
        Ok(entry)
    }

    /// Tells the storage health what a write came to.
    fn watch<T>(&self, result: Result<T, StorageError>) -> Result<T, StorageError> {
        match &result {
            Ok(_) => self.health.succeeded(),
            Err(error) => self.health.failed(&error.to_string()),
        }
        result
    }

    /// Records that the upstream confirmed a document unchanged (304).
    pub fn confirm_document(&self, key: &str, doc: &HotDoc, persist: bool) -> Result<Arc<HotDoc>, StorageError> {
        let mut entry = doc.entry.clone();
        entry.fetched_at = now_ms();
        if persist {
            self.index.put(key, &entry)?;
        }
        Ok(self.remember(key, entry, doc.body.text().clone()))
    }

    /// A committed blob from memory, when it is hot (no I/O).
    pub fn hot_blob(&self, key: &str) -> Option<Arc<HotBlob>> {
        self.hot_blobs.get(key)
    }

    /// A committed blob from the index (blocking I/O), made hot: small ones
    /// are read and verified into memory, larger ones come with their file
    /// opened. `None` when absent, gone or corrupt (the record is dropped).
    pub fn load_blob(&self, key: &str) -> Result<Option<LoadedBlob>, StorageError> {
        let Some(entry) = self.index.get(key)? else {
            return Ok(None);
        };
        let Some(file) = self.open_or_drop(key, &entry)? else {
            return Ok(None);
        };
        if entry.size > hot::SMALL_BLOB {
            let hot = Arc::new(HotBlob::new(key, entry, None));
            self.hot_blobs.insert(key.to_string(), hot.clone());
            return Ok(Some((hot, Some(file))));
        }
        let mut reader = self.reader(&entry, file);
        let body = match reader.next_chunk(hot::SMALL_BLOB as usize) {
            Ok(body) => body.unwrap_or_default(),
            Err(ReadError::Io(error)) => return Err(StorageError::io("reading a blob")(error)),
            Err(_) => {
                self.drop_corrupt(key, &entry)?;
                return Ok(None);
            }
        };
        let hot = Arc::new(HotBlob::new(key, entry, Some(body)));
        self.hot_blobs.insert(key.to_string(), hot.clone());
        Ok(Some((hot, None)))
    }

    /// Opens the file of a hot blob kept without its bytes (blocking I/O);
    /// `None` when it is gone (the record is dropped).
    pub fn open_blob(&self, key: &str, hot: &HotBlob) -> Result<Option<File>, StorageError> {
        self.open_or_drop(key, &hot.entry)
    }

    /// `entry`'s file, or `None` (and the record dropped) when it is gone
    /// or of the wrong size.
    fn open_or_drop(&self, key: &str, entry: &Entry) -> Result<Option<File>, StorageError> {
        let file = self.blobs.open(key, &info(entry))?;
        if file.is_none() {
            tracing::warn!(key, "cached blob missing or of the wrong size; dropped");
            self.remove(key)?;
        }
        Ok(file)
    }

    /// A reader of a committed blob that checks it against its record
    /// (unless `cache.verify_reads` is off).
    pub fn reader(&self, entry: &Entry, file: File) -> BlobReader {
        let hashes = (entry.xxh3, entry.sha512.as_str());
        BlobReader::new(Arc::new(file), entry.size, hashes, self.verify_reads)
    }

    /// A read found `key`'s bytes corrupt: drops it (unless it has been
    /// replaced meanwhile), so the next request fetches good bytes.
    pub fn drop_corrupt(&self, key: &str, seen: &Entry) -> Result<(), StorageError> {
        if self.index.get(key)?.is_some_and(|now| now.sha512 == seen.sha512) {
            tracing::error!(
                key,
                size = seen.size,
                "cached file corrupted on disk; dropped, will be fetched again"
            );
            self.remove(key)?;
        }
        Ok(())
    }

    pub fn start_blob(&self) -> Result<BlobWriter, StorageError> {
        self.watch(self.blobs.create())
    }

    /// Commits a complete blob and records it (blocking I/O).
    pub fn commit_blob(&self, key: &str, writer: BlobWriter, origin: Origin) -> Result<Entry, StorageError> {
        let (entry, replaced) = self.watch(self.blobs.commit(writer, key).and_then(|stored| {
            let entry = entry_of(EntryKind::Blob, origin, stored);
            self.index.put(key, &entry).map(|replaced| (entry, replaced))
        }))?;
        self.discard_replaced(key, replaced, &entry);
        Ok(entry)
    }

    /// Files are named by content, so a replaced entry leaves its old file.
    fn discard_replaced(&self, key: &str, previous: Option<Entry>, current: &Entry) {
        if let Some(old) = previous.filter(|old| old.sha512 != current.sha512) {
            let _ = self.blobs.remove(key, &info(&old));
        }
    }

    /// Forgets `key` everywhere: memory, index and file.
    pub fn remove(&self, key: &str) -> Result<(), StorageError> {
        self.hot.invalidate(key);
        self.hot_blobs.invalidate(key);
        if let Some(entry) = self.index.remove(key)? {
            self.blobs.remove(key, &info(&entry))?;
        }
        Ok(())
    }

    /// Whether the upstream recently answered 404 for `key`.
    pub fn is_missing(&self, key: &str) -> bool {
        self.missing.contains_key(key)
    }

    /// The upstream answered 404 for `key`: drops what is cached under it
    /// and remembers the answer for `ttl.not_found`.
    pub fn mark_missing(&self, key: &str) {
        if let Err(error) = self.remove(key) {
            tracing::warn!(key, %error, "could not drop a cache entry the upstream no longer has");
        }
        self.missing.insert(key.to_string(), ());
    }

    /// Forgets the remembered 404s of the keys `keys` covers (a push made
    /// them exist).
    pub fn forget_missing(&self, keys: KeySet) {
        if let Err(error) = self.missing.invalidate_entries_if(move |key, _| keys.contains(key)) {
            tracing::warn!(%error, "could not drop remembered 404s");
        }
    }

    /// Forgets the documents `keys` covers, in memory and on disk; returns
    /// how many were on disk.
    pub fn remove_documents(&self, keys: &KeySet) -> Result<usize, StorageError> {
        self.remove_covered(keys, |entry| entry.kind != EntryKind::Blob)
            .map(|purged| purged.objects)
    }

    /// Forgets everything `keys` covers, package files and documents, in
    /// memory and on disk (the admin purge): the next request fetches again.
    pub fn purge(&self, keys: &KeySet) -> Result<Purged, StorageError> {
        self.remove_covered(keys, |_| true)
    }

    fn remove_covered(&self, keys: &KeySet, removable: impl Fn(&Entry) -> bool) -> Result<Purged, StorageError> {
        let covered = keys.clone();
        if let Err(error) = self.hot.invalidate_entries_if(move |key, _| covered.contains(key)) {
            tracing::warn!(%error, "could not drop documents from memory");
        }
        let mut on_disk = keys.exact.clone();
        for prefix in &keys.prefixes {
            on_disk.extend(self.index.keys_with_prefix(prefix)?);
        }
        let mut purged = Purged::default();
        for key in on_disk {
            if let Some(entry) = self.index.get(&key)?.filter(|entry| removable(entry)) {
                self.remove(&key)?;
                purged.objects += 1;
                purged.bytes += entry.size;
            }
        }
        Ok(purged)
    }

    /// Remembers the package hashes a document stated (blocking I/O).
    pub fn record_package_hashes(&self, hashes: &[PackageHash]) -> Result<(), StorageError> {
        for hash in hashes {
            self.index.put_hash(&hash.key(), &hash.sha512)?;
        }
        Ok(())
    }

    /// The SHA-512 (hex) the metadata states for `{lower_id}/{lower_version}`.
    pub fn package_hash(&self, package: &str) -> Result<Option<String>, StorageError> {
        self.index.hash(package)
    }

    /// Writes the access times of the hot objects hit since the last
    /// flush to the index (hits themselves never write or lock).
    pub fn flush_access(&self) -> Result<usize, StorageError> {
        let since = self.access_flushed.swap(now_ms(), Ordering::Relaxed);
        let mut batch: Vec<(String, u64)> = Vec::new();
        for (key, blob) in self.hot_blobs.iter() {
            if let Some(at) = blob.accessed_since(since) {
                batch.push((key.as_str().to_owned(), at));
            }
        }
        for (key, doc) in self.hot.iter() {
            let at = doc.accessed.load(Ordering::Relaxed);
            if at > since {
                batch.push((key.as_str().to_owned(), at));
            }
        }
        self.index.record_access(&batch)?;
        Ok(batch.len())
    }

    pub fn flush(&self) -> Result<(), StorageError> {
        self.flush_access()?;
        self.index.flush()
    }

    /// The `limit` package files (`.nupkg`) hit most while in memory, and
    /// their hits (a walk of the hot blobs: for the status page, not hits).
    pub fn most_requested(&self, limit: usize) -> Vec<(String, u64)> {
        let mut hit: Vec<(String, u64)> = self
            .hot_blobs
            .iter()
            .filter(|(key, _)| key.ends_with(".nupkg"))
            .map(|(key, blob)| (key.as_str().to_owned(), blob.hits()))
            .filter(|(_, hits)| *hits > 0)
            .collect();
        hit.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        hit.truncate(limit);
        hit
    }

    pub fn entry(&self, key: &str) -> Result<Option<Entry>, StorageError> {
        self.index.get(key)
    }

    /// Records and the bytes of their files, as running totals (O(1)).
    pub fn totals(&self) -> Totals {
        self.index.totals()
    }
}

fn info(entry: &Entry) -> BlobInfo {
    BlobInfo {
        size: entry.size,
        sha512: entry.sha512.clone(),
        xxh3: entry.xxh3,
    }
}

fn entry_of(kind: EntryKind, origin: Origin, stored: BlobInfo) -> Entry {
    Entry {
        kind,
        url: origin.url,
        size: stored.size,
        sha512: stored.sha512,
        content_type: origin.content_type,
        etag: origin.etag,
        last_modified: origin.last_modified,
        fetched_at: now_ms(),
        xxh3: stored.xxh3,
    }
}
