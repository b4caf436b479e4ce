//! The shared store's circuit breaker: after `threshold` failed calls in a
//! row the store is considered down and every call is skipped at once (a
//! miss goes straight to the upstream, a write is dropped and counted);
//! once `cooldown` has passed, one call at a time tries it again, and the
//! first success closes the breaker. The upstream's breakers
//! (`upstream::breaker`) are per origin and probe in the background with
//! the request that failed; the store is one origin whose calls are cheap
//! to try, so a live call is the probe.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum State {
    Closed,
    Open,
}

/// What `/health` shows of the breaker.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct BreakerStatus {
    pub state: State,
    pub consecutive_failures: u32,
    pub last_error: Option<String>,
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
    /// When the call trying the store again (breaker open) started; a
    /// probe that never reported (its caller gave up) is forgotten after
    /// another cooldown.
    probe_since: Option<Instant>,
    last_error: Option<String>,
    times_opened: u64,
}

impl Breaker {
    pub fn new(threshold: u32, cooldown: Duration) -> Breaker {
        Breaker {
            threshold: threshold.max(1),
            cooldown,
            inner: Mutex::new(Inner::default()),
        }
    }

    /// Whether a call may go to the store now (while open: one call per
    /// cooldown, the probe).
    pub fn allows(&self) -> bool {
        let Ok(mut inner) = self.inner.lock() else {
            return true;
        };
        let Some(opened) = inner.opened_at else {
            return true;
        };
        let now = Instant::now();
        let probe_due = inner.probe_since.unwrap_or(opened);
        if now.duration_since(probe_due) < self.cooldown {
            return false;
        }
        inner.probe_since = Some(now);
        true
    }

    pub fn succeeded(&self) {
        if let Ok(mut inner) = self.inner.lock() {
            if inner.opened_at.take().is_some() {
                tracing::info!("the shared store answers again; its breaker is closed");
            }
            inner.probe_since = None;
            inner.consecutive_failures = 0;
        }
    }

    /// A call failed with `error` (text without credentials).
    pub fn failed(&self, error: &str) {
        let Ok(mut inner) = self.inner.lock() else {
            return;
        };
        inner.consecutive_failures = inner.consecutive_failures.saturating_add(1);
        inner.last_error = Some(error.to_string());
        if inner.opened_at.is_some() {
            // The probe failed: wait another cooldown.
            inner.probe_since = Some(Instant::now());
            return;
        }
        if inner.consecutive_failures >= self.threshold {
            inner.opened_at = Some(Instant::now());
            inner.times_opened += 1;
            tracing::warn!(
                failures = inner.consecutive_failures,
                error,
                "the shared store is considered down; its breaker is open: reads go to the upstream, writes are skipped"
            );
        }
    }

    pub fn is_open(&self) -> bool {
        self.inner.lock().is_ok_and(|inner| inner.opened_at.is_some())
    }

    pub fn status(&self) -> BreakerStatus {
        match self.inner.lock() {
            Ok(inner) => BreakerStatus {
                state: if inner.opened_at.is_some() {
                    State::Open
                } else {
                    State::Closed
                },
                consecutive_failures: inner.consecutive_failures,
                last_error: inner.last_error.clone(),
                open_for_seconds: inner.opened_at.map(|at| at.elapsed().as_secs()),
                times_opened: inner.times_opened,
            },
            Err(_) => BreakerStatus {
                state: State::Closed,
                consecutive_failures: 0,
                last_error: None,
                open_for_seconds: None,
                times_opened: 0,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_after_the_threshold_and_skips_calls_until_the_cooldown() {
        let breaker = Breaker::new(3, Duration::from_secs(3600));
        for _ in 0..2 {
            breaker.failed("connection refused");
            assert!(breaker.allows());
        }
        breaker.failed("connection refused");
        assert!(breaker.is_open());
        assert!(!breaker.allows(), "open: calls are skipped");
        assert_eq!(breaker.status().times_opened, 1);
        assert_eq!(breaker.status().last_error.as_deref(), Some("connection refused"));
    }

    #[test]
    fn after_the_cooldown_one_call_probes_and_a_success_closes() {
        let breaker = Breaker::new(1, Duration::ZERO);
        breaker.failed("timeout");
        assert!(breaker.is_open());
        assert!(breaker.allows(), "the cooldown has passed: a probe");
        breaker.failed("timeout again");
        assert!(breaker.is_open(), "a failed probe keeps it open");
        assert_eq!(breaker.status().times_opened, 1);
        breaker.succeeded();
        assert!(!breaker.is_open());
        assert_eq!(breaker.status().consecutive_failures, 0);
    }

    #[test]
    fn while_a_probe_runs_other_calls_are_skipped() {
        let breaker = Breaker::new(1, Duration::from_millis(200));
        breaker.failed("x");
        let deadline = Instant::now() + Duration::from_secs(5);
        while !breaker.allows() {
            assert!(Instant::now() < deadline, "no probe after the cooldown");
            std::thread::sleep(Duration::from_millis(5));
        }
        assert!(!breaker.allows(), "one probe at a time");
    }

    #[test]
    fn a_success_resets_the_count() {
        let breaker = Breaker::new(2, Duration::from_secs(60));
        breaker.failed("a");
        breaker.succeeded();
        breaker.failed("b");
        assert!(!breaker.is_open());
    }
}
