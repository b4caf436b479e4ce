//! Fetching a metadata document: conditional when a copy exists, decoded
//! (gzip by magic bytes), validated as JSON, rewritten, stored.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{HeaderMap, HeaderValue, IF_MODIFIED_SINCE, IF_NONE_MATCH};
use http::StatusCode;

use super::{blocking, origin_of, Stash, StashError};
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
            let doc = blocking(move || cache.confirm_document(&key, &doc, persist)).await?;
            Ok(DocOutcome::Confirmed(doc))
        }
        (StatusCode::NOT_FOUND | StatusCode::GONE, _) => Ok(DocOutcome::NotFound),
        (StatusCode::OK, _) => {
            let raw = stash.upstream.read_to_end(&mut fetched, stash.max_document).await?;
            let unusable = |error| UpstreamError::Document {
                origin: origin.clone(),
                error,
            };
            let (body, kind, hashes) = transform(&raw, &spec.transform, stash.max_document).map_err(unusable)?;
            // The stored body is nucache's JSON, whatever the upstream called it.
            let mut meta = origin_of(&fetched.url, &fetched.headers, JSON);
            meta.content_type = JSON.to_string();
            let doc = store(&stash, &spec, kind, meta, body).await?;
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

fn transform(raw: &[u8], transform: &Transform, cap: u64) -> Result<Transformed, RewriteError> {
    let decoded = decode_body(raw, cap)?;
    match transform {
        Transform::Rewrite(map) => {
            let (template, hashes) = rewrite_with_hashes(&decoded, &map.mounts)?;
            Ok((template, EntryKind::Document, hashes))
        }
        Transform::ServiceIndex { publish } => {
            build_service_map(&decoded, *publish)?;
            Ok((decoded, EntryKind::ServiceIndex, Vec::new()))
        }
    }
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
