//! Circuit breakers, one per upstream origin (`scheme://host:port`): after
//! `threshold` consecutive failed reads an origin is considered down, and
//! reads from it fail at once (cached copies are then served stale without
//! waiting on timeouts) while a background probe asks that origin every
//! `cooldown` until it answers again. A failing search host thus never
//! stops package downloads from the package host.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;

/// Origins tracked at most; they come from the service index and the
/// upstream's redirects, so this is far beyond any real feed.
const MAX_ORIGINS: usize = 64;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BreakerState {
    /// Requests go to the origin.
    Closed,
    /// The origin is considered down; requests fail fast.
    Open,
}

/// What `/health` shows of one origin's breaker.
#[derive(Debug, Clone, Serialize)]
pub struct BreakerStatus {
    /// `None` once [`UpstreamStatus::without_addresses`] removed it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub origin: Option<String>,
    pub state: BreakerState,
    pub consecutive_failures: u32,
    pub last_error: Option<String>,
    /// Seconds since the breaker opened, while open.
    pub open_for_seconds: Option<u64>,
    pub times_opened: u64,
}

/// What `/health` shows of the upstream: `state` is open when any origin's
/// breaker is, then each origin.
#[derive(Debug, Clone, Serialize)]
pub struct UpstreamStatus {
    pub state: BreakerState,
    pub origins: Vec<BreakerStatus>,
}

impl UpstreamStatus {
    /// States and counts only: no origin, no error text (which names hosts).
    pub fn without_addresses(mut self) -> UpstreamStatus {
        for origin in &mut self.origins {
            origin.origin = None;
            origin.last_error = None;
        }
        self
    }
}

/// The breakers of every origin seen so far.
pub(crate) struct Breakers {
    threshold: u32,
    cooldown: Duration,
    by_origin: Mutex<BTreeMap<String, Arc<Breaker>>>,
}

impl Breakers {
    /// `threshold` 0 disables them.
    pub fn new(threshold: u32, cooldown: Duration) -> Breakers {
        Breakers {
            threshold,
            cooldown,
            by_origin: Mutex::new(BTreeMap::new()),
        }
    }

    /// The breaker of `origin` (a canonical origin), made on first use;
    /// `None` past [`MAX_ORIGINS`] (requests there are not guarded).
    pub fn of(&self, origin: &str) -> Option<Arc<Breaker>> {
        let mut by_origin = self.by_origin.lock().ok()?;
        if let Some(breaker) = by_origin.get(origin) {
            return Some(breaker.clone());
        }
        if by_origin.len() >= MAX_ORIGINS {
            tracing::debug!(origin, "too many upstream origins; no circuit breaker for this one");
            return None;
        }
        let breaker = Arc::new(Breaker::new(origin, self.threshold, self.cooldown));
        by_origin.insert(origin.to_string(), breaker.clone());
        Some(breaker)
    }

    pub fn status(&self) -> UpstreamStatus {
        let breakers: Vec<Arc<Breaker>> = match self.by_origin.lock() {
            Ok(by_origin) => by_origin.values().cloned().collect(),
            Err(_) => Vec::new(),
        };
        let origins: Vec<BreakerStatus> = breakers.iter().map(|b| b.status()).collect();
        let state = if origins.iter().any(|o| o.state == BreakerState::Open) {
            BreakerState::Open
        } else {
            BreakerState::Closed
        };
        UpstreamStatus { state, origins }
    }
}

pub(crate) struct Breaker {
    origin: String,
    threshold: u32,
    cooldown: Duration,
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    consecutive_failures: u32,
    opened_at: Option<Instant>,
    last_error: Option<String>,
    /// The URL of the last failed request, for the probe to ask again.
    last_failed_url: Option<String>,
    times_opened: u64,
}

/// What recording a failure did.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Transition {
    None,
    /// The breaker just opened: start probing.
    Opened,
}

impl Breaker {
    fn new(origin: &str, threshold: u32, cooldown: Duration) -> Breaker {
        Breaker {
            origin: origin.to_string(),
            threshold,
            cooldown,
            inner: Mutex::new(Inner::default()),
        }
    }

    pub fn origin(&self) -> &str {
        &self.origin
    }

    pub fn cooldown(&self) -> Duration {
        self.cooldown
    }

    /// `Some(reason)` while the origin is considered down.
    pub fn rejects(&self) -> Option<String> {
        let inner = self.inner.lock().ok()?;
        let opened = inner.opened_at?;
        Some(format!(
            "{} considered down since {:.0}s after {} consecutive failures ({}); probing it every {}s",
            self.origin,
            opened.elapsed().as_secs_f64(),
            self.threshold,
            inner.last_error.as_deref().unwrap_or("unknown error"),
            self.cooldown.as_secs()
        ))
    }

    /// The URL of the last failed request, if any.
    pub fn last_failed_url(&self) -> Option<String> {
        self.inner.lock().ok()?.last_failed_url.clone()
    }

