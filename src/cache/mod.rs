//! The cache: an index over stored objects that each carry their own
//! record, with hot documents and blobs in memory (moka), and the
//! upstream's recent 404s. Keys are canonical local paths below `/v3/`
//! (see `route.rs`). This file holds the whole-cache work: open, commit,
//! verify, remove, remembered 404s, access times.
//!
//! - `index`: the records, behind [`IndexStore`] (`sled_index` on disk;
//!   `index_compliance`: what every index store must do);
//! - `blobs`: the objects, behind [`BlobStore`] (`fs_store` on disk;
//!   `compliance`: what every blob store must do); each object carries its
//!   own record (`record`), so the index can be rebuilt from the objects;
//! - `rebuild`: start-up repair, and rebuilding a lost or unreadable index
//!   from the objects' records; `rename`: moving records to new keys;
//! - `documents` / `packages`: reading and storing each kind;
//! - `hot`: package files in memory; `reader`: verified reads;
//! - `scrub`: the online re-hash; `health`: does the disk take writes;
//! - `evict`: the disk cap (`cache.max_size`, `cache.min_free`), LRU;
//! - `status`: HIT / MISS / STALE / REVALIDATED / UPDATING.

mod blobs;
#[cfg(test)]
mod compliance;
mod documents;
pub(crate) mod evict;
mod fs_store;
mod health;
mod hot;
mod index;
#[cfg(test)]
mod index_compliance;
mod migrate;
pub(crate) mod namespace;
mod packages;
mod reader;
mod rebuild;
mod record;
#[cfg(test)]
mod recovery_tests;
mod rename;
pub(crate) mod scrub;
mod sled_index;
mod status;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::config::CacheConfig;
use crate::error::StorageError;
use crate::rewrite::Template;

pub(crate) use blobs::{read_at, BlobInfo, BlobRead, BlobStore, BlobWriter};
pub(crate) use health::StorageHealth;
pub(crate) use hot::{blob_etag, HotBlob};
pub(crate) use index::IndexStore;

pub use index::{now_ms, Entry, EntryKind, Totals};
pub(crate) use namespace::Namespace;
pub(crate) use reader::{BlobReader, ReadError};
pub use rebuild::{IndexRebuild, Repair};
pub use status::CacheStatus;

/// Where an object came from upstream; completed into an [`Entry`] when stored.
#[derive(Debug, Clone, Default)]
pub(crate) struct Origin {
    pub url: String,
    pub content_type: String,
    pub etag: Option<String>,
    pub last_modified: Option<String>,
    pub above: FromAbove,
}

/// What the tier above said of the copy it sent: how old it counts (its
/// `Age`; a whole TTL at least when it called it stale), so that the
/// copy's `fetched_at` is that much earlier (TTLs do not stack), and its
/// `Cache-Status`, which this node's answer to the same request extends.
#[derive(Debug, Clone, Default)]
pub(crate) struct FromAbove {
    pub age_ms: u64,
    pub cache_status: Option<http::HeaderValue>,
}

/// A document in memory: its record and its (template) body.
#[derive(Debug)]
pub(crate) struct HotDoc {
    pub entry: Entry,
    pub body: Template,
    /// The tier above's `Cache-Status`, when this copy just came from it.
    pub above: Option<http::HeaderValue>,
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

/// A committed object's content, opened for reading.
pub(crate) type OpenBlob = Box<dyn BlobRead>;

/// A blob made hot, and its content opened when its bytes are not in memory.
pub(crate) type LoadedBlob = (Arc<HotBlob>, Option<OpenBlob>);

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

/// Whether `dir` holds a cache (its index or its objects): `verify` and
/// `rebuild-index` refuse a mistyped directory rather than create an empty
/// cache there and report success.
pub fn is_cache_dir(dir: &std::path::Path) -> bool {
    dir.join("index").is_dir() || dir.join("content").is_dir()
}

/// Opens the cache under `config.dir` (nucache must not be running on it)
/// and verifies every object; see [`Cache::verify`].
pub fn verify_cache(config: &CacheConfig) -> Result<Verification, StorageError> {
    let (cache, _repair) = Cache::open(config, Duration::ZERO)?;
    let report = cache.verify()?;
    cache.flush()?;
    Ok(report)
}

/// Opens the cache under `config.dir` (nucache must not be running on it)
/// and rebuilds its index from the objects' records; see
/// [`Cache::rebuild_index`].
pub fn rebuild_cache_index(config: &CacheConfig) -> Result<Repair, StorageError> {
    let (cache, opened) = Cache::open(config, Duration::ZERO)?;
    let mut report = cache.rebuild_index()?;
    // What opening removed (an index already missing was rebuilt then).
    report.removed_orphan_files += opened.removed_orphan_files;
    report.removed_duplicate_files += opened.removed_duplicate_files;
    report.upgraded_files = opened.upgraded_files;
    cache.flush()?;
    Ok(report)
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
    /// `cache.max_size` and `cache.min_free`, and the evictor's bell.
    limits: evict::Limits,
    evict_wake: Arc<tokio::sync::Notify>,
}

impl Cache {
    /// Opens (creating) the cache under `config.dir` and repairs what a
    /// crash may have left (see `rebuild.rs`); a missing or unreadable index
    /// is rebuilt from the objects' records. Upstream 404s are remembered
    /// for `not_found_ttl`.
    pub fn open(config: &CacheConfig, not_found_ttl: Duration) -> Result<(Cache, Repair), StorageError> {
        std::fs::create_dir_all(&config.dir).map_err(StorageError::io("creating the cache directory"))?;
        let blobs = fs_store::FsBlobStore::open(&config.dir)?;
        let (index, lost) = rebuild::open_index(&config.dir)?;
        let upgraded = match lost {
            None => rebuild::upgrade_legacy(&blobs, &index)?,
            Some(_) => 0,
        };
        let cache = Cache::with_stores(config, not_found_ttl, Box::new(index), Box::new(blobs));
        let mut repair = cache.repair()?;
        repair.upgraded_files = upgraded;
        repair.rebuilt = lost.filter(|lost| *lost != IndexRebuild::Missing || repair.adopted_files > 0);
        repair.log();
        Ok((cache, repair))
    }

