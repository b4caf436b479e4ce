//! The hot layer over the index: committed blobs as the server sends them,
//! kept in memory (moka) so that a warm hit touches neither sled nor JSON
//! nor a hash function: the record, the response headers made once, and,
//! for small packages, the verified bytes themselves.

use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use http::HeaderValue;
use sha2::{Digest, Sha256};

use super::index::{now_ms, Entry};

/// Packages up to this size are kept in memory once read (and verified).
pub(crate) const SMALL_BLOB: u64 = 4 * 1024 * 1024;

/// A committed blob ready to serve.
#[derive(Debug)]
pub(crate) struct HotBlob {
    pub entry: Entry,
    pub etag: HeaderValue,
    pub content_type: HeaderValue,
    pub content_length: HeaderValue,
    pub last_modified: Option<HeaderValue>,
    /// The bytes, for small blobs (checked against the record when read).
    pub body: Option<Bytes>,
    /// Last hit (ms since the epoch): recorded without a lock, written to
    /// the index in batches.
    accessed: AtomicU64,
    /// Hits while in memory, for the status page's most requested packages.
    hits: AtomicU64,
}

impl HotBlob {
    pub fn new(key: &str, entry: Entry, body: Option<Bytes>) -> HotBlob {
        let header = |text: &str| HeaderValue::from_str(text).unwrap_or_else(|_| HeaderValue::from_static(""));
        let content_type =
            HeaderValue::from_str(&entry.content_type).unwrap_or(HeaderValue::from_static("application/octet-stream"));
        HotBlob {
            etag: header(&blob_etag(key)),
            content_type,
            content_length: HeaderValue::from(entry.size),
            last_modified: entry
                .last_modified
                .as_deref()
                .and_then(|v| HeaderValue::from_str(v).ok()),
            body,
            accessed: AtomicU64::new(0),
            hits: AtomicU64::new(0),
            entry,
        }
    }

    /// Notes a hit.
    pub fn touch(&self) {
        self.accessed.store(now_ms(), Ordering::Relaxed);
        self.hits.fetch_add(1, Ordering::Relaxed);
    }

    pub fn hits(&self) -> u64 {
        self.hits.load(Ordering::Relaxed)
    }

    /// The last hit, if any since `since` (ms since the epoch).
    pub fn accessed_since(&self, since: u64) -> Option<u64> {
        let at = self.accessed.load(Ordering::Relaxed);
        (at > since).then_some(at)
    }

    /// Memory it occupies, for the hot cache's weigher.
    pub fn weight(&self) -> u32 {
        let body = self.body.as_ref().map_or(0, Bytes::len);
        u32::try_from(body + 512 + self.entry.url.len()).unwrap_or(u32::MAX)
    }
}

/// Package files are immutable per id and version, so the key names the
/// content: the same ETag whether the bytes come from disk, memory or a
/// download in flight.
pub(crate) fn blob_etag(key: &str) -> String {
    format!("\"{}\"", hex::encode(&Sha256::digest(key.as_bytes())[..12]))
}
