//! Package files through the cache (phases 4, 5 and 7 for `.nupkg` and
//! `.nuspec`): immutable, so a copy any allowed upstream gave before is
//! served as it is (checked against its checksum as it goes); a miss is
//! fetched from the highest-priority upstream whose version list has the
//! version (with one upstream, from it: no list is needed), streamed by one
//! download to every client asking, through the disk or, while the disk
//! fails, through memory.

use std::sync::Arc;

use http::header::HeaderMap;
use http::request::Parts;

use super::resolve::{Part, Plan};
use super::Pipeline;
use crate::body::{blocking_stream, empty, full, Body};
use crate::cache::{BlobReader, CacheStatus, Entry, HotBlob, OpenBlob, ReadError};
use crate::error::{BodyError, InternalError, Party, ProxyError, UpstreamError};
use crate::fleet::FromPeer;
use crate::merge::versions;
use crate::nuget::PackageFile;
use crate::reply::{self, Reply};
use crate::route::TargetKind;
use crate::stash::{blocking, BlobOutcome, BlobRequest};
use crate::upstream::origin_of;

/// Size of one read from a cached blob.
const READ_CHUNK: usize = 256 * 1024;
/// Attempts to join (or start) the download of a package.
const JOIN_TRIES: usize = 20;

impl Pipeline {
    /// A package file: the cached copy of any allowed upstream, else the
    /// owner's, fetched.
    pub(super) async fn serve_package(self: &Arc<Self>, plan: &Plan, request: &Parts) -> Result<Reply, ProxyError> {
        let keys: Vec<String> = plan.parts.iter().map(Part::key).collect();
        // Memory first for every upstream, then disk: a copy the second
        // upstream gave costs no disk lookup in the first one's namespace.
        let hot = keys.iter().find_map(|key| Some((key, self.cache.hot_blob(key)?)));
        if let Some((key, hot)) = hot {
            if let Some(reply) = self.cached_package_file(&request.headers, key, Some(hot)).await? {
                return Ok(reply);
            }
        }
        for key in &keys {
            if let Some(reply) = self.cached_package_file(&request.headers, key, None).await? {
                return Ok(reply);
            }
        }
        let mut failure = None;
        for (n, part) in self.owners(plan).await {
            match self.fetch_package(part, &keys[n], request, plan).await {
                Ok(reply) => return Ok(reply),
                Err(ProxyError::NotFound) => {}
                Err(error) => {
                    failure.get_or_insert(error);
                }
            }
        }
        Err(failure.unwrap_or(ProxyError::NotFound))
    }

    /// The parts that may have the version, in priority order: every part
    /// whose version list has it (a failing list is passed over), or the
    /// only part.
    async fn owners<'p>(self: &Arc<Self>, plan: &'p Plan) -> Vec<(usize, &'p Part)> {
        let numbered = plan.parts.iter().enumerate();
        if plan.parts.len() < 2 {
            return numbered.collect();
        }
        let Some((id, version)) = plan.target().package.as_deref().and_then(|p| p.split_once('/')) else {
            return Vec::new();
        };
        let mut owners = Vec::new();
        for (n, part) in numbered {
            let list = part.sibling(&format!("{id}/index.json"));
            let listed = match self.part_document(&list, TargetKind::VersionList).await {
                Ok((doc, _)) => versions::flat_versions(doc.body.text())
                    .is_ok_and(|list| versions::owner_of(&[(part.feed.name.as_str(), list)], version).is_some()),
                Err(error) => {
                    tracing::debug!(upstream = part.feed.name, %error, "no version list; not asking it for the package");
                    false
                }
            };
            if listed {
                owners.push((n, part));
            }
        }
        owners
    }

    /// Fetches the package file of `part` (its key `key`), or joins the
    /// download in flight.
    async fn fetch_package(
        self: &Arc<Self>,
        part: &Part,
        key: &str,
        request: &Parts,
        plan: &Plan,
    ) -> Result<Reply, ProxyError> {
        if self.cache.is_missing(key) {
            return Err(ProxyError::NotFound);
        }
        let blob = BlobRequest {
            key: key.to_string(),
            url: part.url(),
            expected_sha512: self.expected_sha512(part, plan),
            from_peer: request.extensions.get::<FromPeer>().is_some(),
        };
        let feed = &part.feed;
        // A download whose start has left memory (the disk failed) takes no
        // new readers; its flight ends then, and the next try starts anew.
        for _ in 0..JOIN_TRIES {
            match feed.stash.blob(blob.clone()).await? {
                BlobOutcome::Streaming(download) => {
                    if let Some(failure) = download.failure() {
                        return Err(failed_download(&download.origin.url, failure));
                    }
                    if let Some(reader) = download.reader() {
                        return Ok(reply::streaming_blob(key, &download, reader));
                    }
                    tokio::task::yield_now().await;
                }
                BlobOutcome::Stored => {
                    return self
                        .cached_package_file(&request.headers, key, None)
                        .await?
                        .ok_or(InternalError::Broken("a stored package vanished from the cache").into())
                }
                BlobOutcome::NotFound => {
                    self.cache.mark_missing(key);
                    return Err(ProxyError::NotFound);
                }
            }
        }
        Err(InternalError::Broken("could not join the download of this package; try again").into())
    }

    /// The cached copy, when there is one that can be read: a hot small
    /// package straight from memory, else from its file. A read error (not
    /// a missing file) makes it a miss served from the upstream, and tells
    /// the storage health that the disk is failing.
    pub(super) async fn cached_package_file(
        &self,
        request: &HeaderMap,
        key: &str,
        hot: Option<Arc<HotBlob>>,
    ) -> Result<Option<Reply>, ProxyError> {
        let found = match hot.or_else(|| self.cache.hot_blob(key)) {
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
        Ok(Some(reply::cached_blob(request, &hot, body, CacheStatus::Hit)))
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

    /// The SHA-512 earlier metadata of `part`'s upstream stated for this
    /// `.nupkg`, if any.
    fn expected_sha512(&self, part: &Part, plan: &Plan) -> Option<String> {
        let package = plan.target().package.as_deref()?;
        if plan.target().kind != TargetKind::PackageFile(PackageFile::Nupkg) {
            return None;
        }
        self.cache
            .package_hash(&part.feed.namespace.key(package))
            .ok()
            .flatten()
    }
}

/// A download that failed before this client joined it, as the error of
/// whoever failed it.
fn failed_download(url: &str, failure: BodyError) -> ProxyError {
    match failure.party {
        Party::Upstream => UpstreamError::Body {
            origin: origin_of(url).to_string(),
            reason: failure.reason,
        }
        .into(),
        _ => InternalError::Broken("the download this request joined failed").into(),
    }
}
