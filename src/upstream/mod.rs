//! The upstream client: hyper over rustls (webpki roots plus the system
//! store), pooled keep-alive connections, redirects, retries with backoff
//! for idempotent requests, timeouts on connecting, on the first byte and
//! on every gap between body chunks, and a circuit breaker per origin
//! (`breaker`).

mod breaker;

use breaker::{Breaker, Breakers, Transition};
pub use breaker::{BreakerState, UpstreamStatus};

use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use bytes::{Bytes, BytesMut};
use futures_util::FutureExt;
use http::header::{HeaderMap, HeaderValue, ACCEPT_ENCODING, AUTHORIZATION, LOCATION, USER_AGENT};
use http::{Method, Request, Response, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use crate::config::UpstreamConfig;
use crate::error::UpstreamError;
use crate::metrics::{Metrics, UpstreamOutcome};

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
}

impl Fetched {
    fn new(response: Response<Incoming>, url: String) -> Fetched {
        let (parts, body) = response.into_parts();
        Fetched {
            status: parts.status,
            headers: parts.headers,
            body,
            url,
        }
    }
}

pub(crate) struct Upstream {
    client: Client<HttpsConnector<HttpConnector>, RequestBody>,
    config: UpstreamConfig,
    /// Replaced when SIGHUP re-reads the password or token file.
    credentials: RwLock<Option<Arc<Credentials>>>,
    breakers: Breakers,
    metrics: Arc<Metrics>,
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
    pub fn new(config: &UpstreamConfig, metrics: Arc<Metrics>) -> Upstream {
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_connect_timeout(Some(config.connect_timeout));
        http.set_nodelay(true);
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls_config())
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(60))
            .pool_max_idle_per_host(64)
            .build(https);
        let breakers = Breakers::new(config.breaker_threshold, config.breaker_cooldown);
        // Listed in /health from the start.
        let _ = breakers.of(&breaker_origin(&config.service_index));
        Upstream {
            client,
            config: config.clone(),
            credentials: RwLock::new(Credentials::from_config(config).map(Arc::new)),
            breakers,
            metrics,
        }
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
    /// breaker of an origin on the way is open, fails at once.
    pub async fn get(self: &Arc<Self>, url: &str, wanted: Wanted, extra: &HeaderMap) -> Result<Fetched, UpstreamError> {
        let mut last_hop = url.to_string();
        let result = self.get_with_retries(url, wanted, extra, &mut last_hop).await;
        self.note_outcome(&last_hop, &result);
        result
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
    /// the breaker when the origin answers (anything but a 5xx).
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
                Ok(fetched) => fetched.status.is_server_error(),
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
        let url = request.uri().to_string();
        let response = self.dispatch(request, bound).await?;
        Ok(Fetched::new(response, url))
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
        let credentials = self.credentials.read().ok().and_then(|c| c.clone());
        if let Some(authorization) = credentials.as_ref().and_then(|c| c.for_url(&url)) {
            request.headers_mut().insert(AUTHORIZATION, authorization.clone());
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

    /// The next chunk of a body, `None` at its end; a gap longer than the
    /// read timeout is an error, and so is `deadline` (the end of
    /// `upstream.download_timeout`) passing: an upstream that drips a byte
    /// within every read timeout cannot hold a download forever.
    pub async fn next_chunk_before(
        &self,
        body: &mut Incoming,
        origin: &str,
        deadline: Option<Instant>,
    ) -> Result<Option<Bytes>, UpstreamError> {
        let read_timeout = self.config.read_timeout;
        let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
        let (wait, phase, seconds) = match left {
            Some(left) if left < read_timeout => (
                left,
                "the whole download (upstream.download_timeout)",
                self.config.download_timeout.as_secs_f64(),
            ),
            _ => (read_timeout, "reading the body", read_timeout.as_secs_f64()),
        };
        let timeout = || UpstreamError::Timeout {
            origin: origin.to_string(),
            phase,
            seconds,
        };
        let started = Instant::now();
        loop {
            let left = wait.saturating_sub(started.elapsed());
            let frame = tokio::time::timeout(left, body.frame()).await.map_err(|_| timeout())?;
            if let Some(chunk) = frame_data(frame, origin) {
                return chunk;
            }
        }
    }

    /// Reads a whole (document) body, refusing more than `cap` bytes.
    pub async fn read_to_end(&self, fetched: &mut Fetched, cap: u64) -> Result<Bytes, UpstreamError> {
        let origin = origin_of(&fetched.url).to_string();
        let expected = content_length(&fetched.headers);
        let deadline = Instant::now() + self.config.download_timeout;
        let mut out = BytesMut::with_capacity(expected.unwrap_or(16 * 1024).min(cap) as usize);
        while let Some(chunk) = self
            .next_chunk_before(&mut fetched.body, &origin, Some(deadline))
            .await?
        {
            if (out.len() + chunk.len()) as u64 > cap {
                return Err(UpstreamError::Body {
                    origin,
                    reason: format!("document larger than {cap} bytes"),
                });
            }
            out.extend_from_slice(&chunk);
        }
        check_length(expected, out.len() as u64, &origin)?;
        Ok(out.freeze())
    }
}

/// A chunk the body has ready now; `None` when it would have to wait.
pub(crate) fn chunk_now(body: &mut Incoming, origin: &str) -> Option<Result<Option<Bytes>, UpstreamError>> {
    loop {
        let frame = body.frame().now_or_never()?;
        if let Some(chunk) = frame_data(frame, origin) {
            return Some(chunk);
        }
    }
}

/// A body frame as data: `None` for frames without data (trailers).
fn frame_data(
    frame: Option<Result<hyper::body::Frame<Bytes>, hyper::Error>>,
    origin: &str,
) -> Option<Result<Option<Bytes>, UpstreamError>> {
    match frame {
        None => Some(Ok(None)),
        Some(Err(error)) => Some(Err(UpstreamError::Body {
            origin: origin.to_string(),
            reason: format!("body broken off: {}", error_chain(&error)),
        })),
        Some(Ok(frame)) => frame.into_data().ok().map(|data| Ok(Some(data))),
    }
}

/// A body must be exactly as long as its `Content-Length` said.
pub(crate) fn check_length(expected: Option<u64>, got: u64, origin: &str) -> Result<(), UpstreamError> {
    match expected {
        Some(expected) if expected != got => Err(UpstreamError::Body {
            origin: origin.to_string(),
            reason: format!("body has {got} bytes, Content-Length said {expected}"),
        }),
        _ => Ok(()),
    }
}

/// While a body arrives: it may not run past its `Content-Length`.
pub(crate) fn check_not_longer(expected: Option<u64>, received: u64, origin: &str) -> Result<(), UpstreamError> {
    match expected {
        Some(limit) if received > limit => check_length(expected, received, origin),
        _ => Ok(()),
    }
}

/// What counts against the circuit breaker: no answer, or a 5xx.
fn failure_of(result: &Result<Fetched, UpstreamError>) -> Option<String> {
    match result {
        Ok(fetched) if fetched.status.is_server_error() => Some(format!("answered {}", fetched.status)),
        Ok(_) => None,
        Err(error) => Some(error.to_string()),
    }
}

pub(crate) fn content_length(headers: &HeaderMap) -> Option<u64> {
    headers.get(http::header::CONTENT_LENGTH)?.to_str().ok()?.parse().ok()
}

pub(crate) fn tls_config() -> rustls::ClientConfig {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    let native = rustls_native_certs::load_native_certs();
    let (added, _ignored) = roots.add_parsable_certificates(native.certs);
    tracing::debug!(system_roots = added, "TLS roots loaded");
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

/// `scheme://authority` of a URL (the URL itself when it has no path).
pub(crate) fn origin_of(url: &str) -> &str {
    let start = url.find("://").map_or(0, |i| i + 3);
    match url[start..].find(['/', '?', '#']) {
        Some(end) => &url[..start + end],
        None => url,
    }
}

/// The origin a circuit breaker is kept for: `scheme://host[:port]`,
/// lower-case, without the scheme's default port.
fn breaker_origin(url: &str) -> String {
    let origin = origin_of(url).to_ascii_lowercase();
    match origin.split_once("://") {
        Some((scheme, authority)) => {
            let authority = authority.rsplit_once('@').map_or(authority, |(_, host)| host);
            let default_port = match scheme {
                "https" => ":443",
                "http" => ":80",
                _ => "",
            };
            let host = match authority.strip_suffix(default_port) {
                Some(host) if !default_port.is_empty() => host,
                _ => authority,
            };
            format!("{scheme}://{host}")
        }
        None => origin,
    }
}

/// Resolves a `Location` header against the URL that sent it.
pub(crate) fn join_url(base: &str, location: &str) -> String {
    if location.starts_with("http://") || location.starts_with("https://") {
        location.to_string()
    } else if let Some(rest) = location.strip_prefix("//") {
        let scheme = base.split("://").next().unwrap_or("https");
        format!("{scheme}://{rest}")
    } else if location.starts_with('/') {
        format!("{}{location}", origin_of(base))
    } else {
        let path_end = base.find(['?', '#']).unwrap_or(base.len());
        let dir_end = base[..path_end].rfind('/').map_or(base.len(), |i| i + 1);
        format!("{}{location}", &base[..dir_end])
    }
}

/// An error and its causes on one line: hyper's top-level messages alone
/// ("client error (Connect)") do not say what happened.
pub(crate) fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn joins_locations() {
        let base = "https://a.example/x/y/index.json?q=1";
        assert_eq!(join_url(base, "https://b.example/z"), "https://b.example/z");
        assert_eq!(join_url(base, "//c.example/z"), "https://c.example/z");
        assert_eq!(join_url(base, "/root.json"), "https://a.example/root.json");
        assert_eq!(join_url(base, "sibling.json"), "https://a.example/x/y/sibling.json");
    }

    #[test]
    fn origins() {
        assert_eq!(origin_of("http://127.0.0.1:5/v3/index.json"), "http://127.0.0.1:5");
        assert_eq!(origin_of("https://api.nuget.org"), "https://api.nuget.org");
        assert_eq!(origin_of("https://h?x"), "https://h");
    }

    #[test]
    fn breaker_origins_are_canonical() {
        assert_eq!(
            breaker_origin("HTTPS://API.nuget.org:443/v3/index.json"),
            "https://api.nuget.org"
        );
        assert_eq!(breaker_origin("http://127.0.0.1:5000/x?y"), "http://127.0.0.1:5000");
        assert_eq!(breaker_origin("http://h:80"), "http://h");
        assert_eq!(breaker_origin("https://user:pw@h/x"), "https://h");
    }

    #[test]
    fn backoff_grows() {
        assert!(backoff(1) >= Duration::from_millis(100) && backoff(1) < Duration::from_millis(151));
        assert!(backoff(3) >= Duration::from_millis(400) && backoff(3) < Duration::from_millis(601));
    }

    #[test]
    fn length_must_match() {
        assert!(check_length(Some(10), 10, "o").is_ok());
        assert!(check_length(None, 10, "o").is_ok());
        assert!(check_length(Some(10), 5, "o").is_err());
    }
}
