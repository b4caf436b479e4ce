//! Fetching a metadata document: conditional when a copy exists, decoded
//! (gzip by magic bytes), validated as JSON, rewritten, stored. Every copy
//! of the body held on the way (as received, decoded, rewritten) counts
//! against the bytes of documents in flight (`limits.document_bytes`)
//! before it is made, and is given back once the document is stored.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{HeaderMap, HeaderValue, IF_MODIFIED_SINCE, IF_NONE_MATCH};
use http::StatusCode;

use super::{above_of, blocking, origin_of, Stash, StashError};
use crate::budget::Held;
use crate::cache::{EntryKind, HotDoc, Origin};
use crate::error::UpstreamError;
use crate::nuget::PackageHash;
use crate::rewrite::{build_service_map, decode_body, rewrite_with_hashes, RewriteError, ServiceMap};
use crate::upstream::{self, Wanted};

const JSON: &str = "application/json; charset=utf-8";

/// How the upstream body becomes the stored body.
#[derive(Clone)]
pub(crate) enum Transform {
    /// Rewrite mounted URLs into a template.
    Rewrite(Arc<ServiceMap>),
    /// Keep the service index as received, once it is known to be one.
    ServiceIndex { publish: bool },
}

/// One document to fetch.
#[derive(Clone)]
pub(crate) struct DocSpec {
    pub key: String,
    pub url: String,
    pub ttl: Duration,
    pub transform: Transform,
    /// Search answers live in memory only.
    pub persist: bool,
}

#[derive(Clone)]
pub(crate) enum DocOutcome {
    /// A new copy (200).
    Fetched(Arc<HotDoc>),
    /// The cached copy is still right (304).
    Confirmed(Arc<HotDoc>),
    /// The upstream has no such document (404/410).
    NotFound,
    /// The upstream failed and the node had no copy: the shared store's
    /// last good copy, kept here as already expired (served stale).
    FromShared(Arc<HotDoc>),
}

pub(super) async fn fetch_document(
    stash: Arc<Stash>,
    spec: DocSpec,
    cached: Option<Arc<HotDoc>>,
) -> Result<DocOutcome, StashError> {
    let conditional = cached.as_deref().map(validators).unwrap_or_default();
    let mut fetched = stash.upstream.get(&spec.url, Wanted::Document, &conditional).await?;
    let origin = upstream::origin_of(&fetched.url).to_string();
    match (fetched.status, cached) {
        (StatusCode::NOT_MODIFIED, Some(doc)) => {
            let (cache, key, persist) = (stash.cache.clone(), spec.key.clone(), spec.persist);
            let above = above_of(&fetched.headers, Some(spec.ttl));
            let doc = blocking(move || cache.confirm_document(&key, &doc, persist, above)).await?;
            Ok(DocOutcome::Confirmed(doc))
        }
        (StatusCode::NOT_FOUND | StatusCode::GONE, _) => Ok(DocOutcome::NotFound),
        (StatusCode::OK, _) => {
            let mut held = stash.upstream.document_bytes().nothing();
            let raw = stash
                .upstream
                .read_counted(&mut fetched, stash.max_document, Some(&mut held))
                .await?;
            let (body, kind, hashes) = transform(raw, &spec.transform, stash.max_document, &mut held)
                .await
                .map_err(|failure| failure.of(&origin))?;
            // The stored body is nucache's JSON, whatever the upstream called it.
            let mut meta = origin_of(&fetched.url, &fetched.headers, JSON);
            meta.above = above_of(&fetched.headers, Some(spec.ttl));
            meta.content_type = JSON.to_string();
            let doc = store(&stash, &spec, kind, meta, body).await?;
            drop(held);
            if !hashes.is_empty() {
                let cache = stash.cache.clone();
                let hashes: Vec<PackageHash> = hashes
                    .into_iter()
                    .map(|h| PackageHash {
                        lower_id: stash.namespace.key(&h.lower_id),
                        ..h
                    })
                    .collect();
                // Without them downloads are still checked by length (and Content-MD5).
                if let Err(error) = blocking(move || cache.record_package_hashes(&hashes)).await {
                    tracing::debug!(%error, "package hashes not recorded");
                }
            }
            Ok(DocOutcome::Fetched(doc))
        }
        (status, _) => Err(UpstreamError::Status {
            origin,
            status: status.as_u16(),
        }
        .into()),
    }
}

