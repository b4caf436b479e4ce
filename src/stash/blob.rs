//! Streaming a package file from the upstream (or from the shared store,
//! `source.rs`) to every waiting client at once (`download.rs`), into the
//! blob store while the disk takes it. The entry is committed only when
//! the body is complete, as long as announced and matching its checksums;
//! a broken download leaves nothing behind. A package committed from the
//! upstream is then shared (`sharing.rs`, in the background).
//! When the disk fails, from the start or mid-way, the download goes on
//! through memory: no client's response breaks, nothing is committed, and
//! concurrent requests still share the one upstream download. In a fleet
//! the bytes may come from the key's owner instead (`owner.rs`), the rest
//! from the upstream should the owner break off.

use std::sync::Arc;
use std::time::Instant;

use base64::Engine as _;
use bytes::{Bytes, BytesMut};
use http::header::HeaderMap;
use md5::{Digest, Md5};
use sha2::Sha512;
use xxhash_rust::xxh3::Xxh3;

use super::download::Download;
use super::flights::Ticket;
use super::source::Source;
use super::{owner, Stash, StashError};
use crate::cache::BlobWriter;
use crate::error::{BodyError, InternalError, Party, StorageError};

/// Bytes gathered before a write: big writes, yet a stalled upstream
/// flushes at once (see `receive`) so readers never wait on a buffer.
const WRITE_AT: usize = 256 * 1024;

#[derive(Clone)]
pub(crate) enum BlobOutcome {
    Streaming(Arc<Download>),
    /// Another fetch committed it meanwhile: read it from the cache.
    Stored,
    NotFound,
}

/// A package file to fetch.
#[derive(Clone)]
pub(crate) struct BlobRequest {
    pub key: String,
    pub url: String,
    /// SHA-512 (hex) the metadata states for this package, if any.
    pub expected_sha512: Option<String>,
    /// A peer of the fleet asked for it: never asked of another node.
    pub from_peer: bool,
}

/// The owner in the fleet whose body a download reads, until it is done
/// or broken off.
struct FromOwner {
    url: String,
    cached: bool,
}

/// Where the bytes go: the blob store, or (the disk fails) nowhere but to
/// the readers, hashed on the way for the checks.
enum Sink {
    Disk(Box<BlobWriter>),
    Memory {
        sha512: Box<Sha512>,
        xxh3: Box<Xxh3>,
        written: u64,
    },
}

impl Sink {
    fn written(&self) -> u64 {
        match self {
            Sink::Disk(writer) => writer.written(),
            Sink::Memory { written, .. } => *written,
        }
    }

    /// XXH3-128 of every byte received: what each reader of the download
    /// checks the bytes it read against.
    fn xxh3(&mut self) -> u128 {
        match self {
            Sink::Disk(writer) => writer.info().xxh3.unwrap_or_default(),
            Sink::Memory { xxh3, .. } => xxh3.digest128(),
        }
    }
}

pub(super) async fn fetch_blob(
    stash: Arc<Stash>,
    request: BlobRequest,
    ticket: Ticket<BlobOutcome>,
) -> Result<BlobOutcome, StashError> {
    let on_disk = !stash.cache.health.bypass();
    if on_disk && stash.cache.entry(&request.key).ok().flatten().is_some() {
        return Ok(BlobOutcome::Stored);
    }
    let deadline = Instant::now() + stash.upstream.download_timeout();
    let Some((source, first, owner)) = open_source(&stash, &request, deadline).await? else {
        return Ok(BlobOutcome::NotFound);
    };
    // The first bytes go to disk before any client is answered; a disk that
    // refuses them makes this a download through memory.
    let writer = match on_disk {
        true => start_on_disk(&stash, first.clone()).await,
        false => None,
    };
    let file = writer.as_ref().map(BlobWriter::file);
    let mut meta = source.meta();
    if owner.is_some() {
        // The entry names the upstream URL, and no validator of the owner's.
        meta.url.clone_from(&request.url);
        meta.etag = None;
    }
    let download = Download::new(meta, source.length(), file);
    let sink = match writer {
        Some(writer) => Sink::Disk(Box::new(writer)),
        None => {
            download.push(first.clone());
            let mut xxh3 = Box::new(Xxh3::new());
            xxh3.update(&first);
            Sink::Memory {
                sha512: Box::new(Sha512::new().chain_update(&first)),
                xxh3,
                written: first.len() as u64,
            }
        }
    };
    let pump = Pump {
        stash,
        request,
        download: download.clone(),
        deadline,
        ticket: Some(ticket),
        owner,
    };
    tokio::spawn(pump.run(source, sink, first));
    Ok(BlobOutcome::Streaming(download))
}

