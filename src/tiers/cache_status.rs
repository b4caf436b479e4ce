//! RFC 9211 `Cache-Status`: a list with one member per cache the answer
//! went through, the one nearest the origin first. nucache's member is
//! named by its node id (unique in a chain, as the RFC asks: two tiers
//! both called `nucache` could not be told apart) and mapped from its
//! [`CacheStatus`] (`X-Cache`):
//!
//! | X-Cache | Cache-Status member |
//! |---|---|
//! | HIT | `hit; ttl=N` |
//! | UPDATING (served past its TTL, refreshed behind) | `hit; ttl=-N` |
//! | MISS | `fwd=miss; fwd-status=200; stored; ttl=N` |
//! | REVALIDATED | `fwd=stale; fwd-status=304; ttl=N` |
//! | STALE (the upstream failed) | `fwd=stale; ttl=-N; detail=upstream-failed` |
//!
//! `ttl` is the freshness left (negative: past it); package files, which
//! never expire, carry none. On a miss or a revalidation the tier above's
//! list comes first. An answer whose last member has `ttl` 0 or less was
//! stale where it came from.

use http::header::{HeaderMap, HeaderName, HeaderValue};

use super::NodeId;
use crate::cache::CacheStatus;

pub(crate) const CACHE_STATUS: HeaderName = HeaderName::from_static("cache-status");

/// What this node's member says of an answer, and the list of the tier
/// above it extends.
#[derive(Debug, Clone)]
pub(crate) struct Member {
    pub status: CacheStatus,
    /// Seconds of freshness left; `None` for what never expires.
    pub ttl: Option<i64>,
    /// The answer was kept (not only passed on).
    pub stored: bool,
    /// The tier above's `Cache-Status`, when this answer came from it now.
    pub above: Option<HeaderValue>,
}

impl Member {
    /// The whole `Cache-Status` value: the tier above's list, then this
    /// node's member.
    pub fn value(&self, node: &NodeId) -> Option<HeaderValue> {
        let ours = self.text(node.cache_name());
        let whole = match self.above.as_ref().and_then(|above| above.to_str().ok()) {
            Some(above) if !above.trim().is_empty() && self.came_from_above() => format!("{}, {ours}", above.trim()),
            _ => ours,
        };
        HeaderValue::from_str(&whole).ok()
    }

    /// Whether the answer was asked of the tier above for this request.
    fn came_from_above(&self) -> bool {
        matches!(self.status, CacheStatus::Miss | CacheStatus::Revalidated)
    }

    /// This node's member, named `name`.
    fn text(&self, name: &str) -> String {
        let mut text = name.to_string();
        text.push_str(match self.status {
            CacheStatus::Hit | CacheStatus::Updating => "; hit",
            CacheStatus::Miss => "; fwd=miss; fwd-status=200",
            CacheStatus::Revalidated => "; fwd=stale; fwd-status=304",
            CacheStatus::Stale => "; fwd=stale",
        });
        if self.stored && self.status == CacheStatus::Miss {
            text.push_str("; stored");
        }
        if let Some(ttl) = self.ttl {
            text.push_str(&format!("; ttl={ttl}"));
        }
        if self.status == CacheStatus::Stale {
            text.push_str("; detail=upstream-failed");
        }
        text
    }
}

/// Whether the tier above called its answer stale: the last member of its
/// `Cache-Status` (the cache nearest this node) has a `ttl` of 0 or less.
pub(crate) fn says_stale(headers: &HeaderMap) -> bool {
    let lines: Vec<&str> = headers
        .get_all(CACHE_STATUS)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    let list = lines.join(",");
    let Some(last) = split_outside_quotes(&list, ',')
        .into_iter()
        .rev()
        .find(|m| !m.is_empty())
    else {
        return false;
    };
    split_outside_quotes(last, ';')
        .into_iter()
        .skip(1)
        .filter_map(|param| param.split_once('='))
        .find(|(name, _)| name.trim() == "ttl")
        .and_then(|(_, value)| value.trim().parse::<i64>().ok())
        .is_some_and(|ttl| ttl <= 0)
}

/// `text` split at `separator` outside quoted strings, each part trimmed.
fn split_outside_quotes(text: &str, separator: char) -> Vec<&str> {
    let mut parts = Vec::new();
    let (mut quoted, mut escaped, mut start) = (false, false, 0);
    for (at, c) in text.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            c if c == separator && !quoted => {
                parts.push(text[start..at].trim());
                start = at + c.len_utf8();
            }
            _ => {}
        }
    }
    parts.push(text[start..].trim());
    parts
}

