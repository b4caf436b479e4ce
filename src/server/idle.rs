//! Idle connections. Each connection counts its requests in flight (from
//! the request head until its response body is sent or dropped); one with
//! none for `limits.idle_timeout` is shut down gracefully (HTTP/2: GOAWAY,
//! then close; HTTP/1.1: closed between requests). hyper bounds neither an
//! idle HTTP/2 connection nor, beyond `server.header_read_timeout`, an
//! HTTP/1.1 keep-alive one (hyper 1.x starts the head timer as a kept-alive
//! connection goes idle, so the shorter of the two closes it).

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body as HttpBody, Frame, SizeHint};
use tokio::sync::watch;

/// The requests in flight on one connection.
#[derive(Clone)]
pub(super) struct Activity(Arc<watch::Sender<usize>>);

impl Activity {
    pub fn new() -> Activity {
        Activity(Arc::new(watch::Sender::new(0)))
    }

    /// One more request in flight, until the guard is dropped.
    pub fn begin(&self) -> InFlight {
        self.0.send_modify(|n| *n += 1);
        InFlight(self.0.clone())
    }

    /// Resolves once no request has been in flight for `timeout`.
    pub async fn idle_for(&self, timeout: Duration) {
        let mut changes = self.0.subscribe();
        loop {
            // The sender lives in `self`: neither wait can end in an error.
            let _ = changes.wait_for(|n| *n == 0).await;
            if tokio::time::timeout(timeout, changes.changed()).await.is_err() {
                return;
            }
        }
    }
}

/// A request in flight; dropping it ends it.
pub(super) struct InFlight(Arc<watch::Sender<usize>>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.send_modify(|n| *n = n.saturating_sub(1));
    }
}

/// A response body that keeps its request in flight until it is dropped
/// (hyper drops it once sent, or when the client goes away).
pub(super) struct Tracked<B> {
    inner: B,
    _in_flight: InFlight,
}

impl<B> Tracked<B> {
    pub fn new(inner: B, in_flight: InFlight) -> Tracked<B> {
        Tracked {
            inner,
            _in_flight: in_flight,
        }
    }
}

impl<B: HttpBody<Data = Bytes> + Unpin> HttpBody for Tracked<B> {
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn idle_counts_from_the_end_of_the_last_request() {
        let timeout = Duration::from_millis(300);
        let activity = Activity::new();
        let request = activity.begin();
        let mut idle = tokio::spawn({
            let activity = activity.clone();
            async move { activity.idle_for(timeout).await }
        });
        let busy = tokio::time::timeout(timeout * 2, &mut idle).await;
        assert!(busy.is_err(), "idle while a request was in flight");
        drop(request);
        let ended = std::time::Instant::now();
        let idle = tokio::time::timeout(Duration::from_secs(10), idle).await;
        assert!(idle.is_ok(), "never idle");
        assert!(ended.elapsed() >= timeout, "idle before the timeout");
    }
}
