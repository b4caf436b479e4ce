//! The upstream client: hyper over rustls (webpki roots plus the system
//! store), pooled keep-alive connections, redirects, retries with backoff
//! for idempotent requests, timeouts on connecting, on the first byte and
//! on every gap between body chunks, and a circuit breaker per origin
//! (`breaker`). `reading` reads bodies within those timeouts; `urls` is
//! the URL arithmetic (origins, redirect targets); `connect` goes through
//! a corporate proxy where one is configured. Every request a client
//! starts holds a slot of the upstream's budget until its response is
//! finished or dropped (`upstream.max_concurrent_requests`), and document
//! bodies count against the bytes of documents in flight ([`Budgets`]).

mod breaker;
mod connect;
mod reading;
mod urls;

use breaker::{Breaker, Breakers, Transition};
pub use breaker::{BreakerState, UpstreamStatus};
use connect::{Proxies, ProxyConnector};
pub(crate) use reading::{check_length, check_not_longer, chunk_now, content_length};
use urls::breaker_origin;
pub(crate) use urls::{join_url, origin_of};

use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use bytes::Bytes;
use http::header::{HeaderMap, HeaderValue, ACCEPT_ENCODING, AUTHORIZATION, LOCATION, PROXY_AUTHORIZATION, USER_AGENT};
use http::{Method, Request, Response, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use crate::budget::{Budget, Held, Kind};
use crate::config::{LimitsConfig, UpstreamConfig};
use crate::error::{chain as error_chain, UpstreamError};
use crate::metrics::{Metrics, UpstreamOutcome};
use crate::tiers::{Forwarded, NodeId};

pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync>;
/// Request bodies sent upstream: empty for reads, streamed for publish.
pub(crate) type RequestBody = BoxBody<Bytes, BoxError>;

const USER_AGENT_VALUE: &str = concat!("nucache/", env!("CARGO_PKG_VERSION"));
const FIRST_BACKOFF: Duration = Duration::from_millis(100);

/// A response from the upstream, after redirects.
pub(crate) struct Fetched {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Incoming,
    /// The URL that answered (after redirects), for logs.
    pub url: String,
    /// The request's slot of `upstream.max_concurrent_requests`, given
    /// back when the response (its body with it) is dropped.
    _slot: Option<Held>,
}

impl Fetched {
    fn new(response: Response<Incoming>, url: String) -> Fetched {
        let (parts, body) = response.into_parts();
        Fetched {
            status: parts.status,
            headers: parts.headers,
            body,
            url,
            _slot: None,
        }
    }

    fn holding(self, slot: Held) -> Fetched {
        Fetched {
            _slot: Some(slot),
            ..self
        }
    }
}

/// The budgets an upstream client takes from: its own requests in flight,
/// and the bytes of documents in flight, shared by every upstream.
#[derive(Clone)]
pub(crate) struct Budgets {
    pub requests: Budget,
    pub document_bytes: Budget,
}

impl Budgets {
    /// The requests budget of upstream `name`, beside `document_bytes`.
    pub fn of(
        name: &str,
        config: &UpstreamConfig,
        limits: &LimitsConfig,
        document_bytes: Budget,
        metrics: &Metrics,
    ) -> Budgets {
        let requests = Kind::UpstreamRequests(name);
        Budgets {
            requests: Budget::new(requests, config.max_concurrent_requests, limits.queue_timeout, metrics),
            document_bytes,
        }
    }

    /// The process-wide budget of bytes of documents in flight.
    pub fn document_bytes(limits: &LimitsConfig, metrics: &Metrics) -> Budget {
        let bytes = u32::try_from(limits.document_bytes.bytes()).unwrap_or(u32::MAX);
        Budget::new(Kind::DocumentBytes, bytes, limits.queue_timeout, metrics)
    }
}

pub(crate) struct Upstream {
    client: Client<HttpsConnector<ProxyConnector>, RequestBody>,
    proxies: Proxies,
    config: UpstreamConfig,
    /// Replaced when SIGHUP re-reads the password or token file.
    credentials: RwLock<Option<Arc<Credentials>>>,
    breakers: Breakers,
    metrics: Arc<Metrics>,
    budgets: Budgets,
    /// This node, named in the `Via` of every request it sends (none: a
    /// command-line tool, not a proxy).
    node: Option<Arc<NodeId>>,
}

/// The `Authorization` value for a private upstream, and the only origins
/// that may see it.
struct Credentials {
    header: HeaderValue,
    origins: Vec<String>,
}

impl Credentials {
    fn from_config(config: &UpstreamConfig) -> Option<Credentials> {
        let value = match (&config.username, &config.password, &config.token) {
            (Some(user), Some(password), _) => {
                let pair = format!("{user}:{}", password.expose());
                format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(pair))
            }
            (_, _, Some(token)) => format!("Bearer {}", token.expose()),
            _ => return None,
        };
        let mut header = HeaderValue::from_str(&value).ok()?;
        header.set_sensitive(true);
        let origins = if config.auth_origins.is_empty() {
            vec![origin_of(&config.service_index).to_string()]
        } else {
            config.auth_origins.clone()
        };
        Some(Credentials { header, origins })
    }

    fn for_url(&self, url: &str) -> Option<&HeaderValue> {
        let origin = origin_of(url);
        self.origins
            .iter()
            .any(|allowed| allowed.eq_ignore_ascii_case(origin))
            .then_some(&self.header)
    }
}