/// `id` as a structured-field item: a token when it is one, else a string.
pub(super) fn item_name(id: &str) -> String {
    let tchar = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~:/".contains(c);
    let is_token = id.starts_with(|c: char| c.is_ascii_alphabetic() || c == '*') && id.chars().all(tchar);
    if is_token {
        return id.to_string();
    }
    let mut quoted = String::from("\"");
    for c in id.chars() {
        match c {
            '"' | '\\' => {
                quoted.push('\\');
                quoted.push(c);
            }
            ' '..='~' => quoted.push(c),
            _ => quoted.push('?'),
        }
    }
    quoted.push('"');
    quoted
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(status: CacheStatus, ttl: Option<i64>, above: Option<&'static str>) -> Member {
        Member {
            status,
            ttl,
            stored: true,
            above: above.map(HeaderValue::from_static),
        }
    }

    fn value(member: &Member) -> String {
        let node = NodeId::named("nucache-0123456789ab");
        member.value(&node).expect("value").to_str().expect("text").to_string()
    }

    #[test]
    fn each_cache_status_maps_to_its_member() {
        let cases = [
            (CacheStatus::Hit, Some(300), "nucache-0123456789ab; hit; ttl=300"),
            (CacheStatus::Updating, Some(-12), "nucache-0123456789ab; hit; ttl=-12"),
            (
                CacheStatus::Miss,
                Some(600),
                "nucache-0123456789ab; fwd=miss; fwd-status=200; stored; ttl=600",
            ),
            (
                CacheStatus::Revalidated,
                Some(600),
                "nucache-0123456789ab; fwd=stale; fwd-status=304; ttl=600",
            ),
            (
                CacheStatus::Stale,
                Some(-3600),
                "nucache-0123456789ab; fwd=stale; ttl=-3600; detail=upstream-failed",
            ),
            (CacheStatus::Hit, None, "nucache-0123456789ab; hit"),
        ];
        for (status, ttl, expected) in cases {
            assert_eq!(value(&member(status, ttl, None)), expected, "{status}");
        }
        let passed_on = Member {
            stored: false,
            ..member(CacheStatus::Miss, None, None)
        };
        assert_eq!(value(&passed_on), "nucache-0123456789ab; fwd=miss; fwd-status=200");
    }

    #[test]
    fn the_tier_above_comes_first_on_a_miss_only() {
        let above = Some("regional; hit; ttl=20");
        assert_eq!(
            value(&member(CacheStatus::Miss, Some(20), above)),
            "regional; hit; ttl=20, nucache-0123456789ab; fwd=miss; fwd-status=200; stored; ttl=20"
        );
        assert_eq!(
            value(&member(CacheStatus::Revalidated, Some(20), above)),
            "regional; hit; ttl=20, nucache-0123456789ab; fwd=stale; fwd-status=304; ttl=20"
        );
        assert_eq!(
            value(&member(CacheStatus::Hit, Some(5), above)),
            "nucache-0123456789ab; hit; ttl=5",
            "a hit went nowhere: only this node's member"
        );
    }

    fn stale(values: &[&'static str]) -> bool {
        let pairs: Vec<_> = values.iter().map(|value| ("cache-status", *value)).collect();
        says_stale(&super::super::headers_of(&pairs))
    }

    #[test]
    fn the_nearest_member_says_whether_it_is_stale() {
        assert!(stale(&["regional; hit; ttl=-5"]));
        assert!(stale(&["regional; hit; ttl=0"]), "no freshness left is stale");
        assert!(stale(&[
            "origin; hit; ttl=50, regional; fwd=stale; ttl=-1; detail=upstream-failed"
        ]));
        assert!(
            stale(&["origin; hit; ttl=50", "regional;hit;ttl=-1"]),
            "two field lines"
        );
        assert!(
            !stale(&["origin; hit; ttl=-50, regional; fwd=miss; stored; ttl=40"]),
            "only the last member counts"
        );
        assert!(!stale(&["regional; hit"]), "no ttl: nothing said");
        assert!(
            !stale(&["\"CDN, ttl=-1; x\"; hit; ttl=30"]),
            "quoted names are not split"
        );
        assert!(
            stale(&["regional; hit; ttl=-5; detail=\"a, b; c\""]),
            "nor quoted details"
        );
        assert!(!stale(&["regional; hit; ttl=soon"]));
        assert!(!stale(&[]));
    }

    #[test]
    fn names_are_tokens_or_strings() {
        assert_eq!(item_name("nucache-0123456789ab"), "nucache-0123456789ab");
        assert_eq!(item_name("http://10.0.0.5:5000"), "http://10.0.0.5:5000");
        assert_eq!(item_name("edge 1"), "\"edge 1\"");
        assert_eq!(item_name("9lives"), "\"9lives\"", "a token starts with a letter");
        assert_eq!(item_name("say \"hi\""), "\"say \\\"hi\\\"\"");
    }
}
