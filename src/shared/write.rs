//! Writing objects. Packages are created if absent (`PutMode::Create`,
//! `If-None-Match: *`): the first node to write one wins, and a loser's
//! `AlreadyExists` is fine, its bytes are the same. Documents are
//! overwritten with the last good copy. Every write happens in the
//! background, after the local commit and its checks; at most [`RUNNING`]
//! at once, at most [`MAX_QUEUED`] waiting (and at most [`DOCUMENT_KIB`]
//! of document bodies held for them): past that a write is skipped and
//! counted, and another node (or a later fetch) writes it.
//!
//! An object appears whole or not at all: one PUT, or above
//! [`SINGLE_PUT`] a multipart upload in [`PART`]s, which S3 makes visible
//! only when it is completed (a node that dies mid-way leaves an
//! incomplete upload, invisible, which the bucket's lifecycle rule
//! aborts). object_store 0.13 completes a multipart upload without a
//! condition (it uses `If-None-Match` on completion only inside its
//! `copy_if_not_exists`), so a large package is first looked for (HEAD)
//! and then uploaded: two nodes racing past the HEAD both complete, and
//! the second replaces the first with the same bytes (a package key's
//! bytes are immutable and checked before they are shared). Nothing is
//! ever appended to.

use std::future::Future;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures_util::stream::BoxStream;
use futures_util::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt as _, PutMode, PutPayload};
use tokio::sync::Semaphore;

use super::{Record, SharedError, SharedStore};
use crate::metrics::SharedWrite;

/// The content of an object to write, read from the local copy (which
/// checks itself as it is read: a rotten copy ends in an error).
pub(crate) type Content = BoxStream<'static, io::Result<Bytes>>;

/// Largest object written with one PUT (held in memory while it goes).
pub(super) const SINGLE_PUT: u64 = 8 * 1024 * 1024;
/// Part size of larger ones (S3's minimum is 5 MiB, but for the last).
const PART: usize = 8 * 1024 * 1024;
const RUNNING: usize = 4;
const MAX_QUEUED: usize = 512;
const DOCUMENT_KIB: usize = 64 * 1024;
/// The slowest transfer a write's deadline allows for, on top of
/// `shared.timeout`: a part of 8 MiB may take 8 s more.
const MIN_BYTES_PER_SECOND: u64 = 1024 * 1024;

pub(super) struct Queue {
    waiting: Arc<Semaphore>,
    running: Arc<Semaphore>,
    document_kib: Arc<Semaphore>,
}

impl Default for Queue {
    fn default() -> Self {
        Queue {
            waiting: Arc::new(Semaphore::new(MAX_QUEUED)),
            running: Arc::new(Semaphore::new(RUNNING)),
            document_kib: Arc::new(Semaphore::new(DOCUMENT_KIB)),
        }
    }
}

impl SharedStore {
    /// Creates `name` (if absent) in the background, from the content
    /// `open` gives when its turn comes (`None`: the local copy is gone).
    pub fn create_later<F, Fut>(self: &Arc<Self>, name: Path, record: Record, open: F)
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = Option<Content>> + Send + 'static,
    {
        self.later(&name.clone(), None, move |store| async move {
            match open().await {
                Some(content) => store.create(&name, &record, content).await,
                None => SharedWrite::Skipped,
            }
        });
    }

    /// Overwrites `name` with `body` in the background.
    pub fn overwrite_later(self: &Arc<Self>, name: Path, record: Record, body: Bytes) {
        let kib = u32::try_from(body.len() / 1024 + 1).unwrap_or(u32::MAX);
        self.later(&name.clone(), Some(kib), move |store| async move {
            store.overwrite(&name, &record, body).await
        });
    }

    /// Queues `write` (holding `kib` of document bytes), or counts it
    /// skipped when the breaker is open or the queue is full.
    fn later<F, Fut>(self: &Arc<Self>, name: &Path, kib: Option<u32>, write: F)
    where
        F: FnOnce(Arc<SharedStore>) -> Fut + Send + 'static,
        Fut: Future<Output = SharedWrite> + Send + 'static,
    {
        let bytes = kib.map(|kib| self.queue.document_kib.clone().try_acquire_many_owned(kib));
        let slot = self.queue.waiting.clone().try_acquire_owned();
        let (Ok(slot), None | Some(Ok(_))) = (slot, &bytes) else {
            tracing::debug!(object = %name, "shared store write skipped: too many writes waiting");
            return self.metrics.shared_write(SharedWrite::Skipped);
        };
        if self.breaker.is_open() {
            return self.metrics.shared_write(SharedWrite::Skipped);
        }
        let store = self.clone();
        tokio::spawn(async move {
            let _held = (slot, bytes);
            let Ok(_running) = store.queue.running.clone().acquire_owned().await else {
                return;
            };
            let outcome = write(store.clone()).await;
            store.metrics.shared_write(outcome);
        });
    }

    /// Creates `name` unless it exists: `record`'s header, then `content`.
    pub async fn create(&self, name: &Path, record: &Record, content: Content) -> SharedWrite {
        let header = record.header();
        let written = match header.len() as u64 + record.size <= SINGLE_PUT {
            true => self.create_whole(name, header, record.size, content).await,
            false => self.create_in_parts(name, header, record.size, content).await,
        };
        self.outcome(name, written)
    }

    /// Replaces `name` with `record`'s header and `body`.
    pub async fn overwrite(&self, name: &Path, record: &Record, body: Bytes) -> SharedWrite {
        let header = record.header();
        let total = (header.len() + body.len()) as u64;
        let payload = PutPayload::from_iter([header, body]);
        let put = self.writes.put_opts(name, payload, PutMode::Overwrite.into());
        let written = self.call("writing an object", self.write_timeout(total), put).await;
        self.outcome(name, written.map(|_| Written::Stored(total)))
    }

