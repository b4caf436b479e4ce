//! Phase 2, **resolve**: a target resolved against the public mounts (the
//! primary's) becomes a [`Plan`]: the upstreams it may be read from, in
//! priority order, each as a [`Part`] that carries that upstream's URL and
//! cache key for it. Nothing later re-derives a target from a path string.
//!
//! Which upstreams: for a read about one package (version list, package
//! file, registration), those the patterns give its id to; for an
//! autocomplete of one id's versions, or a search naming ids exactly
//! (`packageid:`), those the patterns give every named id to, the query
//! read by a real form decoder (any case, percent-encoded); otherwise all.
//! A public upstream so never sees a request for a private id.

use std::sync::Arc;

use super::feeds::Feed;
use super::feeds::ServiceSnapshot;
use super::Pipeline;
use crate::error::{ClientError, ProxyError};
use crate::rewrite::{Mount, MountKind};
use crate::route::{self, Target, TargetKind};
use crate::search::Query;

/// A target resolved against the public mounts, with its mount's kind.
#[derive(Debug, Clone)]
pub(crate) struct Resolved {
    pub target: Target,
    pub mount: MountKind,
    /// The public mount's local name (`flatcontainer/`, a hive...).
    pub local: String,
}

/// One upstream's share of a read.
#[derive(Clone)]
pub(crate) struct Part {
    pub feed: Arc<Feed>,
    pub service: Arc<ServiceSnapshot>,
    /// The upstream's mount under the public local name.
    mount: Mount,
    /// Below the mount: a relative path, or `?query` for endpoints.
    rest: String,
}

impl Part {
    pub fn url(&self) -> String {
        self.mount.upstream_url(&self.rest)
    }

    /// The cache key, in the upstream's namespace.
    pub fn key(&self) -> String {
        self.feed.namespace.key(&format!("{}{}", self.mount.local, self.rest))
    }

    /// The same upstream and mount, another path below it (the version
    /// list of a package, a page of a registration index).
    pub fn sibling(&self, rest: &str) -> Part {
        Part {
            rest: rest.to_string(),
            ..self.clone()
        }
    }

    /// The mount's local name (`registration/gz-semver2/`...).
    pub fn local(&self) -> &str {
        &self.mount.local
    }
}

/// What a read needs: its target and every upstream's share of it.
pub(crate) struct Plan {
    pub resolved: Resolved,
    /// Priority order; empty when no upstream may serve it.
    pub parts: Vec<Part>,
    /// Upstreams that may serve it but whose service index is not loaded.
    pub missing: Vec<String>,
    /// The query named ids (search) that no upstream may serve.
    pub restricted: bool,
}

impl Plan {
    pub fn target(&self) -> &Target {
        &self.resolved.target
    }
}

impl Pipeline {
    /// Phase 1's second half: `path` (below `/v3/`) and `query` against
    /// the primary's mounts, which clients see (loaded first if need be).
    pub(crate) async fn resolve(self: &Arc<Self>, path: &str, query: Option<&str>) -> Result<Resolved, ProxyError> {
        let (service, _) = self.service_map(self.feeds.primary(), false).await?;
        resolve_in(&service, path, query)
    }

    /// [`Pipeline::resolve`] with the primary's index as loaded now, with
    /// no I/O; `None` while none is loaded.
    pub(crate) fn resolve_loaded(&self, path: &str, query: Option<&str>) -> Option<Result<Resolved, ProxyError>> {
        let service = self.feeds.primary().service.current()?;
        Some(resolve_in(&service, path, query))
    }

    /// Phase 2: the upstreams `resolved` may be read from, each with its part.
    /// (`sources` and `restricted` as [`Pipeline::sources`] gave them.)
    pub(crate) async fn plan(
        self: &Arc<Self>,
        resolved: Resolved,
        (sources, restricted): (Vec<Arc<Feed>>, bool),
    ) -> Result<Plan, ProxyError> {
        let mut plan = Plan {
            parts: Vec::with_capacity(sources.len()),
            missing: Vec::new(),
            restricted,
            resolved,
        };
        for feed in sources {
            match self.service_map(&feed, false).await {
                Ok((service, _)) => plan.parts.extend(part_of(&feed, &service, &plan.resolved)),
                Err(error) => {
                    tracing::debug!(upstream = feed.name, %error, "no service index; reading without this upstream");
                    plan.missing.push(feed.name.clone());
                }
            }
        }
        Ok(plan)
    }

    /// `feed`'s part of `resolved` (with `service`, its current index);
    /// `None` when its index has no such resource.
    pub(crate) fn part_in(
        &self,
        feed: &Arc<Feed>,
        service: &Arc<ServiceSnapshot>,
        resolved: &Resolved,
    ) -> Option<Part> {
        part_of(feed, service, resolved)
    }

    /// The upstreams a read may go to, and whether the patterns narrowed
    /// a search to none.
    pub(crate) fn sources(&self, resolved: &Resolved) -> (Vec<Arc<Feed>>, bool) {
        let target = &resolved.target;
        if let Some(id) = target.read_id() {
            return (self.feeds.sources_for(id), false);
        }
        if target.kind != TargetKind::Search {
            return (self.feeds.all().to_vec(), false);
        }
        let query = Query::parse(target.rest.strip_prefix('?'));
        let mut named = query.package_ids;
        if resolved.mount == MountKind::Autocomplete {
            named.extend(query.id.map(|id| crate::nuget::lower_invariant(&id)));
        }
        if named.is_empty() {
            return (self.feeds.all().to_vec(), false);
        }
        let allowed: Vec<Arc<Feed>> = self
            .feeds
            .all()
            .iter()
            .filter(|feed| named.iter().all(|id| self.feeds.may_serve(feed, id)))
            .cloned()
            .collect();
        let restricted = allowed.is_empty();
        (allowed, restricted)
    }
}

/// `path` and `query` against the mounts of `service` (the primary's).
fn resolve_in(service: &ServiceSnapshot, path: &str, query: Option<&str>) -> Result<Resolved, ProxyError> {
    let mounts = &service.map.mounts;
    let target = route::resolve(path, query, mounts).map_err(ClientError::from)?;
    let mount = mounts
        .get(target.mount)
        .ok_or(ClientError::Route(route::RouteError::NotFound))?;
    Ok(Resolved {
        mount: mount.kind,
        local: mount.local.clone(),
        target,
    })
}

/// `feed`'s part of `resolved`: its mount under the same local name; none
/// when its index has no such resource.
fn part_of(feed: &Arc<Feed>, service: &Arc<ServiceSnapshot>, resolved: &Resolved) -> Option<Part> {
    let mount = service.map.mounts.iter().find(|m| m.local == resolved.local)?;
    Some(Part {
        feed: feed.clone(),
        service: service.clone(),
        mount: mount.clone(),
        rest: resolved.target.rest.clone(),
    })
}
