//! Documents through the cache: fresh copies are served as they are,
//! expired ones are revalidated upstream, and when the upstream fails a
//! cached copy is served stale rather than an error.

use std::sync::Arc;

use super::Proxy;
use crate::cache::{CacheStatus, HotDoc};
use crate::error::ProxyError;
use crate::stash::{fetch_document, DocOutcome, DocSpec};

impl Proxy {
    pub(super) async fn document(self: &Arc<Self>, spec: DocSpec) -> Result<(Arc<HotDoc>, CacheStatus), ProxyError> {
        if self.not_found.contains_key(&spec.key) {
            return Err(ProxyError::NotFound);
        }
        let cached = self.stash.cache.document(&spec.key)?;
        if let Some(doc) = cached.as_ref().filter(|doc| doc.is_fresh(spec.ttl)) {
            self.stash.cache.note_access(&spec.key);
            return Ok((doc.clone(), CacheStatus::Hit));
        }
        let key = spec.key.clone();
        let (stash, previous) = (self.stash.clone(), cached.clone());
        let flight = self.documents.join(&key, move |ticket| async move {
            let outcome = fetch_document(stash, spec, previous).await;
            drop(ticket);
            outcome
        });
        match (flight.await, cached) {
            (Ok(DocOutcome::Fetched(doc)), _) => Ok((doc, CacheStatus::Miss)),
            (Ok(DocOutcome::Confirmed(doc)), _) => Ok((doc, CacheStatus::Revalidated)),
            (Ok(DocOutcome::NotFound), _) => {
                self.forget(&key);
                Err(ProxyError::NotFound)
            }
            (Err(error), Some(doc)) => {
                tracing::debug!(key, %error, "upstream failed; serving the cached copy");
                Ok((doc, CacheStatus::Stale))
            }
            (Err(error), None) => Err(error.into()),
        }
    }
}
