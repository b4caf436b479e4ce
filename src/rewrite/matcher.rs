//! Finding mounted upstream prefixes in text. Every real prefix is a URL,
//! so it holds a `://`: the text is searched for `://` only, and at each
//! the prefixes whose first `://` is there are compared in place: first
//! their last eight bytes as one word, then all of them. (An Aho-Corasick
//! automaton walked there, anchored, spent a third of a rewrite on its
//! byte-by-byte walk: a chain of dependent loads per URL.) Prefixes
//! without `://` (none in practice) are searched for everywhere. Also:
//! which of the occurrences found are replaced.

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
    /// Prefixes holding `://`, grouped by where their first one is
    /// (`https://` has it at 5).
    urls: Vec<(usize, Vec<Prefix>)>,
    /// The other non-empty prefixes. (An empty prefix would match
    /// everywhere and replace nothing.)
    others: Vec<Prefix>,
    /// Per mount: an endpoint, whose prefix must end at a URL boundary.
    endpoint: Vec<bool>,
}

#[derive(Debug, Clone)]
struct Prefix {
    bytes: Box<[u8]>,
    mount: usize,
    /// The last eight bytes, to compare as one word before all of them.
    tail: Option<u64>,
}

impl Prefix {
    fn new(text: &str, mount: usize) -> Self {
        let bytes: Box<[u8]> = text.as_bytes().into();
        Prefix {
            tail: bytes.len().checked_sub(8).and_then(|at| word(&bytes, at)),
            bytes,
            mount,
        }
    }

    /// Whether `text` starts with this prefix.
    fn starts(&self, text: &[u8]) -> bool {
        let len = self.bytes.len();
        let tail_matches = match self.tail {
            Some(tail) => word(text, len - 8) == Some(tail),
            None => true,
        };
        tail_matches && text.get(..len) == Some(&self.bytes[..])
    }
}

/// The eight bytes at `at` as a word.
fn word(bytes: &[u8], at: usize) -> Option<u64> {
    let eight: [u8; 8] = bytes.get(at..at.checked_add(8)?)?.try_into().ok()?;
    Some(u64::from_le_bytes(eight))
}

impl PrefixMatcher {
    pub fn new(mounts: &[Mount]) -> Self {
        let mut urls: Vec<(usize, Vec<Prefix>)> = Vec::new();
        let mut others = Vec::new();
        for (i, m) in mounts.iter().enumerate().filter(|(_, m)| !m.upstream.is_empty()) {
            let prefix = Prefix::new(&m.upstream, i);
            match memmem::find(m.upstream.as_bytes(), URL_MARK) {
                Some(mark) => match urls.iter_mut().find(|(at, _)| *at == mark) {
                    Some((_, group)) => group.push(prefix),
                    None => urls.push((mark, vec![prefix])),
                },
                None => others.push(prefix),
            }
        }
        PrefixMatcher {
            urls,
            others,
            endpoint: mounts.iter().map(|m| m.kind.is_endpoint()).collect(),
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
        let mut found = |start: usize, prefix: &Prefix| {
            hits.push(Hit {
                start: offset + start,
                end: offset + start + prefix.bytes.len(),
                mount: prefix.mount,
            })
        };
        if !self.urls.is_empty() {
            let marks =
                memchr::memchr_iter(b':', text).filter(|&at| text.get(at..).is_some_and(|t| t.starts_with(URL_MARK)));
            for mark in marks {
                for (at, group) in &self.urls {
                    let Some(start) = mark.checked_sub(*at) else {
                        continue;
                    };
                    let rest = text.get(start..).unwrap_or_default();
                    group.iter().filter(|p| p.starts(rest)).for_each(|p| found(start, p));
                }
            }
        }
        for prefix in &self.others {
            let finder = memmem::Finder::new(&prefix.bytes);
            let mut from = 0;
            while let Some(at) = text.get(from..).and_then(|rest| finder.find(rest)) {
                found(from + at, prefix);
                from += at + 1;
            }
        }
        hits.sort_unstable_by_key(|h| (h.start, std::cmp::Reverse(h.end), h.mount));
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
    fn finds_every_occurrence_of_every_prefix() {
        let mut m = Mounts::default();
        m.add(MountKind::Search, "https://s.example/query", "");
        m.add(MountKind::PackageBase, "https://s.example/", "");
        m.add(MountKind::Catalog, "https://s.example/query/", "");
        m.add(MountKind::PackageBase, "http://s.ex/", "");
        m.add(MountKind::Catalog, "urn:x/", "");
        m.add(MountKind::Catalog, "a://b", "");
        let matcher = PrefixMatcher::new(&m.iter().cloned().collect::<Vec<_>>());
        let text = b"https://s.example/query/https://s.example/queryhttp://s.ex/urn:x/urn:x/a://b";
        let found: Vec<(usize, usize)> = matcher.hits(text).iter().map(|h| (h.start, h.mount)).collect();
        assert_eq!(
            found,
            [
                (0, 2),
                (0, 0),
                (0, 1),
                (24, 0),
                (24, 1),
                (47, 3),
                (59, 4),
                (65, 4),
                (71, 5)
            ]
        );
    }
}
