//! The upstreams as the pipeline serves them, and the one owner of that
//! list: each [`Feed`] has its name, its cache-key namespace, its client
//! (breakers, credentials, proxy, CA), its fetch stage and its current
//! service index; [`Feeds`] keeps them in priority order with the
//! packageSourceMapping patterns that say which ids each may serve. One
//! upstream is the case N = 1: nothing here depends on how many there are.

use std::sync::Arc;

use super::service::ServiceState;
use crate::cache::{Cache, Namespace};
use crate::config::Config;
use crate::merge::mapping::SourceMapping;
use crate::metrics::Metrics;
use crate::stash::Stash;
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
    /// Every client counts its requests into `metrics`, and takes from its
    /// own budget of requests and the one budget of document bytes.
    pub fn new(config: &Config, cache: &Arc<Cache>, metrics: &Arc<Metrics>) -> Feeds {
        let set = config.upstream_set();
        let bytes = Budgets::document_bytes(&config.limits, metrics);
        let all = set
            .iter()
            .map(|(name, settings)| {
                let budgets = Budgets::of(name, settings, &config.limits, bytes.clone(), metrics);
                let client = Arc::new(Upstream::with_budgets(settings, metrics.clone(), budgets));
                let namespace = Namespace::of_upstream(&settings.service_index);
                let max_document = settings.max_document_size.bytes();
                let stash = Stash::new(cache.clone(), client.clone(), max_document, namespace.clone());
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
