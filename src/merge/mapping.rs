//! Which upstreams a package id may come from: NuGet's packageSourceMapping
//! rules. A pattern is an id or a prefix ending in `*` (case-insensitive);
//! for an id, the most specific matching pattern wins (an exact id over
//! any prefix, a longer prefix over a shorter one, `*` last) and names the
//! only upstreams the id may come from. An upstream without patterns takes
//! `*`. An id owned by a private upstream is so never asked of a public one.

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{pattern:?}: {reason}")]
pub struct PatternError {
    pub pattern: String,
    pub reason: &'static str,
}

/// One pattern, lower-cased.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Pattern {
    text: String,
    prefix: bool,
}

impl Pattern {
    fn parse(text: &str) -> Result<Pattern, PatternError> {
        let fail = |reason| PatternError {
            pattern: text.to_string(),
            reason,
        };
        let (stem, prefix) = match text.strip_suffix('*') {
            Some(stem) => (stem, true),
            None => (text, false),
        };
        if stem.is_empty() && !prefix {
            return Err(fail("an empty pattern matches nothing (use \"*\" for every id)"));
        }
        let id_like = stem
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'));
        if !id_like {
            return Err(fail(
                "patterns are package ids or prefixes ending in '*' (letters, digits, '.', '-', '_')",
            ));
        }
        Ok(Pattern {
            text: stem.to_ascii_lowercase(),
            prefix,
        })
    }

    /// How specifically this pattern matches `id` (lower-cased): an exact
    /// id beats every prefix, a longer prefix a shorter one.
    fn specificity(&self, id: &str) -> Option<usize> {
        match self.prefix {
            false => (self.text == id).then_some(usize::MAX),
            true => id.starts_with(&self.text).then_some(self.text.len()),
        }
    }
}

/// The upstreams (by name, in priority order) and their patterns.
#[derive(Debug, Clone)]
pub struct SourceMapping {
    sources: Vec<(String, Vec<Pattern>)>,
}

impl SourceMapping {
    /// `upstreams` in priority order, each with its `packages` (empty: `*`).
    pub fn new<'a>(upstreams: impl IntoIterator<Item = (&'a str, &'a [String])>) -> Result<Self, PatternError> {
        let mut sources = Vec::new();
        for (name, patterns) in upstreams {
            let parsed = match patterns.is_empty() {
                true => vec![Pattern::parse("*")?],
                false => patterns.iter().map(|p| Pattern::parse(p)).collect::<Result<_, _>>()?,
            };
            sources.push((name.to_string(), parsed));
        }
        Ok(SourceMapping { sources })
    }

    /// A mapping under which no id comes from anywhere.
    pub fn empty() -> Self {
        SourceMapping { sources: Vec::new() }
    }

    /// The upstreams `id` may come from, in priority order; empty when no
    /// pattern matches it (then it comes from nowhere: 404).
    pub fn sources_for(&self, id: &str) -> Vec<&str> {
        let id = id.to_ascii_lowercase();
        let best = |patterns: &[Pattern]| patterns.iter().filter_map(|p| p.specificity(&id)).max();
        let Some(winner) = self.sources.iter().filter_map(|(_, patterns)| best(patterns)).max() else {
            return Vec::new();
        };
        self.sources
            .iter()
            .filter(|(_, patterns)| best(patterns) == Some(winner))
            .map(|(name, _)| name.as_str())
            .collect()
    }
}

/// Checks one upstream's `packages` list (for configuration errors).
pub fn check_patterns(patterns: &[String]) -> Result<(), PatternError> {
    patterns.iter().try_for_each(|p| Pattern::parse(p).map(|_| ()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mapping(sources: &[(&str, &[&str])]) -> SourceMapping {
        let owned: Vec<(String, Vec<String>)> = sources
            .iter()
            .map(|(name, patterns)| (name.to_string(), patterns.iter().map(|p| p.to_string()).collect()))
            .collect();
        SourceMapping::new(owned.iter().map(|(n, p)| (n.as_str(), p.as_slice()))).expect("valid patterns")
    }

    #[test]
    fn a_private_prefix_owns_its_ids_and_everything_else_is_public() {
        let m = mapping(&[("acme", &["Acme.*"]), ("nugetorg", &[])]);
        assert_eq!(m.sources_for("Acme.Core"), ["acme"]);
        assert_eq!(m.sources_for("acme.core"), ["acme"], "case-insensitive");
        assert_eq!(m.sources_for("Newtonsoft.Json"), ["nugetorg"]);
        // "Acme" alone does not match the prefix "acme.".
        assert_eq!(m.sources_for("Acme"), ["nugetorg"]);
    }

    #[test]
    fn the_most_specific_pattern_wins_across_upstreams() {
        let m = mapping(&[
            ("acme", &["Acme.*"]),
            ("vendor", &["Acme.Vendor.*", "Acme.Exact"]),
            ("nugetorg", &["*"]),
        ]);
        assert_eq!(m.sources_for("Acme.Vendor.Lib"), ["vendor"], "longer prefix");
        assert_eq!(m.sources_for("Acme.Exact"), ["vendor"], "an exact id beats any prefix");
        assert_eq!(m.sources_for("Acme.Other"), ["acme"]);
        assert_eq!(m.sources_for("Serilog"), ["nugetorg"]);
    }

    #[test]
    fn upstreams_sharing_the_winning_pattern_all_serve_in_priority_order() {
        let m = mapping(&[("mirror", &[]), ("nugetorg", &["*"]), ("acme", &["Acme.*"])]);
        assert_eq!(m.sources_for("NUnit"), ["mirror", "nugetorg"]);
        assert_eq!(m.sources_for("Acme.Core"), ["acme"]);
    }

    #[test]
    fn an_id_no_pattern_matches_comes_from_nowhere() {
        let m = mapping(&[("acme", &["Acme.*"])]);
        assert!(m.sources_for("Newtonsoft.Json").is_empty());
    }

    #[test]
    fn bad_patterns_are_refused() {
        assert!(check_patterns(&["Acme.*".into(), "Exact.Id".into(), "*".into()]).is_ok());
        for bad in ["", "Ac*me", "*.Core", "Acme/x*", "Acme **"] {
            assert!(check_patterns(&[bad.to_string()]).is_err(), "{bad:?}");
        }
    }
}
