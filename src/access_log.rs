//! One line per request, written when the response body is finished (or
//! abandoned), so that it tells the bytes really sent and the whole time.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use http::Method;
use http_body::{Body as HttpBody, Frame, SizeHint};

use crate::body::Body;
use crate::cache::CacheStatus;
use crate::error::{BodyError, Party};
use crate::metrics::{Metrics, RequestKind};

/// What the access log says of one request.
pub(crate) struct AccessRecord {
    pub request_id: String,
    pub method: Method,
    pub path: String,
    pub status: u16,
    pub cache: Option<CacheStatus>,
    pub package: Option<String>,
    /// The connection's peer (the reverse proxy, when there is one).
    pub client: std::net::SocketAddr,
    /// The client as a trusted reverse proxy saw it (`X-Forwarded-For`).
    pub forwarded_for: Option<String>,
    pub agent: Option<String>,
    /// `-`, a user name, or `key:` and 8 hex digits of the key's SHA-256.
    pub identity: String,
    /// Who failed and why, when something did.
    pub error: Option<(Party, String)>,
    pub started: Instant,
    pub bytes: u64,
    /// Counted when the line is written, with the bytes really sent.
    pub kind: RequestKind,
    pub metrics: std::sync::Arc<Metrics>,
}

/// One access line at the given level (the fields are the same at every
/// level). Free text (agent, package, error) is recorded as a string, which
/// the formatter quotes and escapes, so logfmt parsers read every field.
macro_rules! access_line {
    ($level:ident, $record:expr, $ms:expr, $cache:expr, $package:expr, $failed:expr, $reason:expr) => {
        tracing::$level!(
            target: "nucache::access",
            id = %$record.request_id, method = %$record.method, path = %$record.path,
            status = $record.status, bytes = $record.bytes, ms = format_args!("{:.1}", $ms),
            cache = $cache, package = $package,
            client = %$record.client,
            forwarded_for = $record.forwarded_for.as_deref().unwrap_or("-"),
            user = $record.identity.as_str(),
            agent = $record.agent.as_deref().unwrap_or("-"),
            failed = $failed, error = $reason,
        )
    };
}

impl Drop for AccessRecord {
    fn drop(&mut self) {
        let ms = self.started.elapsed().as_secs_f64() * 1000.0;
        let x_cache = self.cache.map(CacheStatus::as_str);
        self.metrics.request(self.kind, x_cache, self.bytes);
        let cache = x_cache.unwrap_or("-");
        let package = self.package.as_deref().unwrap_or("-");
        let (failed, reason) = match &self.error {
            Some((party, reason)) => (party.as_str(), reason.as_str()),
            None => ("-", "-"),
        };
        // 404s and refused keys are the client's business; 5xx and broken
        // bodies are ours to look at.
        if self.status >= 500 || (self.error.is_some() && self.status < 400) {
            access_line!(warn, self, ms, cache, package, failed, reason);
        } else {
            access_line!(info, self, ms, cache, package, failed, reason);
        }
    }
}

/// A body that counts what it sends and logs when dropped.
pub(crate) struct Logged {
    inner: Body,
    record: AccessRecord,
}

impl Logged {
    pub fn new(inner: Body, record: AccessRecord) -> Self {
        Logged { inner, record }
    }
}

impl HttpBody for Logged {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &polled {
            if let Some(data) = frame.data_ref() {
                self.record.bytes += data.len() as u64;
            }
        }
        if let Poll::Ready(Some(Err(error))) = &polled {
            if self.record.error.is_none() {
                // Who failed comes from the error's type, never its words.
                let party = BodyError::party_of(error);
                self.record.error = Some((party, format!("response broken off: {error}")));
            }
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
