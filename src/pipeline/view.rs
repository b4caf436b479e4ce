//! What the operations surface (`ops`) may see of the pipeline: the
//! upstreams and their state, the downloads running, the public mounts,
//! the cache keys of a package and the fleet's peers. A small, read-only
//! interface, so that the pipeline's internals can change without the
//! status page, the admin API or `/ready` knowing.

use std::sync::Arc;

use super::Pipeline;
use crate::cache::{KeySet, Namespace};
use crate::fleet::FleetStatus;
use crate::rewrite::{MountKind, ServiceMap};
use crate::upstream::UpstreamStatus;

/// One upstream as operators see it.
#[derive(Debug, Clone)]
pub(crate) struct UpstreamView {
    pub name: String,
    pub service_index: String,
    /// Its breakers (origins and states).
    pub status: UpstreamStatus,
    /// Whether its service index is loaded, and how fresh it is.
    pub index: IndexState,
    /// Why its service index could not be loaded, while it is not.
    pub index_failure: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum IndexState {
    NotLoaded,
    Fresh,
    Stale,
}

impl IndexState {
    pub fn as_str(self) -> &'static str {
        match self {
            IndexState::NotLoaded => "not loaded",
            IndexState::Fresh => "fresh",
            IndexState::Stale => "stale",
        }
    }
}

pub(crate) trait View: Send + Sync {
    /// Every upstream, in priority order (the first is the primary).
    fn upstreams(&self) -> Vec<UpstreamView>;
    /// Package downloads running now.
    fn downloads_in_flight(&self) -> usize;
    /// The primary's (aligned) mounts, which clients see; `None` before
    /// its service index is loaded.
    fn public_mounts(&self) -> Option<Arc<ServiceMap>>;
    /// Every cache key of package `id` (of `version`, or of every version):
    /// its files, its version list and registration documents, in every
    /// upstream's namespace and among the merged answers.
    fn package_keys(&self, id: &str, version: Option<&str>) -> KeySet;
    /// This node and its peers with their health, in a fleet.
    fn fleet(&self) -> Option<FleetStatus>;
}

impl View for Pipeline {
    fn upstreams(&self) -> Vec<UpstreamView> {
        let ttl = self.config.ttl.service_index;
        self.feeds
            .all()
            .iter()
            .map(|feed| {
                let index = match feed.service.current() {
                    None => IndexState::NotLoaded,
                    Some(s) if s.doc.is_fresh(ttl) => IndexState::Fresh,
                    Some(_) => IndexState::Stale,
                };
                UpstreamView {
                    name: feed.name.clone(),
                    service_index: feed.service_index.clone(),
                    status: feed.client.breaker_status(),
                    index,
                    index_failure: feed.service.failure(),
                }
            })
            .collect()
    }

    fn downloads_in_flight(&self) -> usize {
        Pipeline::downloads_in_flight(self)
    }

    fn public_mounts(&self) -> Option<Arc<ServiceMap>> {
        self.feeds.primary().service.current().map(|s| s.map.clone())
    }

    fn package_keys(&self, id: &str, version: Option<&str>) -> KeySet {
        let Some(map) = self.public_mounts() else {
            return KeySet::default();
        };
        let namespaces = self
            .feeds
            .all()
            .iter()
            .map(|feed| feed.namespace.clone())
            .chain([Namespace::merged()]);
        package_keys(&map, namespaces, id, version)
    }

    fn fleet(&self) -> Option<FleetStatus> {
        self.fleet.as_ref().map(|fleet| fleet.status())
    }
}

/// The keys of `id` (`version`) under `map`'s mounts in each namespace.
/// Every upstream's mounts are aligned to the public local names, so the
/// public mounts name every upstream's keys.
pub(crate) fn package_keys(
    map: &ServiceMap,
    namespaces: impl Iterator<Item = Namespace>,
    id: &str,
    version: Option<&str>,
) -> KeySet {
    let mut keys = KeySet::default();
    for namespace in namespaces {
        for mount in map.mounts.iter() {
            let local = &mount.local;
            match (mount.kind, version) {
                (MountKind::PackageBase, Some(version)) => {
                    keys.exact.push(namespace.key(&format!("{local}{id}/index.json")));
                    keys.prefixes.push(namespace.key(&format!("{local}{id}/{version}/")));
                }
                (MountKind::PackageBase, None) | (MountKind::Registrations, _) => {
                    keys.prefixes.push(namespace.key(&format!("{local}{id}/")));
                }
                _ => {}
            }
        }
    }
    keys
}