/// Whether the body of a GET is a metadata document (gzip welcome) or a
/// package file (bytes must arrive exactly as stored upstream).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Wanted {
    Document,
    Blob,
}

impl Upstream {
    /// A client with budgets of its own, at the default limits (for tools
    /// and probes outside the server: they send no `Via`).
    pub fn new(config: &UpstreamConfig, metrics: Arc<Metrics>) -> Upstream {
        let limits = LimitsConfig::default();
        let bytes = Budgets::document_bytes(&limits, &metrics);
        let budgets = Budgets::of("default", config, &limits, bytes, &metrics);
        Upstream::with_budgets(config, metrics, budgets, None)
    }

    /// The client of a server: `node` goes in the `Via` of what it sends.
    pub fn with_budgets(
        config: &UpstreamConfig,
        metrics: Arc<Metrics>,
        budgets: Budgets,
        node: Option<Arc<NodeId>>,
    ) -> Upstream {
        Upstream::build(config, metrics, budgets, Proxies::from_config(config), node)
    }

    /// A client that never goes through a proxy (the environment's
    /// `HTTP_PROXY` included), at the default limits: for a fleet's peers,
    /// which are reached directly; `node` goes in the `Via` of what it
    /// sends, so a loop through a peer hop is seen too.
    pub fn direct(config: &UpstreamConfig, metrics: Arc<Metrics>, node: Option<Arc<NodeId>>) -> Upstream {
        let limits = LimitsConfig::default();
        let bytes = Budgets::document_bytes(&limits, &metrics);
        let budgets = Budgets::of("fleet", config, &limits, bytes, &metrics);
        Upstream::build(config, metrics, budgets, Proxies::none(), node)
    }

