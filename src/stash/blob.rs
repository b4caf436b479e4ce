//! Streaming a package file from the upstream into the blob store while
//! every waiting client reads the growing temporary file. The entry is
//! committed only when the body is complete and as long as announced; a
//! broken download leaves nothing behind.

use std::fs::File;
use std::sync::Arc;

use base64::Engine as _;
use bytes::{Bytes, BytesMut};
use http::header::HeaderMap;
use md5::{Digest, Md5};
use tokio::sync::watch;

use super::flights::Ticket;
use super::{blocking, origin_of, Stash, StashError};
use crate::cache::{BlobWriter, Origin};
use crate::error::UpstreamError;
use crate::upstream::{self, check_length, check_not_longer, content_length, Fetched};

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
    /// The disk fails: every client fetches it uncached.
    Bypass,
}

/// A package file to fetch.
pub(crate) struct BlobRequest {
    pub key: String,
    pub url: String,
    /// SHA-512 (hex) the metadata states for this package, if any.
    pub expected_sha512: Option<String>,
}

pub(crate) async fn fetch_blob(
    stash: Arc<Stash>,
    request: BlobRequest,
    ticket: Ticket<BlobOutcome>,
) -> Result<BlobOutcome, StashError> {
    if stash.cache.entry(&request.key)?.is_some() {
        return Ok(BlobOutcome::Stored);
    }
    if stash.cache.health.bypass() {
        return Ok(BlobOutcome::Bypass);
    }
    let Some(mut fetched) = stash.upstream.get_package(&request.url).await? else {
        return Ok(BlobOutcome::NotFound);
    };
    let origin = upstream::origin_of(&fetched.url).to_string();
    let first = stash
        .upstream
        .next_chunk(&mut fetched.body, &origin)
        .await?
        .unwrap_or_default();
    // The first bytes go to disk before any client is answered: a disk
    // that is already full turns into a pass-through, not a broken response.
    let Some(writer) = start_on_disk(&stash, first.clone()).await else {
        return Ok(BlobOutcome::Bypass);
    };
    let (progress, watcher) = watch::channel(Progress::Receiving(0));
    let download = Arc::new(Download {
        origin: origin_of(&fetched.url, &fetched.headers, OCTETS),
        length: content_length(&fetched.headers),
        file: writer.file(),
        progress: watcher,
    });
    let meta = download.origin.clone();
    tokio::spawn(async move {
        pump(&stash, &request, fetched, (writer, first), meta, &progress).await;
        // Later requests join this download until it is committed.
        drop(ticket);
    });
    Ok(BlobOutcome::Streaming(download))
}

/// A writer holding `first`, or `None` when the disk refuses (the storage
/// health then says so).
async fn start_on_disk(stash: &Stash, first: Bytes) -> Option<BlobWriter> {
    let writer = stash.cache.start_blob().ok()?;
    append(stash, writer, first).await.ok()
}

/// Appends `data` (off the async workers); a failure is the disk's, and the
/// storage health hears of it.
async fn append(stash: &Stash, mut writer: BlobWriter, data: Bytes) -> Result<BlobWriter, StashError> {
    let written = blocking(move || {
        writer
            .write(&data)
            .map_err(crate::error::StorageError::io("writing a download"))?;
        Ok(writer)
    })
    .await;
    if let Err(error) = &written {
        stash.cache.health.failed(&error.to_string());
    }
    written
}

/// Receives the rest of the body (after `started`: the writer and the
/// first chunk it holds), checks it, then commits it; reports every step on
/// `progress`.
async fn pump(
    stash: &Arc<Stash>,
    request: &BlobRequest,
    mut fetched: Fetched,
    started: (BlobWriter, Bytes),
    meta: Origin,
    progress: &watch::Sender<Progress>,
) {
    let key = request.key.as_str();
    let received = receive(stash, &mut fetched, started, progress).await;
    let writer = match received.and_then(|writer| verify(writer, request, &fetched)) {
        Ok(writer) => writer,
        Err(error) => {
            tracing::warn!(key, %error, "download refused; nothing cached");
            progress.send_replace(Progress::Failed(error.to_string()));
            return;
        }
    };
    let size = writer.written();
    let (cache, owned_key) = (stash.cache.clone(), key.to_string());
    match blocking(move || cache.commit_blob(&owned_key, writer, meta)).await {
        Ok(entry) => tracing::debug!(key, size, sha512 = %&entry.sha512[..16], "blob committed"),
        // The bytes are complete and checked in the open file: clients still
        // get them; the storage health has logged the failure.
        Err(error) => tracing::debug!(key, %error, "complete download not cached"),
    }
    progress.send_replace(Progress::Complete(size));
}

