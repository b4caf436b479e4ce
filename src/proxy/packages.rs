//! Package files through the cache: immutable, so a cached copy is always
//! served; a miss streams the upstream download to every client asking;
//! while the disk fails, each client gets the upstream's bytes uncached.

use std::sync::Arc;

use http::header::HeaderMap;

use super::respond::{self, Reply};
use super::Proxy;
use crate::cache::CacheStatus;
use crate::error::{ProxyError, UpstreamError};
use crate::nuget::PackageFile;
use crate::route::{Target, TargetKind};
use crate::stash::{fetch_blob, BlobOutcome, BlobRequest, Progress};
use crate::upstream::origin_of;

impl Proxy {
    pub(super) async fn package_file(
        self: &Arc<Self>,
        request: &HeaderMap,
        target: &Target,
        url: String,
    ) -> Result<Reply, ProxyError> {
        let key = target.key.as_str();
        if self.not_found.contains_key(key) {
            return Err(ProxyError::NotFound);
        }
        if let Some(reply) = self.cached_package_file(request, key)? {
            return Ok(reply);
        }
        if self.stash.cache.health.bypass() {
            return self.pass_through(key, &url).await;
        }
        let blob = BlobRequest {
            key: key.to_string(),
            url: url.clone(),
            expected_sha512: self.expected_sha512(target),
        };
        let stash = self.stash.clone();
        let flight = self.blobs.join(key, move |ticket| fetch_blob(stash, blob, ticket));
        match flight.await? {
            BlobOutcome::Streaming(download) => {
                if let Progress::Failed(reason) = &*download.progress.borrow() {
                    let origin = origin_of(&download.origin.url).to_string();
                    let reason = reason.clone();
                    return Err(UpstreamError::Body { origin, reason }.into());
                }
                Ok(respond::streaming_blob(key, &download))
            }
            BlobOutcome::Stored => self
                .cached_package_file(request, key)?
                .ok_or_else(|| ProxyError::Internal("a stored package vanished from the cache".into())),
            BlobOutcome::NotFound => {
                self.forget(key);
                Err(ProxyError::NotFound)
            }
            BlobOutcome::Bypass => self.pass_through(key, &url).await,
        }
    }

    fn cached_package_file(&self, request: &HeaderMap, key: &str) -> Result<Option<Reply>, ProxyError> {
        let Some((entry, file)) = self.stash.cache.blob(key)? else {
            return Ok(None);
        };
        self.stash.cache.note_access(key);
        Ok(Some(respond::cached_blob(request, key, &entry, file, CacheStatus::Hit)))
    }

    /// The SHA-512 earlier metadata stated for this `.nupkg`, if any.
    fn expected_sha512(&self, target: &Target) -> Option<String> {
        let package = target.package.as_deref()?;
        if target.kind != TargetKind::PackageFile(PackageFile::Nupkg) {
            return None;
        }
        self.stash.cache.package_hash(package).ok().flatten()
    }

    /// The upstream's bytes straight to the client, nothing stored.
    async fn pass_through(&self, key: &str, url: &str) -> Result<Reply, ProxyError> {
        match self.stash.upstream.get_package(url).await? {
            Some(fetched) => Ok(respond::passed_through(
                key,
                self.stash.upstream.clone().stream(fetched),
            )),
            None => Err(ProxyError::NotFound),
        }
    }
}
