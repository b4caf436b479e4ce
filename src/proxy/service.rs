//! The current service index and its mounts. Every request under a mount
//! needs them; they are kept in memory, refreshed in the background when
//! their TTL runs out, and loaded from the cache (or the upstream) at first.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};

use super::metadata::Lookup;
use super::Proxy;
use crate::cache::{CacheStatus, HotDoc};
use crate::error::{ProxyError, UpstreamError};
use crate::rewrite::{build_service_map, ServiceMap};
use crate::stash::{DocSpec, Transform};
use crate::upstream::origin_of;

/// The cache key of the upstream service index.
pub(crate) const SERVICE_INDEX_KEY: &str = "index.json";

/// A service index and what was derived from it.
pub(crate) struct ServiceSnapshot {
    pub doc: Arc<HotDoc>,
    pub map: Arc<ServiceMap>,
}

#[derive(Default)]
pub(crate) struct ServiceState {
    current: RwLock<Option<Arc<ServiceSnapshot>>>,
    refreshing: AtomicBool,
}

impl ServiceState {
    pub fn current(&self) -> Option<Arc<ServiceSnapshot>> {
        self.current.read().ok().and_then(|c| c.clone())
    }

    /// Makes `doc` current, re-deriving the mounts only when it changed; a
    /// copy older than the current one (a late stale answer) is not installed.
    fn install(&self, doc: Arc<HotDoc>, publish: bool) -> Result<Arc<ServiceSnapshot>, crate::rewrite::RewriteError> {
        let current = self.current();
        if let Some(newer) = current
            .as_ref()
            .filter(|c| c.doc.entry.fetched_at > doc.entry.fetched_at)
        {
            return Ok(newer.clone());
        }
        let map = match current {
            Some(current) if current.doc.entry.sha512 == doc.entry.sha512 => current.map.clone(),
            _ => Arc::new(build_service_map(doc.body.text(), publish)?),
        };
        let snapshot = Arc::new(ServiceSnapshot { doc, map });
        if let Ok(mut current) = self.current.write() {
            *current = Some(snapshot.clone());
        }
        Ok(snapshot)
    }
}

impl Proxy {
    /// The service index to route by, and how it stands. Requests under a
    /// mount route by the current one whatever its age and refresh it in the
    /// background; the index itself (`must_be_fresh`) is served the same way
    /// up to `ttl.max_stale` past its TTL, and waits for the upstream beyond.
    pub(super) async fn service_map(
        self: &Arc<Self>,
        must_be_fresh: bool,
    ) -> Result<(Arc<ServiceSnapshot>, CacheStatus), ProxyError> {
        if let Some(current) = self.service.current() {
            let ttl = self.config.ttl.service_index;
            if current.doc.is_fresh(ttl) {
                return Ok((current, CacheStatus::Hit));
            }
            if !must_be_fresh || current.doc.is_fresh(ttl.saturating_add(self.config.ttl.max_stale)) {
                self.refresh_service_in_background();
                return Ok((current, CacheStatus::Updating));
            }
        }
        self.load_service_map(false).await
    }

    /// Loads the index from the cache or the upstream and makes it current.
    /// With `wait`, an expired copy is refreshed before it is used.
    async fn load_service_map(self: &Arc<Self>, wait: bool) -> Result<(Arc<ServiceSnapshot>, CacheStatus), ProxyError> {
        let url = self.config.upstream.service_index.clone();
        let publish = self.publish_enabled();
        let spec = DocSpec {
            key: SERVICE_INDEX_KEY.to_string(),
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
                self.refresh_service_in_background();
                (doc, CacheStatus::Updating)
            }
            Lookup::Stale(doc) | Lookup::TooOld(doc) => self.fetch_now(spec, Some(doc)).await.map_err(no_index)?,
            Lookup::Missing => self.fetch_now(spec, None).await.map_err(no_index)?,
        };
        let snapshot = self
            .service
            .install(doc, publish)
            .map_err(|error| UpstreamError::Document {
                origin: origin_of(&url).to_string(),
                error,
            })?;
        Ok((snapshot, status))
    }

    fn refresh_service_in_background(self: &Arc<Self>) {
        if self.service.refreshing.swap(true, Ordering::AcqRel) {
            return;
        }
        let proxy = self.clone();
        tokio::spawn(async move {
            if let Err(error) = proxy.load_service_map(true).await {
                tracing::warn!(%error, "refreshing the service index failed; keeping the cached one");
            }
            proxy.service.refreshing.store(false, Ordering::Release);
        });
    }

    /// Publish resources are listed only when nucache forwards them.
    pub(super) fn publish_enabled(&self) -> bool {
        self.config.publish.enabled
    }
}