/// The writer, and the body's MD5 when the upstream announced one.
type Received = (BlobWriter, Option<[u8; 16]>);

/// The checks a complete body must pass before it is committed: the
/// SHA-512 the metadata states, and the upstream's `Content-MD5`.
fn verify((mut writer, md5): Received, request: &BlobRequest, fetched: &Fetched) -> Result<BlobWriter, StashError> {
    let origin = upstream::origin_of(&fetched.url).to_string();
    let refuse = |reason: String| {
        StashError::Upstream(UpstreamError::Body {
            origin: origin.clone(),
            reason,
        })
    };
    let sha512 = writer.finish();
    if let Some(expected) = &request.expected_sha512 {
        if !expected.eq_ignore_ascii_case(&sha512) {
            return Err(refuse(format!(
                "package SHA-512 {}... differs from the packageHash the metadata states ({}...)",
                &sha512[..16],
                &expected[..16.min(expected.len())]
            )));
        }
    }
    if let (Some(announced), Some(computed)) = (content_md5(&fetched.headers), md5) {
        if announced != computed {
            return Err(refuse("body does not match its Content-MD5".to_string()));
        }
    }
    Ok(writer)
}

/// The upstream's `Content-MD5` (base64), when it sent a well-formed one.
fn content_md5(headers: &HeaderMap) -> Option<[u8; 16]> {
    let value = headers.get("content-md5")?.to_str().ok()?;
    let bytes = base64::engine::general_purpose::STANDARD.decode(value.trim()).ok()?;
    bytes.try_into().ok()
}

async fn receive(
    stash: &Stash,
    fetched: &mut Fetched,
    (mut writer, first): (BlobWriter, Bytes),
    progress: &watch::Sender<Progress>,
) -> Result<Received, StashError> {
    let origin = upstream::origin_of(&fetched.url).to_string();
    let expected = content_length(&fetched.headers);
    check_not_longer(expected, writer.written(), &origin)?;
    let mut md5 = content_md5(&fetched.headers).map(|_| Md5::new());
    if let Some(md5) = md5.as_mut() {
        md5.update(&first);
    }
    let mut pending = BytesMut::new();
    loop {
        let chunk = match upstream::chunk_now(&mut fetched.body, &origin) {
            Some(ready) => ready?,
            None => {
                writer = write(stash, writer, &mut pending, Some(progress)).await?;
                stash.upstream.next_chunk(&mut fetched.body, &origin).await?
            }
        };
        let Some(chunk) = chunk else { break };
        if let Some(md5) = md5.as_mut() {
            md5.update(&chunk);
        }
        pending.extend_from_slice(&chunk);
        check_not_longer(expected, writer.written() + pending.len() as u64, &origin)?;
        if pending.len() >= WRITE_AT {
            writer = write(stash, writer, &mut pending, Some(progress)).await?;
        }
    }
    // The last bytes are announced only with `Complete`, after the checks
    // and the commit: a client that has the whole body can count on it
    // being right and on the cache having it.
    writer = write(stash, writer, &mut pending, None).await?;
    check_length(expected, writer.written(), &origin)?;
    Ok((writer, md5.map(|md5| md5.finalize().into())))
}

/// Writes the pending bytes and, with `progress`, tells readers how far the
/// file goes.
async fn write(
    stash: &Stash,
    writer: BlobWriter,
    pending: &mut BytesMut,
    progress: Option<&watch::Sender<Progress>>,
) -> Result<BlobWriter, StashError> {
    if pending.is_empty() {
        return Ok(writer);
    }
    let writer = append(stash, writer, pending.split().freeze()).await?;
    if let Some(progress) = progress {
        progress.send_replace(Progress::Receiving(writer.written()));
    }
    Ok(writer)
}
