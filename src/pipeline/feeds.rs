//! The upstreams as the pipeline serves them, and the one owner of that
//! list: each [`Feed`] has its name, its cache-key namespace, its client
//! (breakers, credentials, proxy, CA), its fetch stage and its current
//! service index; [`Feeds`] keeps them in priority order with the
//! packageSourceMapping patterns that say which ids each may serve. One
//! upstream is the case N = 1: nothing here depends on how many there are.
//! Each feed's current service index lives here too ([`ServiceState`]);
//! `service.rs` loads it.

use std::sync::atomic::AtomicBool;
use std::sync::{Arc, RwLock};

use crate::cache::{Cache, HotDoc, Namespace};
use crate::config::Config;
use crate::fleet::Fleet;
use crate::merge::mapping::SourceMapping;
use crate::metrics::Metrics;
use crate::rewrite::{build_service_map, RewriteError, ServiceMap};
use crate::shared::SharedStore;
use crate::stash::Stash;
use crate::tiers::NodeId;
use crate::upstream::{Budgets, Upstream};

/// One upstream, as served.
pub(crate) struct Feed {
    pub name: String,
    /// Its service index URL (as configured).
    pub service_index: String,
    /// Where its objects live in the cache.
    pub namespace: Namespace,
    pub client: Arc<Upstream>,
    /// fetch: single-flight fetches from this upstream into the cache.
    pub stash: Arc<Stash>,
    pub service: ServiceState,
}

/// Every upstream in priority order, and which ids each may serve.
pub(crate) struct Feeds {
    /// Never empty: the configuration always has an upstream.
    all: Vec<Arc<Feed>>,
    mapping: SourceMapping,
}

impl Feeds {
    /// Every client counts its requests into `metrics`, takes from its own
    /// budget of requests and the one budget of document bytes, and names
    /// `node` in the `Via` of what it sends.
    pub fn new(
        config: &Config,
        cache: &Arc<Cache>,
        metrics: &Arc<Metrics>,
        node: &Arc<NodeId>,
        shared: Option<&Arc<SharedStore>>,
        fleet: Option<&Arc<Fleet>>,
    ) -> Feeds {
        let set = config.upstream_set();
        let bytes = Budgets::document_bytes(&config.limits, metrics);
        let all = set
            .iter()
            .map(|(name, settings)| {
                let budgets = Budgets::of(name, settings, &config.limits, bytes.clone(), metrics);
                let client = Arc::new(Upstream::with_budgets(
                    settings,
                    metrics.clone(),
                    budgets,
                    Some(node.clone()),
                ));
                let namespace = Namespace::of_upstream(&settings.service_index);
                let max_document = settings.max_document_size.bytes();
                let stash = Stash::new(
                    cache.clone(),
                    client.clone(),
                    max_document,
                    namespace.clone(),
                    fleet.cloned(),
                    shared.cloned(),
                );
                Arc::new(Feed {
                    name: name.to_string(),
                    service_index: settings.service_index.clone(),
                    namespace,
                    client,
                    stash: Arc::new(stash),
                    service: ServiceState::default(),
                })
            })
            .collect();
        let patterns = set.iter().map(|(name, upstream)| (*name, upstream.packages.as_slice()));
        // Patterns were checked at load; should one not parse after all,
        // the upstreams serve no id rather than every id.
        let mapping = SourceMapping::new(patterns).unwrap_or_else(|error| {
            tracing::error!(%error, "upstream packages patterns unusable; no package id is served");
            SourceMapping::empty()
        });
        Feeds { all, mapping }
    }

    /// The highest-priority upstream: its service index is the one clients see.
    pub fn primary(&self) -> &Arc<Feed> {
        &self.all[0]
    }

    pub fn is_primary(&self, feed: &Feed) -> bool {
        std::ptr::eq(feed, self.primary().as_ref())
    }

    /// Every upstream, in priority order.
    pub fn all(&self) -> &[Arc<Feed>] {
        &self.all
    }

    pub fn named(&self, name: &str) -> Option<&Arc<Feed>> {
        self.all.iter().find(|feed| feed.name == name)
    }

    /// The upstreams package `id` may come from, in priority order (none:
    /// the id comes from nowhere, and no upstream is asked for it).
    pub fn sources_for(&self, id: &str) -> Vec<Arc<Feed>> {
        let allowed = self.mapping.sources_for(id);
        self.all
            .iter()
            .filter(|feed| allowed.contains(&feed.name.as_str()))
            .cloned()
            .collect()
    }

    /// Whether `feed` may serve package `id`.
    pub fn may_serve(&self, feed: &Feed, id: &str) -> bool {
        self.mapping.sources_for(id).contains(&feed.name.as_str())
    }
}

/// A service index and what was derived from it.
pub(crate) struct ServiceSnapshot {
    pub doc: Arc<HotDoc>,
    pub map: Arc<ServiceMap>,
    /// The primary's index (its SHA-512) the mounts were aligned to.
    pub(super) aligned_to: Option<String>,
}

#[derive(Default)]
pub(crate) struct ServiceState {
    current: RwLock<Option<Arc<ServiceSnapshot>>>,
    pub(super) refreshing: AtomicBool,
    /// Why the last attempt to load it failed, while none succeeded.
    failure: RwLock<Option<String>>,
}

impl ServiceState {
    pub fn current(&self) -> Option<Arc<ServiceSnapshot>> {
        self.current.read().ok().and_then(|c| c.clone())
    }

    /// Why the index is not loaded, when it is not.
    pub fn failure(&self) -> Option<String> {
        self.failure.read().ok().and_then(|f| f.clone())
    }

    pub(super) fn note_failure(&self, reason: String) {
        if let Ok(mut failure) = self.failure.write() {
            *failure = Some(reason);
        }
    }

    /// Makes `doc` current, re-deriving the mounts only when it (or the
    /// primary index they are aligned to) changed; a copy older than the
    /// current one (a late stale answer) is not installed.
    pub(super) fn install(
        &self,
        doc: Arc<HotDoc>,
        publish: bool,
        primary: Option<&ServiceSnapshot>,
    ) -> Result<Arc<ServiceSnapshot>, RewriteError> {
        let current = self.current();
        if let Some(newer) = current
            .as_ref()
            .filter(|c| c.doc.entry.fetched_at > doc.entry.fetched_at)
        {
            return Ok(newer.clone());
        }
        let aligned_to = primary.map(|p| p.doc.entry.sha512.clone());
        let map = match current {
            Some(current) if current.doc.entry.sha512 == doc.entry.sha512 && current.aligned_to == aligned_to => {
                current.map.clone()
            }
            _ => {
                let mut map = build_service_map(doc.body.text(), publish)?;
                if let Some(primary) = primary {
                    map.align(&primary.map.mounts);
                }
                Arc::new(map)
            }
        };
        let snapshot = Arc::new(ServiceSnapshot { doc, map, aligned_to });
        if let Ok(mut current) = self.current.write() {
            *current = Some(snapshot.clone());
        }
        if let Ok(mut failure) = self.failure.write() {
            *failure = None;
        }
        Ok(snapshot)
    }
}
