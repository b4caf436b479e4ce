//! The front door: one request from the server, classified (`route`),
//! checked against the methods its resource has, authorized, and handed to
//! the operations surface (`ops`), the read pipeline (`pipeline`) or the
//! publish side road (`publishing.rs`); its access line is written when its
//! body ends. Routing is pure and comes first (a method a resource does not
//! have is a 405 whatever the credentials; a 405 reveals nothing), then
//! access is decided from the method and the resolved target, before any
//! lookup or upstream request: a refused call costs nothing. Before even
//! that, a request whose `Via` names this node is refused as a loop of
//! tiers (508); every answer carries this node's `Via` entry, and a cached
//! resource its `Cache-Status` (`tiers`).

mod publishing;
mod reload;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use http::header::{HeaderValue, USER_AGENT};
use http::request::Parts;
use http::{Method, Request, Response};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use tracing::Instrument;

use crate::access_log::{AccessRecord, Logged};
use crate::auth;
use crate::body::Body;
use crate::cache::Cache;
use crate::config::Config;
use crate::error::{ClientError, ProxyError};
use crate::fleet::FromPeer;
use crate::metrics::{Metrics, RequestKind};
use crate::ops::{self, Ops};
use crate::pipeline::{Pipeline, Resolved};
use crate::publish;
use crate::reply::{self as respond, base, Reply};
use crate::rewrite::MountKind;
use crate::route::{self, Route, TargetKind};
use crate::shared::SharedStore;
use crate::tiers::{self, Forwarded, NodeId};
use publishing::Publishing;

/// What dispatching learns of a request, for its access line.
#[derive(Default)]
struct Noted {
    /// `id/version` (or `id`) of what was asked for, pushed or deleted.
    package: Option<String>,
    identity: auth::Identity,
    /// What was asked for, for `nucache_requests_total`.
    kind: RequestKind,
}

/// Longest request path written to the access log.
const LOGGED_PATH: usize = 300;
/// Longest user agent written to the access log.
const LOGGED_AGENT: usize = 200;

pub(crate) struct Proxy {
    config: Arc<Config>,
    pipeline: Arc<Pipeline>,
    ops: Arc<Ops>,
    publishing: Publishing,
    metrics: Arc<Metrics>,
    /// This node's id: the loop guard and the tier headers.
    node: Arc<NodeId>,
    request_ids: AtomicU64,
    started: Instant,
}

impl Proxy {
    pub fn new(
        config: Arc<Config>,
        cache: Arc<Cache>,
        metrics: Arc<Metrics>,
        node: NodeId,
        shared: Option<Arc<SharedStore>>,
    ) -> Proxy {
        let node = Arc::new(node);
        let pipeline = Arc::new(Pipeline::new(
            config.clone(),
            cache.clone(),
            metrics.clone(),
            &node,
            shared.as_ref(),
        ));
        let ops = Arc::new(Ops::new(
            config.clone(),
            cache.clone(),
            metrics.clone(),
            pipeline.clone(),
            shared,
        ));
        let publishing = Publishing::new(config.clone(), cache, pipeline.clone());
        Proxy {
            config,
            pipeline,
            ops,
            publishing,
            metrics,
            node,
            request_ids: AtomicU64::new(0),
            started: Instant::now(),
        }
    }