/// Where the package's bytes come from, and their first chunk: the shared
/// store (another node may have fetched it), else the key's owner in the
/// fleet (named in the third value), else the upstream; `None` when the
/// upstream has no such package. A store that fails before its first byte
/// of content is passed over (no client has joined yet).
async fn open_source(
    stash: &Stash,
    request: &BlobRequest,
    deadline: Instant,
) -> Result<Option<(Source, Bytes, Option<FromOwner>)>, StashError> {
    if let Some(object) = stash.shared_package(request).await {
        let mut source = Source::Shared(Box::new(object));
        match source.next_chunk(stash, deadline).await {
            Ok(first) => return Ok(Some((source, first.unwrap_or_default(), None))),
            Err(error) => tracing::debug!(key = request.key, %error, "shared store failed; asking the upstream"),
        }
    }
    if let Some(forwarded) = owner::ask(stash, request).await {
        let owner = FromOwner {
            url: forwarded.owner,
            cached: forwarded.cached,
        };
        return Ok(Some((
            Source::Upstream(forwarded.fetched),
            forwarded.first,
            Some(owner),
        )));
    }
    let Some(fetched) = stash.upstream.get_package(&request.url).await? else {
        return Ok(None);
    };
    let mut source = Source::Upstream(fetched);
    let first = source.next_chunk(stash, deadline).await?.unwrap_or_default();
    Ok(Some((source, first, None)))
}

/// A writer holding `first`, or `None` when the disk refuses (the storage
/// health then says so).
async fn start_on_disk(stash: &Stash, first: Bytes) -> Option<BlobWriter> {
    let writer = stash.cache.start_blob().ok()?;
    append(stash, writer, first).await.ok()
}

/// Why an append did not happen.
enum AppendError {
    /// The disk refused: the writer and the data come back.
    Disk(Box<BlobWriter>, Bytes),
    /// The write task itself was lost (shutdown): so are the bytes.
    Lost,
}

/// Appends `data` (off the async workers); a disk failure goes to the
/// storage health.
async fn append(stash: &Stash, mut writer: BlobWriter, data: Bytes) -> Result<BlobWriter, AppendError> {
    let written = tokio::task::spawn_blocking(move || {
        let result = writer.write(&data);
        (writer, data, result)
    })
    .await;
    match written {
        Ok((writer, _, Ok(()))) => Ok(writer),
        Ok((writer, data, Err(error))) => {
            let error = StorageError::io("writing a download")(error);
            stash.cache.health.failed(&error.to_string());
            Err(AppendError::Disk(Box::new(writer), data))
        }
        Err(_) => Err(AppendError::Lost),
    }
}

/// The task that receives a download, feeds its readers, checks it and
/// commits it.
struct Pump {
    stash: Arc<Stash>,
    request: BlobRequest,
    download: Arc<Download>,
    deadline: Instant,
    /// Held while later requests may join this download.
    ticket: Option<Ticket<BlobOutcome>>,
    /// While the body comes from the key's owner in the fleet.
    owner: Option<FromOwner>,
}

impl Pump {
    async fn run(mut self, mut source: Source, sink: Sink, first: Bytes) {
        let key = self.request.key.clone();
        let received = self.receive(&mut source, sink, first).await;
        let checked = received.and_then(|(sink, md5)| self.verify(sink, md5, &source));
        source.settle(checked.as_ref().err()).await;
        let mut sink = match checked {
            Ok(sink) => sink,
            Err(error) => {
                tracing::warn!(key, %error, "download refused; nothing cached");
                self.download
                    .fail(BodyError::new(error.party(), crate::error::chain(&error)));
                return;
            }
        };
        let (total, xxh3) = (sink.written(), sink.xxh3());
        if let Sink::Disk(writer) = sink {
            // What came from the shared store is there already.
            self.commit(&key, *writer, !source.is_shared()).await;
        }
        self.download.complete(total, xxh3);
        // Later requests join this download until it is committed.
        drop(self.ticket.take());
    }

