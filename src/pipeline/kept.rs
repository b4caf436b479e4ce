//! Phase 4 first: what the cache keeps ready to serve as it is — a package
//! file in memory from any allowed upstream, a fresh merged answer, a
//! fresh document of the only allowed upstream — goes out before any
//! per-upstream work (no service index read, no part built). A warm hit
//! costs the same with two upstreams as with one.

use std::sync::Arc;

use http::request::Parts;

use super::feeds::Feed;
use super::resolve::Resolved;
use super::{merged, Pipeline};
use crate::cache::{CacheStatus, Namespace};
use crate::error::ProxyError;
use crate::reply::Reply;
use crate::route::TargetKind;

impl Pipeline {
    /// The kept answer to `resolved` from `sources` (the upstreams it may
    /// come from, priority order), if there is one ready.
    pub(super) async fn kept(
        self: &Arc<Self>,
        request: &Parts,
        resolved: &Resolved,
        sources: &[Arc<Feed>],
    ) -> Result<Option<Reply>, ProxyError> {
        let target = &resolved.target;
        match target.kind {
            TargetKind::PackageFile(_) => {
                for feed in sources {
                    let key = feed.namespace.key(&target.key);
                    if let Some(hot) = self.cache.hot_blob(&key) {
                        return self.cached_package_file(&request.headers, &key, Some(hot)).await;
                    }
                }
                Ok(None)
            }
            TargetKind::Search | TargetKind::Publish => Ok(None),
            kind => {
                let key = match sources {
                    [only] => only.namespace.key(&target.key),
                    [_, _, ..] if merged::how_of(target).is_some() => Namespace::merged().key(&target.key),
                    _ => return Ok(None),
                };
                let Some(doc) = self.cache.hot_document(&key) else {
                    return Ok(None);
                };
                if !doc.is_fresh(self.ttl_of(kind)) || self.cache.is_missing(&key) {
                    return Ok(None);
                }
                doc.touch();
                self.respond(request, &doc, CacheStatus::Hit, kind, &[]).map(Some)
            }
        }
    }
}
