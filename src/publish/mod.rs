//! Publishing through nucache: push, delete (unlist on nuget.org), relist
//! and symbol push are forwarded once to the upstream's publish resource,
//! with the key `publish.mode` decides. The body streams through (never
//! whole in memory) under `publish.max_size`; the upstream's status and
//! body come back unchanged. A push is kept on disk while it streams, so
//! that the package's id can be read afterwards and its cached metadata
//! refreshed.

mod package;

use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use http::header::{HeaderMap, HeaderName, HeaderValue, CONTENT_LENGTH, CONTENT_TYPE};
use http::request::Parts;
use http::{Method, Request, Response};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::{Frame, Incoming};
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;

use crate::auth::{UpstreamKey, API_KEY_HEADER};
use crate::body::{full, Body};
use crate::config::{Config, Secret};
use crate::error::{ClientError, ProxyError, UpstreamError};
use crate::nuget::lower_invariant;
use crate::rewrite::MountKind;
use crate::upstream::{content_length, BoxError, Upstream};

/// Headers of the client's request that go upstream with it.
const FORWARDED: [&str; 6] = [
    "content-type",
    "content-length",
    "user-agent",
    "x-nuget-client-version",
    "x-nuget-session-id",
    "x-nuget-protocol-version",
];
/// Headers of the upstream's answer that come back to the client.
const RETURNED: [&str; 3] = ["content-type", "x-nuget-warning", "retry-after"];
/// The upstream's answer to a publish call is a short message.
const MAX_ANSWER: u64 = 1024 * 1024;
/// Frames buffered between the client and the upstream.
const IN_FLIGHT_FRAMES: usize = 8;

/// What a publish request asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Call {
    Push,
    SymbolPush,
    /// Delete (unlist) or relist `id`/`version`.
    Change {
        id: String,
    },
}

/// The upstream's answer, the id whose metadata changed, and the pushed
/// package's `id/version` (for the access log).
pub(crate) struct Forwarded {
    pub response: Response<Body>,
    pub changed: Option<String>,
    pub pushed: Option<String>,
}

/// What forwarding needs from the proxy.
pub(crate) struct Publisher<'a> {
    pub config: &'a Config,
    pub upstream: &'a Upstream,
    /// Where pushes are kept while they stream (the cache's `tmp`).
    pub temp_dir: PathBuf,
    /// The key sent upstream in mode `keys` (`publish.api_key`, as last read).
    pub server_key: Option<Secret>,
}

/// Classifies a publish request by mount kind, path rest and method.
pub(crate) fn call_of(kind: MountKind, rest: &str, method: &Method) -> Result<Call, ClientError> {
    let not_allowed = |allow| ClientError::MethodNotAllowed {
        method: method.to_string(),
        allow,
    };
    let parts: Vec<&str> = rest.split('/').filter(|p| !p.is_empty()).collect();
    match (kind, parts.as_slice(), method) {
        (MountKind::Publish, [], &Method::PUT) => Ok(Call::Push),
        (MountKind::SymbolPublish, [], &Method::PUT) => Ok(Call::SymbolPush),
        (_, [], _) => Err(not_allowed("PUT")),
        (MountKind::Publish, [id, _version], &Method::DELETE | &Method::POST) => Ok(Call::Change {
            id: lower_invariant(id),
        }),
        (MountKind::Publish, [_, _], _) => Err(not_allowed("DELETE, POST")),
        _ => Err(ClientError::Route(crate::route::RouteError::NotFound)),
    }
}