    /// A cache over the given stores (nothing checked or repaired).
    fn with_stores(
        config: &CacheConfig,
        not_found_ttl: Duration,
        index: Box<dyn IndexStore>,
        blobs: Box<dyn BlobStore>,
    ) -> Cache {
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
        Cache {
            index,
            blobs,
            hot,
            hot_blobs,
            missing,
            access_flushed: AtomicU64::new(0),
            health: StorageHealth::new(config.storage_retry),
            verify_reads: config.verify_reads,
            limits: evict::Limits::of(config),
            evict_wake: Arc::default(),
        }
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
        let Some(blob) = self.open_object(key, entry)? else {
            return Ok(false);
        };
        reader::intact(blob, entry.size, (entry.xxh3, &entry.sha512)).map_err(StorageError::io("re-hashing a blob"))
    }

    /// `entry`'s content, when its object is there and of its size.
    fn open_object(&self, key: &str, entry: &Entry) -> Result<Option<OpenBlob>, StorageError> {
        self.blobs.open(&name_of(key, entry), entry.size)
    }

    /// Tells the storage health what a write came to.
    fn watch<T>(&self, result: Result<T, StorageError>) -> Result<T, StorageError> {
        match &result {
            Ok(_) => self.health.succeeded(),
            Err(error) => self.health.failed(&error.to_string()),
        }
        result
    }

    /// Commits `writer` as `key`'s object, with its record, and indexes it
    /// (blocking I/O).
    fn commit_object(
        &self,
        key: &str,
        mut writer: BlobWriter,
        kind: EntryKind,
        origin: Origin,
    ) -> Result<Entry, StorageError> {
        let entry = entry_of(kind, origin, writer.info());
        self.blobs
            .commit(writer, &name_of(key, &entry), &record::Record::new(key, &entry))?;
        let replaced = self.index.put(key, &entry)?;
        self.discard_replaced(key, replaced, &entry);
        Ok(entry)
    }

    /// Objects are named by content, so a replaced entry leaves its old
    /// object (should this fail, or nucache stop first, start-up repair
    /// keeps the newer of the two).
    fn discard_replaced(&self, key: &str, previous: Option<Entry>, current: &Entry) {
        if let Some(old) = previous.filter(|old| old.sha512 != current.sha512) {
            let _ = self.blobs.remove(&name_of(key, &old));
        }
    }

    /// Forgets `key` everywhere: memory, index and object.
    pub fn remove(&self, key: &str) -> Result<(), StorageError> {
        self.hot.invalidate(key);
        self.hot_blobs.invalidate(key);
        if let Some(entry) = self.index.remove(key)? {
            self.blobs.remove(&name_of(key, &entry))?;
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

    /// Every cached package, `(lower id, lower version)` sorted: the
    /// `.nupkg` files (`{mount}{id}/{version}/{id}.{version}.nupkg`) in the
    /// index. For the air gap's export.
    pub fn packages(&self) -> Vec<(String, String)> {
        let mut packages: Vec<(String, String)> = self
            .index
            .records()
            .filter(|(_, entry)| entry.as_ref().is_ok_and(|e| e.kind == EntryKind::Blob))
            .filter_map(|(key, _)| nupkg_of(&key))
            .collect();
        packages.sort();
        packages.dedup();
        packages
    }

    /// The packages (`.nupkg`) cached in `namespace`, `(lower id, lower
    /// version)` sorted.
    pub fn packages_in(&self, namespace: &Namespace) -> Vec<(String, String)> {
        let keys = match self.index.keys_with_prefix(namespace.prefix()) {
            Ok(keys) => keys,
            Err(error) => {
                tracing::warn!(%error, "cannot list cached packages");
                return Vec::new();
            }
        };
        let mut packages: Vec<(String, String)> = keys.iter().filter_map(|key| nupkg_of(key)).collect();
        packages.sort();
        packages.dedup();
        packages
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

/// `(id, version)` of a `.nupkg`'s key (`…{id}/{version}/{id}.{version}.nupkg`).
fn nupkg_of(key: &str) -> Option<(String, String)> {
    let parts: Vec<&str> = key.split('/').collect();
    match parts.as_slice() {
        [.., id, version, file] if *file == format!("{id}.{version}.nupkg") => {
            Some((id.to_string(), version.to_string()))
        }
        _ => None,
    }
}

/// The name of `key`'s object holding `entry`.
fn name_of(key: &str, entry: &Entry) -> String {
    record::object_name(key, &entry.sha512)
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
        fetched_at: now_ms().saturating_sub(origin.above.age_ms),
        xxh3: stored.xxh3,
    }
}