    /// Commits the checked download; its readers, who read it back from the
    /// committed file, drop the entry should they find it rotten.
    async fn commit(&self, key: &str, writer: BlobWriter, share: bool) {
        let size = writer.written();
        let (cache, owned_key, meta) = (self.stash.cache.clone(), key.to_string(), self.download.origin.clone());
        match tokio::task::spawn_blocking(move || cache.commit_blob(&owned_key, writer, meta)).await {
            Ok(Ok(entry)) => {
                tracing::debug!(key, size, sha512 = %&entry.sha512[..16], "blob committed");
                if share {
                    self.stash.share_package(key, &entry);
                }
                let (cache, key) = (self.stash.cache.clone(), key.to_string());
                self.download.on_corrupt(Box::new(move || {
                    if let Err(error) = cache.drop_corrupt(&key, &entry) {
                        tracing::warn!(key, %error, "could not drop a corrupt cache entry");
                    }
                }));
            }
            // The bytes are complete and checked in the open file: clients
            // still get them; the storage health has logged the failure.
            Ok(Err(error)) => tracing::debug!(key, %error, "complete download not cached"),
            Err(error) => tracing::debug!(key, %error, "commit task lost"),
        }
    }

    /// Receives the rest of the body after `first` (already in the sink),
    /// feeding readers as it goes; returns the sink and the body's MD5 when
    /// the upstream announced one.
    async fn receive(
        &mut self,
        source: &mut Source,
        mut sink: Sink,
        first: Bytes,
    ) -> Result<(Sink, Option<[u8; 16]>), StashError> {
        source.check_not_longer(sink.written())?;
        let mut md5 = source.headers().and_then(content_md5).map(|_| Md5::new());
        if let Some(md5) = md5.as_mut() {
            md5.update(&first);
        }
        let mut pending = BytesMut::new();
        loop {
            let next = match source.chunk_now() {
                Some(ready) => ready,
                None => {
                    sink = self.flush(sink, &mut pending, true).await?;
                    source.next_chunk(&self.stash, self.deadline).await
                }
            };
            let chunk = match next {
                Ok(chunk) => chunk,
                Err(error) if self.owner.is_some() || source.is_shared() => {
                    let received = sink.written() + pending.len() as u64;
                    Some(self.resume(source, error, received).await?)
                }
                Err(error) => return Err(error),
            };
            let Some(chunk) = chunk else { break };
            if let Some(md5) = md5.as_mut() {
                md5.update(&chunk);
            }
            pending.extend_from_slice(&chunk);
            source.check_not_longer(sink.written() + pending.len() as u64)?;
            if pending.len() >= WRITE_AT {
                sink = self.flush(sink, &mut pending, true).await?;
            }
        }
        // The last bytes are announced only with `complete`, after the
        // checks and the commit: a client that has the whole body can count
        // on it being right and on the cache having it.
        sink = self.flush(sink, &mut pending, false).await?;
        source.check_length(sink.written())?;
        if let (Some(owner), Some(fleet)) = (self.owner.take(), &self.stash.fleet) {
            fleet.forward_ended(owner.cached, true, sink.written());
        }
        Ok((sink, md5.map(|md5| md5.finalize().into())))
    }

    /// The owner or the shared store broke its body off after `received`
    /// bytes: the rest comes from the upstream (see `owner.rs`); its first
    /// bytes, if any. The clients reading the download never see the
    /// switch; the checks cover the whole body.
    async fn resume(&mut self, source: &mut Source, error: StashError, received: u64) -> Result<Bytes, StashError> {
        let from = match self.owner.take() {
            Some(owner) => {
                if let Some(fleet) = &self.stash.fleet {
                    fleet.forward_ended(owner.cached, false, received);
                }
                owner.url
            }
            None => "the shared store".to_string(),
        };
        tracing::warn!(
            key = self.request.key,
            from,
            received,
            %error,
            "a package download broke off; going on from the upstream"
        );
        let (continued, rest) = owner::resume(&self.stash, &self.request.url, received, self.deadline).await?;
        *source = Source::Upstream(continued);
        Ok(rest)
    }

