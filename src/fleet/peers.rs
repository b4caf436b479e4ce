//! The peers of a fleet and their health as this node sees it: a peer is
//! down until it first answers, up after any success, down again after
//! `fleet.down_after` failures in a row (failed health checks, or refused
//! connections when a package was asked of it). Reading whether a peer is
//! up is one atomic load: it happens on every package miss.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Mutex;

use prometheus_client::metrics::gauge::Gauge;
use serde::Serialize;

/// A node URL as every node compares it: parsed (scheme and host in lower
/// case, the scheme's default port dropped), no trailing `/`. The path, if
/// any (a node behind a path prefix), is kept as it is.
pub(crate) fn normalize(url: &str) -> String {
    let url = url.trim();
    let parsed = url::Url::parse(url).map_or_else(|_| url.to_string(), String::from);
    parsed.trim_end_matches('/').to_string()
}

/// Another node of the fleet.
pub(crate) struct Peer {
    /// Normalised.
    pub url: String,
    up: AtomicBool,
    failures: AtomicU32,
    /// Why the last check or request failed, while it fails.
    last_error: Mutex<Option<String>>,
    /// `nucache_fleet_peer_up{peer}`.
    gauge: Gauge,
}

/// A change of a peer's health, for the log.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Change {
    None,
    Up,
    Down,
}

impl Peer {
    pub fn new(url: String, gauge: Gauge) -> Peer {
        gauge.set(0);
        Peer {
            url,
            up: AtomicBool::new(false),
            failures: AtomicU32::new(0),
            last_error: Mutex::new(None),
            gauge,
        }
    }

    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Relaxed)
    }

    /// It answered.
    pub fn succeeded(&self) -> Change {
        self.failures.store(0, Ordering::Relaxed);
        if let Ok(mut last) = self.last_error.lock() {
            *last = None;
        }
        self.gauge.set(1);
        match self.up.swap(true, Ordering::Relaxed) {
            true => Change::None,
            false => Change::Up,
        }
    }

    /// It failed (`reason`); the `down_after`-th failure in a row takes it down.
    pub fn failed(&self, reason: &str, down_after: u32) -> Change {
        if let Ok(mut last) = self.last_error.lock() {
            *last = Some(reason.to_string());
        }
        let failures = self.failures.fetch_add(1, Ordering::Relaxed).saturating_add(1);
        if failures < down_after {
            return Change::None;
        }
        self.gauge.set(0);
        match self.up.swap(false, Ordering::Relaxed) {
            true => Change::Down,
            false => Change::None,
        }
    }

    pub fn status(&self) -> PeerStatus {
        PeerStatus {
            url: Some(self.url.clone()),
            up: self.is_up(),
            consecutive_failures: self.failures.load(Ordering::Relaxed),
            last_error: self.last_error.lock().ok().and_then(|last| last.clone()),
        }
    }
}

/// What `/health` and the status page show of a peer.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub(crate) struct PeerStatus {
    /// `None` once [`super::FleetStatus::without_addresses`] removed it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    pub up: bool,
    pub consecutive_failures: u32,
    pub last_error: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_compare_by_scheme_host_port_and_path() {
        assert_eq!(normalize("HTTP://Node-A:80/"), "http://node-a");
        assert_eq!(normalize("https://node-a:443"), "https://node-a");
        assert_eq!(normalize("http://10.0.0.5:5000//"), "http://10.0.0.5:5000");
        assert_eq!(normalize("http://node-a:8080/NuGet/"), "http://node-a:8080/NuGet");
        assert_ne!(normalize("http://node-a:8080"), normalize("https://node-a:8080"));
    }

    #[test]
    fn a_peer_is_down_until_it_answers_and_after_enough_failures_in_a_row() {
        let peer = Peer::new("http://a".into(), Gauge::default());
        assert!(!peer.is_up(), "never answered yet");
        assert_eq!(peer.succeeded(), Change::Up);
        assert_eq!(peer.failed("refused", 3), Change::None);
        assert_eq!(peer.failed("refused", 3), Change::None);
        assert!(peer.is_up(), "two failures of three");
        assert_eq!(peer.failed("refused", 3), Change::Down);
        assert!(!peer.is_up());
        assert_eq!(peer.status().last_error.as_deref(), Some("refused"));
        assert_eq!(peer.succeeded(), Change::Up);
        assert_eq!(peer.status().consecutive_failures, 0);
    }

    #[test]
    fn a_success_between_failures_starts_the_count_again() {
        let peer = Peer::new("http://a".into(), Gauge::default());
        peer.succeeded();
        peer.failed("x", 2);
        peer.succeeded();
        assert_eq!(peer.failed("x", 2), Change::None);
        assert!(peer.is_up());
    }
}
