//! Finding mounted upstream prefixes in text. Every real prefix is a URL,
//! so it holds a `://`: the text is searched for `://` only (one SIMD
//! search), and at each one an anchored Aho-Corasick automaton over all
//! prefixes says which of them start the right number of bytes before it.
//! Prefixes without `://` (none in practice) get an unanchored automaton.
//! Also: which of the occurrences found are replaced.

use aho_corasick::automaton::OverlappingState;
use aho_corasick::{AhoCorasick, Anchored, Input, MatchKind, StartKind};
use memchr::memmem;

use super::Mount;

const URL_MARK: &[u8] = b"://";

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
    /// `None` when an automaton could not be built (it cannot for any
    /// realistic mount table): then each prefix is searched on its own.
    automata: Option<Automata>,
    /// Non-empty prefixes and the mount each belongs to, in mount order.
    /// (An empty prefix would match everywhere and replace nothing.)
    patterns: Vec<(String, usize)>,
    /// Per mount: an endpoint, whose prefix must end at a URL boundary.
    endpoint: Vec<bool>,
    url_mark: memmem::Finder<'static>,
}

#[derive(Debug, Clone)]
struct Automata {
    /// Prefixes holding `://`, anchored at their start.
    urls: Option<AhoCorasick>,
    /// Per pattern of `urls`: its mount and where its first `://` is.
    url_patterns: Vec<(usize, usize)>,
    /// The distinct offsets of that first `://`: `https://` has 5.
    url_mark_offsets: Vec<usize>,
    /// The other prefixes, searched for everywhere.
    others: Option<AhoCorasick>,
    other_mounts: Vec<usize>,
}

impl Automata {
    fn build(patterns: &[(String, usize)]) -> Result<Self, aho_corasick::BuildError> {
        let (urls, others): (Vec<_>, Vec<_>) = patterns
            .iter()
            .partition(|(p, _)| memmem::find(p.as_bytes(), URL_MARK).is_some());
        let url_patterns: Vec<(usize, usize)> = urls
            .iter()
            .map(|(p, mount)| (*mount, memmem::find(p.as_bytes(), URL_MARK).unwrap_or(0)))
            .collect();
        let mut url_mark_offsets: Vec<usize> = url_patterns.iter().map(|(_, at)| *at).collect();
        url_mark_offsets.sort_unstable();
        url_mark_offsets.dedup();
        // Every occurrence, overlapping ones too: the longest prefix at a
        // position may be an endpoint without a boundary, and then a
        // shorter one there wins.
        let build = |start: StartKind, set: &[&(String, usize)]| {
            let automaton = AhoCorasick::builder()
                .match_kind(MatchKind::Standard)
                .start_kind(start)
                .build(set.iter().map(|(p, _)| p.as_bytes()));
            (!set.is_empty()).then_some(automaton).transpose()
        };
        Ok(Automata {
            urls: build(StartKind::Anchored, &urls)?,
            url_patterns,
            url_mark_offsets,
            others: build(StartKind::Unanchored, &others)?,
            other_mounts: others.iter().map(|(_, mount)| *mount).collect(),
        })
    }
}

impl PrefixMatcher {
    pub fn new(mounts: &[Mount]) -> Self {
        let patterns: Vec<(String, usize)> = mounts
            .iter()
            .enumerate()
            .filter(|(_, m)| !m.upstream.is_empty())
            .map(|(i, m)| (m.upstream.clone(), i))
            .collect();
        let automata = Automata::build(&patterns);
        if let Err(error) = &automata {
            tracing::warn!(%error, "mount prefixes searched one by one");
        }
        PrefixMatcher {
            automata: automata.ok(),
            patterns,
            endpoint: mounts.iter().map(|m| m.kind.is_endpoint()).collect(),
            url_mark: memmem::Finder::new(URL_MARK),
        }
    }

    /// Every occurrence of every prefix in `text`, by start, the longest
    /// first at a start (then the first mount).
    pub fn hits(&self, text: &[u8]) -> Vec<Hit> {
        let mut hits = Vec::new();
        self.hits_into(text, 0, &mut hits);
        hits
    }

    /// `hits` into a reused `Vec`, each shifted by `offset` (where `text`
    /// starts in what the hits should index).
    pub fn hits_into(&self, text: &[u8], offset: usize, hits: &mut Vec<Hit>) {
        hits.clear();
        match &self.automata {
            Some(automata) => self.automaton_hits(automata, text, &mut |start, end, mount| {
                hits.push(Hit {
                    start: offset + start,
                    end: offset + end,
                    mount,
                })
            }),
            None => self.naive_hits(text, offset, hits),
        }
        hits.sort_unstable_by_key(|h| (h.start, std::cmp::Reverse(h.end), h.mount));
    }

    fn automaton_hits(&self, automata: &Automata, text: &[u8], found: &mut impl FnMut(usize, usize, usize)) {
        if let Some(urls) = &automata.urls {
            for mark in self.url_mark.find_iter(text) {
                for &offset in &automata.url_mark_offsets {
                    let Some(start) = mark.checked_sub(offset) else {
                        continue;
                    };
                    let input = Input::new(text).range(start..).anchored(Anchored::Yes);
                    let mut state = OverlappingState::start();
                    while let (Ok(()), Some(m)) =
                        (urls.try_find_overlapping(input.clone(), &mut state), state.get_match())
                    {
                        // Each prefix is found from its own first `://`.
                        if let Some(&(mount, at)) = automata.url_patterns.get(m.pattern().as_usize()) {
                            if at == offset {
                                found(m.start(), m.end(), mount);
                            }
                        }
                    }
                }
            }
        }
        if let Some(others) = &automata.others {
            for m in others.find_overlapping_iter(text) {
                if let Some(&mount) = automata.other_mounts.get(m.pattern().as_usize()) {
                    found(m.start(), m.end(), mount);
                }
            }
        }
    }

    fn naive_hits(&self, text: &[u8], offset: usize, hits: &mut Vec<Hit>) {
        for (pattern, mount) in &self.patterns {
            let finder = memmem::Finder::new(pattern.as_bytes());
            let mut from = 0;
            while let Some(at) = text.get(from..).and_then(|rest| finder.find(rest)) {
                let start = from + at;
                hits.push(Hit {
                    start: offset + start,
                    end: offset + start + pattern.len(),
                    mount: *mount,
                });
                from = start + 1;
            }
        }
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
            automata: None,
            ..matcher.clone()
        };
        let text = b"https://s.example/query/https://s.example/queryhttps://s.example/query?";
        assert_eq!(matcher.hits(text), slow.hits(text));
        assert_eq!(matcher.hits(text).len(), 7);
    }
}
