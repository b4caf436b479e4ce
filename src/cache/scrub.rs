//! The online scrub: every `cache.scrub_interval`, re-hashes every cached
//! object against its record at no more than `cache.scrub_rate` bytes a
//! second, and drops what rotted, so that rot is found before a client
//! asks (reads are verified too; the scrub covers what nobody reads).

use std::sync::Arc;
use std::time::Duration;

use super::{Cache, Entry};

/// Records looked at per index read.
const BATCH: usize = 256;

/// What one pass found.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Scrubbed {
    pub checked: usize,
    pub bytes: u64,
    pub dropped: usize,
}

/// Runs passes forever (until the task is aborted); `interval` 0 disables it.
pub(crate) async fn run(cache: Arc<Cache>, interval: Duration, rate: u64) {
    if interval.is_zero() {
        return;
    }
    loop {
        tokio::time::sleep(interval).await;
        let found = pass(&cache, rate).await;
        if found.dropped > 0 {
            tracing::warn!(
                checked = found.checked,
                bytes = found.bytes,
                dropped = found.dropped,
                "scrub: corrupted objects dropped"
            );
        } else {
            tracing::info!(checked = found.checked, bytes = found.bytes, "scrub: cache intact");
        }
    }
}

/// One pass over the index, in key order, batch by batch.
pub(crate) async fn pass(cache: &Arc<Cache>, rate: u64) -> Scrubbed {
    let mut found = Scrubbed::default();
    let mut after: Option<String> = None;
    loop {
        let (reading, from) = (cache.clone(), after.clone());
        let batch = match tokio::task::spawn_blocking(move || reading.index.entries_after(from.as_deref(), BATCH)).await
        {
            Ok(Ok(batch)) => batch,
            Ok(Err(error)) => {
                tracing::warn!(%error, "scrub: cannot read the index; pass abandoned");
                return found;
            }
            Err(_) => return found,
        };
        let Some((last, _)) = batch.last() else { return found };
        after = Some(last.clone());
        for (key, entry) in batch {
            let size = entry.size;
            if check(cache, key, entry).await {
                found.dropped += 1;
            }
            found.checked += 1;
            found.bytes += size;
            if rate > 0 {
                tokio::time::sleep(Duration::from_secs_f64(size as f64 / rate as f64)).await;
            }
        }
    }
}

/// Re-hashes one object; true when it was corrupt and has been dropped.
async fn check(cache: &Arc<Cache>, key: String, entry: Entry) -> bool {
    let cache = cache.clone();
    let checked = tokio::task::spawn_blocking(move || {
        if cache.hashes_to(&key, &entry)? {
            return Ok(false);
        }
        cache.drop_corrupt(&key, &entry)?;
        Ok::<_, crate::error::StorageError>(true)
    })
    .await;
    match checked {
        Ok(Ok(dropped)) => dropped,
        Ok(Err(error)) => {
            tracing::warn!(%error, "scrub: cannot check an object");
            false
        }
        Err(_) => false,
    }
}
