//! How many requests the fake upstream is answering at once, and the most
//! it ever was: a request counts from its arrival until its response body
//! has been sent or dropped.

use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body_util::BodyExt as _;
use hyper::body::{Body as HttpBody, Frame, SizeHint};

use super::framing::{Body, BoxError};

#[derive(Default)]
pub(crate) struct InFlight {
    now: AtomicUsize,
    most: AtomicUsize,
}

impl InFlight {
    /// One more request, until the guard is dropped.
    pub(crate) fn enter(self: &Arc<Self>) -> Guard {
        let now = self.now.fetch_add(1, Ordering::SeqCst) + 1;
        self.most.fetch_max(now, Ordering::SeqCst);
        Guard(self.clone())
    }

    pub(crate) fn now(&self) -> usize {
        self.now.load(Ordering::SeqCst)
    }

    pub(crate) fn most(&self) -> usize {
        self.most.load(Ordering::SeqCst)
    }

    /// Starts counting the most from what is in flight now.
    pub(crate) fn reset_most(&self) {
        self.most.store(self.now(), Ordering::SeqCst);
    }
}

pub(crate) struct Guard(Arc<InFlight>);

impl Drop for Guard {
    fn drop(&mut self) {
        self.0.now.fetch_sub(1, Ordering::SeqCst);
    }
}

/// `body`, keeping its request in flight until it is dropped.
pub(crate) fn counted(body: Body, guard: Guard) -> Body {
    Counted { body, _guard: guard }.boxed_unsync()
}

struct Counted {
    body: Body,
    _guard: Guard,
}

impl HttpBody for Counted {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}