impl Publisher<'_> {
    /// Forwards one publish call to `url` with `key`, the outcome of
    /// `auth::check_publish` (checked before the call was routed).
    pub async fn forward(
        &self,
        call: Call,
        key: UpstreamKey,
        url: &str,
        parts: Parts,
        body: Incoming,
    ) -> Result<Forwarded, ProxyError> {
        let max = self.config.publish.max_size.bytes();
        if content_length(&parts.headers).is_some_and(|length| length > max) {
            return Err(ClientError::PayloadTooLarge(max).into());
        }
        let tee = match call {
            Call::Push => self.keep_copy(),
            _ => None,
        };
        let (frames, upstream_body) = mpsc::channel(IN_FLIGHT_FRAMES);
        // The upstream pushes go to bounds a stalled upload as it bounds reads.
        let idle = self.upstream.read_timeout();
        let feeder = tokio::spawn(feed(body, frames, max, tee, idle));
        let key = match key {
            UpstreamKey::Server => self
                .server_key
                .as_ref()
                .and_then(|s| HeaderValue::from_str(s.expose()).ok()),
            UpstreamKey::Client(value) => value,
        };
        let request = upstream_request(&parts, url, key, upstream_body)?;
        let answer = self.upstream.publish(request, self.config.publish.timeout).await;
        let fed = tokio::time::timeout(self.config.publish.timeout, feeder).await;
        let fed = match fed {
            Ok(Ok(fed)) => fed,
            _ => Fed::default(),
        };
        if fed.too_large {
            return Err(ClientError::PayloadTooLarge(max).into());
        }
        let mut answer = answer?;
        let status = answer.status;
        let text = self.upstream.read_to_end(&mut answer, MAX_ANSWER).await?;
        // Read whatever the upstream answered: the access log names the
        // package of a refused push too.
        let pushed = match call {
            Call::Push => read_pushed_package(fed.copy, &parts.headers).await,
            _ => None,
        };
        let changed = match (status.is_success(), call) {
            (true, Call::Change { id }) => Some(id),
            (true, Call::Push) => pushed.as_ref().map(|(id, _)| lower_invariant(id)),
            _ => None,
        };
        Ok(Forwarded {
            response: returned(status, &answer.headers, text),
            changed,
            pushed: pushed.map(|(id, version)| format!("{id}/{version}")),
        })
    }

    /// An anonymous file for the copy of a push; without one the push still
    /// goes through, but the cache cannot tell which package changed.
    fn keep_copy(&self) -> Option<tokio::fs::File> {
        match tempfile::tempfile_in(&self.temp_dir) {
            Ok(file) => Some(tokio::fs::File::from_std(file)),
            Err(error) => {
                tracing::warn!(%error, "cannot keep a copy of a push; cached metadata will refresh by TTL");
                None
            }
        }
    }
}

fn upstream_request(
    parts: &Parts,
    url: &str,
    key: Option<HeaderValue>,
    frames: mpsc::Receiver<Result<Frame<Bytes>, BoxError>>,
) -> Result<Request<crate::upstream::RequestBody>, UpstreamError> {
    let stream = futures_util::stream::unfold(frames, |mut frames| async move {
        frames.recv().await.map(|frame| (frame, frames))
    });
    let mut request = Request::builder()
        .method(parts.method.clone())
        .uri(url)
        .body(StreamBody::new(stream).boxed())
        .map_err(|_| UpstreamError::BadUrl(url.to_string()))?;
    let headers = request.headers_mut();
    for name in FORWARDED {
        if let Some(value) = parts.headers.get(name) {
            headers.insert(HeaderName::from_static(name), value.clone());
        }
    }
    if let Some(mut key) = key {
        key.set_sensitive(true);
        headers.insert(HeaderName::from_static(API_KEY_HEADER), key);
    }
    Ok(request)
}

/// What feeding the upload upstream came to.
#[derive(Default)]
struct Fed {
    too_large: bool,
    copy: Option<tokio::fs::File>,
}

