//! The circuit breaker: after `threshold` consecutive failed reads the
//! upstream is considered down, and reads fail at once (cached copies are
//! then served stale without waiting on timeouts) while a background probe
//! asks the upstream every `cooldown` until it answers again.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BreakerState {
    /// Requests go to the upstream.
    Closed,
    /// The upstream is considered down; requests fail fast.
    Open,
}

/// What `/health` shows of the breaker.
#[derive(Debug, Clone, Serialize)]
pub struct BreakerStatus {
    pub state: BreakerState,
    pub consecutive_failures: u32,
    pub last_error: Option<String>,
    /// Seconds since the breaker opened, while open.
    pub open_for_seconds: Option<u64>,
    pub times_opened: u64,
}

pub(crate) struct Breaker {
    threshold: u32,
    cooldown: Duration,
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    consecutive_failures: u32,
    opened_at: Option<Instant>,
    last_error: Option<String>,
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
    /// `threshold` 0 disables the breaker.
    pub fn new(threshold: u32, cooldown: Duration) -> Breaker {
        Breaker {
            threshold,
            cooldown,
            inner: Mutex::new(Inner::default()),
        }
    }

    pub fn cooldown(&self) -> Duration {
        self.cooldown
    }

    /// `Some(reason)` while the upstream is considered down.
    pub fn rejects(&self) -> Option<String> {
        let inner = self.inner.lock().ok()?;
        let opened = inner.opened_at?;
        Some(format!(
            "upstream considered down since {:.0}s after {} consecutive failures ({}); probing it every {}s",
            opened.elapsed().as_secs_f64(),
            self.threshold,
            inner.last_error.as_deref().unwrap_or("unknown error"),
            self.cooldown.as_secs()
        ))
    }

    pub fn record_success(&self) {
        if let Ok(mut inner) = self.inner.lock() {
            if inner.opened_at.take().is_some() {
                tracing::info!("upstream answers again; circuit breaker closed");
            }
            inner.consecutive_failures = 0;
        }
    }

    pub fn record_failure(&self, error: &str) -> Transition {
        let Ok(mut inner) = self.inner.lock() else {
            return Transition::None;
        };
        inner.consecutive_failures = inner.consecutive_failures.saturating_add(1);
        inner.last_error = Some(error.to_string());
        let trips = self.threshold > 0 && inner.consecutive_failures >= self.threshold;
        if trips && inner.opened_at.is_none() {
            inner.opened_at = Some(Instant::now());
            inner.times_opened += 1;
            tracing::warn!(
                failures = inner.consecutive_failures,
                error,
                "upstream considered down; circuit breaker open, answering from the cache"
            );
            return Transition::Opened;
        }
        Transition::None
    }

    pub fn status(&self) -> BreakerStatus {
        match self.inner.lock() {
            Ok(inner) => inner.status(),
            Err(_) => Inner::default().status(),
        }
    }
}

impl Inner {
    fn status(&self) -> BreakerStatus {
        BreakerStatus {
            state: if self.opened_at.is_some() {
                BreakerState::Open
            } else {
                BreakerState::Closed
            },
            consecutive_failures: self.consecutive_failures,
            last_error: self.last_error.clone(),
            open_for_seconds: self.opened_at.map(|at| at.elapsed().as_secs()),
            times_opened: self.times_opened,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_after_the_threshold_and_closes_on_success() {
        let breaker = Breaker::new(3, Duration::from_secs(1));
        assert_eq!(breaker.record_failure("a"), Transition::None);
        assert_eq!(breaker.record_failure("b"), Transition::None);
        assert!(breaker.rejects().is_none());
        assert_eq!(breaker.record_failure("c"), Transition::Opened);
        assert_eq!(breaker.record_failure("d"), Transition::None, "opens once");
        assert!(breaker.rejects().is_some_and(|r| r.contains("d")));
        assert_eq!(breaker.status().state, BreakerState::Open);
        breaker.record_success();
        assert!(breaker.rejects().is_none());
        assert_eq!(breaker.status().consecutive_failures, 0);
        assert_eq!(breaker.status().times_opened, 1);
    }

    #[test]
    fn a_success_resets_the_count() {
        let breaker = Breaker::new(2, Duration::from_secs(1));
        breaker.record_failure("a");
        breaker.record_success();
        assert_eq!(breaker.record_failure("b"), Transition::None);
    }

    #[test]
    fn threshold_zero_never_opens() {
        let breaker = Breaker::new(0, Duration::from_secs(1));
        for _ in 0..100 {
            assert_eq!(breaker.record_failure("x"), Transition::None);
        }
        assert!(breaker.rejects().is_none());
    }
}
