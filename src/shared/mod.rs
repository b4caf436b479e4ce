//! The store a fleet shares (`[shared]`): an S3 bucket, or any server that
//! speaks S3 (Ceph RGW, MinIO, SeaweedFS), through Apache Arrow's
//! `object_store`. It is a cache tier between a node's own disk and the
//! upstream, never a dependency: every call has a short deadline
//! (`shared.timeout`, retries included), a breaker skips the store while it
//! fails (`breaker.rs`), and whatever goes wrong is a miss the upstream
//! answers, or a write skipped and counted.
//!
//! This module owns the store's side: the clients (`connect.rs`), object
//! names and the self-describing object format (`format.rs`), streamed
//! reads whose first bytes are the record (`object.rs`), create-if-absent
//! and overwriting writes in the background, bounded (`write.rs`), deletes
//! for the admin purge, and the store's metrics. What to read and write,
//! and when, is the stash's (`stash::sharing`); it knows nothing of the
//! cache, the pipeline or the stash.

mod breaker;
mod connect;
mod format;
mod object;
#[cfg(test)]
mod tests;
mod write;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use object_store::path::Path;
// `ObjectStoreExt` gives `get`, `head`, `delete` to the `dyn ObjectStore`s.
use object_store::{ObjectStore, ObjectStoreExt as _};

pub(crate) use breaker::BreakerStatus;
#[cfg(test)]
use breaker::State;
pub(crate) use format::{ObjectKind, Record, FORMAT};
pub(crate) use object::SharedObject;
pub(crate) use write::Content;

use crate::config::SharedConfig;
use crate::metrics::{Metrics, SharedRead};
use breaker::Breaker;

/// Why a call to the shared store did not do what it was asked.
#[derive(Debug, Clone, thiserror::Error)]
pub(crate) enum SharedError {
    #[error("shared.url {0}")]
    Url(String),
    #[error("the shared store is considered down (its breaker is open)")]
    Down,
    #[error("the shared store did not answer within {seconds:.1}s ({what})")]
    Timeout { what: &'static str, seconds: f64 },
    #[error("the shared store failed while {what}")]
    Store {
        what: &'static str,
        #[source]
        source: Arc<object_store::Error>,
    },
    #[error("shared object {name} is corrupt: {reason}")]
    Corrupt { name: String, reason: String },
    /// Written by a newer nucache: left alone, read as a miss.
    #[error("shared object {name} is of format {format}, newer than this nucache reads")]
    Newer { name: String, format: u32 },
    #[error("reading the local copy to share failed")]
    Local(#[source] Arc<std::io::Error>),
}

impl SharedError {
    pub fn is_corrupt(&self) -> bool {
        matches!(self, SharedError::Corrupt { .. })
    }

    fn is_not_found(&self) -> bool {
        matches!(self, SharedError::Store { source, .. } if matches!(**source, object_store::Error::NotFound { .. }))
    }
}

pub(crate) struct SharedStore {
    /// Reads do not retry; writes retry a little (see `connect.rs`).
    reads: Arc<dyn ObjectStore>,
    writes: Arc<dyn ObjectStore>,
    /// The URL's path: every object name starts with it.
    prefix: String,
    /// `s3://bucket/prefix`, for operators (it holds no credentials).
    url: String,
    timeout: Duration,
    breaker: Breaker,
    metrics: Arc<Metrics>,
    queue: write::Queue,
}

impl SharedStore {
    /// The store `config` names; `None` when it names none.
    pub fn connect(config: &SharedConfig, metrics: Arc<Metrics>) -> Result<Option<Arc<SharedStore>>, SharedError> {
        if !config.enabled() {
            return Ok(None);
        }
        let clients = connect::connect(config)?;
        tracing::info!(url = config.url, endpoint = config.endpoint, "shared store configured");
        Ok(Some(Arc::new(SharedStore::with_clients(clients, config, metrics))))
    }

    fn with_clients(clients: connect::Clients, config: &SharedConfig, metrics: Arc<Metrics>) -> SharedStore {
        SharedStore {
            reads: clients.reads,
            writes: clients.writes,
            prefix: clients.prefix,
            url: config.url.clone(),
            timeout: config.timeout,
            breaker: Breaker::new(config.failure_threshold, config.breaker_cooldown),
            metrics,
            queue: write::Queue::default(),
        }
    }

    /// The object of `local` (a path below `/v3/`) of `namespace` (a cache
    /// key's 12 hex digits); `None`: not a name the store can hold.
    pub fn name(&self, kind: ObjectKind, namespace: &str, local: &str) -> Option<Path> {
        format::object_name(&self.prefix, kind, namespace, local)
    }

    /// The folder of the objects whose local paths start with `local_prefix`.
    pub fn folder(&self, kind: ObjectKind, namespace: &str, local_prefix: &str) -> Option<Path> {
        format::folder_name(&self.prefix, kind, namespace, local_prefix)
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn status(&self) -> BreakerStatus {
        self.breaker.status()
    }

    /// The breaker is open: the store is skipped (`/ready` says degraded).
    pub fn is_down(&self) -> bool {
        self.breaker.is_open()
    }

    /// Runs one call within `limit`, when the breaker lets it; the store's
    /// answers (a 404 or a refused condition too) close the breaker, and
    /// its failures count towards opening it.
    async fn call<T>(
        &self,
        what: &'static str,
        limit: Duration,
        call: impl Future<Output = object_store::Result<T>>,
    ) -> Result<T, SharedError> {
        if !self.breaker.allows() {
            return Err(SharedError::Down);
        }
        let error = match tokio::time::timeout(limit, call).await {
            Ok(Ok(found)) => {
                self.breaker.succeeded();
                return Ok(found);
            }
            Ok(Err(source)) if answered(&source) => {
                self.breaker.succeeded();
                return Err(SharedError::Store {
                    what,
                    source: Arc::new(source),
                });
            }
            Ok(Err(source)) => SharedError::Store {
                what,
                source: Arc::new(source),
            },
            Err(_) => SharedError::Timeout {
                what,
                seconds: limit.as_secs_f64(),
            },
        };
        self.failed(&error);
        Err(error)
    }

    /// A call (or a body mid-way) failed: the breaker hears it.
    fn failed(&self, error: &SharedError) {
        self.breaker.failed(&crate::error::chain(error));
    }

    /// Deletes an object that failed its checks (counted as corrupt), so
    /// that the next request fetches from the upstream.
    pub async fn discard_corrupt(&self, name: &Path, reason: &str) {
        self.metrics.shared_read(SharedRead::Corrupt);
        tracing::error!(object = %name, reason, "shared object corrupt; deleting it, the upstream gives it again");
        let deleted = self.call("deleting a corrupt object", self.timeout, self.writes.delete(name));
        if let Err(error) = deleted.await {
            tracing::warn!(object = %name, error = %crate::error::chain(&error), "could not delete a corrupt shared object");
        }
    }
}

/// The store answered (the call reached it and it said no): not a failure
/// of the store.
fn answered(error: &object_store::Error) -> bool {
    use object_store::Error;
    matches!(
        error,
        Error::NotFound { .. } | Error::AlreadyExists { .. } | Error::Precondition { .. } | Error::NotModified { .. }
    )
}
