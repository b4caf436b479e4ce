//! Whether the disk takes writes. When it stops (full, read-only, failing),
//! nucache keeps answering by passing responses through uncached, says so
//! in the log once per interval, and tries the disk again after a while.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// At most one warning per interval while the disk keeps failing.
const LOG_EVERY: Duration = Duration::from_secs(60);

pub(crate) struct StorageHealth {
    /// How long to pass through before trying the disk again.
    retry_after: Duration,
    failure: Mutex<Option<Failure>>,
}

struct Failure {
    since: Instant,
    retry_at: Instant,
    logged_at: Instant,
    error: String,
    count: u64,
}

impl StorageHealth {
    pub fn new(retry_after: Duration) -> Self {
        StorageHealth {
            retry_after,
            failure: Mutex::new(None),
        }
    }

    /// A write failed: pass through for a while.
    pub fn failed(&self, error: &str) {
        let Ok(mut failure) = self.failure.lock() else { return };
        let now = Instant::now();
        match failure.as_mut() {
            Some(known) => {
                known.retry_at = now + self.retry_after;
                known.error = error.to_string();
                known.count += 1;
                if now.duration_since(known.logged_at) >= LOG_EVERY {
                    known.logged_at = now;
                    tracing::warn!(
                        error,
                        failures = known.count,
                        for_s = known.since.elapsed().as_secs(),
                        "cache storage still failing; serving without caching"
                    );
                }
            }
            None => {
                tracing::warn!(error, "cache storage failed; serving without caching until it recovers");
                *failure = Some(Failure {
                    since: now,
                    retry_at: now + self.retry_after,
                    logged_at: now,
                    error: error.to_string(),
                    count: 1,
                });
            }
        }
    }

    /// A write succeeded.
    pub fn succeeded(&self) {
        let Ok(mut failure) = self.failure.lock() else { return };
        if let Some(past) = failure.take() {
            tracing::info!(
                after_s = past.since.elapsed().as_secs(),
                failures = past.count,
                "cache storage works again; caching resumed"
            );
        }
    }

    /// Whether to skip the disk now (it failed recently).
    pub fn bypass(&self) -> bool {
        self.failure
            .lock()
            .ok()
            .and_then(|f| f.as_ref().map(|f| Instant::now() < f.retry_at))
            .unwrap_or(false)
    }

    /// The last error while the disk is considered failing.
    pub fn problem(&self) -> Option<String> {
        self.failure.lock().ok()?.as_ref().map(|f| f.error.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fails_then_recovers() {
        let health = StorageHealth::new(Duration::from_secs(60));
        assert!(!health.bypass());
        health.failed("No space left on device");
        assert!(health.bypass());
        assert_eq!(health.problem().as_deref(), Some("No space left on device"));
        health.succeeded();
        assert!(!health.bypass());
        assert_eq!(health.problem(), None);
    }
}