    /// The read pipeline, for the server's start-up and background work.
    pub fn pipeline(&self) -> &Arc<Pipeline> {
        &self.pipeline
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
        let (method, version) = (request.method().clone(), request.version());
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
        // What a fetch this request causes passes on upstream (its Via among it).
        let forwarded = Forwarded::of(request.headers(), version);
        let outcome = forwarded
            .scope(self.dispatch(request, &mut noted))
            .instrument(span)
            .await;
        let (reply, error) = match outcome {
            Ok(reply) => (reply, None),
            // The reason with its causes, for the log (the client gets the first line).
            Err(e) => (
                Reply::plain(respond::error(&e)),
                Some((e.party(), crate::error::chain(&e))),
            ),
        };
        let Reply {
            mut response,
            cache,
            member,
        } = reply;
        if let Ok(value) = HeaderValue::from_str(&request_id) {
            response.headers_mut().insert("x-request-id", value);
        }
        tiers::stamp(response.headers_mut(), &self.node, version, member.as_ref());
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

    /// Classifies the request and hands it over; what it learns goes to
    /// `noted` for the access line.
    async fn dispatch(self: &Arc<Self>, request: Request<Incoming>, noted: &mut Noted) -> Result<Reply, ProxyError> {
        if let Err(looped) = tiers::refuse_loop(request.headers(), &self.node) {
            self.metrics.loop_refused();
            return Err(looped.into());
        }
        let path = base::local_path(&self.config, request.uri().path());
        let route = route::classify(path).map_err(ClientError::from)?;
        let (mut parts, body) = request.into_parts();
        self.note_peer(&mut parts)?;
        match route {
            Route::Health => {
                read_only(&parts)?;
                Ok(Reply::plain(self.ops.health(&parts.headers)))
            }
            Route::Ready => {
                read_only(&parts)?;
                Ok(Reply::plain(self.ops.ready(&parts.headers)))
            }
            Route::Admin(path) => {
                // Without admin keys configured the admin API does not exist (404).
                noted.identity = auth::check_admin(&self.config, &parts.headers)?;
                self.ops.admin(&parts, body, &path).await
            }
            Route::Metrics | Route::Home => {
                read_only(&parts)?;
                noted.identity = self.read_access(&parts)?;
                Ok(Reply::plain(match route {
                    Route::Metrics => self.ops.metrics_text(),
                    _ if ops::wants_html(&parts.headers) => self.ops.status_page(),
                    _ => self.ops.home(),
                }))
            }
            Route::ServiceIndex => {
                noted.kind = RequestKind::ServiceIndex;
                read_only(&parts)?;
                noted.identity = self.read_access(&parts)?;
                self.pipeline.service_index(&parts).await
            }
            Route::Mounted(path) => {
                let resolved = match self.pipeline.resolve_loaded(&path, parts.uri.query()) {
                    Some(resolved) => resolved?,
                    None => {
                        // No index to route by yet: loading one is upstream
                        // work, which only a caller with access may cause.
                        noted.identity = self.check_access(&parts)?;
                        self.pipeline.resolve(&path, parts.uri.query()).await?
                    }
                };
                note_target(noted, &resolved);
                match resolved.target.kind {
                    TargetKind::Publish => self.publish(resolved, parts, body, noted).await,
                    _ => {
                        read_only(&parts)?;
                        noted.identity = self.read_access(&parts)?;
                        self.pipeline.read(&parts, resolved).await
                    }
                }
            }
        }
    }

    /// The access a request's method asks for, before it can be routed:
    /// publish keys for the methods publish calls use, read access else.
    fn check_access(&self, parts: &Parts) -> Result<auth::Identity, ClientError> {
        let publish_method = matches!(parts.method, Method::PUT | Method::DELETE | Method::POST);
        match publish_method && self.config.publish.enabled {
            true => auth::check_publish(&self.config, &parts.headers).map(|(_, who)| who),
            false => self.read_access(parts),
        }
    }

    /// Read access: a peer of the fleet has it, anyone else as `auth.read` says.
    fn read_access(&self, parts: &Parts) -> Result<auth::Identity, ClientError> {
        match parts.extensions.get::<FromPeer>() {
            Some(peer) => Ok(auth::Identity::Peer(peer.hop.clone())),
            None => auth::check_read(&self.config, &parts.headers),
        }
    }

    /// Marks a request from a peer of the fleet ([`FromPeer`]: read access,
    /// never forwarded again); a wrong fleet key is refused (403). The hop
    /// header alone proves nothing and is ignored.
    fn note_peer(&self, parts: &mut Parts) -> Result<(), ClientError> {
        match auth::check_fleet(&self.config, &parts.headers) {
            Ok(false) => Ok(()),
            Ok(true) => {
                self.metrics.fleet.served_to_peers.inc();
                let from = FromPeer::of(&parts.headers);
                parts.extensions.insert(from);
                Ok(())
            }
            Err(refused) => {
                self.metrics.fleet.refused_peers.inc();
                Err(refused)
            }
        }
    }

    /// A publish call: its method checked against the resource, then its
    /// key (`publish.mode`), then forwarded.
    async fn publish(
        self: &Arc<Self>,
        resolved: Resolved,
        parts: Parts,
        body: Incoming,
        noted: &mut Noted,
    ) -> Result<Reply, ProxyError> {
        let call = publish::call_of(resolved.mount, &resolved.target.rest, &parts.method)?;
        let (key, identity) = auth::check_publish(&self.config, &parts.headers)?;
        noted.identity = identity;
        let (reply, pushed) = self.publishing.forward(&resolved, call, key, parts, body).await?;
        if pushed.is_some() {
            noted.package = pushed;
        }
        Ok(reply)
    }

    /// Writes batched last-access times; called periodically and at shutdown.
    pub fn flush(&self) {
        self.pipeline.flush();
    }
}

/// What the access line says of a target: its package and kind.
fn note_target(noted: &mut Noted, resolved: &Resolved) {
    if let Some(name) = &resolved.target.package {
        tracing::Span::current().record("package", name.as_str());
    }
    noted.package.clone_from(&resolved.target.package);
    noted.kind = kind_of(resolved.target.kind, resolved.mount);
}

/// The `kind` label of a request under a mount.
fn kind_of(target: TargetKind, mount: MountKind) -> RequestKind {
    match (target, mount) {
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
