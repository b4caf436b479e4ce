//! NuGet version ranges and floating versions, and which version of a
//! version list restore would pick for them (`NuGet.Versioning`'s
//! `VersionRange` / `FloatRange`): the lowest version the range allows,
//! or for a floating version the highest that matches.

use std::cmp::Ordering;

use crate::nuget::NuGetVersion;

/// Why a version range cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid version range {text:?}: {reason}")]
pub(crate) struct RangeError {
    text: String,
    reason: String,
}

/// A bound of a range: the version and whether it is included.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Bound {
    version: NuGetVersion,
    inclusive: bool,
}

/// `1.*`, `1.2.*`, `*`, `1.0.0-*`, `1.0.0-beta*`, `1.*-*`, `*-*`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Float {
    /// The numeric parts that are fixed (`[1, 2]` for `1.2.*`).
    fixed: Vec<u32>,
    /// `Some(prefix)` when prerelease versions float too (`-*`, `-beta*`).
    prerelease: Option<String>,
    /// For `1.2.3-beta*`: all numeric parts fixed, only the label floats.
    numbers_fixed: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Kind {
    Bounded { min: Option<Bound>, max: Option<Bound> },
    Floating(Float),
}

/// A parsed version range (`1.0`, `[1.0]`, `[1.0,2.0)`, `(,2.0]`, `1.*`...).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct VersionRange {
    kind: Kind,
}

impl VersionRange {
    pub fn parse(text: &str) -> Result<VersionRange, RangeError> {
        let fail = |reason: &str| RangeError {
            text: text.to_string(),
            reason: reason.to_string(),
        };
        let trimmed = text.trim();
        if trimmed.is_empty() {
            return Err(fail("empty"));
        }
        if trimmed.contains('*') {
            return parse_float(trimmed)
                .map(|f| VersionRange {
                    kind: Kind::Floating(f),
                })
                .map_err(fail);
        }
        let version = |t: &str| NuGetVersion::parse(t.trim()).map_err(|e| fail(&e.to_string()));
        let opening = trimmed.chars().next();
        if !matches!(opening, Some('[' | '(')) {
            // A bare version is a minimum, inclusive.
            let min = Bound {
                version: version(trimmed)?,
                inclusive: true,
            };
            return Ok(VersionRange::bounded(Some(min), None));
        }
        let closing = trimmed.chars().last();
        if !matches!(closing, Some(']' | ')')) || trimmed.len() < 2 {
            return Err(fail("a bracketed range must end with ']' or ')'"));
        }
        let (min_inclusive, max_inclusive) = (opening == Some('['), closing == Some(']'));
        let inner = &trimmed[1..trimmed.len() - 1];
        let Some((low, high)) = inner.split_once(',') else {
            // `[1.0]`: exactly that version.
            if !(min_inclusive && max_inclusive) {
                return Err(fail("an exact version needs square brackets"));
            }
            let exact = version(inner)?;
            let bound = |version| Bound {
                version,
                inclusive: true,
            };
            return Ok(VersionRange::bounded(Some(bound(exact.clone())), Some(bound(exact))));
        };
        if high.contains(',') {
            return Err(fail("more than one ','"));
        }
        let bound = |t: &str, inclusive| -> Result<Option<Bound>, RangeError> {
            match t.trim() {
                "" => Ok(None),
                t => Ok(Some(Bound {
                    version: version(t)?,
                    inclusive,
                })),
            }
        };
        let (min, max) = (bound(low, min_inclusive)?, bound(high, max_inclusive)?);
        if min.is_none() && max.is_none() {
            return Err(fail("no bound"));
        }
        if let (Some(min), Some(max)) = (&min, &max) {
            let order = min.version.precedence(&max.version);
            if order == Ordering::Greater || (order == Ordering::Equal && !(min.inclusive && max.inclusive)) {
                return Err(fail("the minimum is above the maximum"));
            }
        }
        Ok(VersionRange::bounded(min, max))
    }

    fn bounded(min: Option<Bound>, max: Option<Bound>) -> VersionRange {
        VersionRange {
            kind: Kind::Bounded { min, max },
        }
    }

    /// `[v]`: exactly one version (lock files, packages.config).
    pub fn exact(version: NuGetVersion) -> VersionRange {
        let bound = |version| Bound {
            version,
            inclusive: true,
        };
        VersionRange::bounded(Some(bound(version.clone())), Some(bound(version)))
    }

    /// The one version this range allows, when it allows only one.
    pub fn exact_version(&self) -> Option<&NuGetVersion> {
        match &self.kind {
            Kind::Bounded {
                min: Some(min),
                max: Some(max),
            } if min.inclusive && max.inclusive && min.version.precedence(&max.version) == Ordering::Equal => {
                Some(&min.version)
            }
            _ => None,
        }
    }

    pub fn is_floating(&self) -> bool {
        matches!(self.kind, Kind::Floating(_))
    }

