//! The fetch stage's side of the shared store (`crate::shared`): which
//! keys live there, and when they are read and written.
//!
//! - a package file the node lacks is looked for there before the
//!   upstream (`blob.rs` streams it like an upstream body, checked against
//!   its record); one committed from the upstream is written there after
//!   the commit, in the background, read back from the committed file
//!   through its checksum;
//! - a document stored from the upstream is written there when its
//!   content changed (the last good copy); when the upstream fails and
//!   the node has no copy at all, the store's copy answers, as stale, and
//!   is kept as already expired, so that the next request asks the
//!   upstream first.

use std::sync::Arc;

use futures_util::stream::{self, StreamExt};
use object_store::path::Path;

use super::{blocking, BlobRequest, DocOutcome, DocSpec, Stash, StashError, Transform};
use crate::cache::{namespace, BlobReader, Cache, Entry, EntryKind, HotDoc, Origin};
use crate::error::UpstreamError;
use crate::shared::{Content, ObjectKind, Record, SharedObject, SharedStore, FORMAT};

/// Bytes read from the committed file per chunk of an upload.
const UPLOAD_CHUNK: usize = 1024 * 1024;

impl Stash {
    /// The store and `key`'s object of `kind` there, when there is a store
    /// and the key can be an object name.
    fn shared_object(&self, kind: ObjectKind, key: &str) -> Option<(&Arc<SharedStore>, Path)> {
        let shared = self.shared.as_ref()?;
        let (namespace, local) = namespace::split_key(key)?;
        Some((shared, shared.name(kind, namespace, local)?))
    }

    /// The package file from the shared store, when it has one that the
    /// metadata does not contradict (one it does is deleted: its record
    /// says other bytes than the package hash the upstream states).
    pub(super) async fn shared_package(&self, request: &BlobRequest) -> Option<SharedObject> {
        let (shared, name) = self.shared_object(ObjectKind::Package, &request.key)?;
        let object = shared.open(&name, &request.key).await?;
        match &request.expected_sha512 {
            Some(expected) if !expected.eq_ignore_ascii_case(&object.record.sha512) => {
                object
                    .corrupt("its SHA-512 differs from the packageHash the metadata states")
                    .await
            }
            _ => Some(object),
        }
    }

    /// Writes a package committed from the upstream to the shared store
    /// (create-if-absent, in the background).
    pub(super) fn share_package(&self, key: &str, entry: &Entry) {
        let Some((shared, name)) = self.shared_object(ObjectKind::Package, key) else {
            return;
        };
        let record = record_of(key, ObjectKind::Package, entry);
        let (cache, key, entry) = (self.cache.clone(), key.to_string(), entry.clone());
        shared.create_later(name, record, move || committed_content(cache, key, entry));
    }

    /// What follows a document fetch (`outcome`; `previous` is the SHA-512
    /// of the copy the node had): a new copy is shared, and a failed
    /// upstream with no copy here is answered from the store.
    pub(super) async fn after_document_fetch(
        &self,
        spec: &DocSpec,
        previous: Option<String>,
        outcome: Result<DocOutcome, StashError>,
    ) -> Result<DocOutcome, StashError> {
        if !spec.persist {
            return outcome;
        }
        match outcome {
            Ok(DocOutcome::Fetched(doc)) => {
                if previous.as_deref() != Some(doc.entry.sha512.as_str()) {
                    self.share_document(&spec.key, &doc);
                }
                Ok(DocOutcome::Fetched(doc))
            }
            Err(StashError::Upstream(error)) if previous.is_none() && !matches!(error, UpstreamError::Busy(_)) => {
                match self.shared_document(spec).await {
                    Some(doc) => {
                        tracing::info!(key = spec.key, %error, "the upstream failed; serving the shared store's copy (stale)");
                        Ok(DocOutcome::FromShared(doc))
                    }
                    None => Err(error.into()),
                }
            }
            other => other,
        }
    }

    /// Overwrites the store's copy of a document with `doc`, in the background.
    fn share_document(&self, key: &str, doc: &HotDoc) {
        let kind = match doc.entry.kind {
            EntryKind::ServiceIndex => ObjectKind::ServiceIndex,
            _ => ObjectKind::Document,
        };
        let Some((shared, name)) = self.shared_object(kind, key) else {
            return;
        };
        shared.overwrite_later(name, record_of(key, kind, &doc.entry), doc.body.text().clone());
    }

    /// The store's copy of `spec`'s document, stored here as already
    /// expired; `None` when it has none (or none that passes its checks).
    async fn shared_document(&self, spec: &DocSpec) -> Option<Arc<HotDoc>> {
        let kind = match spec.transform {
            Transform::ServiceIndex { .. } => ObjectKind::ServiceIndex,
            Transform::Rewrite(_) => ObjectKind::Document,
        };
        let (shared, name) = self.shared_object(kind, &spec.key)?;
        let (record, body) = shared.read_whole(&name, &spec.key, self.max_document).await?;
        let entry_kind = match record.kind {
            ObjectKind::ServiceIndex => EntryKind::ServiceIndex,
            _ => EntryKind::Document,
        };
        let origin = Origin {
            url: record.url,
            content_type: record.content_type,
            etag: record.etag,
            last_modified: record.last_modified,
            above: Default::default(),
        };
        let (cache, key) = (self.cache.clone(), spec.key.clone());
        let stored = blocking(move || cache.store_expired_document(&key, entry_kind, origin, body)).await;
        stored
            .inspect_err(|error| tracing::warn!(key = spec.key, %error, "could not keep the shared store's copy"))
            .ok()
    }
}

fn record_of(key: &str, kind: ObjectKind, entry: &Entry) -> Record {
    Record {
        format: FORMAT,
        key: key.to_string(),
        kind,
        size: entry.size,
        sha512: entry.sha512.clone(),
        content_type: entry.content_type.clone(),
        url: entry.url.clone(),
        etag: entry.etag.clone(),
        last_modified: entry.last_modified.clone(),
    }
}

/// The committed file of `key` (still `entry`), read through its
/// checksum: a copy that rotted since its commit ends in an error, and is
/// never shared whole. `None` when it is no longer there.
async fn committed_content(cache: Arc<Cache>, key: String, entry: Entry) -> Option<Content> {
    let reader = blocking(move || cache.open_committed(&key, &entry))
        .await
        .ok()
        .flatten()?;
    let chunks = stream::unfold(Some(reader), |state| async move {
        let mut reader: BlobReader = state?;
        let read = tokio::task::spawn_blocking(move || (reader.next_chunk(UPLOAD_CHUNK), reader)).await;
        match read {
            Ok((Ok(Some(chunk)), reader)) => Some((Ok(chunk), Some(reader))),
            Ok((Ok(None), _)) => None,
            Ok((Err(error), _)) => Some((Err(std::io::Error::other(error)), None)),
            Err(error) => Some((Err(std::io::Error::other(error)), None)),
        }
    });
    Some(chunks.boxed())
}
