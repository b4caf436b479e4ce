//! The cache index: one record per cached object (what it is, where it
//! came from, its size and checksums, the upstream validators), last-access
//! times kept apart so that a hit never rewrites a record, and the package
//! hashes the metadata stated. [`IndexStore`] is what the cache needs of
//! it; `sled_index` is the store on disk, and every store passes the suite
//! in `index_compliance`.

use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::error::StorageError;

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

/// How much the index holds, kept as running totals (never a walk).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Totals {
    pub entries: usize,
    /// Sum of the records' sizes: the bytes their files take.
    pub bytes: u64,
}

/// A record read back from the store; an unreadable one is an error that
/// names its key.
pub(crate) type Record = (String, Result<Entry, StorageError>);

/// What the cache needs of its index. Every call may do blocking I/O.
pub(crate) trait IndexStore: Send + Sync + 'static {
    fn get(&self, key: &str) -> Result<Option<Entry>, StorageError>;
    /// Inserts or replaces `key`'s record; returns the record it replaced.
    fn put(&self, key: &str, entry: &Entry) -> Result<Option<Entry>, StorageError>;
    /// Drops `key`'s record and its access time; returns the record.
    fn remove(&self, key: &str) -> Result<Option<Entry>, StorageError>;
    /// Every record, in key order.
    fn records(&self) -> Box<dyn Iterator<Item = Record> + '_>;
    /// Up to `limit` readable records whose keys follow `after` (from the
    /// first when `None`), in key order.
    fn entries_after(&self, after: Option<&str>, limit: usize) -> Result<Vec<(String, Entry)>, StorageError>;
    fn keys_with_prefix(&self, prefix: &str) -> Result<Vec<String>, StorageError>;
    /// O(1): the running totals.
    fn totals(&self) -> Totals;
    /// Stores a batch of last-access times (ms since the epoch) in one go.
    fn record_access(&self, batch: &[(String, u64)]) -> Result<(), StorageError>;
    /// `key`'s last recorded access (for the evictor, not hits).
    fn last_access(&self, key: &str) -> Result<Option<u64>, StorageError>;
    /// Remembers the SHA-512 (hex) the metadata states for a package.
    fn put_hash(&self, package: &str, sha512_hex: &str) -> Result<(), StorageError>;
    fn hash(&self, package: &str) -> Result<Option<String>, StorageError>;
    /// Every remembered package hash, `(package, SHA-512 hex)`, in package
    /// order (for a key migration).
    fn package_hashes(&self) -> Result<Vec<(String, String)>, StorageError>;
    fn remove_hash(&self, package: &str) -> Result<(), StorageError>;
    /// Makes everything written so far durable.
    fn flush(&self) -> Result<(), StorageError>;
}

/// Milliseconds since the epoch.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