    pub fn record_success(&self) {
        if let Ok(mut inner) = self.inner.lock() {
            if inner.opened_at.take().is_some() {
                tracing::info!(origin = self.origin, "upstream answers again; circuit breaker closed");
            }
            inner.consecutive_failures = 0;
        }
    }

    /// Notes that a request for `url` failed with `error`.
    pub fn record_failure(&self, url: &str, error: &str) -> Transition {
        let Ok(mut inner) = self.inner.lock() else {
            return Transition::None;
        };
        inner.consecutive_failures = inner.consecutive_failures.saturating_add(1);
        inner.last_error = Some(error.to_string());
        inner.last_failed_url = Some(url.to_string());
        let trips = self.threshold > 0 && inner.consecutive_failures >= self.threshold;
        if trips && inner.opened_at.is_none() {
            inner.opened_at = Some(Instant::now());
            inner.times_opened += 1;
            tracing::warn!(
                origin = self.origin,
                failures = inner.consecutive_failures,
                error,
                "upstream considered down; circuit breaker open, answering from the cache"
            );
            return Transition::Opened;
        }
        Transition::None
    }

    pub fn status(&self) -> BreakerStatus {
        let (state, consecutive_failures, last_error, open_for_seconds, times_opened) = match self.inner.lock() {
            Ok(inner) => (
                if inner.opened_at.is_some() {
                    BreakerState::Open
                } else {
                    BreakerState::Closed
                },
                inner.consecutive_failures,
                inner.last_error.clone(),
                inner.opened_at.map(|at| at.elapsed().as_secs()),
                inner.times_opened,
            ),
            Err(_) => (BreakerState::Closed, 0, None, None, 0),
        };
        BreakerStatus {
            origin: Some(self.origin.clone()),
            state,
            consecutive_failures,
            last_error,
            open_for_seconds,
            times_opened,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn breaker(threshold: u32) -> Breaker {
        Breaker::new("https://a.example", threshold, Duration::from_secs(1))
    }

    #[test]
    fn opens_after_the_threshold_and_closes_on_success() {
        let breaker = breaker(3);
        assert_eq!(breaker.record_failure("https://a.example/1", "a"), Transition::None);
        assert_eq!(breaker.record_failure("https://a.example/2", "b"), Transition::None);
        assert!(breaker.rejects().is_none());
        assert_eq!(breaker.record_failure("https://a.example/3", "c"), Transition::Opened);
        assert_eq!(
            breaker.record_failure("https://a.example/4", "d"),
            Transition::None,
            "opens once"
        );
        assert!(breaker
            .rejects()
            .is_some_and(|r| r.contains("d") && r.contains("https://a.example")));
        assert_eq!(breaker.last_failed_url().as_deref(), Some("https://a.example/4"));
        assert_eq!(breaker.status().state, BreakerState::Open);
        breaker.record_success();
        assert!(breaker.rejects().is_none());
        assert_eq!(breaker.status().consecutive_failures, 0);
        assert_eq!(breaker.status().times_opened, 1);
    }

    #[test]
    fn a_success_resets_the_count() {
        let breaker = breaker(2);
        breaker.record_failure("u", "a");
        breaker.record_success();
        assert_eq!(breaker.record_failure("u", "b"), Transition::None);
    }

    #[test]
    fn threshold_zero_never_opens() {
        let breaker = breaker(0);
        for _ in 0..100 {
            assert_eq!(breaker.record_failure("u", "x"), Transition::None);
        }
        assert!(breaker.rejects().is_none());
    }

    #[test]
    fn each_origin_has_its_own_breaker() {
        let breakers = Breakers::new(1, Duration::from_secs(1));
        let search = breakers.of("https://search.example").expect("a breaker");
        let api = breakers.of("https://api.example").expect("a breaker");
        assert_eq!(
            search.record_failure("https://search.example/q", "503"),
            Transition::Opened
        );
        assert!(search.rejects().is_some());
        assert!(api.rejects().is_none());
        assert!(Arc::ptr_eq(
            &search,
            &breakers.of("https://search.example").expect("same")
        ));
        let status = breakers.status();
        assert_eq!(status.state, BreakerState::Open);
        assert_eq!(status.origins.len(), 2);
        let hidden = serde_json::to_string(&status.without_addresses()).unwrap_or_default();
        assert!(!hidden.contains("example") && !hidden.contains("503"), "{hidden}");
    }

    #[test]
    fn origins_are_bounded() {
        let breakers = Breakers::new(1, Duration::from_secs(1));
        for n in 0..MAX_ORIGINS {
            assert!(breakers.of(&format!("https://h{n}.example")).is_some());
        }
        assert!(breakers.of("https://one-too-many.example").is_none());
        assert!(breakers.of("https://h0.example").is_some());
    }
}
