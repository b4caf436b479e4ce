//! Package files through the cache: immutable, so a cached copy is always
//! served (checked against its checksum as it goes); a miss streams one
//! upstream download to every client asking, through the disk or, while
//! the disk fails, through memory.

use std::sync::Arc;

use http::header::HeaderMap;

use super::feeds::Feed;
use super::respond::{self, Reply};
use super::Proxy;
use crate::body::{blocking_stream, empty, full, Body};
use crate::cache::{BlobReader, CacheStatus, Entry, OpenBlob, ReadError};
use crate::error::{ProxyError, UpstreamError};
use crate::nuget::PackageFile;
use crate::route::{Target, TargetKind};
use crate::stash::{blocking, BlobOutcome, BlobRequest};
use crate::upstream::origin_of;

/// Size of one read from a cached blob.
const READ_CHUNK: usize = 256 * 1024;
/// Attempts to join (or start) the download of a package.
const JOIN_TRIES: usize = 20;

impl Proxy {
    /// A package file from `feed` (`target` resolved against its mounts,
    /// its key in the feed's namespace).
    pub(super) async fn package_file(
        self: &Arc<Self>,
        feed: &Feed,
        request: &HeaderMap,
        target: &Target,
        url: String,
    ) -> Result<Reply, ProxyError> {
        let key = target.key.as_str();
        if self.cache.is_missing(key) {
            return Err(ProxyError::NotFound);
        }
        if let Some(reply) = self.cached_package_file(request, key).await? {
            return Ok(reply);
        }
        let blob = BlobRequest {
            key: key.to_string(),
            url,
            expected_sha512: self.expected_sha512(feed, target),
        };
        // A download whose start has left memory (the disk failed) takes no
        // new readers; its flight ends then, and the next try starts anew.
        for _ in 0..JOIN_TRIES {
            match feed.stash.blob(blob.clone()).await? {
                BlobOutcome::Streaming(download) => {
                    if let Some(reason) = download.failure() {
                        let origin = origin_of(&download.origin.url).to_string();
                        return Err(UpstreamError::Body { origin, reason }.into());
                    }
                    if let Some(reader) = download.reader() {
                        return Ok(respond::streaming_blob(key, &download, reader));
                    }
                    tokio::task::yield_now().await;
                }
                BlobOutcome::Stored => {
                    return self
                        .cached_package_file(request, key)
                        .await?
                        .ok_or_else(|| ProxyError::Internal("a stored package vanished from the cache".into()))
                }
                BlobOutcome::NotFound => {
                    self.cache.mark_missing(key);
                    return Err(ProxyError::NotFound);
                }
            }
        }
        Err(ProxyError::Internal(
            "could not join the download of this package; try again".into(),
        ))
    }

    /// The cached copy, when there is one that can be read: a hot small
    /// package straight from memory, else from its file. A read error (not
    /// a missing file) makes it a miss served from the upstream, and tells
    /// the storage health that the disk is failing.
    pub(super) async fn cached_package_file(
        &self,
        request: &HeaderMap,
        key: &str,
    ) -> Result<Option<Reply>, ProxyError> {
        let found = match self.cache.hot_blob(key) {
            Some(hot) if hot.body.is_some() => Ok(Some((hot, None))),
            Some(hot) => {
                let (cache, owned) = (self.cache.clone(), key.to_string());
                blocking(move || Ok(cache.open_blob(&owned, &hot)?.map(|file| (hot, Some(file))))).await
            }
            None => {
                let (cache, owned) = (self.cache.clone(), key.to_string());
                blocking(move || cache.load_blob(&owned)).await
            }
        };
        let (hot, file) = match found {
            Ok(Some(found)) => found,
            Ok(None) => return Ok(None),
            Err(error) => {
                tracing::warn!(key, %error, "cannot read a cached package; fetching it from the upstream");
                self.cache.health.failed(&error.to_string());
                return Ok(None);
            }
        };
        hot.touch();
        let body = || match (&hot.body, file) {
            (Some(bytes), _) => full(bytes.clone()),
            (None, Some(file)) => self.verified_body(key, &hot.entry, file),
            (None, None) => empty(),
        };
        Ok(Some(respond::cached_blob(request, &hot, body, CacheStatus::Hit)))
    }

    /// Streams a committed blob, checked against its checksum as it goes:
    /// a corrupt file breaks the response off before its last chunk and is
    /// dropped, so the next request fetches good bytes.
    fn verified_body(&self, key: &str, entry: &Entry, file: OpenBlob) -> Body {
        let reader = self.cache.reader(entry, file);
        let (cache, key, entry) = (self.cache.clone(), key.to_string(), entry.clone());
        blocking_stream(reader, READ_CHUNK, move |reader: &mut BlobReader, max| {
            match reader.next_chunk(max) {
                Ok(chunk) => Ok(chunk),
                Err(error) => {
                    if matches!(error, ReadError::Corrupt) {
                        if let Err(drop_error) = cache.drop_corrupt(&key, &entry) {
                            tracing::warn!(key, %drop_error, "could not drop a corrupt cache entry");
                        }
                    } else {
                        cache.health.failed(&error.to_string());
                    }
                    Err(std::io::Error::other(error))
                }
            }
        })
    }

    /// The SHA-512 earlier metadata stated for this `.nupkg`, if any.
    fn expected_sha512(&self, feed: &Feed, target: &Target) -> Option<String> {
        let package = target.package.as_deref()?;
        if target.kind != TargetKind::PackageFile(PackageFile::Nupkg) {
            return None;
        }
        self.cache.package_hash(&feed.key(package)).ok().flatten()
    }
}
