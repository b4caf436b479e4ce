//! Streaming a package file from the upstream into the blob store while
//! every waiting client reads the growing temporary file. The entry is
//! committed only when the body is complete and as long as announced; a
//! broken download leaves nothing behind.

use std::fs::File;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use http::header::HeaderMap;
use http::StatusCode;
use tokio::sync::watch;

use super::flights::Ticket;
use super::{blocking, origin_of, Stash, StashError};
use crate::cache::{BlobWriter, Origin};
use crate::error::UpstreamError;
use crate::upstream::{self, check_length, content_length, Fetched, Wanted};

/// Bytes gathered before a write: big writes, yet a stalled upstream
/// flushes at once (see `receive`) so readers never wait on a buffer.
const WRITE_AT: usize = 256 * 1024;
const OCTETS: &str = "application/octet-stream";

/// How far a download has come; readers follow it through a watch channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Progress {
    Receiving(u64),
    Complete(u64),
    Failed(String),
}

/// A download in progress, shared by all clients that asked for it.
pub(crate) struct Download {
    pub origin: Origin,
    /// The upstream's `Content-Length`, when it sent one.
    pub length: Option<u64>,
    pub file: Arc<File>,
    pub progress: watch::Receiver<Progress>,
}

#[derive(Clone)]
pub(crate) enum BlobOutcome {
    Streaming(Arc<Download>),
    /// Another fetch committed it meanwhile: read it from the cache.
    Stored,
    NotFound,
}

pub(crate) async fn fetch_blob(
    stash: Arc<Stash>,
    key: String,
    url: String,
    ticket: Ticket<BlobOutcome>,
) -> Result<BlobOutcome, StashError> {
    if stash.cache.entry(&key)?.is_some() {
        return Ok(BlobOutcome::Stored);
    }
    let fetched = stash
        .upstream
        .get(&url, Wanted::Blob, &HeaderMap::new())
        .await?;
    match fetched.status {
        StatusCode::OK => {}
        StatusCode::NOT_FOUND | StatusCode::GONE => return Ok(BlobOutcome::NotFound),
        status => {
            return Err(UpstreamError::Status {
                origin: upstream::origin_of(&fetched.url).to_string(),
                status: status.as_u16(),
            }
            .into())
        }
    }
    let writer = stash.cache.start_blob()?;
    let (progress, watcher) = watch::channel(Progress::Receiving(0));
    let download = Arc::new(Download {
        origin: origin_of(&fetched.url, &fetched.headers, OCTETS),
        length: content_length(&fetched.headers),
        file: writer.file(),
        progress: watcher,
    });
    let meta = download.origin.clone();
    tokio::spawn(async move {
        pump(&stash, &key, fetched, writer, meta, &progress).await;
        // Later requests join this download until it is committed.
        drop(ticket);
    });
    Ok(BlobOutcome::Streaming(download))
}

/// Receives the body, then commits it; reports every step on `progress`.
async fn pump(
    stash: &Arc<Stash>,
    key: &str,
    mut fetched: Fetched,
    writer: BlobWriter,
    meta: Origin,
    progress: &watch::Sender<Progress>,
) {
    let writer = match receive(stash, &mut fetched, writer, progress).await {
        Ok(writer) => writer,
        Err(error) => {
            tracing::warn!(key, %error, "download failed; nothing cached");
            progress.send_replace(Progress::Failed(error.to_string()));
            return;
        }
    };
    let size = writer.written();
    let (cache, owned_key) = (stash.cache.clone(), key.to_string());
    match blocking(move || cache.commit_blob(&owned_key, writer, meta)).await {
        Ok(entry) => tracing::debug!(key, size, sha512 = %&entry.sha512[..16], "blob committed"),
        // The bytes are complete in the open file: clients still get them.
        Err(error) => {
            tracing::warn!(key, %error, "could not commit a complete download; not cached")
        }
    }
    progress.send_replace(Progress::Complete(size));
}

async fn receive(
    stash: &Stash,
    fetched: &mut Fetched,
    mut writer: BlobWriter,
    progress: &watch::Sender<Progress>,
) -> Result<BlobWriter, StashError> {
    let origin = upstream::origin_of(&fetched.url).to_string();
    let expected = content_length(&fetched.headers);
    let mut pending = BytesMut::new();
    loop {
        let chunk = match upstream::chunk_now(&mut fetched.body, &origin) {
            Some(ready) => ready?,
            None => {
                writer = write(writer, &mut pending, Some(progress)).await?;
                stash
                    .upstream
                    .next_chunk(&mut fetched.body, &origin)
                    .await?
            }
        };
        let Some(chunk) = chunk else { break };
        pending.extend_from_slice(&chunk);
        let received = writer.written() + pending.len() as u64;
        if expected.is_some_and(|expected| received > expected) {
            check_length(expected, received, &origin)?;
        }
        if pending.len() >= WRITE_AT {
            writer = write(writer, &mut pending, Some(progress)).await?;
        }
    }
    // The last bytes are announced only with `Complete`, after the commit:
    // a client that has the whole body can count on the cache having it.
    writer = write(writer, &mut pending, None).await?;
    check_length(expected, writer.written(), &origin)?;
    Ok(writer)
}

/// Writes the pending bytes and, with `progress`, tells readers how far the
/// file goes.
async fn write(
    mut writer: BlobWriter,
    pending: &mut BytesMut,
    progress: Option<&watch::Sender<Progress>>,
) -> Result<BlobWriter, StashError> {
    if pending.is_empty() {
        return Ok(writer);
    }
    let data: Bytes = pending.split().freeze();
    let writer = blocking(move || {
        writer
            .write(&data)
            .map_err(crate::error::StorageError::io("writing a download"))?;
        Ok(writer)
    })
    .await?;
    if let Some(progress) = progress {
        progress.send_replace(Progress::Receiving(writer.written()));
    }
    Ok(writer)
}
