//! Response bodies: bytes in memory, or a stream of chunks (read from a
//! file on the blocking pool, or followed from a download).

use std::io;

use bytes::Bytes;
use futures_util::stream::{self, Stream, StreamExt};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::Frame;

/// Every response body nucache sends.
pub(crate) type Body = UnsyncBoxBody<Bytes, io::Error>;

pub(crate) fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into()).map_err(|never| match never {}).boxed_unsync()
}

pub(crate) fn empty() -> Body {
    full(Bytes::new())
}

/// Streams the chunks `next` reads (blocking I/O, run off the async
/// workers) until it says `None`; after an error the stream ends, and hyper
/// aborts the response short of its length.
pub(crate) fn blocking_stream<R, F>(reader: R, next: F) -> Body
where
    R: Send + 'static,
    F: FnMut(&mut R) -> io::Result<Option<Bytes>> + Clone + Send + 'static,
{
    let chunks = stream::unfold(Some(reader), move |state| {
        let mut next = next.clone();
        async move {
            let mut reader = state?;
            let read = tokio::task::spawn_blocking(move || (next(&mut reader), reader)).await;
            match read {
                Ok((Ok(Some(chunk)), reader)) => Some((Ok(chunk), Some(reader))),
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
