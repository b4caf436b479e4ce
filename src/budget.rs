//! Budgets: named, fair limits on the work clients can start — requests
//! in flight to each upstream, bytes of metadata documents in flight,
//! background refreshes. A budget is a tokio `Semaphore`, which is fair:
//! permits go to waiters in the order they queued, and a taker of many
//! (a large document) is not overtaken by takers of few. A taker either
//! waits in that queue for at most `limits.queue_timeout` ([`Budget::wait`])
//! or tries without waiting ([`Budget::try_take`]); either way a refusal is
//! a [`Busy`] (503 with `Retry-After`), never unbounded work or memory.
//! Each budget's use, limit, waits and refusals are series of `/metrics`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::error::Busy;
use crate::metrics::{BudgetSeries, Metrics};

/// The `Retry-After` of a refusal: long enough for in-flight work to end,
/// short against a restore's own timeouts (NuGet's HTTP timeout is 100 s).
pub(crate) const RETRY_AFTER: Duration = Duration::from_secs(5);

/// Which budget: its `budget` label, what it limits and its key.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Kind<'a> {
    /// Requests in flight to the upstream of that name.
    UpstreamRequests(&'a str),
    DocumentBytes,
    BackgroundRefreshes,
}

impl Kind<'_> {
    fn label(self) -> &'static str {
        match self {
            Kind::UpstreamRequests(_) => "upstream_requests",
            Kind::DocumentBytes => "document_bytes",
            Kind::BackgroundRefreshes => "background_refreshes",
        }
    }

    /// What is limited, and the configuration key of the limit.
    fn describe(self) -> (String, String) {
        match self {
            // `[upstream]` is the upstream named `default`.
            Kind::UpstreamRequests("default") => (
                "requests to upstream default".to_string(),
                "upstream.max_concurrent_requests".to_string(),
            ),
            Kind::UpstreamRequests(name) => (
                format!("requests to upstream {name}"),
                format!("upstreams.{name}.max_concurrent_requests"),
            ),
            Kind::DocumentBytes => (
                "bytes of documents in flight".to_string(),
                "limits.document_bytes".to_string(),
            ),
            Kind::BackgroundRefreshes => (
                "background refreshes".to_string(),
                "limits.background_refreshes".to_string(),
            ),
        }
    }
}

/// A budget; clones share it.
#[derive(Clone)]
pub(crate) struct Budget(Arc<Inner>);

struct Inner {
    what: String,
    key: String,
    limit: u32,
    semaphore: Arc<Semaphore>,
    queue_timeout: Duration,
    series: BudgetSeries,
}

impl Budget {
    /// A budget of `limit` (at least 1), whose series live in `metrics`.
    pub fn new(kind: Kind<'_>, limit: u32, queue_timeout: Duration, metrics: &Metrics) -> Budget {
        let limit = limit.max(1);
        let upstream = match kind {
            Kind::UpstreamRequests(name) => name,
            Kind::DocumentBytes | Kind::BackgroundRefreshes => "",
        };
        let (what, key) = kind.describe();
        Budget(Arc::new(Inner {
            what,
            key,
            limit,
            semaphore: Arc::new(Semaphore::new(limit as usize)),
            queue_timeout,
            series: metrics.budget(kind.label(), upstream, u64::from(limit)),
        }))
    }

    /// Nothing held yet, to [`Held::grow`] as work arrives.
    pub fn nothing(&self) -> Held {
        Held {
            budget: self.clone(),
            permit: None,
            count: 0,
        }
    }

    /// `n` permits, waiting in the fair queue for at most the queue timeout.
    pub async fn wait(&self, n: u64) -> Result<Held, Busy> {
        let mut held = self.nothing();
        held.grow(n).await?;
        Ok(held)
    }

    /// `n` permits if they are free now; a refusal is counted.
    pub fn try_take(&self, n: u32) -> Result<Held, Busy> {
        let inner = &self.0;
        match inner.semaphore.clone().try_acquire_many_owned(n) {
            Ok(permit) => Ok(self.holding(permit, n)),
            Err(_) => {
                inner.series.refusals.inc();
                Err(self.busy(Duration::ZERO))
            }
        }
    }

    fn holding(&self, permit: OwnedSemaphorePermit, n: u32) -> Held {
        let mut held = self.nothing();
        held.absorb(permit, n);
        held
    }

    /// `n` permits: at once when free, else after the takers queued
    /// before, within the queue timeout. More than the whole budget is
    /// refused at once (no wait could satisfy it).
    async fn acquire(&self, n: u64) -> Result<(OwnedSemaphorePermit, u32), Busy> {
        let inner = &self.0;
        let Some(n) = u32::try_from(n).ok().filter(|n| *n <= inner.limit) else {
            inner.series.refusals.inc();
            return Err(self.busy(Duration::ZERO));
        };
        if let Ok(permit) = inner.semaphore.clone().try_acquire_many_owned(n) {
            return Ok((permit, n));
        }
        inner.series.waits.inc();
        let started = Instant::now();
        let queued = inner.semaphore.clone().acquire_many_owned(n);
        match tokio::time::timeout(inner.queue_timeout, queued).await {
            Ok(Ok(permit)) => Ok((permit, n)),
            // Timed out (the semaphore is never closed).
            _ => {
                inner.series.refusals.inc();
                Err(self.busy(started.elapsed()))
            }
        }
    }