    fn outcome(&self, name: &Path, written: Result<Written, SharedError>) -> SharedWrite {
        match written {
            Ok(Written::Stored(bytes)) => {
                self.metrics.shared_bytes(true, bytes);
                tracing::debug!(object = %name, bytes, "written to the shared store");
                SharedWrite::Stored
            }
            Ok(Written::Exists) => SharedWrite::Exists,
            Err(SharedError::Down) => SharedWrite::Skipped,
            Err(error @ SharedError::Local(_)) => {
                tracing::warn!(object = %name, error = %crate::error::chain(&error), "not shared");
                SharedWrite::Skipped
            }
            Err(error) => {
                tracing::warn!(object = %name, error = %crate::error::chain(&error), "shared store write failed");
                SharedWrite::Error
            }
        }
    }

    async fn create_whole(
        &self,
        name: &Path,
        header: Bytes,
        size: u64,
        content: Content,
    ) -> Result<Written, SharedError> {
        let mut chunks = vec![header];
        let mut content = content;
        let mut read = 0u64;
        while let Some(chunk) = content.try_next().await.map_err(local)? {
            read += chunk.len() as u64;
            chunks.push(chunk);
        }
        check_read(read, size)?;
        let total = chunks.iter().map(|c| c.len() as u64).sum();
        let put = self
            .writes
            .put_opts(name, PutPayload::from_iter(chunks), PutMode::Create.into());
        match self.call("writing an object", self.write_timeout(total), put).await {
            Ok(_) => Ok(Written::Stored(total)),
            Err(SharedError::Store { source, .. }) if matches!(*source, object_store::Error::AlreadyExists { .. }) => {
                Ok(Written::Exists)
            }
            Err(error) => Err(error),
        }
    }

    async fn create_in_parts(
        &self,
        name: &Path,
        header: Bytes,
        size: u64,
        content: Content,
    ) -> Result<Written, SharedError> {
        match self
            .call("looking for an object", self.timeout, self.writes.head(name))
            .await
        {
            Ok(_) => return Ok(Written::Exists),
            Err(error) if error.is_not_found() => {}
            Err(error) => return Err(error),
        }
        let started = self.writes.put_multipart(name);
        let mut upload = self.call("starting a multipart upload", self.timeout, started).await?;
        let sent = self.send_parts(&mut upload, header, size, content).await;
        let completed = match sent {
            Ok(total) => {
                let complete = upload.complete();
                self.call("completing a multipart upload", self.timeout, complete)
                    .await
                    .map(|_| Written::Stored(total))
            }
            Err(error) => Err(error),
        };
        if completed.is_err() {
            // Never completed, never visible; aborting frees its parts now.
            let _ = tokio::time::timeout(self.timeout, upload.abort()).await;
        }
        completed
    }

    /// Sends the header and the content in parts of [`PART`] bytes.
    async fn send_parts(
        &self,
        upload: &mut Box<dyn object_store::MultipartUpload>,
        header: Bytes,
        size: u64,
        mut content: Content,
    ) -> Result<u64, SharedError> {
        let mut part = BytesMut::with_capacity(PART);
        part.extend_from_slice(&header);
        let (mut read, mut total) = (0u64, 0u64);
        loop {
            let chunk = content.try_next().await.map_err(local)?;
            if let Some(chunk) = &chunk {
                read += chunk.len() as u64;
                part.extend_from_slice(chunk);
            }
            if part.len() >= PART || (chunk.is_none() && !part.is_empty()) {
                let data = part.split().freeze();
                total += data.len() as u64;
                let limit = self.write_timeout(data.len() as u64);
                self.call("writing a part", limit, upload.put_part(data.into())).await?;
                part.reserve(PART);
            }
            if chunk.is_none() {
                check_read(read, size)?;
                return Ok(total);
            }
        }
    }

    /// `shared.timeout`, and the time `bytes` take at the slowest rate allowed.
    fn write_timeout(&self, bytes: u64) -> Duration {
        self.timeout + Duration::from_secs(bytes / MIN_BYTES_PER_SECOND)
    }

    /// Deletes the objects named, and every object in the folders named
    /// (the admin purge); returns how many there were.
    pub async fn delete_all(&self, names: Vec<Path>, folders: Vec<Path>) -> Result<usize, SharedError> {
        let mut found = Vec::new();
        for folder in &folders {
            let listing = self
                .writes
                .list(Some(folder))
                .map_ok(|meta| meta.location)
                .try_collect::<Vec<_>>();
            found.extend(self.call("listing objects", self.timeout, listing).await?);
        }
        for name in names {
            match self
                .call("looking for an object", self.timeout, self.writes.head(&name))
                .await
            {
                Ok(_) => found.push(name),
                Err(error) if error.is_not_found() => {}
                Err(error) => return Err(error),
            }
        }
        found.sort();
        found.dedup();
        for name in &found {
            match self
                .call("deleting an object", self.timeout, self.writes.delete(name))
                .await
            {
                Err(error) if !error.is_not_found() => return Err(error),
                _ => {}
            }
        }
        Ok(found.len())
    }
}

/// What a write did.
enum Written {
    Stored(u64),
    Exists,
}

fn local(error: io::Error) -> SharedError {
    SharedError::Local(Arc::new(error))
}

/// The local copy gave as many bytes as the record says.
fn check_read(read: u64, size: u64) -> Result<(), SharedError> {
    match read == size {
        true => Ok(()),
        false => Err(local(io::Error::other(format!(
            "the local copy has {read} bytes, its record {size}"
        )))),
    }
}
