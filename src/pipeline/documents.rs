//! Documents through the cache. A fresh copy is served as it is; an expired
//! one is served at once (`UPDATING`) while one background refresh per key
//! asks the upstream (stale-while-revalidate), unless it expired more than
//! `ttl.max_stale` ago, in which case the client waits for the refresh. When
//! the upstream fails, a cached copy is served stale rather than an error.
//! At most `limits.background_refreshes` refreshes run at once; one past
//! that is skipped (the stale copy was served; the next request tries again).

use std::sync::Arc;
use std::time::Duration;

use super::feeds::Feed;
use super::Pipeline;
use crate::cache::{now_ms, CacheStatus, HotDoc};
use crate::error::ProxyError;
use crate::stash::{DocOutcome, DocSpec};
use crate::tiers;

/// How a cached copy stands against its TTL.
pub(crate) enum Lookup {
    Fresh(Arc<HotDoc>),
    /// Expired, but within `ttl.max_stale`: serve it and refresh behind.
    Stale(Arc<HotDoc>),
    /// Expired too long ago to serve without asking (kept for stale-if-error).
    TooOld(Arc<HotDoc>),
    Missing,
}

impl Pipeline {
    /// `spec` (its key in `feed`'s namespace) through the cache, from `feed`.
    pub(super) async fn document(
        self: &Arc<Self>,
        feed: &Arc<Feed>,
        spec: DocSpec,
    ) -> Result<(Arc<HotDoc>, CacheStatus), ProxyError> {
        match self.lookup(&spec.key, spec.ttl)? {
            Lookup::Fresh(doc) => Ok((doc, CacheStatus::Hit)),
            Lookup::Stale(doc) => {
                self.refresh_in_background(feed, spec, doc.clone());
                Ok((doc, CacheStatus::Updating))
            }
            Lookup::TooOld(doc) => self.fetch_now(feed, spec, Some(doc)).await,
            Lookup::Missing => self.fetch_now(feed, spec, None).await,
        }
    }

    /// The cached copy of `key`, if any, and how it stands. A read error is
    /// a miss (the storage health hears of it); a remembered 404 is a 404.
    pub(super) fn lookup(&self, key: &str, ttl: Duration) -> Result<Lookup, ProxyError> {
        if self.cache.is_missing(key) {
            return Err(ProxyError::NotFound);
        }
        let cached = match self.cache.document(key) {
            Ok(cached) => cached,
            Err(error) => {
                tracing::warn!(key, %error, "cannot read a cached document; asking the upstream");
                self.cache.health.failed(&error.to_string());
                None
            }
        };
        let Some(doc) = cached else { return Ok(Lookup::Missing) };
        let age = now_ms().saturating_sub(doc.entry.fetched_at);
        let ttl_ms = ttl.as_millis() as u64;
        let max_stale_ms = self.config.ttl.max_stale.as_millis() as u64;
        Ok(if age < ttl_ms {
            doc.touch();
            Lookup::Fresh(doc)
        } else if age < ttl_ms.saturating_add(max_stale_ms) {
            doc.touch();
            Lookup::Stale(doc)
        } else {
            Lookup::TooOld(doc)
        })
    }

    /// Asks the upstream now (one shared fetch per key) and waits for it.
    pub(super) async fn fetch_now(
        self: &Arc<Self>,
        feed: &Feed,
        spec: DocSpec,
        cached: Option<Arc<HotDoc>>,
    ) -> Result<(Arc<HotDoc>, CacheStatus), ProxyError> {
        let key = spec.key.clone();
        match (feed.stash.document(spec, cached.clone()).await, cached) {
            (Ok(DocOutcome::Fetched(doc)), _) => Ok((doc, CacheStatus::Miss)),
            (Ok(DocOutcome::Confirmed(doc)), _) => Ok((doc, CacheStatus::Revalidated)),
            (Ok(DocOutcome::FromShared(doc)), _) => Ok((doc, CacheStatus::Stale)),
            (Ok(DocOutcome::NotFound), _) => {
                self.cache.mark_missing(&key);
                Err(ProxyError::NotFound)
            }
            (Err(error), Some(doc)) => {
                tracing::debug!(key, %error, "upstream failed; serving the cached copy");
                Ok((doc, CacheStatus::Stale))
            }
            (Err(error), None) => Err(error.into()),
        }
    }

    /// Refreshes `spec` behind the answer already given, unless a fetch of
    /// it is in flight already or the refresh budget is spent (counted in
    /// its `/metrics` refusals).
    fn refresh_in_background(self: &Arc<Self>, feed: &Arc<Feed>, spec: DocSpec, cached: Arc<HotDoc>) {
        if feed.stash.document_in_flight(&spec.key) {
            return;
        }
        let Ok(slot) = self.refreshes.try_take(1) else {
            tracing::debug!(
                key = spec.key,
                "background refresh skipped: limits.background_refreshes in use"
            );
            return;
        };
        let (pipeline, feed) = (self.clone(), feed.clone());
        // The client's Via goes along: a loop of tiers is seen in refreshes too.
        tiers::spawn(async move {
            let _slot = slot;
            let key = spec.key.clone();
            match feed.stash.document(spec, Some(cached)).await {
                Ok(DocOutcome::NotFound) => pipeline.cache.mark_missing(&key),
                Ok(_) => {}
                Err(error) => tracing::debug!(key, %error, "background refresh failed; the cached copy stays"),
            }
        });
    }
}
