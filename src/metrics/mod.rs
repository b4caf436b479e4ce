//! What `/metrics` reports, in the Prometheus text format (0.0.4), with the
//! Prometheus project's own client (`prometheus-client`).
//!
//! One [`Metrics`] is made per server and shared (`Arc`) by everything that
//! counts. The request path only increments atomics: the request counters
//! of every `kind` × `cache` pair are made up front, so a hit looks up an
//! array slot, never a label map. What is a state rather than an event
//! (cache size, entries, downloads in flight, breakers, storage) is read
//! from its owner when `/metrics` is asked for ([`Snapshot`]); a budget's
//! use (`crate::budget`) moves its own gauge as permits are taken and given
//! back ([`BudgetSeries`]).

mod fleet;
mod shared;

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use fleet::PeerLabels;
pub(crate) use fleet::{FleetSeries, Forward};
pub(crate) use shared::{SharedRead, SharedWrite};

/// The `Content-Type` of what [`Metrics::render`] returns.
pub(crate) const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// What a request asked for: the `kind` label of `nucache_requests_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum RequestKind {
    ServiceIndex,
    Versions,
    Package,
    Registration,
    Search,
    Autocomplete,
    Catalog,
    Vulnerability,
    Publish,
    #[default]
    Other,
}

impl RequestKind {
    const ALL: [RequestKind; 10] = [
        RequestKind::ServiceIndex,
        RequestKind::Versions,
        RequestKind::Package,
        RequestKind::Registration,
        RequestKind::Search,
        RequestKind::Autocomplete,
        RequestKind::Catalog,
        RequestKind::Vulnerability,
        RequestKind::Publish,
        RequestKind::Other,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RequestKind::ServiceIndex => "service_index",
            RequestKind::Versions => "versions",
            RequestKind::Package => "package",
            RequestKind::Registration => "registration",
            RequestKind::Search => "search",
            RequestKind::Autocomplete => "autocomplete",
            RequestKind::Catalog => "catalog",
            RequestKind::Vulnerability => "vulnerability",
            RequestKind::Publish => "publish",
            RequestKind::Other => "other",
        }
    }
}

/// The `cache` label: the `X-Cache` values, then `none`.
const CACHE_LABELS: [&str; 6] = ["HIT", "MISS", "UPDATING", "REVALIDATED", "STALE", "none"];
/// Answers with these `X-Cache` values were served from the cache's bytes.
const FROM_CACHE: [&str; 4] = ["HIT", "UPDATING", "REVALIDATED", "STALE"];

