//! Response bodies and how they are delimited: whole, chunked, or sent
//! piece by piece by a [`Plan`] that may end in a fault.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::CONTENT_LENGTH;
use http::{HeaderValue, Method, Response};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt as _, Empty, Full, StreamBody};
use hyper::body::Frame;

use super::connection::Conn;
use super::routes::Reply;
use super::Shared;

pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync>;
pub(crate) type Body = UnsyncBoxBody<Bytes, BoxError>;

/// Resolves when a stalled body may be closed.
pub(super) type Release = Pin<Box<dyn Future<Output = ()> + Send>>;

/// Extra bytes sent after a `.nupkg` body under `Fault::LongerBody`.
const EXTRA_BYTES: &[u8] = b"<these bytes are beyond Content-Length>";

/// What happens once the body (or the part of it that is sent) is out.
pub(super) enum Tail {
    End,
    Close,
    /// Nothing more until released, then close.
    StallThenClose(Release),
    /// The rest and bytes beyond `Content-Length` straight on the socket.
    ExtraThenClose,
}

/// A body sent in chunks, then a [`Tail`].
pub(super) struct Plan {
    data: Bytes,
    pos: usize,
    /// Bytes to send through hyper before the tail.
    end: usize,
    chunk: usize,
    delay: Duration,
    tail: Tail,
    /// Flush count when the last piece was handed to hyper.
    mark: u64,
    conn: Arc<Conn>,
}

impl Plan {
    /// `data` up to `end`, in pieces of `chunking` (all at once without),
    /// then `tail`.
    pub(super) fn new(
        data: Bytes,
        end: usize,
        tail: Tail,
        chunking: Option<(usize, Duration)>,
        conn: Arc<Conn>,
    ) -> Plan {
        let (chunk, delay) = chunking.unwrap_or((data.len(), Duration::ZERO));
        Plan {
            data,
            pos: 0,
            end,
            chunk,
            delay,
            tail,
            mark: conn.flush_mark(),
            conn,
        }
    }

    async fn next(mut self) -> Option<(Result<Frame<Bytes>, BoxError>, Option<Plan>)> {
        if self.pos < self.end {
            if self.pos > 0 && !self.delay.is_zero() {
                tokio::time::sleep(self.delay).await;
            }
            let n = self.chunk.min(self.end - self.pos);
            let piece = self.data.slice(self.pos..self.pos + n);
            self.pos += n;
            self.mark = self.conn.flush_mark();
            return Some((Ok(Frame::data(piece)), Some(self)));
        }
        if matches!(self.tail, Tail::End) {
            return None;
        }
        // Everything handed to hyper must be on the wire before we act.
        self.conn.flushed_since(self.mark).await;
        match std::mem::replace(&mut self.tail, Tail::Close) {
            Tail::StallThenClose(release) => release.await,
            Tail::ExtraThenClose => {
                let mut rest = self.data.slice(self.end..).to_vec();
                rest.extend_from_slice(EXTRA_BYTES);
                let _ = self.conn.write_raw(&rest).await;
            }
            Tail::End | Tail::Close => {}
        }
        self.conn.close();
        Some((Err("fault injection: connection closed".into()), None))
    }
}

/// How a response delimits its body.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Framing {
    /// An answer to HEAD: `Content-Length` of the body GET would get, no body.
    Head,
    /// Explicit `Content-Length`, then the body.
    Length,
    /// `Transfer-Encoding: chunked`, no `Content-Length`: the body is a
    /// stream without a size hint, which hyper can only send chunked.
    Chunked,
}

impl Framing {
    pub(super) fn of(shared: &Shared, method: &Method) -> Framing {
        match (method == Method::HEAD, shared.chunked) {
            (true, _) => Framing::Head,
            (false, true) => Framing::Chunked,
            (false, false) => Framing::Length,
        }
    }
}

/// The final response: headers, framing, body.
pub(super) fn build(reply: Reply, framing: Framing, plan: Option<Plan>) -> Response<Body> {
    let no_body = matches!(reply.status.as_u16(), 100..=199 | 204 | 304);
    let mut response = Response::new(empty());
    *response.status_mut() = reply.status;
    *response.headers_mut() = reply.headers;
    if !no_body && framing != Framing::Chunked {
        response
            .headers_mut()
            .insert(CONTENT_LENGTH, HeaderValue::from(reply.body.len()));
    }
    *response.body_mut() = match (no_body || framing == Framing::Head, plan) {
        (true, _) => empty(),
        (false, Some(plan)) => {
            let stream = futures_util::stream::unfold(Some(plan), |p| async move { p?.next().await });
            StreamBody::new(stream).boxed_unsync()
        }
        (false, None) if framing == Framing::Chunked => {
            let frame = (!reply.body.is_empty()).then(|| Ok(Frame::data(reply.body)));
            StreamBody::new(futures_util::stream::iter(frame)).boxed_unsync()
        }
        (false, None) => Full::new(reply.body).map_err(|never| match never {}).boxed_unsync(),
    };
    response
}

fn empty() -> Body {
    Empty::new().map_err(|never| match never {}).boxed_unsync()
}
