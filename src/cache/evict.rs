//! The disk cap: above `cache.max_size`, or with less than `cache.min_free`
//! left on the file system, a background task evicts the least recently
//! used objects (packages and documents) until the cache is back under 90%
//! of the cap (and the free space back above the floor, with a margin).
//!
//! Recency is the last access the hot layers recorded without a lock
//! (`HotBlob::touch`, `HotDoc::touch`, flushed into the index first) or,
//! for an object never hit, when it was stored. Downloads in flight are
//! not in the index until committed, so they are never evicted; a reader
//! that already has a file open keeps reading it (the file is unlinked,
//! its bytes stay until the last descriptor closes), and a request that
//! finds its object gone is a miss.

use std::collections::BinaryHeap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use super::{Cache, Entry, EntryKind};
use crate::config::{CacheConfig, MinFree};
use crate::error::StorageError;
use crate::metrics::Metrics;

/// How often the limits are checked besides after each commit (free space
/// also shrinks by others' writes).
const CHECK_EVERY: Duration = Duration::from_secs(10);
/// Evicting down to this share of the cap leaves room for the next misses.
const LOW_WATER: f64 = 0.9;

/// The limits of one cache directory.
#[derive(Debug, Clone)]
pub(crate) struct Limits {
    pub max_size: Option<u64>,
    pub min_free: MinFree,
    pub dir: PathBuf,
}

impl Limits {
    pub fn of(config: &CacheConfig) -> Limits {
        Limits {
            max_size: config.max_size.map(|cap| cap.bytes()),
            min_free: config.min_free,
            dir: config.dir.clone(),
        }
    }

    /// Bytes to evict for a cache of `size` bytes now; 0 while within both
    /// limits. Free space is asked of the file system (one statvfs).
    pub fn excess(&self, size: u64) -> u64 {
        let over_cap = match self.max_size {
            Some(cap) if size > cap => size - (cap as f64 * LOW_WATER) as u64,
            _ => 0,
        };
        let short_of_free = match (fs2::available_space(&self.dir), fs2::total_space(&self.dir)) {
            (Ok(free), Ok(total)) => {
                let floor = self.min_free.of(total);
                if free < floor {
                    // A tenth of the floor more, so one run does not leave
                    // the disk at its edge.
                    floor - free + floor / 10
                } else {
                    0
                }
            }
            _ => 0,
        };
        over_cap.max(short_of_free).min(size)
    }
}

/// What one run evicted.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Evicted {
    pub objects: u64,
    pub bytes: u64,
}

/// An eviction candidate, ordered by recency (most recent first out of the
/// max-heap, so the heap keeps the least recent).
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Candidate {
    used_at: u64,
    key: String,
    size: u64,
    sha512: String,
}

impl Cache {
    /// Evicts least recently used objects until `to_free` bytes are gone
    /// (blocking I/O). One walk of the index; only the oldest objects that
    /// cover `to_free` are held in memory.
    pub(crate) fn evict(&self, to_free: u64) -> Result<Evicted, StorageError> {
        if to_free == 0 {
            return Ok(Evicted::default());
        }
        // The hits since the last flush count as uses.
        self.flush_access()?;
        let mut oldest: BinaryHeap<Candidate> = BinaryHeap::new();
        let mut held = 0u64;
        for (key, record) in self.index.records() {
            let Ok(entry) = record else { continue };
            // The service index is small and lets nucache route while the
            // upstream is down.
            if entry.kind == EntryKind::ServiceIndex {
                continue;
            }
            let used_at = self.index.last_access(&key)?.unwrap_or(0).max(entry.fetched_at);
            held += entry.size;
            oldest.push(Candidate {
                used_at,
                key,
                size: entry.size,
                sha512: entry.sha512,
            });
            // Drop the most recent while the rest still cover `to_free`.
            while oldest.peek().is_some_and(|newest| held - newest.size >= to_free) {
                if let Some(newest) = oldest.pop() {
                    held -= newest.size;
                }
            }
        }
        let mut evicted = Evicted::default();
        for candidate in oldest.into_sorted_vec() {
            // Not if it was replaced since it was chosen (a new copy is new).
            let unchanged = |now: &Entry| now.sha512 == candidate.sha512 && now.size == candidate.size;
            if self.index.get(&candidate.key)?.is_some_and(|now| unchanged(&now)) {
                self.remove(&candidate.key)?;
                evicted.objects += 1;
                evicted.bytes += candidate.size;
            }
        }
        Ok(evicted)
    }

    /// After a commit: wakes the evictor when a limit is crossed.
    pub(crate) fn note_growth(&self) {
        if self.limits.excess(self.totals().bytes) > 0 {
            self.evict_wake.notify_one();
        }
    }
}

/// Runs until aborted: at once (start-up), after commits that crossed a
/// limit (`wake`), and every [`CHECK_EVERY`]. Each run that evicted logs
/// one line with its counts and bytes.
pub(crate) async fn run(cache: Arc<Cache>, metrics: Arc<Metrics>) {
    let (limits, wake) = (cache.limits.clone(), cache.evict_wake.clone());
    loop {
        let (evicting, checked) = (cache.clone(), limits.clone());
        let outcome = tokio::task::spawn_blocking(move || {
            let to_free = checked.excess(evicting.totals().bytes);
            evicting.evict(to_free).map(|evicted| (to_free, evicted))
        })
        .await;
        match outcome {
            Ok(Ok((_, evicted))) if evicted.objects == 0 => {}
            Ok(Ok((wanted, evicted))) => {
                metrics.evicted(evicted.objects, evicted.bytes);
                tracing::info!(
                    objects = evicted.objects,
                    bytes = evicted.bytes,
                    wanted,
                    cache_bytes = cache.totals().bytes,
                    max_size = limits.max_size,
                    free = fs2::available_space(&limits.dir).ok(),
                    "eviction: least recently used objects dropped"
                );
            }
            Ok(Err(error)) => tracing::warn!(%error, "eviction failed; will try again"),
            Err(error) => tracing::warn!(%error, "eviction task failed"),
        }
        tokio::select! {
            _ = wake.notified() => {}
            _ = tokio::time::sleep(CHECK_EVERY) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ByteSize;

    fn limits(max_size: Option<u64>, min_free: MinFree) -> (Limits, tempfile::TempDir) {
        let dir = tempfile::tempdir().expect("temp dir");
        let limits = Limits {
            max_size,
            min_free,
            dir: dir.path().to_path_buf(),
        };
        (limits, dir)
    }

    #[test]
    fn above_the_cap_evicts_down_to_ninety_percent_of_it() {
        let (capped, _dir) = limits(Some(1000), MinFree::Bytes(ByteSize(0)));
        assert_eq!(capped.excess(1000), 0, "at the cap");
        assert_eq!(capped.excess(1200), 300);
        let (uncapped, _dir) = limits(None, MinFree::Bytes(ByteSize(0)));
        assert_eq!(uncapped.excess(u64::MAX / 2), 0);
    }

    #[test]
    fn short_of_free_space_evicts_what_it_can() {
        // No real file system is 99.9% free: everything cached would go.
        let (floor, _dir) = limits(None, MinFree::Percent(99.9));
        assert_eq!(floor.excess(500), 500);
        assert_eq!(floor.excess(0), 0);
    }
}
