//! The read pipeline: every read below `/v3/` goes through the same named
//! phases, for any number of upstreams (one is the case N = 1):
//!
//! 1. **classify** — `route::classify` (by the front door, `proxy`), then
//!    [`Pipeline::resolve`] against the public mounts: a [`Resolved`] target;
//! 2. **authorize** — by the front door, from the method and the target;
//! 3. **resolve** — [`Pipeline::plan`] (`resolve.rs`): the upstreams the
//!    patterns allow, each as a [`Part`] with its own URL and cache key;
//! 4. **lookup** — the cache: documents (`documents.rs`), package files
//!    (`packages.rs`), merged answers (`merged.rs`);
//! 5. **fetch** — on a miss or an expired copy, one shared upstream fetch
//!    per key (`stash`), within the budgets;
//! 6. **merge** — several upstreams' documents as one (`merged.rs`,
//!    `search.rs`, over the pure `merge` and `search` modules), kept as a
//!    cached document of its own;
//! 7. **respond** — render for the request's public base URL, negotiate
//!    gzip, answer 304s, set `X-Cache` (`reply`).
//!
//! The pipeline owns the upstreams (`feeds.rs`) and their service indexes
//! (`service.rs`); the operations surface sees it only through
//! [`View`] (`view.rs`).

mod documents;
mod feeds;
mod kept;
mod merged;

mod packages;
mod resolve;
mod search;
mod service;
mod view;

use std::sync::Arc;
use std::time::Duration;

use http::request::Parts;

use crate::budget::{self, Budget};
use crate::cache::{Cache, CacheStatus, HotDoc};
use crate::config::Config;
use crate::error::ProxyError;
use crate::fleet::{Fleet, FromPeer};
use crate::metrics::Metrics;
use crate::reply::{self, base, Reply};
use crate::rewrite::MountKind;
use crate::route::TargetKind;
use crate::shared::SharedStore;
use crate::stash::{DocSpec, Transform};
use crate::tiers::NodeId;

pub(crate) use feeds::ServiceSnapshot;
pub(crate) use feeds::{Feed, Feeds};
pub(crate) use resolve::{Part, Plan, Resolved};
pub(crate) use view::{package_keys, IndexState, View};

/// How long an immutable document (a vulnerability page) counts as fresh.
const IMMUTABLE_DOCUMENT: Duration = Duration::from_secs(365 * 24 * 3600);

pub(crate) struct Pipeline {
    config: Arc<Config>,
    /// lookup: records, files, hot copies, remembered 404s.
    cache: Arc<Cache>,
    /// Every upstream with its service index, fetch stage and client, and
    /// which package ids each may serve.
    feeds: Feeds,
    metrics: Arc<Metrics>,
    /// Background refreshes running (`limits.background_refreshes`).
    refreshes: Budget,
    /// The peers a package miss is asked of first, in a fleet.
    fleet: Option<Arc<Fleet>>,
}

/// How a read is served, by what it asks for and how many may answer.
enum Shape {
    Package,
    Search,
    /// Version lists, registration indexes and pages: merged among several.
    Merged(merged::How),
    /// Anything else: the first upstream (priority order) that has it.
    First,
}

impl Pipeline {
    pub fn new(
        config: Arc<Config>,
        cache: Arc<Cache>,
        metrics: Arc<Metrics>,
        node: &Arc<NodeId>,
        shared: Option<&Arc<SharedStore>>,
    ) -> Pipeline {
        let fleet = Fleet::from_config(&config.fleet, &metrics, node);
        let feeds = Feeds::new(&config, &cache, &metrics, node, shared, fleet.as_ref());
        let limits = &config.limits;
        let refreshes = Budget::new(
            budget::Kind::BackgroundRefreshes,
            limits.background_refreshes,
            limits.queue_timeout,
            &metrics,
        );
        Pipeline {
            config,
            cache,
            feeds,
            metrics,
            refreshes,
            fleet,
        }
    }

    pub(crate) fn feeds(&self) -> &Feeds {
        &self.feeds
    }

    /// The fleet, whose health checker the server runs.
    pub(crate) fn fleet(&self) -> Option<&Arc<Fleet>> {
        self.fleet.as_ref()
    }

