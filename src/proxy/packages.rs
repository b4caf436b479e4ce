//! Package files through the cache: immutable, so a cached copy is always
//! served; a miss streams the upstream download to every client asking.

use std::sync::Arc;

use http::header::HeaderMap;

use super::respond::{self, Reply};
use super::Proxy;
use crate::cache::CacheStatus;
use crate::error::{ProxyError, UpstreamError};
use crate::stash::{fetch_blob, BlobOutcome, Progress};
use crate::upstream::origin_of;

impl Proxy {
    pub(super) async fn package_file(
        self: &Arc<Self>,
        request: &HeaderMap,
        key: &str,
        url: String,
    ) -> Result<Reply, ProxyError> {
        if self.not_found.contains_key(key) {
            return Err(ProxyError::NotFound);
        }
        if let Some(reply) = self.cached_package_file(request, key)? {
            return Ok(reply);
        }
        let (stash, owned_key) = (self.stash.clone(), key.to_string());
        let flight = self
            .blobs
            .join(key, move |ticket| fetch_blob(stash, owned_key, url, ticket));
        match flight.await? {
            BlobOutcome::Streaming(download) => {
                if let Progress::Failed(reason) = &*download.progress.borrow() {
                    let origin = origin_of(&download.origin.url).to_string();
                    let reason = reason.clone();
                    return Err(UpstreamError::Body { origin, reason }.into());
                }
                Ok(respond::streaming_blob(key, &download))
            }
            BlobOutcome::Stored => self.cached_package_file(request, key)?.ok_or_else(|| {
                ProxyError::Internal("a stored package vanished from the cache".into())
            }),
            BlobOutcome::NotFound => {
                self.forget(key);
                Err(ProxyError::NotFound)
            }
        }
    }

    fn cached_package_file(
        &self,
        request: &HeaderMap,
        key: &str,
    ) -> Result<Option<Reply>, ProxyError> {
        let Some((entry, file)) = self.stash.cache.blob(key)? else {
            return Ok(None);
        };
        self.stash.cache.note_access(key);
        Ok(Some(respond::cached_blob(
            request,
            key,
            &entry,
            file,
            CacheStatus::Hit,
        )))
    }
}