fn cache_slot(x_cache: Option<&str>) -> usize {
    let last = CACHE_LABELS.len() - 1;
    x_cache
        .and_then(|value| CACHE_LABELS[..last].iter().position(|label| *label == value))
        .unwrap_or(last)
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    kind: &'static str,
    cache: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SourceLabels {
    source: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct UpstreamLabels {
    origin: String,
    status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DirectionLabels {
    direction: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OriginLabels {
    origin: String,
}

/// A budget: `upstream` names the upstream of a per-upstream budget and is
/// empty for a process-wide one.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BudgetLabels {
    budget: &'static str,
    upstream: String,
}

/// The series of one budget: handles on their atomics, moved by the budget.
#[derive(Clone, Debug, Default)]
pub(crate) struct BudgetSeries {
    pub in_use: Gauge,
    /// Takers that found it spent and queued.
    pub waits: Counter,
    /// Takers turned away: queued too long, or not allowed to queue.
    pub refusals: Counter,
}

/// How an upstream request ended, for its `status` label.
pub(crate) enum UpstreamOutcome {
    Status(u16),
    Timeout,
    Error,
}

/// The states `/metrics` reports, read from their owners when asked.
#[derive(Debug, Default, Clone)]
pub(crate) struct Snapshot {
    pub cache_size_bytes: u64,
    pub cache_entries: u64,
    pub downloads_in_flight: u64,
    pub storage_writable: bool,
    /// Each upstream origin and whether its breaker is open.
    pub breakers: Vec<(String, bool)>,
    /// Whether the shared store's breaker is open (`None`: no store).
    pub shared_breaker_open: Option<bool>,
}

/// Totals since start, for the status page.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Totals {
    /// Answers served from the cache (any `X-Cache` but `MISS`).
    pub from_cache: u64,
    /// Answers with an `X-Cache` value.
    pub cacheable: u64,
    pub bytes_from_cache: u64,
    pub bytes_from_upstream: u64,
    pub evictions: u64,
    pub evicted_bytes: u64,
}

pub(crate) struct Metrics {
    registry: Registry,
    /// `nucache_requests_total`, slot `kind * CACHE_LABELS.len() + cache`.
    requests: Vec<Counter>,
    bytes_from_cache: Counter,
    bytes_from_upstream: Counter,
    upstream_requests: Family<UpstreamLabels, Counter>,
    upstream_duration: Histogram,
    cache_size: Gauge,
    cache_entries: Gauge,
    evictions: Counter,
    evicted_bytes: Counter,
    downloads_in_flight: Gauge,
    breaker_open: Family<OriginLabels, Gauge>,
    storage_writable: Gauge,
    /// `nucache_merged_documents_total`: merged, or reused (parts unchanged).
    merged: Counter,
    merge_reused: Counter,
    budget_in_use: Family<BudgetLabels, Gauge>,
    budget_limit: Family<BudgetLabels, Gauge>,
    budget_waits: Family<BudgetLabels, Counter>,
    budget_refusals: Family<BudgetLabels, Counter>,
    pub fleet: FleetSeries,
    peer_up: Family<PeerLabels, Gauge>,
    /// `nucache_shared_reads_total` / `_writes_total`, slot by outcome.
    shared_reads: Vec<Counter>,
    shared_writes: Vec<Counter>,
    /// `nucache_shared_bytes_total`: read, written.
    shared_bytes: [Counter; 2],
    shared_breaker_open: Gauge,
    /// Requests refused because their `Via` named this node.
    loops_refused: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("nucache");
        let requests_family = Family::<RequestLabels, Counter>::default();
        let mut requests = Vec::with_capacity(RequestKind::ALL.len() * CACHE_LABELS.len());
        for kind in RequestKind::ALL {
            for cache in CACHE_LABELS {
                let labels = RequestLabels {
                    kind: kind.as_str(),
                    cache,
                };
                // A counter is a handle on one atomic: the family and this
                // array share it.
                requests.push(requests_family.get_or_create(&labels).clone());
            }
        }
        registry.register(
            "requests",
            "Requests answered, by what they asked for and X-Cache (none: not a cached resource)",
            requests_family,
        );
        let served = Family::<SourceLabels, Counter>::default();
        let bytes_from_cache = served.get_or_create(&SourceLabels { source: "cache" }).clone();
        let bytes_from_upstream = served.get_or_create(&SourceLabels { source: "upstream" }).clone();
        registry.register(
            "served_bytes",
            "Body bytes sent to clients, from the cache or streamed from the upstream",
            served,
        );
        let upstream_requests = Family::<UpstreamLabels, Counter>::default();
        registry.register(
            "upstream_requests",
            "Requests sent upstream, by origin and status (timeout, error: no answer)",
            upstream_requests.clone(),
        );
        // 5 ms .. ~41 s
        let upstream_duration = Histogram::new(exponential_buckets(0.005, 2.0, 14));
        registry.register(
            "upstream_request_duration_seconds",
            "Time from sending an upstream request to its response head",
            upstream_duration.clone(),
        );
        let merges = Family::<OutcomeLabels, Counter>::default();
        let merged = merges.get_or_create(&OutcomeLabels { outcome: "merged" }).clone();
        let merge_reused = merges.get_or_create(&OutcomeLabels { outcome: "reused" }).clone();
        registry.register(
            "merged_documents",
            "Answers of several upstreams made into one (merged), or found unchanged by the parts' fingerprint (reused); a merged answer served from the cache counts in neither",
            merges,
        );
        let metrics = Metrics {
            merged,
            merge_reused,
            requests,
            bytes_from_cache,
            bytes_from_upstream,
            upstream_requests,
            upstream_duration,
            cache_size: Gauge::default(),
            cache_entries: Gauge::default(),
            evictions: Counter::default(),
            evicted_bytes: Counter::default(),
            downloads_in_flight: Gauge::default(),
            breaker_open: Family::default(),
            storage_writable: Gauge::default(),
            budget_in_use: Family::default(),
            budget_limit: Family::default(),
            budget_waits: Family::default(),
            budget_refusals: Family::default(),
            shared_reads: Vec::new(),
            shared_writes: Vec::new(),
            shared_bytes: Default::default(),
            shared_breaker_open: Gauge::default(),
            fleet: FleetSeries::default(),
            peer_up: Family::default(),
            loops_refused: Counter::default(),
            registry,
        };
        metrics.register_the_rest().register_fleet().register_shared()
    }

    fn register_the_rest(mut self) -> Metrics {
        let registry = &mut self.registry;
        registry.register(
            "cache_size_bytes",
            "Bytes of the objects in the cache",
            self.cache_size.clone(),
        );
        registry.register("cache_entries", "Objects in the cache", self.cache_entries.clone());
        registry.register(
            "evictions",
            "Objects evicted to keep the cache under its cap",
            self.evictions.clone(),
        );
        registry.register(
            "evicted_bytes",
            "Bytes evicted to keep the cache under its cap",
            self.evicted_bytes.clone(),
        );
        registry.register(
            "downloads_in_flight",
            "Package downloads from the upstream under way",
            self.downloads_in_flight.clone(),
        );
        registry.register(
            "breaker_open",
            "1 while the circuit breaker of an upstream origin is open",
            self.breaker_open.clone(),
        );
        registry.register(
            "storage_writable",
            "1 while the cache directory takes writes",
            self.storage_writable.clone(),
        );
        registry.register(
            "budget_in_use",
            "What a budget has handed out now (requests, refreshes or bytes)",
            self.budget_in_use.clone(),
        );
        registry.register("budget_limit", "A budget's limit", self.budget_limit.clone());
        registry.register(
            "budget_waits",
            "Takers that found a budget spent and queued for it",
            self.budget_waits.clone(),
        );
        registry.register(
            "budget_refusals",
            "Takers a spent budget turned away (503, or a skipped background refresh)",
            self.budget_refusals.clone(),
        );
        registry.register(
            "loops_refused",
            "Requests refused (508) because their Via named this node: its tiers are configured in a loop",
            self.loops_refused.clone(),
        );
        self
    }

    /// The series of budget `budget` (of `upstream`, or `""`), its limit set.
    pub fn budget(&self, budget: &'static str, upstream: &str, limit: u64) -> BudgetSeries {
        let labels = BudgetLabels {
            budget,
            upstream: upstream.to_string(),
        };
        self.budget_limit
            .get_or_create(&labels)
            .set(i64::try_from(limit).unwrap_or(i64::MAX));
        BudgetSeries {
            in_use: self.budget_in_use.get_or_create(&labels).clone(),
            waits: self.budget_waits.get_or_create(&labels).clone(),
            refusals: self.budget_refusals.get_or_create(&labels).clone(),
        }
    }

    /// One answered request and the body bytes it sent (atomics only).
    pub fn request(&self, kind: RequestKind, x_cache: Option<&str>, bytes: u64) {
        let cache = cache_slot(x_cache);
        let slot = kind as usize * CACHE_LABELS.len() + cache;
        if let Some(counter) = self.requests.get(slot) {
            counter.inc();
        }
        match x_cache {
            Some(value) if FROM_CACHE.contains(&value) => {
                self.bytes_from_cache.inc_by(bytes);
            }
            Some("MISS") => {
                self.bytes_from_upstream.inc_by(bytes);
            }
            _ => {}
        }
    }

    /// One request sent upstream (not a hit: the label map is fine here).
    pub fn upstream(&self, origin: &str, outcome: UpstreamOutcome, took: Duration) {
        let status = match outcome {
            UpstreamOutcome::Status(code) => code.to_string(),
            UpstreamOutcome::Timeout => "timeout".to_string(),
            UpstreamOutcome::Error => "error".to_string(),
        };
        let labels = UpstreamLabels {
            origin: origin.to_string(),
            status,
        };
        self.upstream_requests.get_or_create(&labels).inc();
        self.upstream_duration.observe(took.as_secs_f64());
    }

    /// A request refused as a loop of tiers.
    pub fn loop_refused(&self) {
        self.loops_refused.inc();
    }

    /// Several upstreams' documents made into one answer (`reused`: the
    /// parts had not changed, the answer kept was confirmed).
    pub fn merge(&self, reused: bool) {
        match reused {
            true => self.merge_reused.inc(),
            false => self.merged.inc(),
        };
    }

    /// Objects evicted by one run of the evictor.
    pub fn evicted(&self, objects: u64, bytes: u64) {
        self.evictions.inc_by(objects);
        self.evicted_bytes.inc_by(bytes);
    }

    /// The counters as they stand, for the status page.
    pub fn totals(&self) -> Totals {
        let width = CACHE_LABELS.len();
        let mut totals = Totals {
            bytes_from_cache: self.bytes_from_cache.get(),
            bytes_from_upstream: self.bytes_from_upstream.get(),
            evictions: self.evictions.get(),
            evicted_bytes: self.evicted_bytes.get(),
            ..Totals::default()
        };
        for (slot, counter) in self.requests.iter().enumerate() {
            let label = CACHE_LABELS[slot % width];
            if label != "none" {
                totals.cacheable += counter.get();
            }
            if FROM_CACHE.contains(&label) {
                totals.from_cache += counter.get();
            }
        }
        totals
    }

    /// The text `/metrics` answers, with the states of `snapshot`.
    pub fn render(&self, snapshot: &Snapshot) -> String {
        let gauge = |value: u64| i64::try_from(value).unwrap_or(i64::MAX);
        self.cache_size.set(gauge(snapshot.cache_size_bytes));
        self.cache_entries.set(gauge(snapshot.cache_entries));
        self.downloads_in_flight.set(gauge(snapshot.downloads_in_flight));
        self.storage_writable.set(i64::from(snapshot.storage_writable));
        if let Some(open) = snapshot.shared_breaker_open {
            self.shared_breaker_open.set(i64::from(open));
        }
        for (origin, open) in &snapshot.breakers {
            let labels = OriginLabels { origin: origin.clone() };
            self.breaker_open.get_or_create(&labels).set(i64::from(*open));
        }
        let mut text = String::with_capacity(8 * 1024);
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::prometheus_text::encode(&mut text, &self.registry);
        text
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    pub(super) fn sample(text: &str, line_start: &str) -> Option<f64> {
        text.lines()
            .find_map(|line| line.strip_prefix(line_start))
            .and_then(|value| value.trim().parse().ok())
    }

    #[test]
    fn a_request_counts_under_its_kind_and_cache_status_and_its_bytes_under_their_source() {
        let metrics = Metrics::new();
        metrics.request(RequestKind::Package, Some("HIT"), 100);
        metrics.request(RequestKind::Package, Some("HIT"), 50);
        metrics.request(RequestKind::Versions, Some("MISS"), 7);
        metrics.request(RequestKind::Other, None, 1000);
        let text = metrics.render(&Snapshot::default());
        let count = |labels: &str| sample(&text, &format!("nucache_requests_total{{{labels}}} "));
        assert_eq!(count("kind=\"package\",cache=\"HIT\""), Some(2.0), "{text}");
        assert_eq!(count("kind=\"versions\",cache=\"MISS\""), Some(1.0));
        assert_eq!(count("kind=\"other\",cache=\"none\""), Some(1.0));
        assert_eq!(
            count("kind=\"search\",cache=\"STALE\""),
            Some(0.0),
            "every pair is listed"
        );
        let bytes = |source: &str| sample(&text, &format!("nucache_served_bytes_total{{source=\"{source}\"}} "));
        assert_eq!(bytes("cache"), Some(150.0));
        assert_eq!(bytes("upstream"), Some(7.0), "uncached answers count under neither");
    }

    #[test]
    fn states_are_rendered_from_the_snapshot() {
        let metrics = Metrics::new();
        metrics.upstream("http://up:1", UpstreamOutcome::Status(200), Duration::from_millis(20));
        metrics.upstream("http://up:1", UpstreamOutcome::Timeout, Duration::from_secs(2));
        let snapshot = Snapshot {
            cache_size_bytes: 1234,
            cache_entries: 3,
            downloads_in_flight: 1,
            storage_writable: true,
            breakers: vec![("http://up:1".into(), true)],
            ..Snapshot::default()
        };
        let text = metrics.render(&snapshot);
        assert_eq!(sample(&text, "nucache_cache_size_bytes "), Some(1234.0), "{text}");
        assert_eq!(sample(&text, "nucache_cache_entries "), Some(3.0));
        assert_eq!(sample(&text, "nucache_storage_writable "), Some(1.0));
        assert_eq!(
            sample(&text, "nucache_breaker_open{origin=\"http://up:1\"} "),
            Some(1.0)
        );
        let upstream = "nucache_upstream_requests_total{origin=\"http://up:1\",status=";
        assert_eq!(sample(&text, &format!("{upstream}\"200\"}} ")), Some(1.0));
        assert_eq!(sample(&text, &format!("{upstream}\"timeout\"}} ")), Some(1.0));
        assert_eq!(
            sample(&text, "nucache_upstream_request_duration_seconds_count "),
            Some(2.0)
        );
    }
}