    /// Whether `version` lies in the range (prerelease rules aside).
    pub fn satisfies(&self, version: &NuGetVersion) -> bool {
        match &self.kind {
            Kind::Bounded { min, max } => {
                let above = min.as_ref().is_none_or(|min| match version.precedence(&min.version) {
                    Ordering::Greater => true,
                    Ordering::Equal => min.inclusive,
                    Ordering::Less => false,
                });
                let below = max.as_ref().is_none_or(|max| match version.precedence(&max.version) {
                    Ordering::Less => true,
                    Ordering::Equal => max.inclusive,
                    Ordering::Greater => false,
                });
                above && below
            }
            Kind::Floating(float) => float.matches(version),
        }
    }

    /// Restore takes prerelease versions only when the range names one
    /// (a bound with a label, or a floating label).
    fn allows_prerelease(&self) -> bool {
        match &self.kind {
            Kind::Bounded { min, max } => [min, max]
                .into_iter()
                .flatten()
                .any(|bound| bound.version.is_prerelease()),
            Kind::Floating(float) => float.prerelease.is_some(),
        }
    }

    /// The version restore picks from `available`: the lowest the range
    /// allows, or for a floating range the highest that matches.
    pub fn pick<'v>(&self, available: &'v [NuGetVersion]) -> Option<&'v NuGetVersion> {
        let prerelease = self.allows_prerelease();
        let candidates = available
            .iter()
            .filter(|v| prerelease || !v.is_prerelease())
            .filter(|v| self.satisfies(v));
        if self.is_floating() {
            candidates.max_by(|a, b| a.precedence(b))
        } else {
            candidates.min_by(|a, b| a.precedence(b))
        }
    }
}

impl std::fmt::Display for VersionRange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.kind {
            Kind::Floating(float) => {
                let mut parts: Vec<String> = float.fixed.iter().map(u32::to_string).collect();
                if !float.numbers_fixed {
                    parts.push("*".into());
                }
                write!(f, "{}", parts.join("."))?;
                if let Some(prefix) = &float.prerelease {
                    write!(f, "-{prefix}*")?;
                }
                Ok(())
            }
            Kind::Bounded { .. } if self.exact_version().is_some() => {
                write!(
                    f,
                    "[{}]",
                    self.exact_version().map(|v| v.normalized()).unwrap_or_default()
                )
            }
            Kind::Bounded { min, max } => {
                let (open, low) = match min {
                    Some(b) => (if b.inclusive { '[' } else { '(' }, b.version.normalized()),
                    None => ('(', String::new()),
                };
                let (high, close) = match max {
                    Some(b) => (b.version.normalized(), if b.inclusive { ']' } else { ')' }),
                    None => (String::new(), ')'),
                };
                write!(f, "{open}{low}, {high}{close}")
            }
        }
    }
}

impl Float {
    fn matches(&self, version: &NuGetVersion) -> bool {
        let numbers = numbers_of(version);
        if !self.fixed.iter().zip(numbers.iter()).all(|(a, b)| a == b) {
            return false;
        }
        if !version.is_prerelease() {
            return true;
        }
        match &self.prerelease {
            None => false,
            Some(prefix) => {
                let label = release_of(version);
                label.to_ascii_lowercase().starts_with(&prefix.to_ascii_lowercase())
            }
        }
    }
}

/// The numeric parts of a version, from its normalized form.
fn numbers_of(version: &NuGetVersion) -> [u32; 4] {
    let normalized = version.normalized();
    let numbers = normalized.split('-').next().unwrap_or("");
    let mut out = [0; 4];
    for (slot, piece) in out.iter_mut().zip(numbers.split('.')) {
        *slot = piece.parse().unwrap_or(0);
    }
    out
}

/// The release labels of a version, joined by '.'.
fn release_of(version: &NuGetVersion) -> String {
    version
        .normalized()
        .split_once('-')
        .map(|(_, label)| label.to_string())
        .unwrap_or_default()
}

