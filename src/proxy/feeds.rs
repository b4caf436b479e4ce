//! The upstreams as the proxy serves them: each with its own service index
//! and mounts (`ServiceState`), its own fetch stage (`Stash`, with its
//! client) and its own namespace in the one shared cache. This module owns
//! that per-upstream state; `service.rs` loads the indexes, `merged.rs`
//! asks several upstreams for one answer.

use std::sync::atomic::AtomicBool;
use std::sync::{Arc, RwLock};

use crate::cache::{Cache, HotDoc};
use crate::config::Config;
use crate::metrics::Metrics;
use crate::rewrite::{build_service_map, RewriteError, ServiceMap};
use crate::stash::Stash;
use crate::upstream::{Upstream, Upstreams};

/// One upstream, as served.
pub(crate) struct Feed {
    pub name: String,
    pub client: Arc<Upstream>,
    /// Its service index URL.
    pub service_index: String,
    /// fetch: single-flight fetches from this upstream into the cache.
    pub stash: Arc<Stash>,
    pub service: ServiceState,
    /// Before every cache key of this upstream: empty when it is the only
    /// one (so caches made before several upstreams stay valid), `NAME@/`
    /// among several (ids and paths never hold `@`).
    prefix: String,
}

impl Feed {
    /// `key` (a local path below `/v3/`) in this upstream's namespace.
    pub fn key(&self, key: &str) -> String {
        format!("{}{key}", self.prefix)
    }
}

/// Every upstream in priority order, and which ids each may serve.
pub(crate) struct Feeds {
    all: Vec<Arc<Feed>>,
    upstreams: Upstreams,
}

impl Feeds {
    pub fn new(config: &Config, cache: &Arc<Cache>, metrics: &Arc<Metrics>) -> Feeds {
        let upstreams = Upstreams::from_config(config, metrics);
        let settings = config.upstream_set();
        let several = settings.len() > 1;
        let all = upstreams
            .members()
            .map(|member| {
                let upstream = settings
                    .iter()
                    .find(|(name, _)| *name == member.name)
                    .map_or(&config.upstream, |(_, u)| *u);
                let prefix = match several {
                    true => format!("{}@/", member.name),
                    false => String::new(),
                };
                let max_document = upstream.max_document_size.bytes();
                let stash = Stash::new(cache.clone(), member.client.clone(), max_document, &prefix);
                Arc::new(Feed {
                    name: member.name.clone(),
                    client: member.client.clone(),
                    service_index: upstream.service_index.clone(),
                    stash: Arc::new(stash),
                    service: ServiceState::default(),
                    prefix,
                })
            })
            .collect();
        Feeds { all, upstreams }
    }

    /// The highest-priority upstream: its service index is the one clients see.
    pub fn primary(&self) -> &Arc<Feed> {
        // `Upstreams` always has a first member.
        &self.all[0]
    }

    pub fn several(&self) -> bool {
        self.all.len() > 1
    }

    pub fn all(&self) -> &[Arc<Feed>] {
        &self.all
    }

    /// The upstreams a read may go to, in priority order: those the
    /// patterns give package `id` to (none: the id comes from nowhere), or
    /// every upstream for reads about no package (search, catalog...).
    pub fn sources(&self, id: Option<&str>) -> Vec<Arc<Feed>> {
        let Some(id) = id else { return self.all.clone() };
        let allowed = self.upstreams.sources_for(id);
        self.all
            .iter()
            .filter(|feed| allowed.contains(&feed.name.as_str()))
            .cloned()
            .collect()
    }

    /// Whether `feed` may be asked for package `id`.
    pub fn may_ask(&self, feed: &Feed, id: &str) -> bool {
        self.upstreams.sources_for(id).contains(&feed.name.as_str())
    }
}

/// A service index and what was derived from it.
pub(crate) struct ServiceSnapshot {
    pub doc: Arc<HotDoc>,
    pub map: Arc<ServiceMap>,
    /// The primary's index (its SHA-512) the mounts were aligned to.
    aligned_to: Option<String>,
}

#[derive(Default)]
pub(crate) struct ServiceState {
    current: RwLock<Option<Arc<ServiceSnapshot>>>,
    pub refreshing: AtomicBool,
}

impl ServiceState {
    pub fn current(&self) -> Option<Arc<ServiceSnapshot>> {
        self.current.read().ok().and_then(|c| c.clone())
    }

    /// Makes `doc` current, re-deriving the mounts only when it (or the
    /// primary index they are aligned to) changed; a copy older than the
    /// current one (a late stale answer) is not installed.
    pub fn install(
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
        Ok(snapshot)
    }
}
