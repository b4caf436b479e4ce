//! Response bodies: bytes in memory, or a stream of chunks (read from a
//! file on the blocking pool, or followed from a download).

use std::io;

use bytes::Bytes;
use futures_util::stream::{self, Stream, StreamExt};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::Frame;
use tokio::sync::{Semaphore, SemaphorePermit};

/// Every response body nucache sends.
pub(crate) type Body = UnsyncBoxBody<Bytes, io::Error>;

pub(crate) fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into()).map_err(|never| match never {}).boxed_unsync()
}

pub(crate) fn empty() -> Body {
    full(Bytes::new())
}

/// Memory (KiB) that chunks read from files may hold between the read and
/// the socket, across all responses: with hundreds of clients each holding
/// a full-size chunk or two, RSS would grow with the number of clients.
/// 16 MiB keeps 256 concurrent 50 MiB downloads under 50 MiB of RSS at the
/// same throughput as 32 MiB (`benches/vs_nginx.sh`).
const READ_BUDGET_KIB: usize = 16 * 1024;
static READ_BUDGET: Semaphore = Semaphore::const_new(READ_BUDGET_KIB);
/// Size of a file read while the budget is spent: reads go on, smaller,
/// so that clients that read slowly can slow down nobody else.
pub(crate) const SMALL_READ: usize = 16 * 1024;

/// How much the next file read may take, and the share of the budget it holds.
pub(crate) struct Allowance {
    pub len: usize,
    permit: Option<SemaphorePermit<'static>>,
}

/// Up to `wanted` bytes from the budget, else a [`SMALL_READ`] outside it.
pub(crate) fn allowance(wanted: usize) -> Allowance {
    allowance_from(&READ_BUDGET, wanted)
}

fn allowance_from(budget: &'static Semaphore, wanted: usize) -> Allowance {
    let kib = u32::try_from(wanted.div_ceil(1024)).unwrap_or(u32::MAX);
    match budget.try_acquire_many(kib) {
        Ok(permit) => Allowance {
            len: wanted,
            permit: Some(permit),
        },
        Err(_) => Allowance {
            len: wanted.min(SMALL_READ),
            permit: None,
        },
    }
}

/// A chunk that returns its share of the budget when the last view of it
/// is dropped (once hyper has written it).
struct Held {
    data: Bytes,
    _permit: SemaphorePermit<'static>,
}

impl AsRef<[u8]> for Held {
    fn as_ref(&self) -> &[u8] {
        &self.data
    }
}

impl Allowance {
    pub fn hold(self, data: Bytes) -> Bytes {
        match self.permit {
            Some(_permit) => Bytes::from_owner(Held { data, _permit }),
            None => data,
        }
    }
}

/// Streams the chunks `next` reads (blocking I/O, run off the async
/// workers; each at most the length it is given, `chunk` when the read
/// budget allows) until it says `None`; after an error the stream ends, and
/// hyper aborts the response short of its length.
pub(crate) fn blocking_stream<R, F>(reader: R, chunk: usize, next: F) -> Body
where
    R: Send + 'static,
    F: FnMut(&mut R, usize) -> io::Result<Option<Bytes>> + Clone + Send + 'static,
{
    let chunks = stream::unfold(Some(reader), move |state| {
        let mut next = next.clone();
        async move {
            let mut reader = state?;
            let allowance = allowance(chunk);
            let len = allowance.len;
            let read = tokio::task::spawn_blocking(move || (next(&mut reader, len), reader)).await;
            match read {
                Ok((Ok(Some(chunk)), reader)) => Some((Ok(allowance.hold(chunk)), Some(reader))),
                Ok((Ok(None), _)) => None,
                Ok((Err(error), _)) => Some((Err(error), None)),
                Err(error) => Some((Err(io::Error::other(error)), None)),
            }
        }
    });
    stream_body(chunks)
}

pub(crate) fn stream_body(chunks: impl Stream<Item = io::Result<Bytes>> + Send + 'static) -> Body {
    StreamBody::new(chunks.map(|chunk| chunk.map(Frame::data))).boxed_unsync()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_shrink_when_the_budget_is_spent_and_grow_when_chunks_are_sent() {
        static BUDGET: Semaphore = Semaphore::const_new(1024);
        let first = allowance_from(&BUDGET, 512 * 1024);
        let second = allowance_from(&BUDGET, 512 * 1024);
        assert_eq!((first.len, second.len), (512 * 1024, 512 * 1024));
        let held = first.hold(Bytes::from(vec![1u8; 100]));
        let _held_too = second.hold(Bytes::from(vec![2u8; 100]));
        let spent = allowance_from(&BUDGET, 512 * 1024);
        assert_eq!(spent.len, SMALL_READ, "over budget: a small read outside it");
        assert_eq!(spent.hold(Bytes::from_static(b"x")), Bytes::from_static(b"x"));
        let slice = held.slice(10..20);
        drop(held);
        assert_eq!(BUDGET.available_permits(), 0, "a slice still holds the chunk");
        drop(slice);
        assert_eq!(BUDGET.available_permits(), 512);
        assert_eq!(allowance_from(&BUDGET, 512 * 1024).len, 512 * 1024);
    }
}
