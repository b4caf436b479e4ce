//! Where a package download's bytes come from: an upstream response
//! ([`Fetched`]: the upstream, or whoever answers for it), or an object
//! of the shared store ([`SharedObject`]). The download (`blob.rs`) reads
//! either the same way, chunk by chunk within its timeouts, and checks
//! the whole body against what its source stated before the last byte
//! goes out: the upstream's `Content-Length`, `Content-MD5` and the
//! metadata's package hash, or the shared object's record (size and
//! SHA-512). A shared object that fails those checks is corrupt, and
//! deleted; an upstream body that fails them is refused.

use std::future::Future;
use std::time::Instant;

use bytes::Bytes;
use http::header::HeaderMap;

use super::{origin_of, Stash, StashError};
use crate::cache::Origin;
use crate::error::{InternalError, UpstreamError};
use crate::shared::{SharedError, SharedObject};
use crate::upstream::{self, content_length, Fetched};

const OCTETS: &str = "application/octet-stream";

pub(super) enum Source {
    Upstream(Fetched),
    Shared(Box<SharedObject>),
}

impl Source {
    /// What the cache keeps about where the bytes came from.
    pub fn meta(&self) -> Origin {
        match self {
            Source::Upstream(fetched) => origin_of(&fetched.url, &fetched.headers, OCTETS),
            Source::Shared(object) => Origin {
                url: object.record.url.clone(),
                content_type: object.record.content_type.clone(),
                etag: object.record.etag.clone(),
                last_modified: object.record.last_modified.clone(),
                above: Default::default(),
            },
        }
    }

    /// Who answers for the bytes, in errors: the upstream's origin.
    pub fn origin(&self) -> String {
        match self {
            Source::Upstream(fetched) => upstream::origin_of(&fetched.url).to_string(),
            Source::Shared(object) => upstream::origin_of(&object.record.url).to_string(),
        }
    }

    /// How long the body says it is.
    pub fn length(&self) -> Option<u64> {
        match self {
            Source::Upstream(fetched) => content_length(&fetched.headers),
            Source::Shared(object) => Some(object.record.size),
        }
    }

    pub fn headers(&self) -> Option<&HeaderMap> {
        match self {
            Source::Upstream(fetched) => Some(&fetched.headers),
            Source::Shared(_) => None,
        }
    }

    pub fn is_shared(&self) -> bool {
        matches!(self, Source::Shared(_))
    }

    /// The SHA-512 (hex) the source itself states for the body.
    pub fn stated_sha512(&self) -> Option<&str> {
        match self {
            Source::Upstream(_) => None,
            Source::Shared(object) => Some(&object.record.sha512),
        }
    }

    /// The next chunk, `None` at the end: within the upstream's read
    /// timeout and `deadline`, or the store's timeout between chunks.
    pub async fn next_chunk(&mut self, stash: &Stash, deadline: Instant) -> Result<Option<Bytes>, StashError> {
        match self {
            Source::Upstream(fetched) => {
                let origin = upstream::origin_of(&fetched.url).to_string();
                let chunk = stash
                    .upstream
                    .next_chunk_before(&mut fetched.body, &origin, Some(deadline))
                    .await;
                Ok(chunk?)
            }
            Source::Shared(object) => object.next_chunk().await.map_err(shared),
        }
    }

    /// A chunk ready now; `None` when it would have to wait.
    pub fn chunk_now(&mut self) -> Option<Result<Option<Bytes>, StashError>> {
        match self {
            Source::Upstream(fetched) => {
                let origin = upstream::origin_of(&fetched.url).to_string();
                Some(upstream::chunk_now(&mut fetched.body, &origin)?.map_err(StashError::from))
            }
            Source::Shared(object) => Some(object.chunk_now()?.map_err(shared)),
        }
    }

    /// The body is not what its source stated: a refused upstream body,
    /// or a corrupt shared object.
    pub fn refuse(&self, reason: String) -> StashError {
        match self {
            Source::Upstream(_) => UpstreamError::Body {
                origin: self.origin(),
                reason,
            }
            .into(),
            Source::Shared(object) => shared(SharedError::Corrupt {
                name: object.name.to_string(),
                reason,
            }),
        }
    }

    /// A body longer than stated so far is refused at once.
    pub fn check_not_longer(&self, received: u64) -> Result<(), StashError> {
        match self.length() {
            Some(length) if received > length => match self {
                Source::Upstream(_) => Ok(upstream::check_not_longer(Some(length), received, &self.origin())?),
                Source::Shared(_) => self.check_length(received),
            },
            _ => Ok(()),
        }
    }

    /// A whole body is exactly as long as stated.
    pub fn check_length(&self, got: u64) -> Result<(), StashError> {
        match (self, self.length()) {
            (Source::Upstream(_), length) => Ok(upstream::check_length(length, got, &self.origin())?),
            (Source::Shared(_), Some(length)) if got != length => {
                Err(self.refuse(format!("its content has {got} bytes, its record says {length}")))
            }
            _ => Ok(()),
        }
    }

    /// The download ended: a shared object that passed every check is a
    /// hit; one that failed them is deleted from the store.
    pub fn settle(&self, failure: Option<&StashError>) -> impl Future<Output = ()> + Send + 'static {
        let corrupt = match (self, failure) {
            (Source::Shared(object), None) => {
                object.verified();
                None
            }
            (Source::Shared(object), Some(StashError::Internal(InternalError::Shared(error)))) => error
                .downcast_ref::<SharedError>()
                .filter(|error| error.is_corrupt())
                .map(|error| object.corrupt::<()>(&error.to_string())),
            _ => None,
        };
        async move {
            if let Some(corrupt) = corrupt {
                corrupt.await;
            }
        }
    }
}

fn shared(error: SharedError) -> StashError {
    InternalError::Shared(std::sync::Arc::new(error)).into()
}
