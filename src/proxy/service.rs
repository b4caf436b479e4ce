//! Each upstream's current service index and its mounts. Every request
//! under a mount needs them; they are kept in memory (`feeds::ServiceState`),
//! refreshed in the background when their TTL runs out, and loaded from the
//! cache (or the upstream) at first. Another upstream's mounts are aligned
//! to the primary's local names: clients see the primary's index only.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::feeds::{Feed, ServiceSnapshot};
use super::metadata::Lookup;
use super::Proxy;
use crate::cache::CacheStatus;
use crate::error::{ProxyError, UpstreamError};
use crate::stash::{DocSpec, Transform};
use crate::upstream::origin_of;

pub(crate) use crate::route::SERVICE_INDEX_KEY;

impl Proxy {
    /// `feed`'s service index to route by, and how it stands. Requests under
    /// a mount route by the current one whatever its age and refresh it in
    /// the background; the index itself (`must_be_fresh`) is served the same
    /// way up to `ttl.max_stale` past its TTL, and waits for the upstream beyond.
    pub(super) async fn service_map(
        self: &Arc<Self>,
        feed: &Arc<Feed>,
        must_be_fresh: bool,
    ) -> Result<(Arc<ServiceSnapshot>, CacheStatus), ProxyError> {
        if let Some(current) = feed.service.current() {
            let ttl = self.config.ttl.service_index;
            if current.doc.is_fresh(ttl) {
                return Ok((current, CacheStatus::Hit));
            }
            if !must_be_fresh || current.doc.is_fresh(ttl.saturating_add(self.config.ttl.max_stale)) {
                self.refresh_service_in_background(feed);
                return Ok((current, CacheStatus::Updating));
            }
        }
        self.load_service_map(feed, false).await
    }

    /// Loads the index from the cache or the upstream and makes it current.
    /// With `wait`, an expired copy is refreshed before it is used.
    async fn load_service_map(
        self: &Arc<Self>,
        feed: &Arc<Feed>,
        wait: bool,
    ) -> Result<(Arc<ServiceSnapshot>, CacheStatus), ProxyError> {
        let url = feed.service_index.clone();
        let publish = self.publish_enabled();
        let spec = DocSpec {
            key: feed.key(SERVICE_INDEX_KEY),
            url: url.clone(),
            ttl: self.config.ttl.service_index,
            transform: Transform::ServiceIndex { publish },
            persist: true,
        };
        let no_index = |e| match e {
            ProxyError::NotFound => UpstreamError::NoServiceIndex(format!("{url} answered 404")).into(),
            other => other,
        };
        let (doc, status) = match self.lookup(&spec.key, spec.ttl).map_err(no_index)? {
            Lookup::Fresh(doc) => (doc, CacheStatus::Hit),
            Lookup::Stale(doc) if !wait => {
                self.refresh_service_in_background(feed);
                (doc, CacheStatus::Updating)
            }
            Lookup::Stale(doc) | Lookup::TooOld(doc) => {
                self.fetch_now(feed, spec, Some(doc)).await.map_err(no_index)?
            }
            Lookup::Missing => self.fetch_now(feed, spec, None).await.map_err(no_index)?,
        };
        // The primary is loaded before any other upstream is asked (see
        // `dispatch`), so its mounts are there to align to.
        let primary = match Arc::ptr_eq(feed, self.feeds.primary()) {
            true => None,
            false => self.feeds.primary().service.current(),
        };
        let snapshot = feed
            .service
            .install(doc, publish, primary.as_deref())
            .map_err(|error| UpstreamError::Document {
                origin: origin_of(&url).to_string(),
                error,
            })?;
        Ok((snapshot, status))
    }

    fn refresh_service_in_background(self: &Arc<Self>, feed: &Arc<Feed>) {
        if feed.service.refreshing.swap(true, Ordering::AcqRel) {
            return;
        }
        let (proxy, feed) = (self.clone(), feed.clone());
        tokio::spawn(async move {
            if let Err(error) = proxy.load_service_map(&feed, true).await {
                tracing::warn!(upstream = feed.name, %error, "refreshing the service index failed; keeping the cached one");
            }
            feed.service.refreshing.store(false, Ordering::Release);
        });
    }

    /// Publish resources are listed only when nucache forwards them.
    pub(super) fn publish_enabled(&self) -> bool {
        self.config.publish.enabled
    }
}
