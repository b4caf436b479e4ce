//! How nucache chains with the caches around it, nucache or not, with no
//! special mode: an edge nucache whose upstream is a regional nucache is
//! configured like any other. This module owns the headers a tier speaks:
//!
//! - `node`: this nucache's id ([`NodeId`]), `fleet.node` or one made once
//!   and kept in the cache directory;
//! - `via`: `Via` on every request sent upstream and every answer, and the
//!   loop guard (a request whose `Via` already names this node is refused);
//! - `forward`: what a client's request passes on to the upstream when it
//!   causes a fetch (its `Via`, its `X-NuGet-*` headers), carried into the
//!   tasks the fetch runs in;
//! - `cache_status`: RFC 9211 `Cache-Status`, this node's member after the
//!   tier above's, and whether the tier above called its answer stale;
//! - [`age_of`] and [`age_here`]: `Age`, so that TTLs do not stack (a copy
//!   the tier above kept for N seconds is N seconds old here too).

mod cache_status;
mod forward;
mod node;
mod via;

use std::time::Duration;

use http::header::{HeaderMap, AGE, VIA};
use http::Version;

use crate::error::LoopDetected;

pub(crate) use cache_status::{says_stale, Member, CACHE_STATUS};
pub(crate) use forward::{spawn, Asker, Forwarded};
pub(crate) use node::NodeId;

/// Largest `Age` taken as it is (RFC 9111 §1.2.2: a larger delta-seconds
/// counts as 2^31).
const MAX_AGE_SECONDS: u64 = 1 << 31;

/// The `Age` the tier above sent: how long its copy had been kept
/// (absent or malformed: 0, a fresh answer).
pub(crate) fn age_of(headers: &HeaderMap) -> Duration {
    let Some(text) = headers.get(AGE).and_then(|v| v.to_str().ok()) else {
        return Duration::ZERO;
    };
    let text = text.trim();
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Duration::ZERO;
    }
    let seconds = text.parse::<u64>().unwrap_or(MAX_AGE_SECONDS).min(MAX_AGE_SECONDS);
    Duration::from_secs(seconds)
}

/// How old a copy the tier above just sent counts here, for a TTL of
/// `ttl`: its `Age`, and at least the whole TTL when the tier above called
/// it stale (its `Cache-Status`): a stale answer is stored as expired,
/// never as fresh.
pub(crate) fn age_here(headers: &HeaderMap, ttl: Duration) -> Duration {
    let age = age_of(headers);
    match says_stale(headers) {
        true => age.max(ttl),
        false => age,
    }
}

/// Refuses a request whose `Via` names `node`: it has passed through this
/// node already, so its upstream chain loops back here.
pub(crate) fn refuse_loop(request: &HeaderMap, node: &NodeId) -> Result<(), LoopDetected> {
    match via::names(request, node) {
        true => Err(LoopDetected {
            node: node.id().to_string(),
        }),
        false => Ok(()),
    }
}

/// What every answer of `node` carries as a tier: its `Via` entry (for a
/// request received as `version`), and for a cached resource its
/// `Cache-Status`.
pub(crate) fn stamp(answer: &mut HeaderMap, node: &NodeId, version: Version, member: Option<&Member>) {
    if let Some(entry) = node.via_entry(version) {
        answer.insert(VIA, entry);
    }
    if let Some(value) = member.and_then(|member| member.value(node)) {
        answer.insert(CACHE_STATUS, value);
    }
}

/// Headers from `(name, value)` pairs, in order (for this module's tests).
#[cfg(test)]
fn headers_of(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
    let mut headers = HeaderMap::new();
    for (name, value) in pairs {
        headers.append(*name, http::HeaderValue::from_static(value));
    }
    headers
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn age_is_read_as_delta_seconds() {
        assert_eq!(age_of(&headers_of(&[("age", "42")])), Duration::from_secs(42));
        assert_eq!(age_of(&headers_of(&[("age", " 7 ")])), Duration::from_secs(7));
        assert_eq!(age_of(&headers_of(&[])), Duration::ZERO);
        for bad in ["-3", "1.5", "soon", ""] {
            assert_eq!(age_of(&headers_of(&[("age", bad)])), Duration::ZERO, "{bad:?}");
        }
        let huge = age_of(&headers_of(&[("age", "99999999999999999999999")]));
        assert_eq!(huge, Duration::from_secs(MAX_AGE_SECONDS));
    }

    #[test]
    fn a_stale_answer_is_at_least_a_whole_ttl_old() {
        let ttl = Duration::from_secs(60);
        let fresh = headers_of(&[("age", "10"), ("cache-status", "up; hit; ttl=50")]);
        assert_eq!(age_here(&fresh, ttl), Duration::from_secs(10));
        let stale = headers_of(&[("age", "10"), ("cache-status", "up; hit; ttl=-5")]);
        assert_eq!(age_here(&stale, ttl), ttl);
        let very_old = headers_of(&[("age", "500"), ("cache-status", "up; hit; ttl=-440")]);
        assert_eq!(age_here(&very_old, ttl), Duration::from_secs(500));
    }
}
