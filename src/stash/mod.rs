//! The stasher: fetches what the cache lacks from the upstream, once per key
//! however many clients ask (its two single-flight tables, `flights`), and
//! stores it.
//!
//! - `document`: metadata documents, fetched whole, decoded, rewritten,
//!   stored as templates; revalidated with the upstream's validators;
//! - `blob`: package files, streamed to disk and to every waiting client
//!   at once, committed only when complete and of the announced length,
//!   from the upstream, the shared store or the key's owner (`source`);
//! - `sharing`: what is read from and written to a fleet's shared store;
//! - `owner`: in a fleet, a package miss asked of the key's owner (after
//!   the shared store, before the upstream), and finished from the
//!   upstream should the owner break off.

mod blob;
mod document;
mod download;
mod flights;
mod owner;
mod sharing;
mod source;

use std::sync::Arc;
use std::time::Duration;

use http::header::{HeaderMap, CONTENT_TYPE, ETAG, LAST_MODIFIED};

use crate::cache::{Cache, FromAbove, HotDoc, Namespace, Origin};
use crate::error::{InternalError, Party, ProxyError, StorageError, UpstreamError};
use crate::fleet::Fleet;
use crate::shared::SharedStore;
use crate::tiers;
use crate::upstream::Upstream;

use blob::fetch_blob;
pub(crate) use blob::{BlobOutcome, BlobRequest};
use document::fetch_document;
pub(crate) use document::{DocOutcome, DocSpec, Transform};
pub(crate) use download::{Download, DownloadReader};
use flights::Flights;

/// Why a fetch failed: the upstream, or nucache (its cache, a task).
#[derive(Debug, Clone, thiserror::Error)]
pub(crate) enum StashError {
    #[error(transparent)]
    Upstream(#[from] UpstreamError),
    #[error(transparent)]
    Internal(#[from] InternalError),
}

impl StashError {
    pub fn party(&self) -> Party {
        match self {
            StashError::Upstream(UpstreamError::Busy(_)) | StashError::Internal(_) => Party::Nucache,
            StashError::Upstream(_) => Party::Upstream,
        }
    }
}

impl From<StashError> for ProxyError {
    fn from(error: StashError) -> Self {
        match error {
            StashError::Upstream(e) => e.into(),
            StashError::Internal(e) => ProxyError::Internal(e),
        }
    }
}

impl From<StorageError> for StashError {
    fn from(error: StorageError) -> Self {
        StashError::Internal(error.into())
    }
}

/// The fetch stage: what the fetchers share, and the fetches in flight.
pub(crate) struct Stash {
    cache: Arc<Cache>,
    upstream: Arc<Upstream>,
    /// Largest metadata document, after decoding.
    max_document: u64,
    /// This upstream's cache-key namespace, which the package hashes its
    /// documents state are kept in too: another upstream may have a
    /// different package under the same id and version.
    namespace: Namespace,
    /// The peers a package miss is asked of (after the shared store,
    /// before the upstream).
    fleet: Option<Arc<Fleet>>,
    /// The store a fleet shares, when there is one (`sharing.rs`).
    shared: Option<Arc<SharedStore>>,
    documents: Flights<DocOutcome>,
    blobs: Flights<BlobOutcome>,
}

impl Stash {
    pub fn new(
        cache: Arc<Cache>,
        upstream: Arc<Upstream>,
        max_document: u64,
        namespace: Namespace,
        fleet: Option<Arc<Fleet>>,
        shared: Option<Arc<SharedStore>>,
    ) -> Stash {
        Stash {
            cache,
            upstream,
            max_document,
            namespace,
            fleet,
            shared,
            documents: Flights::default(),
            blobs: Flights::default(),
        }
    }

    /// Fetches a document (revalidating `cached` when there is one), or
    /// joins the fetch of it in flight.
    pub async fn document(
        self: &Arc<Self>,
        spec: DocSpec,
        cached: Option<Arc<HotDoc>>,
    ) -> Result<DocOutcome, StashError> {
        let key = spec.key.clone();
        let stash = self.clone();
        let flight = self.documents.join(&key, move |ticket| async move {
            let previous = cached.as_ref().map(|doc| doc.entry.sha512.clone());
            let outcome = fetch_document(stash.clone(), spec.clone(), cached).await;
            let outcome = stash.after_document_fetch(&spec, previous, outcome).await;
            drop(ticket);
            outcome
        });
        flight.await
    }

    /// Whether the document `key` is being fetched now.
    pub fn document_in_flight(&self, key: &str) -> bool {
        self.documents.in_flight(key)
    }

    /// Starts the download of a package file, or joins the one in flight.
    pub async fn blob(self: &Arc<Self>, request: BlobRequest) -> Result<BlobOutcome, StashError> {
        let (stash, key) = (self.clone(), request.key.clone());
        self.blobs
            .join(&key, move |ticket| fetch_blob(stash, request, ticket))
            .await
    }

    /// Package downloads running now.
    pub fn downloads_in_flight(&self) -> usize {
        self.blobs.len()
    }
}

/// Runs blocking cache I/O off the async workers.
pub(crate) async fn blocking<T, F>(work: F) -> Result<T, StashError>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T, StorageError> + Send + 'static,
{
    match tokio::task::spawn_blocking(work).await {
        Ok(result) => result.map_err(StashError::from),
        Err(e) => Err(InternalError::task("a storage task")(e).into()),
    }
}

/// The upstream facts worth keeping about a response.
fn origin_of(url: &str, headers: &HeaderMap, default_type: &str) -> Origin {
    let text = |name| headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_string);
    Origin {
        url: url.to_string(),
        content_type: text(CONTENT_TYPE).unwrap_or_else(|| default_type.to_string()),
        etag: text(ETAG),
        last_modified: text(LAST_MODIFIED),
        above: above_of(headers, None),
    }
}

/// What the tier above said of its answer (`Age`, `Cache-Status`), for a
/// copy fresh for `ttl` here, if it expires (a stale answer is kept as
/// expired).
fn above_of(headers: &HeaderMap, ttl: Option<Duration>) -> FromAbove {
    let age = match ttl {
        Some(ttl) => tiers::age_here(headers, ttl),
        None => tiers::age_of(headers),
    };
    FromAbove {
        age_ms: u64::try_from(age.as_millis()).unwrap_or(u64::MAX),
        cache_status: headers.get(tiers::CACHE_STATUS).cloned(),
    }
}