    fn busy(&self, waited: Duration) -> Busy {
        let inner = &self.0;
        Busy {
            what: inner.what.clone(),
            key: inner.key.clone(),
            limit: u64::from(inner.limit),
            waited,
            retry_after: RETRY_AFTER,
        }
    }

    /// Permits handed out now.
    #[cfg(test)]
    pub fn in_use(&self) -> u32 {
        let free = self.0.semaphore.available_permits() as u32;
        self.0.limit.saturating_sub(free)
    }
}

/// Permits taken from a budget, given back when dropped.
pub(crate) struct Held {
    budget: Budget,
    permit: Option<OwnedSemaphorePermit>,
    count: u32,
}

impl Held {
    /// Takes `n` more, waiting as [`Budget::wait`] does.
    pub async fn grow(&mut self, n: u64) -> Result<(), Busy> {
        if n == 0 {
            return Ok(());
        }
        let (permit, n) = self.budget.acquire(n).await?;
        self.absorb(permit, n);
        Ok(())
    }

    fn absorb(&mut self, permit: OwnedSemaphorePermit, n: u32) {
        match &mut self.permit {
            Some(held) => held.merge(permit),
            None => self.permit = Some(permit),
        }
        self.count += n;
        self.budget.0.series.in_use.inc_by(i64::from(n));
    }

    /// Gives back all but `keep`.
    pub fn shrink_to(&mut self, keep: u64) {
        let Some(permit) = self.permit.as_mut() else { return };
        let back = u32::try_from(keep).ok().and_then(|keep| self.count.checked_sub(keep));
        let Some(back) = back.filter(|back| *back > 0) else {
            return;
        };
        drop(permit.split(back as usize));
        self.count -= back;
        self.budget.0.series.in_use.dec_by(i64::from(back));
    }

    #[cfg(test)]
    pub fn count(&self) -> u64 {
        u64::from(self.count)
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        self.budget.0.series.in_use.dec_by(i64::from(self.count));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn budget(limit: u32, queue: Duration) -> (Budget, Metrics) {
        let metrics = Metrics::new();
        (Budget::new(Kind::DocumentBytes, limit, queue, &metrics), metrics)
    }

    #[tokio::test]
    async fn a_taker_waits_for_permits_given_back_and_is_refused_past_the_queue_timeout() {
        let (budget, _metrics) = budget(10, Duration::from_millis(200));
        let mut first = budget.wait(8).await.map_err(|e| e.to_string()).expect("free");
        let refused = budget.wait(5).await.map(|_| ()).map_err(|busy| busy.key);
        assert_eq!(refused, Err("limits.document_bytes".to_string()));
        assert_eq!(budget.in_use(), 8, "a refused taker holds nothing");
        let waiting = tokio::spawn({
            let budget = budget.clone();
            async move { budget.wait(5).await.map(|held| held.count()).map_err(|e| e.to_string()) }
        });
        first.shrink_to(5);
        assert_eq!(waiting.await.ok(), Some(Ok(5)), "given back in time");
        assert_eq!(budget.in_use(), 5);
    }

    #[tokio::test]
    async fn the_queue_is_fair_a_large_taker_is_not_overtaken_by_small_ones() {
        let (budget, _metrics) = budget(4, Duration::from_secs(5));
        let held = budget.try_take(3).map_err(|e| e.to_string()).expect("free");
        let large = tokio::spawn({
            let budget = budget.clone();
            async move { budget.wait(4).await.is_ok() }
        });
        while budget.0.series.waits.get() == 0 {
            tokio::task::yield_now().await;
        }
        // One permit is free, but the large taker queued first.
        assert!(budget.try_take(1).is_err(), "a small taker jumped the queue");
        drop(held);
        assert_eq!(large.await.ok(), Some(true));
    }

    #[test]
    fn use_and_refusals_are_metrics() {
        let (budget, metrics) = budget(2, Duration::from_secs(1));
        let held = budget.try_take(2).map_err(|e| e.to_string());
        assert!(budget.try_take(1).is_err());
        let text = metrics.render(&Default::default());
        let labels = "{budget=\"document_bytes\",upstream=\"\"}";
        for line in [
            format!("nucache_budget_in_use{labels} 2"),
            format!("nucache_budget_limit{labels} 2"),
            format!("nucache_budget_refusals_total{labels} 1"),
        ] {
            assert!(text.lines().any(|l| l == line), "no {line} in {text}");
        }
        drop(held);
        assert_eq!(budget.in_use(), 0);
        assert!(metrics
            .render(&Default::default())
            .contains(&format!("nucache_budget_in_use{labels} 0")));
    }
}