fn parse_float(text: &str) -> Result<Float, &'static str> {
    let (numbers, label) = match text.split_once('-') {
        Some((numbers, label)) => (numbers, Some(label)),
        None => (text, None),
    };
    let prerelease = match label {
        None => None,
        Some(label) => {
            let prefix = label.strip_suffix('*').ok_or("a floating label must end with '*'")?;
            if prefix.contains('*')
                || !prefix
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
            {
                return Err("a floating label is letters, digits, '-' and '.' before one '*'");
            }
            Some(prefix.to_string())
        }
    };
    let pieces: Vec<&str> = numbers.split('.').collect();
    let (last, fixed_pieces) = pieces.split_last().ok_or("empty")?;
    if pieces.len() > 4 {
        return Err("more than 4 numeric parts");
    }
    let number = |p: &&str| p.parse::<u32>().map_err(|_| "numeric parts must be numbers");
    let mut fixed = fixed_pieces.iter().map(number).collect::<Result<Vec<u32>, _>>()?;
    let numbers_fixed = *last != "*";
    if numbers_fixed {
        // `1.2.3-beta*`: the numbers are exact, the label floats.
        if prerelease.is_none() {
            return Err("'*' must end the numeric part or the label");
        }
        fixed.push(number(last)?);
        fixed.resize(4, 0);
    }
    Ok(Float {
        fixed,
        prerelease,
        numbers_fixed,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn versions(list: &[&str]) -> Vec<NuGetVersion> {
        list.iter().filter_map(|v| NuGetVersion::parse(v).ok()).collect()
    }

    fn pick(range: &str, list: &[&str]) -> Option<String> {
        let range = VersionRange::parse(range).map_err(|e| e.to_string());
        let available = versions(list);
        range.ok()?.pick(&available).map(|v| v.normalized())
    }

    const LIST: &[&str] = &[
        "0.9.0",
        "1.0.0",
        "1.0.1",
        "1.1.0-beta",
        "1.1.0",
        "1.2.0",
        "1.10.0",
        "2.0.0-rc.1",
        "2.0.0",
        "2.1.0",
        "3.0.0-alpha",
    ];

    #[test]
    fn a_bare_version_is_a_minimum_and_restore_takes_the_lowest_above() {
        assert_eq!(pick("1.0.0", LIST).as_deref(), Some("1.0.0"));
        assert_eq!(pick("1.0.0.5", LIST).as_deref(), Some("1.0.1"), "1.0.0.5 is not there");
        assert_eq!(pick("1.0", LIST).as_deref(), Some("1.0.0"));
        assert_eq!(pick("4.0.0", LIST), None);
    }

    #[test]
    fn brackets_include_and_parentheses_exclude() {
        assert_eq!(pick("[1.0,2.0)", LIST).as_deref(), Some("1.0.0"));
        assert_eq!(pick("(1.0,2.0)", LIST).as_deref(), Some("1.0.1"));
        assert_eq!(pick("[1.2.0]", LIST).as_deref(), Some("1.2.0"));
        assert_eq!(pick("[1.3.0]", LIST), None);
        assert_eq!(pick("(,1.0]", LIST).as_deref(), Some("0.9.0"));
        assert_eq!(pick("(1.10.0,)", LIST).as_deref(), Some("2.0.0"));
        assert_eq!(pick("[ 1.1.0 , 1.2.0 ]", LIST).as_deref(), Some("1.1.0"));
    }

    #[test]
    fn prereleases_only_when_the_range_names_one() {
        assert_eq!(pick("(1.0.1,1.1.0]", LIST).as_deref(), Some("1.1.0"));
        assert_eq!(pick("[1.1.0-alpha,1.1.0]", LIST).as_deref(), Some("1.1.0-beta"));
        assert_eq!(pick("[2.0.0-rc.1]", LIST).as_deref(), Some("2.0.0-rc.1"));
        assert_eq!(pick("3.0.0-alpha", LIST).as_deref(), Some("3.0.0-alpha"));
    }

    #[test]
    fn floating_takes_the_highest_match() {
        assert_eq!(pick("1.*", LIST).as_deref(), Some("1.10.0"));
        assert_eq!(pick("1.0.*", LIST).as_deref(), Some("1.0.1"));
        assert_eq!(pick("*", LIST).as_deref(), Some("2.1.0"));
        assert_eq!(pick("*-*", LIST).as_deref(), Some("3.0.0-alpha"));
        assert_eq!(pick("2.0.0-*", LIST).as_deref(), Some("2.0.0"));
        assert_eq!(
            pick("2.0.0-rc*", &["2.0.0-beta", "2.0.0-rc.1", "2.0.0-rc.2"]).as_deref(),
            Some("2.0.0-rc.2")
        );
        assert_eq!(
            pick("1.1.0-b*", &["1.1.0-alpha", "1.1.0-beta", "1.2.0"]).as_deref(),
            Some("1.1.0-beta")
        );
        assert_eq!(pick("5.*", LIST), None);
    }

    #[test]
    fn refuses_what_nuget_refuses() {
        for bad in [
            "",
            "[1.0",
            "1.0]",
            "(1.0)",
            "[2.0,1.0]",
            "(1.0,1.0)",
            "[,]",
            "[1,2,3]",
            "1.*.0",
            "1.0.0-*a",
            "x.*",
            "[a]",
        ] {
            assert!(VersionRange::parse(bad).is_err(), "{bad:?} must be refused");
        }
    }

    #[test]
    fn exact_ranges_are_recognised_and_shown() {
        let exact = VersionRange::parse("[1.0.0.0]").map_err(|e| e.to_string());
        assert_eq!(
            exact
                .as_ref()
                .ok()
                .and_then(|r| r.exact_version())
                .map(|v| v.normalized()),
            Some("1.0.0".into())
        );
        assert_eq!(exact.map(|r| r.to_string()), Ok("[1.0.0]".into()));
        let open = VersionRange::parse("[1.0, )").map(|r| (r.exact_version().is_none(), r.to_string()));
        assert_eq!(open, Ok((true, "[1.0.0, )".into())));
        assert_eq!(
            VersionRange::parse("1.2.*-*").map(|r| r.to_string()),
            Ok("1.2.*-*".into())
        );
    }
}
