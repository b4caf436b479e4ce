//! In a fleet, a package miss is asked of the key's owner before the
//! upstream ([`ask`]); the owner's 200 feeds the download exactly as an
//! upstream's answer does (stored here, checked against its SHA-512, one
//! flight for every waiting client). A request a peer sent is never asked
//! of another (one hop at most).
//!
//! Should the owner break off mid-body (killed, restarted), the download
//! goes on from the upstream at the byte where the owner stopped
//! ([`resume`]): a `Range` request, or, from an upstream that ignores
//! ranges, the whole body with the bytes already received skipped. The
//! clients reading the download never see the switch, and the checks
//! (length, SHA-512) cover the whole body, wherever its parts came from.
//! A shared-store object that breaks off mid-body goes on the same way
//! (`blob.rs`, `Pump::resume`).

use std::time::Instant;

use bytes::Bytes;
use http::header::{HeaderMap, HeaderValue, CONTENT_RANGE, RANGE};
use http::StatusCode;

use super::{BlobRequest, Stash, StashError};
use crate::error::UpstreamError;
use crate::fleet::Forwarded;
use crate::route;
use crate::upstream::{origin_of, Fetched, Wanted};

/// The owner's answer to `request`, when another node owns its key, this
/// request did not come from a peer, and the owner gave a 200 in time;
/// else `None`: the upstream is asked.
pub(super) async fn ask(stash: &Stash, request: &BlobRequest) -> Option<Forwarded> {
    if request.from_peer {
        return None;
    }
    let fleet = stash.fleet.as_ref()?;
    let owner = fleet.owner_of(&request.key)?;
    let local = route::local_part(&request.key);
    match fleet.forward(&owner, local, stash.namespace.prefix()).await {
        Ok(forwarded) => Some(forwarded),
        Err(error) => {
            tracing::info!(key = request.key, %error, "the owner could not give the package; downloading it from the upstream");
            None
        }
    }
}

/// The body of `url` from byte `offset` on, from the upstream: the
/// continuation and the bytes of it already read past `offset` (maybe none).
pub(super) async fn resume(
    stash: &Stash,
    url: &str,
    offset: u64,
    deadline: Instant,
) -> Result<(Fetched, Bytes), StashError> {
    let mut headers = HeaderMap::new();
    if let Ok(range) = HeaderValue::from_str(&format!("bytes={offset}-")) {
        headers.insert(RANGE, range);
    }
    let mut fetched = stash.upstream.get(url, Wanted::Blob, &headers).await?;
    let origin = origin_of(&fetched.url).to_string();
    let broken = |reason: &str| UpstreamError::Body {
        origin: origin.clone(),
        reason: reason.to_string(),
    };
    match fetched.status {
        StatusCode::PARTIAL_CONTENT if range_start(&fetched.headers) == Some(offset) => Ok((fetched, Bytes::new())),
        StatusCode::PARTIAL_CONTENT => Err(broken("answered another range than the one asked for").into()),
        StatusCode::OK => {
            let rest = skip(stash, &mut fetched, offset, deadline, &origin).await?;
            Ok((fetched, rest))
        }
        status => Err(UpstreamError::Status {
            origin: origin.clone(),
            status: status.as_u16(),
        }
        .into()),
    }
}

/// Reads past the first `offset` bytes of a whole body; what was read past them.
async fn skip(
    stash: &Stash,
    fetched: &mut Fetched,
    offset: u64,
    deadline: Instant,
    origin: &str,
) -> Result<Bytes, StashError> {
    let mut skipped = 0u64;
    while skipped < offset {
        let chunk = stash
            .upstream
            .next_chunk_before(&mut fetched.body, origin, Some(deadline))
            .await?
            .ok_or_else(|| UpstreamError::Body {
                origin: origin.to_string(),
                reason: format!("the body ends before byte {offset}, which the owner had already sent"),
            })?;
        let len = chunk.len() as u64;
        if skipped + len > offset {
            return Ok(chunk.slice((offset - skipped) as usize..));
        }
        skipped += len;
    }
    Ok(Bytes::new())
}

/// The first byte of a `Content-Range: bytes FIRST-LAST/LENGTH`.
fn range_start(headers: &HeaderMap) -> Option<u64> {
    let value = headers.get(CONTENT_RANGE)?.to_str().ok()?;
    let (first, _) = value.trim().strip_prefix("bytes ")?.split_once('-')?;
    first.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_content_range_says_where_it_starts() {
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_RANGE, HeaderValue::from_static("bytes 1024-4095/4096"));
        assert_eq!(range_start(&headers), Some(1024));
        headers.insert(CONTENT_RANGE, HeaderValue::from_static("bytes */4096"));
        assert_eq!(range_start(&headers), None);
        assert_eq!(range_start(&HeaderMap::new()), None);
    }
}
