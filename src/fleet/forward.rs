//! Asking the owner of a key for a package file: the same local path on
//! the owner's URL, with the fleet key and this node's name (the hop: the
//! owner never forwards it again), bounded by `fleet.forward_timeout` up
//! to the first bytes of the body. Only a 200 is used; anything else
//! (down, slow, refusing, 404, 5xx) leaves the download to this node.

use std::time::Instant;

use bytes::Bytes;
use http::header::HeaderMap;
use http::{HeaderValue, StatusCode};

use super::peers::{Change, Peer};
use super::{Fleet, HOP_HEADER, KEY_HEADER, NAMESPACE_HEADER};
use crate::error::UpstreamError;
use crate::metrics::Forward;
use crate::upstream::{Fetched, Wanted};

/// The owner's 200, its first bytes read.
pub(crate) struct Forwarded {
    pub fetched: Fetched,
    pub first: Bytes,
    /// The owner's URL, for logs.
    pub owner: String,
    /// The owner had it cached (its `X-Cache` said so).
    pub cached: bool,
}

/// Why the owner's answer is not used.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ForwardError {
    #[error("owner {owner} failed: {source}")]
    Failed {
        owner: String,
        #[source]
        source: UpstreamError,
    },
    #[error("owner {owner} answered {status}")]
    Status { owner: String, status: u16 },
    #[error("owner {owner} sent no first byte within {seconds} s (fleet.forward_timeout)")]
    Slow { owner: String, seconds: f64 },
}

impl Fleet {
    /// GETs `/v3/{local}` (a package file of the upstream whose cache-key
    /// namespace is `namespace`) from `owner`; the outcome is counted
    /// (`nucache_fleet_forwards_total`) when it is not used, else by
    /// [`Fleet::forward_ended`] once its body has.
    pub async fn forward(&self, owner: &Peer, local: &str, namespace: &str) -> Result<Forwarded, ForwardError> {
        let started = Instant::now();
        let url = format!("{}/v3/{local}", owner.url);
        let bound = self.settings.forward_timeout;
        let answer = match tokio::time::timeout(bound, self.first_bytes(owner, &url, namespace)).await {
            Ok(answer) => answer,
            Err(_) => Err(ForwardError::Slow {
                owner: owner.url.clone(),
                seconds: bound.as_secs_f64(),
            }),
        };
        match &answer {
            Ok(forwarded) => {
                tracing::debug!(
                    owner = owner.url,
                    local,
                    cached = forwarded.cached,
                    took_ms = started.elapsed().as_millis() as u64,
                    "package asked of its owner"
                );
            }
            Err(error) => {
                self.metrics.fleet.forward(Forward::Fallback);
                if let ForwardError::Failed {
                    source: UpstreamError::Connect { .. },
                    ..
                } = error
                {
                    // No connection at all: as good as a failed health check.
                    self.note_failure(owner, &error.to_string());
                }
            }
        }
        answer
    }

    /// The outcome of a forward whose body was used: `whole` when it came
    /// to its end, else the owner broke it off.
    pub fn forward_ended(&self, cached: bool, whole: bool, bytes: u64) {
        let outcome = match (whole, cached) {
            (false, _) => Forward::Error,
            (true, true) => Forward::Hit,
            (true, false) => Forward::Miss,
        };
        self.metrics.fleet.forward(outcome);
        self.metrics.fleet.forwarded_bytes.inc_by(bytes);
    }

    async fn first_bytes(&self, owner: &Peer, url: &str, namespace: &str) -> Result<Forwarded, ForwardError> {
        let failed = |source| ForwardError::Failed {
            owner: owner.url.clone(),
            source,
        };
        let mut fetched = self
            .client
            .get(url, Wanted::Blob, &self.peer_headers(namespace))
            .await
            .map_err(failed)?;
        if fetched.status != StatusCode::OK {
            return Err(ForwardError::Status {
                owner: owner.url.clone(),
                status: fetched.status.as_u16(),
            });
        }
        let first = self
            .client
            .next_chunk_before(&mut fetched.body, &owner.url, None)
            .await
            .map_err(failed)?
            .unwrap_or_default();
        let cached = fetched
            .headers
            .get("x-cache")
            .is_some_and(|value| value.as_bytes() != b"MISS");
        Ok(Forwarded {
            fetched,
            first,
            owner: owner.url.clone(),
            cached,
        })
    }

    /// The fleet key, this node as the hop, and the upstream's namespace
    /// (the owner serves that upstream's copy, not another's).
    fn peer_headers(&self, namespace: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(KEY_HEADER, self.key.clone());
        headers.insert(HOP_HEADER, self.hop.clone());
        if let Ok(value) = HeaderValue::from_str(namespace) {
            headers.insert(NAMESPACE_HEADER, value);
        }
        headers
    }

    pub(super) fn note_failure(&self, peer: &Peer, reason: &str) {
        if peer.failed(reason, self.settings.down_after) == Change::Down {
            tracing::warn!(
                peer = peer.url,
                reason,
                "fleet peer down: its keys go to the next owner"
            );
        }
    }
}
