//! The proxy: one request through named phases.
//!
//! 1. **classify** — `route::classify`, then `route::resolve` against the
//!    mounts of the current service index (`service.rs`);
//! 2. **lookup** — the cache (`metadata.rs` for documents, `packages.rs`
//!    for package files);
//! 3. **fetch** — on a miss or an expired copy, one shared upstream fetch
//!    (`stash`);
//! 4. **respond** — render for the request's public base URL, negotiate
//!    gzip, answer 304s, set `X-Cache` (`respond.rs`).

mod admin;
mod admin_import;
mod base;
mod export_listing;
mod feeds;
mod merged;
mod metadata;
mod offline_search;
mod packages;
mod publishing;
mod reload;
mod respond;
mod service;
mod status;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use http::header::{HeaderValue, USER_AGENT};
use http::request::Parts;
use http::{Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use tracing::Instrument;

use crate::access_log::{AccessRecord, Logged};
use crate::auth;
use crate::body::Body;
use crate::cache::Cache;
use crate::config::Config;
use crate::error::{ClientError, ProxyError};
use crate::metrics::{Metrics, RequestKind};
use crate::publish;
use crate::rewrite::MountKind;
use crate::route::{self, Route, Target, TargetKind};
use crate::stash::{DocSpec, Transform};
use crate::upstream::BreakerState;
use feeds::{Feed, Feeds, ServiceSnapshot};

pub(crate) use respond::Reply;

/// What dispatching learns of a request, for its access line.
#[derive(Default)]
struct Noted {
    /// `id/version` (or `id`) of what was asked for, pushed or deleted.
    package: Option<String>,
    identity: auth::Identity,
    /// What was asked for, for `nucache_requests_total`.
    kind: RequestKind,
}

/// What `authorize` allowed a request to do.
enum Access {
    Read,
    /// A publish call, with the key that goes upstream.
    Publish(auth::UpstreamKey),
}

/// How long an immutable document (a vulnerability page) counts as fresh.
const IMMUTABLE_DOCUMENT: std::time::Duration = std::time::Duration::from_secs(365 * 24 * 3600);

/// Longest request path written to the access log.
const LOGGED_PATH: usize = 300;
/// Longest user agent written to the access log.
const LOGGED_AGENT: usize = 200;

/// The stages a request passes through, each owning its own state.
pub(crate) struct Proxy {
    config: Arc<Config>,
    /// lookup: records, files, hot copies, remembered 404s.
    cache: Arc<Cache>,
    /// Every upstream with its service index, fetch stage and client, and
    /// which package ids each may serve.
    feeds: Feeds,
    request_ids: AtomicU64,
    started: Instant,
    /// `publish.api_key` as last read (SIGHUP re-reads its file).
    publish_key: std::sync::RwLock<Option<crate::config::Secret>>,
    metrics: Arc<Metrics>,
    /// Where today's figures of the status page start.
    today: status::TodayCell,
    /// Background refreshes running (`limits.background_refreshes`; metadata.rs).
    refreshes: crate::budget::Budget,
    /// Uploads of `nucache import --url` (`limits.import_staging`; admin_import.rs).
    import_staging: crate::airgap::Staging,
}

impl Proxy {
    pub fn new(config: Arc<Config>, cache: Arc<Cache>, metrics: Arc<Metrics>) -> Proxy {
        let feeds = Feeds::new(&config, &cache, &metrics);
        Proxy {
            config: config.clone(),
            cache,
            feeds,
            request_ids: AtomicU64::new(0),
            started: Instant::now(),
            publish_key: std::sync::RwLock::new(config.publish.api_key.clone()),
            today: status::TodayCell::default(),
            refreshes: crate::budget::Budget::new(
                crate::budget::Kind::BackgroundRefreshes,
                config.limits.background_refreshes,
                config.limits.queue_timeout,
                &metrics,
            ),
            import_staging: crate::airgap::Staging::new(&config.cache.dir, config.limits.import_staging.bytes()),
            metrics,
        }
    }

    /// Handles one request; never fails: errors become responses.
    /// Handles one request from `peer`; never fails: errors become responses.
    pub async fn handle(self: Arc<Self>, request: Request<Incoming>, peer: SocketAddr) -> Response<Body> {
        let started = Instant::now();
        let request_id = format!(
            "{:x}-{:x}",
            self.started.elapsed().as_secs(),
            self.request_ids.fetch_add(1, Ordering::Relaxed)
        );
        let method = request.method().clone();
        let path: String = request.uri().to_string().chars().take(LOGGED_PATH).collect();
        let agent = request.headers().get(USER_AGENT).map(|v| {
            String::from_utf8_lossy(v.as_bytes())
                .chars()
                .take(LOGGED_AGENT)
                .collect()
        });
        let forwarded_for = base::forwarded_for(&self.config, request.headers());
        let span = tracing::info_span!("request", id = %request_id, package = tracing::field::Empty);
        let mut noted = Noted::default();
        let outcome = self.dispatch(request, &mut noted).instrument(span).await;
        let (reply, error) = match outcome {
            Ok(reply) => (reply, None),
            Err(e) => (Reply::plain(respond::error(&e)), Some((e.party(), e.to_string()))),
        };
        let Reply { mut response, cache } = reply;
        if let Ok(value) = HeaderValue::from_str(&request_id) {
            response.headers_mut().insert("x-request-id", value);
        }
        let record = AccessRecord {
            request_id,
            method,
            path,
            status: response.status().as_u16(),
            cache,
            package: noted.package,
            client: peer,
            forwarded_for,
            agent,
            identity: noted.identity.to_string(),
            error,
            started,
            bytes: 0,
            kind: noted.kind,
            metrics: self.metrics.clone(),
        };
        response.map(|body| Logged::new(body, record).boxed_unsync())
    }

    /// Phase 1: classify and authorize, then hand over to the phase that
    /// serves it. Access is decided from the method and the path alone,
    /// before any lookup or upstream request: a refused call costs nothing.
    async fn dispatch(self: &Arc<Self>, request: Request<Incoming>, noted: &mut Noted) -> Result<Reply, ProxyError> {
        let path = base::local_path(&self.config, request.uri().path());
        let route = route::classify(path).map_err(ClientError::from)?;
        let (parts, body) = request.into_parts();
        if route == Route::Health {
            read_only(&parts)?;
            return Ok(Reply::plain(self.health(&parts.headers)));
        }
        if route == Route::Ready {
            read_only(&parts)?;
            return Ok(Reply::plain(self.ready(&parts.headers)));
        }
        if let Route::Admin(path) = &route {
            // The key is checked before anything else: without admin keys
            // configured the admin API does not exist (404).
            noted.identity = auth::check_admin(&self.config, &parts.headers)?;
            return self.admin(&parts, body, path).await;
        }
        if route == Route::ServiceIndex {
            noted.kind = RequestKind::ServiceIndex;
        }
        let (access, identity) = self.authorize(&route, &parts)?;
        noted.identity = identity;
        let Route::Mounted(path) = route else {
            read_only(&parts)?;
            return match route {
                Route::ServiceIndex => self.service_index(&parts).await,
                Route::Metrics => Ok(Reply::plain(self.metrics_text())),
                _ if status::wants_html(&parts.headers) => Ok(Reply::plain(self.status_page())),
                _ => Ok(Reply::plain(self.home())),
            };
        };
        let primary = self.feeds.primary().clone();
        let (snapshot, _) = self.service_map(&primary, false).await?;
        let mounts = &snapshot.map.mounts;
        let target = route::resolve(&path, parts.uri.query(), mounts).map_err(ClientError::from)?;
        if let Some(name) = &target.package {
            tracing::Span::current().record("package", name.as_str());
        }
        noted.package.clone_from(&target.package);
        if let Some(mount) = mounts.get(target.mount) {
            noted.kind = kind_of(&target, mount.kind);
        }
        if target.kind == TargetKind::Publish {
            let Access::Publish(key) = access else {
                // Publish paths take only the methods `authorize` treats as publish calls.
                return Err(ClientError::MethodNotAllowed {
                    method: parts.method.to_string(),
                    allow: "PUT, DELETE, POST",
                }
                .into());
            };
            let (feed, service) = self.publish_feed(&snapshot).await?;
            let target = route::resolve(&path, parts.uri.query(), &service.map.mounts).map_err(ClientError::from)?;
            let mount = service
                .map
                .mounts
                .get(target.mount)
                .filter(|_| target.kind == TargetKind::Publish)
                .ok_or(ClientError::Route(route::RouteError::NotFound))?;
            let url = mount.upstream_url(&target.rest);
            let call = publish::call_of(mount.kind, &target.rest, &parts.method)?;
            let (reply, pushed) = self.publish(&feed, call, key, &url, parts, body, &service.map).await?;
            if pushed.is_some() {
                noted.package = pushed;
            }
            return Ok(reply);
        }
        read_only(&parts)?;
        if self.feeds.several() {
            let kind = mounts.get(target.mount).map(|m| m.kind);
            return self.read_merged(&parts, &path, &target, kind).await;
        }
        // packageSourceMapping: an id the patterns give to no upstream of
        // ours is never asked for (a private id never reaches a public feed).
        if let Some(id) = target.read_id() {
            if !self.feeds.may_ask(&primary, id) {
                return Err(ProxyError::NotFound);
            }
        }
        self.read(&primary, &snapshot, &parts, &target).await
    }

    /// Publish calls (PUT, DELETE, POST under `/v3/`) authenticate with
    /// their API key (`publish.mode`); everything else is a read.
    fn authorize(&self, route: &Route, parts: &Parts) -> Result<(Access, auth::Identity), ClientError> {
        let publish_method = matches!(parts.method, Method::PUT | Method::DELETE | Method::POST);
        if publish_method && self.publish_enabled() && matches!(route, Route::Mounted(_)) {
            return auth::check_publish(&self.config, &parts.headers).map(|(key, who)| (Access::Publish(key), who));
        }
        auth::check_read(&self.config, &parts.headers).map(|who| (Access::Read, who))
    }

    /// Phases 2–4 for a read under a mount of `feed` (`target` resolved
    /// against `service`'s mounts, its key not yet in the feed's namespace).
    async fn read(
        self: &Arc<Self>,
        feed: &Arc<Feed>,
        service: &ServiceSnapshot,
        parts: &Parts,
        target: &Target,
    ) -> Result<Reply, ProxyError> {
        let base = base::public_base(&self.config, parts)?;
        let (doc, status, max_age) = match self.read_document(feed, service, target).await {
            Ok(Read::Document(doc, status, max_age)) => (doc, status, max_age),
            Ok(Read::Package(url)) => {
                let mut target = target.clone();
                target.key = feed.key(&target.key);
                return self.package_file(feed, &parts.headers, &target, url).await;
            }
            Err(ProxyError::Upstream(error)) if target.kind == TargetKind::Search => {
                return self.offline_search(parts, target, &base, error).await;
            }
            Err(error) => return Err(error),
        };
        let rendered = doc.body.render(&base.url);
        Ok(respond::document(
            &parts.headers,
            &rendered,
            doc.entry.last_modified.as_deref(),
            status,
            max_age,
            base.vary,
        ))
    }

    /// The document `target` names, through the cache, from `feed`; a
    /// package file is left to the caller (with its upstream URL).
    async fn read_document(
        self: &Arc<Self>,
        feed: &Arc<Feed>,
        service: &ServiceSnapshot,
        target: &Target,
    ) -> Result<Read, ProxyError> {
        let mount = service
            .map
            .mounts
            .get(target.mount)
            .ok_or(ClientError::Route(route::RouteError::NotFound))?;
        let url = mount.upstream_url(&target.rest);
        let ttl = &self.config.ttl;
        let (max_age, persist) = match target.kind {
            TargetKind::PackageFile(_) => return Ok(Read::Package(url)),
            TargetKind::Publish => return Err(ClientError::from(route::RouteError::NotFound).into()),
            TargetKind::VersionList => (ttl.versions, true),
            TargetKind::Registration => (ttl.registration, true),
            TargetKind::Document => (ttl.documents, true),
            TargetKind::VulnerabilityPage => (IMMUTABLE_DOCUMENT, true),
            TargetKind::Search => (ttl.search, false),
        };
        let spec = DocSpec {
            key: feed.key(&target.key),
            url,
            ttl: max_age,
            transform: Transform::Rewrite(service.map.clone()),
            persist,
        };
        let (doc, status) = self.document(feed, spec).await?;
        Ok(Read::Document(doc, status, max_age))
    }

    async fn service_index(self: &Arc<Self>, parts: &Parts) -> Result<Reply, ProxyError> {
        let base = base::public_base(&self.config, parts)?;
        let (snapshot, status) = self.service_map(self.feeds.primary(), true).await?;
        let rendered = snapshot
            .map
            .template(base.url.starts_with("https://"))
            .render(&base.url);
        let last_modified = snapshot.doc.entry.last_modified.as_deref();
        Ok(respond::document(
            &parts.headers,
            &rendered,
            last_modified,
            status,
            self.config.ttl.service_index,
            base.vary,
        ))
    }

    fn home(&self) -> Response<Body> {
        let feeds: Vec<&str> = self.feeds.all().iter().map(|f| f.service_index.as_str()).collect();
        let text = format!(
            "nucache {}: a caching proxy for the NuGet V3 feed {}\nPoint NuGet clients at /v3/index.json on this host.",
            env!("CARGO_PKG_VERSION"),
            feeds.join(" and ")
        );
        respond::text(StatusCode::OK, &text)
    }

    /// Open to everyone (load balancers poll it); when reads need
    /// credentials, anonymous callers see no upstream address or error text.
    fn health(&self, headers: &http::HeaderMap) -> Response<Body> {
        let service_index = match self.feeds.primary().service.current() {
            None => "not loaded",
            Some(s) if s.doc.is_fresh(self.config.ttl.service_index) => "fresh",
            Some(_) => "stale",
        };
        let anonymous = auth::check_read(&self.config, headers).is_err();
        // Anonymous callers of a closed feed learn the state, not the
        // addresses or error texts (they may name hosts and local paths).
        let status_of = |feed: &Feed| match anonymous {
            true => feed.client.breaker_status().without_addresses(),
            false => feed.client.breaker_status(),
        };
        let upstreams: Vec<serde_json::Value> = self
            .feeds
            .all()
            .iter()
            .map(|feed| {
                let status = status_of(feed);
                serde_json::json!({ "name": feed.name, "state": status.state, "origins": status.origins })
            })
            .collect();
        let any_open = self
            .feeds
            .all()
            .iter()
            .any(|feed| feed.client.breaker_status().state == BreakerState::Open);
        let storage_error = self.cache.health.problem();
        let degraded = any_open || storage_error.is_some();
        let totals = self.cache.totals();
        let last_error = storage_error.clone().filter(|_| !anonymous);
        let body = serde_json::json!({
            "status": if degraded { "degraded" } else { "ok" },
            "version": env!("CARGO_PKG_VERSION"),
            "uptime_seconds": self.started.elapsed().as_secs(),
            "service_index": service_index,
            // The highest-priority upstream (the only one, usually); every
            // upstream's breakers are under "upstreams".
            "upstream": status_of(self.feeds.primary()),
            "upstreams": upstreams,
            "storage": { "writable": storage_error.is_none(), "last_error": last_error },
            "cache_entries": totals.entries,
            "cache_bytes": totals.bytes,
            "downloads_in_flight": self.downloads_in_flight(),
        });
        respond::json(StatusCode::OK, body.to_string())
    }

    /// `/metrics`: the counters, and the states read now from their owners.
    fn metrics_text(&self) -> Response<Body> {
        let totals = self.cache.totals();
        let origins = self.feeds.all().iter().flat_map(|f| f.client.breaker_status().origins);
        let snapshot = crate::metrics::Snapshot {
            cache_size_bytes: totals.bytes,
            cache_entries: totals.entries as u64,
            downloads_in_flight: self.downloads_in_flight() as u64,
            storage_writable: self.cache.health.problem().is_none(),
            breakers: origins
                .filter_map(|b| Some((b.origin?, b.state == BreakerState::Open)))
                .collect(),
        };
        respond::metrics(self.metrics.render(&snapshot))
    }

    /// Readiness, open like `/health`: 200 when the cache takes writes and a
    /// service index is loaded or cached (so mounted paths can be served),
    /// else 503 and why. Anonymous callers of a closed feed get no error text.
    fn ready(&self, headers: &http::HeaderMap) -> Response<Body> {
        let mut reasons = Vec::new();
        if let Some(problem) = self.cache.health.problem() {
            let mut reason = "the cache directory does not take writes".to_string();
            if auth::check_read(&self.config, headers).is_ok() {
                reason = format!("{reason}: {problem}");
            }
            reasons.push(reason);
        }
        let primary = self.feeds.primary();
        let cached_index = || matches!(self.cache.entry(&primary.key(service::SERVICE_INDEX_KEY)), Ok(Some(_)));
        if primary.service.current().is_none() && !cached_index() {
            reasons.push("no service index loaded or cached yet: the upstream has not answered".to_string());
        }
        let status = if reasons.is_empty() {
            StatusCode::OK
        } else {
            StatusCode::SERVICE_UNAVAILABLE
        };
        let body = serde_json::json!({ "ready": reasons.is_empty(), "reasons": reasons });
        respond::json(status, body.to_string())
    }

    /// Package downloads running now, from every upstream.
    pub(super) fn downloads_in_flight(&self) -> usize {
        self.feeds.all().iter().map(|f| f.stash.downloads_in_flight()).sum()
    }

    /// Writes batched last-access times; called periodically and at shutdown.
    pub fn flush(&self) {
        if let Err(error) = self.cache.flush() {
            tracing::warn!(%error, "flushing the cache index failed");
        }
    }
}

/// What a read under a mount found.
enum Read {
    Document(
        Arc<crate::cache::HotDoc>,
        crate::cache::CacheStatus,
        std::time::Duration,
    ),
    /// A package file, at this upstream URL.
    Package(String),
}

/// The `kind` label of a request under a mount.
fn kind_of(target: &Target, mount: MountKind) -> RequestKind {
    match (target.kind, mount) {
        (TargetKind::VersionList, _) => RequestKind::Versions,
        (TargetKind::PackageFile(_), _) => RequestKind::Package,
        (TargetKind::Registration, _) => RequestKind::Registration,
        (TargetKind::Publish, _) => RequestKind::Publish,
        (_, MountKind::Search) => RequestKind::Search,
        (_, MountKind::Autocomplete) => RequestKind::Autocomplete,
        (_, MountKind::Catalog) => RequestKind::Catalog,
        (_, MountKind::Vulnerabilities) => RequestKind::Vulnerability,
        _ => RequestKind::Other,
    }
}

/// Reads accept GET and HEAD only.
fn read_only(parts: &Parts) -> Result<(), ProxyError> {
    match parts.method {
        Method::GET | Method::HEAD => Ok(()),
        ref other => Err(ClientError::MethodNotAllowed {
            method: other.to_string(),
            allow: "GET, HEAD",
        }
        .into()),
    }
}