    fn build(
        config: &UpstreamConfig,
        metrics: Arc<Metrics>,
        budgets: Budgets,
        proxies: Proxies,
        node: Option<Arc<NodeId>>,
    ) -> Upstream {
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_connect_timeout(Some(config.connect_timeout));
        http.set_nodelay(true);
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls_config(&config.ca_certs))
            .https_or_http()
            .enable_http1()
            .wrap_connector(ProxyConnector::new(http, proxies.clone()));
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(60))
            .pool_max_idle_per_host(64)
            .build(https);
        let breakers = Breakers::new(config.breaker_threshold, config.breaker_cooldown);
        // Listed in /health from the start.
        let _ = breakers.of(&breaker_origin(&config.service_index));
        Upstream {
            client,
            proxies,
            // Credentials have one owner, `credentials` (SIGHUP replaces
            // them there): no stale copy is kept beside it.
            config: config.without_credentials(),
            credentials: RwLock::new(Credentials::from_config(config).map(Arc::new)),
            breakers,
            metrics,
            budgets,
            node,
        }
    }

    /// The bytes of documents in flight, which reading a document takes from.
    pub fn document_bytes(&self) -> &Budget {
        &self.budgets.document_bytes
    }

    /// Takes the credentials of `config` (re-read key files, on SIGHUP);
    /// whether there are any.
    pub fn set_credentials(&self, config: &UpstreamConfig) -> bool {
        let fresh = Credentials::from_config(config).map(Arc::new);
        let any = fresh.is_some();
        if let Ok(mut credentials) = self.credentials.write() {
            *credentials = fresh;
        }
        any
    }

    /// GET with redirects and retries; `extra` carries conditional headers.
    /// A 5xx that survives the retries comes back as a response so the
    /// caller can tell it from a transport failure. While the circuit
    /// breaker of an origin on the way is open, fails at once. One slot of
    /// the upstream's budget is held across redirects and retries, and then
    /// by the response until it is dropped; none free within the queue
    /// timeout is [`UpstreamError::Busy`].
    pub async fn get(self: &Arc<Self>, url: &str, wanted: Wanted, extra: &HeaderMap) -> Result<Fetched, UpstreamError> {
        let slot = self.budgets.requests.wait(1).await.map_err(UpstreamError::Busy)?;
        let mut last_hop = url.to_string();
        let result = match self.get_with_retries(url, wanted, extra, &mut last_hop).await {
            Ok(mut refused) if refused.status == StatusCode::LOOP_DETECTED => Err(UpstreamError::Loop {
                origin: origin_of(&refused.url).to_string(),
                message: self.first_line(&mut refused).await,
            }),
            other => other,
        };
        self.note_outcome(&last_hop, &result);
        result.map(|fetched| fetched.holding(slot))
    }

    /// One outcome per GET (not per retry), charged to the origin that
    /// gave it: the hop that failed, or the one that answered.
    fn note_outcome(self: &Arc<Self>, last_hop: &str, result: &Result<Fetched, UpstreamError>) {
        if matches!(result, Err(UpstreamError::Down { .. })) {
            return; // refused by an open breaker: nothing new about the origin
        }
        let url = match result {
            Ok(fetched) => fetched.url.as_str(),
            Err(_) => last_hop,
        };
        let Some(breaker) = self.breakers.of(&breaker_origin(url)) else {
            return;
        };
        match failure_of(result) {
            None => breaker.record_success(),
            Some(reason) => {
                if breaker.record_failure(url, &reason) == Transition::Opened {
                    self.probe_until_back(breaker);
                }
            }
        }
    }

    /// GET of a package file: `None` when the upstream has no such package
    /// (404, 410); any other answer but 200 is the upstream's failure.
    pub async fn get_package(self: &Arc<Self>, url: &str) -> Result<Option<Fetched>, UpstreamError> {
        let fetched = self.get(url, Wanted::Blob, &HeaderMap::new()).await?;
        match fetched.status {
            StatusCode::OK => Ok(Some(fetched)),
            StatusCode::NOT_FOUND | StatusCode::GONE => Ok(None),
            status => Err(UpstreamError::Status {
                origin: origin_of(&fetched.url).to_string(),
                status: status.as_u16(),
            }),
        }
    }

    /// While `breaker` is open, asks its origin every cooldown and closes
    /// the breaker when the origin answers (anything but a 5xx). Probes take
    /// no slot of the budget: one per open origin at most, and they must
    /// learn that an origin is back even while clients queue for slots.
    fn probe_until_back(self: &Arc<Self>, breaker: Arc<Breaker>) {
        let upstream = self.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(breaker.cooldown()).await;
                if breaker.rejects().is_none() {
                    return;
                }
                let (method, url) = upstream.probe_request(&breaker);
                let probe = upstream.send(&method, &url, Wanted::Blob, &HeaderMap::new()).await;
                match probe {
                    Ok(response) if !response.status().is_server_error() => {
                        breaker.record_success();
                        return;
                    }
                    Ok(response) => breaker.record_failure(&url, &format!("answered {}", response.status())),
                    Err(error) => breaker.record_failure(&url, &error.to_string()),
                };
            }
        });
    }

    /// A cheap question only that origin can answer: the service index
    /// (small) on its own origin, elsewhere a HEAD of the URL that last
    /// failed there (no body, however large the package). One request, no
    /// redirects: another host's answer says nothing about this one.
    fn probe_request(&self, breaker: &Breaker) -> (Method, String) {
        let index = &self.config.service_index;
        match breaker.last_failed_url() {
            Some(url) if breaker.origin() != breaker_origin(index) => (Method::HEAD, url),
            _ => (Method::GET, index.clone()),
        }
    }

    /// The bound of a whole download (`upstream.download_timeout`).
    pub fn download_timeout(&self) -> Duration {
        self.config.download_timeout
    }

    /// How long a download waits for a reader that reads nothing.
    pub fn read_timeout(&self) -> Duration {
        self.config.read_timeout
    }

    pub fn breaker_status(&self) -> UpstreamStatus {
        self.breakers.status()
    }

    /// `Some(reason)` while the breaker of `url`'s origin is open.
    fn rejects(&self, url: &str) -> Option<String> {
        self.breakers.of(&breaker_origin(url))?.rejects()
    }

    async fn get_with_retries(
        &self,
        url: &str,
        wanted: Wanted,
        extra: &HeaderMap,
        last_hop: &mut String,
    ) -> Result<Fetched, UpstreamError> {
        let mut attempt = 0;
        loop {
            let result = self.follow_redirects(url, wanted, extra, last_hop).await;
            let retry = match &result {
                // A loop answers the same however often it is asked.
                Ok(fetched) => fetched.status.is_server_error() && fetched.status != StatusCode::LOOP_DETECTED,
                Err(error) => error.is_retryable(),
            };
            if !retry || attempt >= self.config.retries {
                return result;
            }
            attempt += 1;
            let delay = backoff(attempt);
            tracing::debug!(
                url,
                attempt,
                delay_ms = delay.as_millis() as u64,
                "retrying upstream request"
            );
            tokio::time::sleep(delay).await;
        }
    }

    /// GETs `url`, following redirects; `current` ends as the last URL asked.
    async fn follow_redirects(
        &self,
        url: &str,
        wanted: Wanted,
        extra: &HeaderMap,
        current: &mut String,
    ) -> Result<Fetched, UpstreamError> {
        *current = url.to_string();
        for _ in 0..=self.config.max_redirects {
            if let Some(reason) = self.rejects(current) {
                return Err(UpstreamError::Down { reason });
            }
            let response = self.send(&Method::GET, current, wanted, extra).await?;
            let location = response.headers().get(LOCATION).and_then(|l| l.to_str().ok());
            match (response.status().is_redirection(), location) {
                (true, Some(location)) if response.status() != StatusCode::NOT_MODIFIED => {
                    *current = join_url(current, location);
                }
                _ => return Ok(Fetched::new(response, current.clone())),
            }
        }
        Err(UpstreamError::TooManyRedirects {
            origin: origin_of(url).to_string(),
            limit: self.config.max_redirects,
        })
    }

    async fn send(
        &self,
        method: &Method,
        url: &str,
        wanted: Wanted,
        extra: &HeaderMap,
    ) -> Result<Response<Incoming>, UpstreamError> {
        let mut request = Request::builder()
            .method(method.clone())
            .uri(url)
            .body(Empty::<Bytes>::new().map_err(|never| match never {}).boxed())
            .map_err(|_| UpstreamError::BadUrl(url.to_string()))?;
        let headers = request.headers_mut();
        headers.insert(USER_AGENT, HeaderValue::from_static(USER_AGENT_VALUE));
        let encoding = match wanted {
            Wanted::Document => "gzip",
            Wanted::Blob => "identity",
        };
        headers.insert(ACCEPT_ENCODING, HeaderValue::from_static(encoding));
        for (name, value) in extra {
            headers.insert(name, value.clone());
        }
        let bound = self.config.connect_timeout + self.config.read_timeout;
        self.dispatch(request, bound).await
    }

    /// Sends a publish call once: no retry (a push is not idempotent), no
    /// redirect (the body is gone), bounded by `bound` as a whole.
    pub async fn publish(&self, request: Request<RequestBody>, bound: Duration) -> Result<Fetched, UpstreamError> {
        let slot = self.budgets.requests.wait(1).await.map_err(UpstreamError::Busy)?;
        let url = request.uri().to_string();
        let response = self.dispatch(request, bound).await?;
        Ok(Fetched::new(response, url).holding(slot))
    }

    /// Sends one request (with the upstream's credentials when its origin
    /// may see them), bounding connect + response head by `bound`.
    async fn dispatch(
        &self,
        mut request: Request<RequestBody>,
        bound: Duration,
    ) -> Result<Response<Incoming>, UpstreamError> {
        let url = request.uri().to_string();
        let origin = origin_of(&url).to_string();
        if let Some(node) = &self.node {
            Forwarded::prepare(node, request.headers_mut());
        }
        let credentials = self.credentials.read().ok().and_then(|c| c.clone());
        if let Some(authorization) = credentials.as_ref().and_then(|c| c.for_url(&url)) {
            request.headers_mut().insert(AUTHORIZATION, authorization.clone());
        }
        if let Some(authorization) = self.proxies.authorization_for(request.uri()) {
            request.headers_mut().insert(PROXY_AUTHORIZATION, authorization);
        }
        let started = std::time::Instant::now();
        let answer = tokio::time::timeout(bound, self.client.request(request)).await;
        let outcome = match &answer {
            Ok(Ok(response)) => UpstreamOutcome::Status(response.status().as_u16()),
            Ok(Err(_)) => UpstreamOutcome::Error,
            Err(_) => UpstreamOutcome::Timeout,
        };
        self.metrics.upstream(&origin, outcome, started.elapsed());
        match answer {
            Err(_) => Err(UpstreamError::Timeout {
                origin,
                phase: "waiting for the response",
                seconds: bound.as_secs_f64(),
            }),
            Ok(Err(error)) => Err(UpstreamError::Connect {
                origin,
                reason: error_chain(&error),
            }),
            Ok(Ok(response)) => Ok(response),
        }
    }
}

