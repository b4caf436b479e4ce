//! Finding mounted upstream prefixes in text: one Aho-Corasick automaton
//! over every prefix, so a document is searched once however many mounts
//! there are, and the choice of which occurrences to replace.

use aho_corasick::{AhoCorasick, MatchKind};
use memchr::memmem;

use super::Mount;

/// One occurrence of a mounted prefix: `text[start..end]` is the prefix of
/// mount number `mount`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Hit {
    pub start: usize,
    pub end: usize,
    pub mount: usize,
}

/// Searches for all mount prefixes at once.
#[derive(Debug, Clone)]
pub(super) struct PrefixMatcher {
    /// `None` when the automaton could not be built (it cannot for any
    /// realistic mount table): then each prefix is searched on its own.
    automaton: Option<AhoCorasick>,
    /// Non-empty prefixes and the mount each belongs to, in mount order.
    /// (An empty prefix would match everywhere and replace nothing.)
    patterns: Vec<(String, usize)>,
    /// Per mount: an endpoint, whose prefix must end at a URL boundary.
    endpoint: Vec<bool>,
}

impl PrefixMatcher {
    pub fn new(mounts: &[Mount]) -> Self {
        let patterns: Vec<(String, usize)> = mounts
            .iter()
            .enumerate()
            .filter(|(_, m)| !m.upstream.is_empty())
            .map(|(i, m)| (m.upstream.clone(), i))
            .collect();
        let automaton = AhoCorasick::builder()
            // Every occurrence, overlapping ones too: the longest prefix at a
            // position may be an endpoint without a boundary, and then a
            // shorter one there wins.
            .match_kind(MatchKind::Standard)
            .build(patterns.iter().map(|(p, _)| p.as_bytes()));
        if let Err(error) = &automaton {
            tracing::warn!(%error, "mount prefixes searched one by one");
        }
        PrefixMatcher {
            automaton: automaton.ok(),
            patterns,
            endpoint: mounts.iter().map(|m| m.kind.is_endpoint()).collect(),
        }
    }

    /// Every occurrence of every prefix in `text`, by start, the longest
    /// first at a start (then the first mount).
    pub fn hits(&self, text: &[u8]) -> Vec<Hit> {
        let mut hits = Vec::new();
        if self.patterns.is_empty() {
            return hits;
        }
        match &self.automaton {
            Some(automaton) => hits.extend(automaton.find_overlapping_iter(text).map(|m| Hit {
                start: m.start(),
                end: m.end(),
                mount: self.patterns[m.pattern().as_usize()].1,
            })),
            None => {
                for (pattern, mount) in &self.patterns {
                    let finder = memmem::Finder::new(pattern.as_bytes());
                    let mut from = 0;
                    while let Some(at) = text.get(from..).and_then(|rest| finder.find(rest)) {
                        let start = from + at;
                        hits.push(Hit {
                            start,
                            end: start + pattern.len(),
                            mount: *mount,
                        });
                        from = start + 1;
                    }
                }
            }
        }
        hits.sort_unstable_by_key(|h| (h.start, std::cmp::Reverse(h.end), h.mount));
        hits
    }

    /// The hits among `hits` (sorted as `hits` returns them) that are
    /// replaced in `text`, which they index (hits beyond its end are not
    /// in it): the earliest one that counts,
    /// the longest at its position, then the next one after it, and so on.
    /// An endpoint's prefix counts only at a URL boundary, so `.../query`
    /// does not match `.../queryable`.
    pub fn chosen<'h>(&'h self, text: &'h [u8], hits: &'h [Hit]) -> impl Iterator<Item = Hit> + 'h {
        let mut cursor = 0;
        hits.iter().copied().filter(move |hit| {
            let counts = hit.start >= cursor
                && hit.end <= text.len()
                && (!self.is_endpoint(hit.mount) || at_boundary(text, hit.end));
            if counts {
                cursor = hit.end;
            }
            counts
        })
    }

    fn is_endpoint(&self, mount: usize) -> bool {
        self.endpoint.get(mount).copied().unwrap_or(false)
    }
}

/// Whether a URL may end before `text[at]`.
fn at_boundary(text: &[u8], at: usize) -> bool {
    matches!(text.get(at), None | Some(b'/' | b'?' | b'#' | b' ' | b'"'))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rewrite::{MountKind, Mounts};

    fn mounts() -> Vec<Mount> {
        let mut m = Mounts::default();
        m.add(MountKind::Search, "https://s.example/query", "");
        m.add(MountKind::PackageBase, "https://s.example/", "");
        m.add(MountKind::Catalog, "https://s.example/query/", "");
        m.iter().cloned().collect()
    }

    fn chosen(matcher: &PrefixMatcher, text: &str) -> Vec<(usize, usize)> {
        let hits = matcher.hits(text.as_bytes());
        matcher
            .chosen(text.as_bytes(), &hits)
            .map(|h| (h.start, h.mount))
            .collect()
    }

    #[test]
    fn the_longest_prefix_that_counts_wins_at_a_position() {
        let matcher = PrefixMatcher::new(&mounts());
        // The catalog directory is longest; the endpoint is next and counts at "?".
        assert_eq!(chosen(&matcher, "https://s.example/query/x"), [(0, 2)]);
        assert_eq!(chosen(&matcher, "https://s.example/query?q=1"), [(0, 0)]);
        // No boundary after the endpoint: the shorter directory prefix wins.
        assert_eq!(chosen(&matcher, "https://s.example/queryable"), [(0, 1)]);
        assert_eq!(
            chosen(&matcher, "a https://s.example/query b https://s.example/x"),
            [(2, 0), (28, 1)]
        );
    }

    #[test]
    fn without_the_automaton_the_same_hits_are_found() {
        let mounts = mounts();
        let matcher = PrefixMatcher::new(&mounts);
        let slow = PrefixMatcher {
            automaton: None,
            ..matcher.clone()
        };
        let text = b"https://s.example/query/https://s.example/queryhttps://s.example/query?";
        assert_eq!(matcher.hits(text), slow.hits(text));
        assert_eq!(matcher.hits(text).len(), 7);
    }
}