/// The body to store, its kind, and the package hashes it states.
type Transformed = (Bytes, EntryKind, Vec<PackageHash>);

/// Why a received body was not turned into a document.
enum Failure {
    Unusable(RewriteError),
    /// The bytes of documents in flight were spent.
    Busy(crate::error::Busy),
}

impl Failure {
    fn of(self, origin: &str) -> UpstreamError {
        match self {
            Failure::Unusable(error) => UpstreamError::Document {
                origin: origin.to_string(),
                error,
            },
            Failure::Busy(busy) => UpstreamError::Busy(busy),
        }
    }
}

impl From<RewriteError> for Failure {
    fn from(error: RewriteError) -> Self {
        Failure::Unusable(error)
    }
}

impl From<crate::error::Busy> for Failure {
    fn from(busy: crate::error::Busy) -> Self {
        Failure::Busy(busy)
    }
}

/// Decodes and rewrites `raw` (held in `held`), taking the bytes of each
/// new copy before making it and giving back each copy no longer needed.
async fn transform(raw: Bytes, transform: &Transform, cap: u64, held: &mut Held) -> Result<Transformed, Failure> {
    let decoded = decode_within(&raw, cap, held).await?;
    drop(raw);
    held.shrink_to(decoded.len() as u64);
    match transform {
        Transform::Rewrite(map) => {
            // The template is about the decoded size (URLs become a placeholder).
            held.grow(decoded.len() as u64).await?;
            let (template, hashes) = rewrite_with_hashes(&decoded, &map.mounts)?;
            drop(decoded);
            held.shrink_to(template.len() as u64);
            Ok((template, EntryKind::Document, hashes))
        }
        Transform::ServiceIndex { publish } => {
            build_service_map(&decoded, *publish)?;
            Ok((decoded, EntryKind::ServiceIndex, Vec::new()))
        }
    }
}

/// `raw` decoded, its size taken from `held` first: as received when it is
/// not gzip; else what the gzip trailer states (at least the 4x
/// `decode_body` reserves, at most `cap`), and should the body inflate
/// beyond that (a trailer that lies, several members) the rest up to `cap`.
async fn decode_within(raw: &[u8], cap: u64, held: &mut Held) -> Result<Bytes, Failure> {
    let estimate = decoded_estimate(raw, cap);
    held.grow(estimate).await?;
    match decode_body(raw, estimate) {
        Err(RewriteError::TooLarge(_)) if estimate < cap => {
            held.grow(cap - estimate).await?;
            Ok(decode_body(raw, cap)?)
        }
        decoded => Ok(decoded?),
    }
}

fn decoded_estimate(raw: &[u8], cap: u64) -> u64 {
    const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];
    let received = raw.len() as u64;
    if !raw.starts_with(&GZIP_MAGIC) {
        return received;
    }
    // ISIZE: the last member's size mod 2^32, little-endian.
    let stated = raw
        .len()
        .checked_sub(4)
        .and_then(|at| raw.get(at..))
        .and_then(|tail| <[u8; 4]>::try_from(tail).ok())
        .map_or(0, |tail| u64::from(u32::from_le_bytes(tail)));
    stated.max(received.saturating_mul(4)).min(cap)
}

/// Stores the document (in memory only while the disk fails: the cache's
/// storage health logs that).
async fn store(
    stash: &Arc<Stash>,
    spec: &DocSpec,
    kind: EntryKind,
    meta: Origin,
    body: Bytes,
) -> Result<Arc<HotDoc>, StashError> {
    let (cache, key, persist) = (stash.cache.clone(), spec.key.clone(), spec.persist);
    blocking(move || cache.store_document(&key, kind, meta, body, persist)).await
}

/// `If-None-Match` / `If-Modified-Since` from the cached copy.
fn validators(doc: &HotDoc) -> HeaderMap {
    let mut headers = HeaderMap::new();
    let mut add = |name, value: &Option<String>| {
        if let Some(value) = value.as_deref().and_then(|v| HeaderValue::from_str(v).ok()) {
            headers.insert(name, value);
        }
    };
    add(IF_NONE_MATCH, &doc.entry.etag);
    add(IF_MODIFIED_SINCE, &doc.entry.last_modified);
    headers
}
