//! The online scrub: every `cache.scrub_interval`, re-hashes every cached
//! object against its record at no more than `cache.scrub_rate` bytes a
//! second, and drops what rotted, so that rot is found before a client
//! asks (reads are verified too; the scrub covers what nobody reads).

use std::sync::Arc;
use std::time::Duration;

use super::{Cache, Entry, Verification};

/// Records looked at per index read.
const BATCH: usize = 256;

/// Runs passes forever (until the task is aborted); `interval` 0 disables it.
pub(crate) async fn run(cache: Arc<Cache>, interval: Duration, rate: u64) {
    if interval.is_zero() {
        return;
    }
    loop {
        tokio::time::sleep(interval).await;
        let found = pass(&cache, rate).await;
        if !found.dropped.is_empty() {
            tracing::warn!(
                checked = found.checked,
                bytes = found.bytes,
                dropped = found.dropped.len(),
                "scrub: corrupted objects dropped"
            );
        } else {
            tracing::info!(checked = found.checked, bytes = found.bytes, "scrub: cache intact");
        }
    }
}

/// One pass over the index, in key order, batch by batch (0: no rate
/// limit); also the admin API's online verify.
pub(crate) async fn pass(cache: &Arc<Cache>, rate: u64) -> Verification {
    let mut found = Verification::default();
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
            if check(cache, key.clone(), entry).await {
                found.dropped.push(key);
            } else {
                found.bytes += size;
            }
            found.checked += 1;
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
