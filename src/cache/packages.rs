//! Package files in the cache: hot in memory with their ready headers
//! (small ones with their bytes), streamed from their files through a
//! verifying reader otherwise; committed only when complete.

use std::sync::Arc;

use super::{hot, BlobReader, BlobWriter, Cache, Entry, EntryKind, HotBlob, LoadedBlob, OpenBlob, Origin, ReadError};
use crate::error::StorageError;
use crate::nuget::PackageHash;

impl Cache {
    /// A committed blob from memory, when it is hot (no I/O).
    pub fn hot_blob(&self, key: &str) -> Option<Arc<HotBlob>> {
        self.hot_blobs.get(key)
    }

    /// A committed blob from the index (blocking I/O), made hot: small ones
    /// are read and verified into memory, larger ones come with their
    /// content opened. `None` when absent, gone or corrupt (the record is
    /// dropped).
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

    /// Opens the content of a hot blob kept without its bytes (blocking
    /// I/O); `None` when it is gone (the record is dropped).
    pub fn open_blob(&self, key: &str, hot: &HotBlob) -> Result<Option<OpenBlob>, StorageError> {
        self.open_or_drop(key, &hot.entry)
    }

    /// `entry`'s content, or `None` (and the record dropped) when its
    /// object is gone or of the wrong size.
    fn open_or_drop(&self, key: &str, entry: &Entry) -> Result<Option<OpenBlob>, StorageError> {
        let file = self.open_object(key, entry)?;
        if file.is_none() {
            tracing::warn!(key, "cached blob missing or of the wrong size; dropped");
            self.remove(key)?;
        }
        Ok(file)
    }

    /// A reader of a committed blob that checks it against its record
    /// (unless `cache.verify_reads` is off).
    pub fn reader(&self, entry: &Entry, blob: OpenBlob) -> BlobReader {
        let hashes = (entry.xxh3, entry.sha512.as_str());
        BlobReader::new(blob, entry.size, hashes, self.verify_reads)
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

    /// A reader of `key`'s committed content, always checked against its
    /// checksum, while it is still the content `seen` records (blocking
    /// I/O); `None` once it was replaced, evicted or dropped.
    pub fn open_committed(&self, key: &str, seen: &Entry) -> Result<Option<BlobReader>, StorageError> {
        if self.index.get(key)?.is_none_or(|now| now.sha512 != seen.sha512) {
            return Ok(None);
        }
        let Some(blob) = self.open_object(key, seen)? else {
            return Ok(None);
        };
        let hashes = (seen.xxh3, seen.sha512.as_str());
        Ok(Some(BlobReader::new(blob, seen.size, hashes, true)))
    }

    pub fn start_blob(&self) -> Result<BlobWriter, StorageError> {
        self.watch(self.blobs.create())
    }

    /// Commits a complete blob and records it (blocking I/O).
    pub fn commit_blob(&self, key: &str, writer: BlobWriter, origin: Origin) -> Result<Entry, StorageError> {
        let entry = self.watch(self.commit_object(key, writer, EntryKind::Blob, origin))?;
        self.note_growth();
        Ok(entry)
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
}
