//! The series of a fleet's shared store: reads and writes by outcome,
//! bytes by direction, the breaker.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;

use super::{DirectionLabels, Metrics, OutcomeLabels};

/// How a read of the shared store ended (`nucache_shared_reads_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SharedRead {
    Hit,
    Miss,
    /// The object failed its checks (record, length, SHA-512): deleted.
    Corrupt,
    Error,
    /// Not tried: the store's breaker is open.
    Skipped,
}

/// How a write to the shared store ended (`nucache_shared_writes_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SharedWrite {
    Stored,
    /// Another node wrote it first (same bytes).
    Exists,
    /// Not tried: breaker open, too many writes queued, the local copy gone.
    Skipped,
    Error,
}

const SHARED_READS: [&str; 5] = ["hit", "miss", "corrupt", "error", "skipped"];
const SHARED_WRITES: [&str; 4] = ["stored", "exists", "skipped", "error"];

impl Metrics {
    /// The shared store's series, every label made up front (atomics only
    /// on the request path).
    pub(super) fn register_shared(mut self) -> Metrics {
        let outcomes = |labels: &[&'static str]| {
            let family = Family::<OutcomeLabels, Counter>::default();
            let counters = labels
                .iter()
                .map(|outcome| family.get_or_create(&OutcomeLabels { outcome }).clone())
                .collect::<Vec<_>>();
            (family, counters)
        };
        let (reads, read_counters) = outcomes(&SHARED_READS);
        let (writes, write_counters) = outcomes(&SHARED_WRITES);
        let bytes = Family::<DirectionLabels, Counter>::default();
        self.shared_bytes =
            ["read", "written"].map(|direction| bytes.get_or_create(&DirectionLabels { direction }).clone());
        (self.shared_reads, self.shared_writes) = (read_counters, write_counters);
        let registry = &mut self.registry;
        registry.register(
            "shared_reads",
            "Reads of the shared store: hit, miss, corrupt (failed its checks; deleted), error, skipped (breaker open)",
            reads,
        );
        registry.register(
            "shared_writes",
            "Writes to the shared store: stored, exists (another node was first), skipped (breaker open, queue full, local copy gone), error",
            writes,
        );
        registry.register("shared_bytes", "Bytes read from and written to the shared store", bytes);
        registry.register(
            "shared_breaker_open",
            "1 while the shared store's circuit breaker is open",
            self.shared_breaker_open.clone(),
        );
        self
    }

    pub fn shared_read(&self, outcome: SharedRead) {
        if let Some(counter) = self.shared_reads.get(outcome as usize) {
            counter.inc();
        }
    }

    pub fn shared_write(&self, outcome: SharedWrite) {
        if let Some(counter) = self.shared_writes.get(outcome as usize) {
            counter.inc();
        }
    }

    /// Bytes moved to (`written`) or from the shared store.
    pub fn shared_bytes(&self, written: bool, bytes: u64) {
        self.shared_bytes[usize::from(written)].inc_by(bytes);
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::sample;
    use super::*;
    use crate::metrics::Snapshot;

    #[test]
    fn the_shared_store_counts_by_outcome_and_direction() {
        let metrics = Metrics::new();
        metrics.shared_read(SharedRead::Corrupt);
        metrics.shared_write(SharedWrite::Exists);
        metrics.shared_bytes(true, 10);
        let text = metrics.render(&Snapshot {
            shared_breaker_open: Some(true),
            ..Snapshot::default()
        });
        let series = |line: &str| sample(&text, &format!("nucache_shared_{line} "));
        assert_eq!(series("reads_total{outcome=\"corrupt\"}"), Some(1.0), "{text}");
        assert_eq!(
            series("reads_total{outcome=\"hit\"}"),
            Some(0.0),
            "every outcome is listed"
        );
        assert_eq!(series("writes_total{outcome=\"exists\"}"), Some(1.0));
        assert_eq!(series("bytes_total{direction=\"written\"}"), Some(10.0));
        assert_eq!(series("bytes_total{direction=\"read\"}"), Some(0.0));
        assert_eq!(series("breaker_open"), Some(1.0));
    }
}