    /// Phases 3 to 7 for a read (GET or HEAD, authorized). What the cache
    /// keeps ready to serve as it is goes out before any per-upstream work
    /// (`kept.rs`); the rest is planned per upstream.
    pub(crate) async fn read(self: &Arc<Self>, request: &Parts, resolved: Resolved) -> Result<Reply, ProxyError> {
        let mut sources = self.sources(&resolved);
        // A peer asks for one upstream's copy (its cache-key namespace).
        if let Some(pinned) = request
            .extensions
            .get::<FromPeer>()
            .and_then(|p| p.namespace.as_deref())
        {
            sources.0.retain(|feed| feed.namespace.prefix() == pinned);
        }
        if let Some(reply) = self.kept(request, &resolved, &sources.0).await? {
            return Ok(reply);
        }
        let plan = self.plan(resolved, sources).await?;
        match shape(&plan) {
            Shape::Package => self.serve_package(&plan, request).await,
            Shape::Search => self.serve_search(&plan, request).await,
            Shape::Merged(how) => self.serve_merged(&plan, request, how).await,
            Shape::First => self.serve_first(&plan, request).await,
        }
    }

    /// `/v3/index.json`: the primary's index, rewritten for the client.
    pub(crate) async fn service_index(self: &Arc<Self>, request: &Parts) -> Result<Reply, ProxyError> {
        let base = base::public_base(&self.config, request)?;
        let (snapshot, status) = self.service_map(self.feeds.primary(), true).await?;
        let rendered = snapshot
            .map
            .template(base.url.starts_with("https://"))
            .render(&base.url);
        Ok(reply::document(
            &request.headers,
            &rendered,
            Some(&snapshot.doc),
            status,
            self.config.ttl.service_index,
            base.vary,
        ))
    }

    /// The first part (priority order) that has the document; an upstream
    /// that fails is passed over while a later one answers.
    async fn serve_first(self: &Arc<Self>, plan: &Plan, request: &Parts) -> Result<Reply, ProxyError> {
        let mut failure = None;
        for part in &plan.parts {
            match self.part_document(part, plan.target().kind).await {
                Ok((doc, status)) => return self.respond(request, &doc, status, plan.target().kind, &plan.missing),
                Err(ProxyError::NotFound) => {}
                Err(error) => {
                    tracing::debug!(upstream = part.feed.name, %error, "upstream failed; asking the next one");
                    failure.get_or_insert(error);
                }
            }
        }
        Err(failure.unwrap_or(ProxyError::NotFound))
    }

    /// One upstream's copy of the document `part` names, through the cache.
    async fn part_document(
        self: &Arc<Self>,
        part: &Part,
        kind: TargetKind,
    ) -> Result<(Arc<HotDoc>, CacheStatus), ProxyError> {
        let spec = DocSpec {
            key: part.key(),
            url: part.url(),
            ttl: self.ttl_of(kind),
            transform: Transform::Rewrite(part.service.map.clone()),
            // Search answers live in memory only.
            persist: kind != TargetKind::Search,
        };
        self.document(&part.feed, spec).await
    }

    /// How long a document of `kind` counts as fresh.
    fn ttl_of(&self, kind: TargetKind) -> Duration {
        let ttl = &self.config.ttl;
        match kind {
            TargetKind::VersionList => ttl.versions,
            TargetKind::Registration => ttl.registration,
            TargetKind::VulnerabilityPage => IMMUTABLE_DOCUMENT,
            TargetKind::Search => ttl.search,
            TargetKind::Document | TargetKind::PackageFile(_) | TargetKind::Publish => ttl.documents,
        }
    }

    /// Phase 7 for a document: rendered for the client's base URL, 304 when
    /// it has it, naming the upstreams the answer lacks.
    fn respond(
        &self,
        request: &Parts,
        doc: &HotDoc,
        status: CacheStatus,
        kind: TargetKind,
        missing: &[String],
    ) -> Result<Reply, ProxyError> {
        let base = base::public_base(&self.config, request)?;
        let rendered = doc.body.render(&base.url);
        let max_age = self.ttl_of(kind);
        let mut reply = reply::document(&request.headers, &rendered, Some(doc), status, max_age, base.vary);
        reply::name_missing(&mut reply, missing);
        Ok(reply)
    }

    /// Writes batched last-access times; called periodically and at shutdown.
    pub(crate) fn flush(&self) {
        if let Err(error) = self.cache.flush() {
            tracing::warn!(%error, "flushing the cache index failed");
        }
    }

    /// Package downloads running now, from every upstream.
    pub(crate) fn downloads_in_flight(&self) -> usize {
        self.feeds.all().iter().map(|f| f.stash.downloads_in_flight()).sum()
    }
}

fn shape(plan: &Plan) -> Shape {
    let target = plan.target();
    match (target.kind, plan.resolved.mount) {
        (TargetKind::PackageFile(_), _) => Shape::Package,
        (TargetKind::Search, _) => Shape::Search,
        (_, MountKind::Search | MountKind::Autocomplete) => Shape::Search,
        _ if plan.parts.len() < 2 => Shape::First,
        _ => merged::how_of(target).map_or(Shape::First, Shape::Merged),
    }
}