/// What counts against the circuit breaker: no answer, or a 5xx (but a
/// loop refused: the origin answered, it is the chain that is wrong).
fn failure_of(result: &Result<Fetched, UpstreamError>) -> Option<String> {
    match result {
        Ok(fetched) if fetched.status.is_server_error() => Some(format!("answered {}", fetched.status)),
        Ok(_) | Err(UpstreamError::Loop { .. }) => None,
        Err(error) => Some(error.to_string()),
    }
}

/// The webpki roots, the system's, and the upstream's own CA (`ca_file`).
pub(crate) fn tls_config(private_cas: &[rustls::pki_types::CertificateDer<'static>]) -> rustls::ClientConfig {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    let native = rustls_native_certs::load_native_certs();
    let (added, _ignored) = roots.add_parsable_certificates(native.certs);
    let (private, unusable) = roots.add_parsable_certificates(private_cas.iter().cloned());
    if unusable > 0 {
        tracing::warn!(unusable, "upstream.ca_file: some certificates are not usable as roots");
    }
    tracing::debug!(system_roots = added, private_roots = private, "TLS roots loaded");
    rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth()
}

/// Exponential backoff from 100 ms, with up to 50% jitter so that many
/// clients do not retry in lock-step.
fn backoff(attempt: u32) -> Duration {
    let base = FIRST_BACKOFF * 2u32.saturating_pow(attempt.saturating_sub(1)).min(64);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    base + base.mul_f64(f64::from(nanos % 500) / 1000.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows() {
        assert!(backoff(1) >= Duration::from_millis(100) && backoff(1) < Duration::from_millis(151));
        assert!(backoff(3) >= Duration::from_millis(400) && backoff(3) < Duration::from_millis(601));
    }
}
