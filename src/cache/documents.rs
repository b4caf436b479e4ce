//! Documents in the cache: hot in memory as templates, on disk as files
//! checked against their SHA-512 when read back.

use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use bytes::Bytes;
use sha2::{Digest, Sha512};

use super::{entry_of, now_ms, BlobInfo, Cache, Entry, EntryKind, FromAbove, HotDoc, KeySet, Origin};
use crate::error::StorageError;
use crate::rewrite::Template;

impl Cache {
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
        Ok(Some(self.remember(key, entry, body, None)))
    }

    /// A document kept in memory, without looking on disk (merged answers
    /// live in memory only).
    pub fn hot_document(&self, key: &str) -> Option<Arc<HotDoc>> {
        self.hot.get(key)
    }

    /// A document nucache made itself (a merged answer), with `entry` as
    /// its record: kept in memory when `keep`, never written to disk.
    pub fn hold_document(&self, key: &str, entry: Entry, body: Bytes, keep: bool) -> Arc<HotDoc> {
        if keep {
            return self.remember(key, entry, body, None);
        }
        let content_id = entry.sha512.clone();
        Arc::new(HotDoc {
            entry,
            body: Template::new(body, &content_id),
            above: None,
            accessed: AtomicU64::new(0),
        })
    }

    fn read_verified(&self, key: &str, entry: &Entry) -> Result<Option<Bytes>, StorageError> {
        let Some(blob) = self.open_object(key, entry)? else {
            return Ok(None);
        };
        let len = usize::try_from(entry.size).unwrap_or(usize::MAX);
        let body = blob.read_at(0, len).map_err(StorageError::io("reading a document"))?;
        let matches = hex::encode(Sha512::digest(&body)) == entry.sha512;
        Ok(matches.then(|| Bytes::from(body)))
    }

    fn remember(&self, key: &str, entry: Entry, body: Bytes, above: Option<http::HeaderValue>) -> Arc<HotDoc> {
        let content_id = entry.sha512.clone();
        let doc = Arc::new(HotDoc {
            entry,
            body: Template::new(body, &content_id),
            above,
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
        let above = origin.above.cache_status.clone();
        let mut entry = entry_of(kind, origin.clone(), in_memory);
        if persist && !self.health.bypass() {
            if let Ok(stored) = self.watch(self.write_document(key, kind, origin, &body)) {
                entry = stored;
            }
        }
        Ok(self.remember(key, entry, body, above))
    }

    fn write_document(&self, key: &str, kind: EntryKind, origin: Origin, body: &[u8]) -> Result<Entry, StorageError> {
        let mut writer = self.blobs.create()?;
        writer.write(body).map_err(StorageError::io("writing a document"))?;
        let entry = self.commit_object(key, writer, kind, origin)?;
        self.note_growth();
        Ok(entry)
    }

    /// Stores a document that did not come from the upstream now (the
    /// shared store's copy, while the upstream fails) as already expired:
    /// it is served while the upstream fails, and every request asks the
    /// upstream first (blocking I/O).
    pub fn store_expired_document(
        &self,
        key: &str,
        kind: EntryKind,
        origin: Origin,
        body: Bytes,
    ) -> Result<Arc<HotDoc>, StorageError> {
        let doc = self.store_document(key, kind, origin, body, true)?;
        let mut entry = doc.entry.clone();
        entry.fetched_at = 0;
        if self.index.get(key)?.is_some_and(|stored| stored.sha512 == entry.sha512) {
            self.index.put(key, &entry)?;
        }
        Ok(self.remember(key, entry, doc.body.text().clone(), None))
    }

    /// Records that the upstream confirmed a document unchanged (304), as
    /// old as the tier above says its copy is.
    pub fn confirm_document(
        &self,
        key: &str,
        doc: &HotDoc,
        persist: bool,
        above: FromAbove,
    ) -> Result<Arc<HotDoc>, StorageError> {
        let mut entry = doc.entry.clone();
        entry.fetched_at = now_ms().saturating_sub(above.age_ms);
        if persist {
            self.index.put(key, &entry)?;
        }
        Ok(self.remember(key, entry, doc.body.text().clone(), above.cache_status))
    }

    /// Forgets the documents `keys` covers, in memory and on disk; returns
    /// how many were on disk.
    pub fn remove_documents(&self, keys: &KeySet) -> Result<usize, StorageError> {
        self.remove_covered(keys, |entry| entry.kind != EntryKind::Blob)
            .map(|purged| purged.objects)
    }
}
