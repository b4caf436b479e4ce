//! Response bodies: bytes in memory, a cached file read in large chunks,
//! or a download's growing file followed until it completes.

use std::fs::File;
use std::io;
use std::sync::Arc;

use bytes::Bytes;
use futures_util::stream::{self, Stream, StreamExt};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::Frame;
use tokio::sync::watch;

use crate::cache::read_at;
use crate::stash::Progress;

/// Every response body nucache sends.
pub(crate) type Body = UnsyncBoxBody<Bytes, io::Error>;

/// Size of one read from a blob file.
const READ_CHUNK: u64 = 256 * 1024;

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

/// Streams `file` from the start, following `extent`.
pub(crate) fn file_body(file: Arc<File>, extent: watch::Receiver<Progress>) -> Body {
    let reader = FileReader {
        file,
        extent,
        offset: 0,
        writer_gone: false,
    };
    let chunks = stream::unfold(Some(reader), |state| async move {
        let mut reader = state?;
        match reader.next().await? {
            Ok(chunk) => Some((Ok(chunk), Some(reader))),
            // After an error the stream ends; hyper then aborts the response.
            Err(error) => Some((Err(error), None)),
        }
    });
    stream_body(chunks)
}

pub(crate) fn stream_body(chunks: impl Stream<Item = io::Result<Bytes>> + Send + 'static) -> Body {
    StreamBody::new(chunks.map(|chunk| chunk.map(Frame::data))).boxed_unsync()
}

struct FileReader {
    file: Arc<File>,
    extent: watch::Receiver<Progress>,
    offset: u64,
    writer_gone: bool,
}

impl FileReader {
    async fn next(&mut self) -> Option<io::Result<Bytes>> {
        loop {
            let (available, complete) = match self.available() {
                Ok(position) => position,
                Err(reason) => return Some(Err(io::Error::other(reason))),
            };
            if self.offset < available {
                return Some(self.read(available).await);
            }
            if complete {
                return None;
            }
            if self.writer_gone {
                return Some(Err(io::Error::other("download abandoned")));
            }
            // An error means the writer is gone; its last word is still readable.
            self.writer_gone = self.extent.changed().await.is_err();
        }
    }

    /// How far the file may be read, and whether that is its end.
    fn available(&self) -> Result<(u64, bool), String> {
        match &*self.extent.borrow() {
            Progress::Receiving(n) => Ok((*n, false)),
            Progress::Complete(n) => Ok((*n, true)),
            Progress::Failed(reason) => Err(format!("upstream download failed: {reason}")),
        }
    }

    async fn read(&mut self, available: u64) -> io::Result<Bytes> {
        let len = (available - self.offset).min(READ_CHUNK) as usize;
        let (file, offset) = (self.file.clone(), self.offset);
        let data = tokio::task::spawn_blocking(move || read_at(&file, offset, len))
            .await
            .map_err(io::Error::other)??;
        if data.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "cached file is shorter than its record",
            ));
        }
        self.offset += data.len() as u64;
        Ok(Bytes::from(data))
    }
}
