//! Each upstream's current service index and its mounts. Every read needs
//! them; they are kept in memory (`ServiceState`), refreshed in the
//! background when their TTL runs out, and loaded at start-up from the
//! cache or the upstream (`load_every_index`), so that `/ready` needs no
//! client request. Another upstream's mounts are aligned to the primary's
//! local names: clients see the primary's index only, and every upstream's
//! documents point at paths of that index.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use super::documents::Lookup;
use super::feeds::{Feed, ServiceSnapshot};
use super::Pipeline;
use crate::cache::{CacheStatus, HotDoc};
use crate::error::{ProxyError, UpstreamError};
use crate::route::SERVICE_INDEX_KEY;
use crate::stash::{DocSpec, Transform};
use crate::upstream::origin_of;

/// Longest pause between two start-up attempts to load an index.
const MAX_RETRY: Duration = Duration::from_secs(30);

impl Pipeline {
    /// `feed`'s service index to route by, and how it stands. Reads route
    /// by the current one whatever its age and refresh it in the
    /// background; the index itself (`must_be_fresh`) is served the same
    /// way up to `ttl.max_stale` past its TTL, and waits for the upstream
    /// beyond. Another upstream's mounts follow the primary's current index.
    pub(crate) async fn service_map(
        self: &Arc<Self>,
        feed: &Arc<Feed>,
        must_be_fresh: bool,
    ) -> Result<(Arc<ServiceSnapshot>, CacheStatus), ProxyError> {
        if let Some(current) = feed.service.current() {
            let ttl = self.config.ttl.service_index;
            let stale_ok = !must_be_fresh || current.doc.is_fresh(ttl.saturating_add(self.config.ttl.max_stale));
            if self.is_aligned(feed, &current) && (current.doc.is_fresh(ttl) || stale_ok) {
                let status = match current.doc.is_fresh(ttl) {
                    true => CacheStatus::Hit,
                    false => {
                        self.refresh_service_in_background(feed);
                        CacheStatus::Updating
                    }
                };
                return Ok((current, status));
            }
        }
        self.load_service_map(feed, false).await
    }

    /// Whether `snapshot` (of `feed`) follows the primary's current index.
    fn is_aligned(&self, feed: &Feed, snapshot: &ServiceSnapshot) -> bool {
        if self.feeds.is_primary(feed) {
            return true;
        }
        let primary = self.feeds.primary().service.current();
        snapshot.aligned_to.as_deref() == primary.as_ref().map(|p| p.doc.entry.sha512.as_str())
    }

    /// Loads the index from the cache or the upstream and makes it current.
    /// With `wait`, an expired copy is refreshed before it is used.
    async fn load_service_map(
        self: &Arc<Self>,
        feed: &Arc<Feed>,
        wait: bool,
    ) -> Result<(Arc<ServiceSnapshot>, CacheStatus), ProxyError> {
        let loaded = self.fetch_service_index(feed, wait).await;
        let (doc, status) = match loaded {
            Ok(found) => found,
            Err(error) => {
                feed.service.note_failure(error.to_string());
                return Err(error);
            }
        };
        // A secondary's mounts are aligned to the primary's: load it first.
        let primary = match self.feeds.is_primary(feed) {
            true => None,
            false => self.feeds.primary().service.current(),
        };
        let publish = self.config.publish.enabled;
        let snapshot = feed
            .service
            .install(doc, publish, primary.as_deref())
            .map_err(|error| UpstreamError::Document {
                origin: origin_of(&feed.service_index).to_string(),
                error,
            })?;
        Ok((snapshot, status))
    }

    async fn fetch_service_index(
        self: &Arc<Self>,
        feed: &Arc<Feed>,
        wait: bool,
    ) -> Result<(Arc<HotDoc>, CacheStatus), ProxyError> {
        let url = feed.service_index.clone();
        let spec = DocSpec {
            key: feed.namespace.key(SERVICE_INDEX_KEY),
            url: url.clone(),
            ttl: self.config.ttl.service_index,
            transform: Transform::ServiceIndex {
                publish: self.config.publish.enabled,
            },
            persist: true,
        };
        let no_index = |e| match e {
            ProxyError::NotFound => UpstreamError::NoServiceIndex(format!("{url} answered 404")).into(),
            other => other,
        };
        match self.lookup(&spec.key, spec.ttl).map_err(no_index)? {
            Lookup::Fresh(doc) => Ok((doc, CacheStatus::Hit)),
            Lookup::Stale(doc) if !wait => {
                self.refresh_service_in_background(feed);
                Ok((doc, CacheStatus::Updating))
            }
            Lookup::Stale(doc) | Lookup::TooOld(doc) => self.fetch_now(feed, spec, Some(doc)).await.map_err(no_index),
            Lookup::Missing => self.fetch_now(feed, spec, None).await.map_err(no_index),
        }
    }

    fn refresh_service_in_background(self: &Arc<Self>, feed: &Arc<Feed>) {
        if feed.service.refreshing.swap(true, Ordering::AcqRel) {
            return;
        }
        let (pipeline, feed) = (self.clone(), feed.clone());
        crate::tiers::spawn(async move {
            if let Err(error) = pipeline.load_service_map(&feed, true).await {
                tracing::warn!(upstream = feed.name, %error, "refreshing the service index failed; keeping the cached one");
            }
            feed.service.refreshing.store(false, Ordering::Release);
        });
    }

    /// At start-up: loads every upstream's service index (from the cache,
    /// else from the upstream), the primary first, retrying with a growing
    /// pause until each is loaded; says in one line per upstream what it
    /// serves, or why it is not usable yet. `/ready` turns 200 once every
    /// index is loaded.
    pub(crate) async fn load_every_index(self: Arc<Self>) {
        let mut pause = Duration::from_millis(500);
        let mut attempts = 0u32;
        loop {
            let mut missing = 0;
            for feed in self.feeds.all() {
                if feed.service.current().is_some() {
                    continue;
                }
                match self.load_service_map(feed, false).await {
                    Ok((snapshot, status)) => {
                        let report = crate::probe::report(feed.service_index.clone(), &snapshot.map);
                        let from = if status == CacheStatus::Miss {
                            "upstream"
                        } else {
                            "cache"
                        };
                        tracing::info!(upstream = feed.name, from, "upstream probe: {report}");
                    }
                    Err(error) => {
                        missing += 1;
                        let url = &feed.service_index;
                        match attempts {
                            0 => tracing::warn!(
                                upstream = feed.name,
                                "upstream probe failed: {url}: {error}; until the upstream answers, only what is cached of it is served"
                            ),
                            _ => tracing::debug!(upstream = feed.name, %error, "service index still not loaded"),
                        }
                    }
                }
            }
            if missing == 0 {
                return;
            }
            attempts += 1;
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(MAX_RETRY);
        }
    }
}