/// Moves the client's body to the upstream frame by frame, counting it
/// against `max` and copying it to `copy`.
async fn feed(
    mut body: Incoming,
    frames: mpsc::Sender<Result<Frame<Bytes>, BoxError>>,
    max: u64,
    mut copy: Option<tokio::fs::File>,
    idle: Duration,
) -> Fed {
    let mut total: u64 = 0;
    loop {
        let frame = match tokio::time::timeout(idle, body.frame()).await {
            Ok(Some(Ok(frame))) => frame,
            Ok(None) => break,
            Ok(Some(Err(error))) => {
                let _ = frames.send(Err(Box::new(error))).await;
                return Fed::default();
            }
            Err(_) => {
                let _ = frames.send(Err("the client stopped sending the package".into())).await;
                return Fed::default();
            }
        };
        if let Some(data) = frame.data_ref() {
            total += data.len() as u64;
            if total > max {
                let _ = frames.send(Err("package larger than publish.max_size".into())).await;
                linger(&mut body).await;
                return Fed {
                    too_large: true,
                    copy: None,
                };
            }
            if let Some(file) = copy.as_mut() {
                if let Err(error) = file.write_all(data).await {
                    tracing::warn!(%error, "copy of a push failed; cached metadata will refresh by TTL");
                    copy = None;
                }
            }
        }
        if frames.send(Ok(frame)).await.is_err() {
            // The upstream stopped reading (it answered early).
            return Fed {
                too_large: false,
                copy: None,
            };
        }
    }
    Fed { too_large: false, copy }
}

/// How much of a refused upload is read and dropped before the refusal
/// goes out, and for how long at most.
const LINGER_BYTES: u64 = 64 * 1024 * 1024;
const LINGER_TIME: Duration = Duration::from_secs(5);

/// Reads and drops the rest of a refused upload, within bounds, before its
/// refusal is answered (nginx's lingering close): a client still sending
/// would otherwise meet a closed connection (`EPIPE`) before it reads the
/// 413, and report a broken connection instead of why.
async fn linger(body: &mut Incoming) {
    let mut drained: u64 = 0;
    let deadline = tokio::time::Instant::now() + LINGER_TIME;
    while drained <= LINGER_BYTES {
        match tokio::time::timeout_at(deadline, body.frame()).await {
            Ok(Some(Ok(frame))) => drained += frame.data_ref().map_or(0, |d| d.len() as u64),
            _ => return,
        }
    }
}

/// The id and version of the package in a completed push.
async fn read_pushed_package(copy: Option<tokio::fs::File>, headers: &HeaderMap) -> Option<(String, String)> {
    let file = copy?.into_std().await;
    let content_type = headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let found = tokio::task::spawn_blocking(move || package::pushed_package(file, &content_type))
        .await
        .ok()
        .flatten();
    if found.is_none() {
        tracing::warn!("could not read the id of a pushed package; cached metadata will refresh by TTL");
    }
    found
}

/// The upstream's answer, as the client gets it.
fn returned(status: http::StatusCode, headers: &HeaderMap, body: Bytes) -> Response<Body> {
    let length = body.len();
    let mut response = Response::new(full(body));
    *response.status_mut() = status;
    for name in RETURNED {
        if let Some(value) = headers.get(name) {
            response
                .headers_mut()
                .insert(HeaderName::from_static(name), value.clone());
        }
    }
    if let Ok(value) = HeaderValue::from_str(&length.to_string()) {
        response.headers_mut().insert(CONTENT_LENGTH, value);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_publish_calls() {
        let call = |kind, rest, method| call_of(kind, rest, &method);
        assert_eq!(call(MountKind::Publish, "/", Method::PUT).ok(), Some(Call::Push));
        assert_eq!(call(MountKind::Publish, "", Method::PUT).ok(), Some(Call::Push));
        assert_eq!(
            call(MountKind::SymbolPublish, "/", Method::PUT).ok(),
            Some(Call::SymbolPush)
        );
        assert_eq!(
            call(MountKind::Publish, "/Foo.Bar/1.0.0", Method::DELETE).ok(),
            Some(Call::Change { id: "foo.bar".into() })
        );
        assert_eq!(
            call(MountKind::Publish, "/Foo.Bar/1.0.0", Method::POST).ok(),
            Some(Call::Change { id: "foo.bar".into() })
        );
        assert!(matches!(
            call(MountKind::Publish, "/", Method::GET),
            Err(ClientError::MethodNotAllowed { allow: "PUT", .. })
        ));
        assert!(matches!(
            call(MountKind::Publish, "/a/1.0.0", Method::PUT),
            Err(ClientError::MethodNotAllowed { .. })
        ));
        assert!(call(MountKind::SymbolPublish, "/a/1.0.0", Method::DELETE).is_err());
    }
}
