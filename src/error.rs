//! Errors, sorted by who failed ([`Party`]): the client (4xx), the
//! upstream (502/504), or nucache itself (500, or 503 past one of its
//! budgets). Each maps to one status and a one-line reason that is safe to
//! show (no secrets, no internal paths); the cause stays behind `source()`
//! for the log. A response body that breaks off after its head was sent
//! carries a [`BodyError`], so the access log names who failed then too.

use std::sync::Arc;
use std::time::Duration;

use http::StatusCode;

use crate::rewrite::RewriteError;
use crate::route::RouteError;

#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("client error: {0}")]
    Client(#[from] ClientError),
    #[error("upstream error: {0}")]
    Upstream(UpstreamError),
    #[error("nucache error: {0}")]
    Internal(#[from] InternalError),
    /// A budget (`crate::budget`) was spent and its queue did not move in
    /// time: 503 with `Retry-After`. nucache's capacity, not the client's fault.
    #[error("nucache is busy: {0}")]
    Busy(#[source] Busy),
    /// The upstream (or the negative cache) says the resource does not exist.
    #[error("not found upstream")]
    NotFound,
    /// The request has been through this node already (508): its tiers
    /// are configured in a loop.
    #[error(transparent)]
    Loop(#[from] LoopDetected),
}

/// A request whose `Via` names this node: refused before any other work.
/// Its words travel back down the chain unchanged (see
/// [`UpstreamError::Loop`]).
#[derive(Debug, Clone, thiserror::Error)]
#[error("this request has passed through this nucache ({node}) already: its upstream chain loops back to it")]
pub struct LoopDetected {
    /// The id of the node that refused it.
    pub node: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error(transparent)]
    Route(#[from] RouteError),
    #[error("missing or malformed Host header")]
    BadHost,
    #[error("method {method} is not allowed here (allowed: {allow})")]
    MethodNotAllowed { method: String, allow: &'static str },
    /// Read credentials missing or wrong (answered with a Basic challenge).
    #[error("{0}")]
    Unauthorized(&'static str),
    /// A publish call without an API key (no challenge: keys are not Basic).
    #[error("{0}")]
    KeyRequired(&'static str),
    #[error("{0}")]
    Forbidden(&'static str),
    #[error("the request body is larger than the limit of {0} bytes")]
    PayloadTooLarge(u64),
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum UpstreamError {
    #[error("cannot connect to {origin}: {reason}")]
    Connect { origin: String, reason: String },
    #[error("{origin} did not answer within {seconds:.1}s ({phase})")]
    Timeout {
        origin: String,
        phase: &'static str,
        seconds: f64,
    },
    #[error("{origin} answered {status}")]
    Status { origin: String, status: u16 },
    #[error("{origin}: more than {limit} redirects")]
    TooManyRedirects { origin: String, limit: u32 },
    #[error("{origin}: {reason}")]
    Body { origin: String, reason: String },
    #[error("{origin} sent an unusable document: {error}")]
    Document { origin: String, error: RewriteError },
    #[error("invalid upstream URL {0:?}")]
    BadUrl(String),
    #[error("no service index from the upstream yet: {0}")]
    NoServiceIndex(String),
    #[error("{reason}")]
    Down { reason: String },
    /// The upstream refused the request as a loop (508): `message` is its
    /// answer's first line, passed on to the client as it is.
    #[error("{origin} answered 508 Loop Detected: {message}")]
    Loop { origin: String, message: String },
    /// Not the upstream's failure: nucache's own budget for upstream work
    /// was spent (becomes [`ProxyError::Busy`]).
    #[error(transparent)]
    Busy(Busy),
}

/// nucache's own failures. Clone (a failed fetch is shared by every
/// request that joined it), so causes are kept behind `Arc`.
#[derive(Debug, Clone, thiserror::Error)]
pub enum InternalError {
    #[error("the cache failed")]
    Storage(#[source] Arc<StorageError>),
    #[error("{what} failed")]
    Task {
        what: &'static str,
        #[source]
        source: Arc<tokio::task::JoinError>,
    },
    #[error("merging the upstreams' answers failed")]
    Merge(#[source] crate::merge::MergeError),
    #[error("staging an imported bundle failed")]
    Staging(#[source] Arc<dyn std::error::Error + Send + Sync>),
    /// The shared store of a fleet (a `shared::SharedError`).
    #[error("the shared store failed")]
    Shared(#[source] Arc<dyn std::error::Error + Send + Sync>),
    /// Something that cannot happen did (a lock poisoned, a stored object
    /// gone between two steps): said in words.
    #[error("{0}")]
    Broken(&'static str),
}

impl From<StorageError> for InternalError {
    fn from(error: StorageError) -> Self {
        InternalError::Storage(Arc::new(error))
    }
}

impl InternalError {
    /// A background task that panicked or was cancelled.
    pub fn task(what: &'static str) -> impl FnOnce(tokio::task::JoinError) -> InternalError {
        move |source| InternalError::Task {
            what,
            source: Arc::new(source),
        }
    }
}

/// An error and its causes on one line: hyper's top-level messages alone
/// ("client error (Connect)") do not say what happened.
pub fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// Who failed: the access log's `failed`, and what a status says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Party {
    Client,
    Upstream,
    Nucache,
}

impl Party {
    pub fn as_str(self) -> &'static str {
        match self {
            Party::Client => "client",
            Party::Upstream => "upstream",
            Party::Nucache => "nucache",
        }
    }
}

/// Why a response body broke off after its head was sent, and who failed:
/// the upstream (its body broke off, or failed a check), the client (too
/// slow to keep up with a download others share), or nucache (its disk).
/// Travels inside the `io::Error` a body stream ends with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}")]
pub struct BodyError {
    pub party: Party,
    pub reason: String,
}

impl BodyError {
    pub fn new(party: Party, reason: impl Into<String>) -> BodyError {
        BodyError {
            party,
            reason: reason.into(),
        }
    }

    /// Who failed, for a body error: the [`BodyError`]'s party, else nucache.
    pub fn party_of(error: &std::io::Error) -> Party {
        error
            .get_ref()
            .and_then(|inner| inner.downcast_ref::<BodyError>())
            .map_or(Party::Nucache, |body| body.party)
    }
}

impl From<BodyError> for std::io::Error {
    fn from(error: BodyError) -> Self {
        std::io::Error::other(error)
    }
}

/// A refusal by a spent budget: which one, its configuration key, and
/// when to try again.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{what}: all {limit} in use, waited {:.1} s ({key}); retry later", .waited.as_secs_f64())]
pub struct Busy {
    /// What is limited (`upstream requests to default`, `bytes of documents in flight`).
    pub what: String,
    /// The configuration key of the limit.
    pub key: String,
    pub limit: u64,
    /// How long the request waited in the queue (0: it does not wait).
    pub waited: Duration,
    /// The `Retry-After` of the 503.
    pub retry_after: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("cache I/O failed while {context}: {source}")]
    Io {
        context: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("cache index failed: {0}")]
    Index(#[from] sled::Error),
    #[error("the cache is in use by another process (is nucache running on this cache directory?)")]
    Locked,
    #[error("cache index record for {key:?} is unreadable")]
    Record {
        key: String,
        #[source]
        source: serde_json::Error,
    },
    /// A stored object without a usable record of its own (written before
    /// objects carried one, cut short, or damaged).
    #[error("stored object {object} has no usable record")]
    ObjectRecord {
        object: String,
        #[source]
        problem: RecordProblem,
    },
    #[error("{0:?} is not the name of a stored object")]
    ObjectName(String),
}

/// What is wrong with the record stored with an object.
#[derive(Debug, thiserror::Error)]
pub enum RecordProblem {
    #[error("it ends without a record")]
    Missing,
    #[error("its record is {0} bytes long, more than a record can be")]
    TooLong(u64),
    #[error("its length disagrees with the size its record states")]
    Length,
    #[error("record format {0} is newer than this nucache knows")]
    Format(u32),
    #[error("its record is not valid JSON")]
    Json(#[source] serde_json::Error),
    #[error("reading its record failed")]
    Io(#[source] std::io::Error),
}

impl StorageError {
    pub fn io(context: &'static str) -> impl FnOnce(std::io::Error) -> StorageError {
        move |source| StorageError::Io { context, source }
    }
}

impl From<StorageError> for ProxyError {
    fn from(error: StorageError) -> Self {
        ProxyError::Internal(error.into())
    }
}

impl From<UpstreamError> for ProxyError {
    fn from(error: UpstreamError) -> Self {
        match error {
            UpstreamError::Busy(busy) => ProxyError::Busy(busy),
            other => ProxyError::Upstream(other),
        }
    }
}

impl UpstreamError {
    /// Worth another attempt for an idempotent request: the request may
    /// never have reached the upstream, or the upstream said so (5xx).
    pub fn is_retryable(&self) -> bool {
        match self {
            UpstreamError::Connect { .. } => true,
            UpstreamError::Status { status, .. } => *status >= 500,
            _ => false,
        }
    }
}

impl ProxyError {
    pub fn status(&self) -> StatusCode {
        match self {
            ProxyError::Client(ClientError::Route(RouteError::NotFound)) => StatusCode::NOT_FOUND,
            ProxyError::Client(ClientError::MethodNotAllowed { .. }) => StatusCode::METHOD_NOT_ALLOWED,
            ProxyError::Client(ClientError::Unauthorized(_) | ClientError::KeyRequired(_)) => StatusCode::UNAUTHORIZED,
            ProxyError::Client(ClientError::Forbidden(_)) => StatusCode::FORBIDDEN,
            ProxyError::Client(ClientError::PayloadTooLarge(_)) => StatusCode::PAYLOAD_TOO_LARGE,
            ProxyError::Client(_) => StatusCode::BAD_REQUEST,
            ProxyError::Upstream(UpstreamError::Timeout { .. }) => StatusCode::GATEWAY_TIMEOUT,
            ProxyError::Upstream(UpstreamError::Loop { .. }) | ProxyError::Loop(_) => StatusCode::LOOP_DETECTED,
            ProxyError::Upstream(_) => StatusCode::BAD_GATEWAY,
            ProxyError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            ProxyError::Busy(_) => StatusCode::SERVICE_UNAVAILABLE,
            ProxyError::NotFound => StatusCode::NOT_FOUND,
        }
    }

    /// Who failed, for logs and metrics.
    pub fn party(&self) -> Party {
        match self {
            // A loop is the configuration of the chain, seen first by the
            // node it reached again: its client sent it back.
            ProxyError::Client(_) | ProxyError::NotFound | ProxyError::Loop(_) => Party::Client,
            ProxyError::Upstream(_) => Party::Upstream,
            ProxyError::Internal(_) | ProxyError::Busy(_) => Party::Nucache,
        }
    }
}