    /// Passes the pending bytes on: to disk (announced when `announce`), or
    /// through memory. A disk that fails now turns the sink into memory.
    async fn flush(&mut self, sink: Sink, pending: &mut BytesMut, announce: bool) -> Result<Sink, StashError> {
        if pending.is_empty() {
            return Ok(sink);
        }
        let data = pending.split().freeze();
        match sink {
            Sink::Disk(writer) => match append(&self.stash, *writer, data).await {
                Ok(writer) => {
                    if announce {
                        self.download.on_disk(writer.written());
                    }
                    Ok(Sink::Disk(Box::new(writer)))
                }
                Err(AppendError::Disk(writer, data)) => {
                    tracing::warn!(
                        key = self.request.key,
                        at = writer.written(),
                        "disk failed mid-download; going on through memory, nothing cached"
                    );
                    let written = writer.written();
                    self.download.on_disk(written);
                    self.download.spill_to_memory();
                    let (sha512, xxh3) = writer.abandon();
                    let sink = Sink::Memory {
                        sha512: Box::new(sha512),
                        xxh3: Box::new(xxh3),
                        written,
                    };
                    self.through_memory(sink, data).await
                }
                Err(AppendError::Lost) => Err(InternalError::Broken("a write task was lost").into()),
            },
            memory => self.through_memory(memory, data).await,
        }
    }

    async fn through_memory(&mut self, sink: Sink, data: Bytes) -> Result<Sink, StashError> {
        let Sink::Memory {
            mut sha512,
            mut xxh3,
            written,
        } = sink
        else {
            return Ok(sink);
        };
        sha512.update(&data);
        xxh3.update(&data);
        let written = written + data.len() as u64;
        self.download.push(data);
        if !self.download.make_room(self.stash.upstream.read_timeout()).await {
            // The start of the body is gone: later requests start anew, and
            // once no client reads it, nobody ever will (nothing is cached).
            drop(self.ticket.take());
            if self.download.readers() == 0 {
                return Err(InternalError::Broken("every client left a download that cannot be cached").into());
            }
        }
        Ok(Sink::Memory { sha512, xxh3, written })
    }

    /// The checks a complete body must pass: the SHA-512 the metadata
    /// states (and a shared object's record), and the upstream's
    /// `Content-MD5`.
    fn verify(&self, sink: Sink, md5: Option<[u8; 16]>, source: &Source) -> Result<Sink, StashError> {
        let (sink, sha512) = match sink {
            Sink::Disk(mut writer) => {
                let sha512 = writer.finish();
                (Sink::Disk(writer), sha512)
            }
            Sink::Memory { sha512, xxh3, written } => {
                let hex = hex::encode((*sha512).clone().finalize());
                (Sink::Memory { sha512, xxh3, written }, hex)
            }
        };
        if let Some(stated) = source.stated_sha512() {
            if !stated.eq_ignore_ascii_case(&sha512) {
                return Err(source.refuse(format!(
                    "content SHA-512 {}... differs from its record's ({}...)",
                    &sha512[..16],
                    &stated[..16.min(stated.len())]
                )));
            }
        }
        if let Some(expected) = &self.request.expected_sha512 {
            if !expected.eq_ignore_ascii_case(&sha512) {
                return Err(source.refuse(format!(
                    "package SHA-512 {}... differs from the packageHash the metadata states ({}...)",
                    &sha512[..16],
                    &expected[..16.min(expected.len())]
                )));
            }
        }
        let announced = source.headers().and_then(content_md5);
        if let (Some(announced), Some(computed)) = (announced, md5) {
            if announced != computed {
                return Err(source.refuse("body does not match its Content-MD5".to_string()));
            }
        }
        Ok(sink)
    }
}

impl Drop for Pump {
    /// A pump that ends any other way (its task aborted) must not leave
    /// readers waiting.
    fn drop(&mut self) {
        self.download.fail(BodyError::new(Party::Nucache, "download abandoned"));
    }
}

/// The upstream's `Content-MD5` (base64), when it sent a well-formed one.
fn content_md5(headers: &HeaderMap) -> Option<[u8; 16]> {
    let value = headers.get("content-md5")?.to_str().ok()?;
    let bytes = base64::engine::general_purpose::STANDARD.decode(value.trim()).ok()?;
    bytes.try_into().ok()
}
