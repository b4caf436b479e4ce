//! NuGet versions, parsed and normalized exactly as `NuGet.Versioning` does
//! (`NuGetVersion.TryParse` + `ToNormalizedString()`), see protocol doc §3.2.

use std::fmt;

/// The largest value of one numeric part: NuGet parses each part as an `int`.
const MAX_PART: u64 = i32::MAX as u64;

/// Why a version string is not a NuGet version.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid version {text:?}: {reason}")]
pub struct VersionError {
    text: String,
    reason: &'static str,
}

/// A parsed NuGet version: 1–4 numeric parts, optional release labels and
/// build metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NuGetVersion {
    parts: [u32; 4],
    release: Vec<String>,
    metadata: Option<String>,
}

impl NuGetVersion {
    pub fn parse(text: &str) -> Result<Self, VersionError> {
        let fail = |reason| VersionError {
            text: text.to_string(),
            reason,
        };
        let trimmed = text.trim();
        let (rest, metadata) = match trimmed.split_once('+') {
            Some((rest, meta)) => {
                if !dotted_identifiers(meta, false) {
                    return Err(fail("build metadata must be dot-separated [0-9A-Za-z-] identifiers"));
                }
                (rest, Some(meta.to_string()))
            }
            None => (trimmed, None),
        };
        let (numbers, release) = match rest.split_once('-') {
            Some((numbers, labels)) => {
                if !dotted_identifiers(labels, true) {
                    return Err(fail(
                        "release labels must be dot-separated [0-9A-Za-z-] identifiers without leading zeros",
                    ));
                }
                (numbers, labels.split('.').map(str::to_string).collect())
            }
            None => (rest, Vec::new()),
        };
        let parts = parse_numbers(numbers).ok_or_else(|| fail("expected 1 to 4 numeric parts"))?;
        Ok(NuGetVersion {
            parts,
            release,
            metadata,
        })
    }

    /// `Major.Minor.Patch[.Revision][-labels]`, labels in their original case.
    pub fn normalized(&self) -> String {
        let [major, minor, patch, revision] = self.parts;
        let mut out = format!("{major}.{minor}.{patch}");
        if revision > 0 {
            out.push_str(&format!(".{revision}"));
        }
        if !self.release.is_empty() {
            out.push('-');
            out.push_str(&self.release.join("."));
        }
        out
    }

    /// The form used in flat-container URLs (`LOWER_VERSION`).
    pub fn lower_normalized(&self) -> String {
        self.normalized().to_lowercase()
    }

    /// The normalized version with its build metadata, as registration
    /// `version` fields carry it.
    pub fn full(&self) -> String {
        match &self.metadata {
            Some(meta) => format!("{}+{meta}", self.normalized()),
            None => self.normalized(),
        }
    }

    /// NuGet's version order (`VersionComparer.Default`): the numeric
    /// parts, then a release beats any pre-release, then the labels one by
    /// one (numeric ones numerically and below alphanumeric ones, those
    /// compared case-insensitively), fewer labels first; build metadata
    /// does not count.
    pub fn precedence(&self, other: &NuGetVersion) -> std::cmp::Ordering {
        use std::cmp::Ordering;
        let by_parts = self.parts.cmp(&other.parts);
        if by_parts != Ordering::Equal {
            return by_parts;
        }
        match (self.release.is_empty(), other.release.is_empty()) {
            (true, true) => return Ordering::Equal,
            (true, false) => return Ordering::Greater,
            (false, true) => return Ordering::Less,
            (false, false) => {}
        }
        for (a, b) in self.release.iter().zip(&other.release) {
            let order = match (a.parse::<u64>(), b.parse::<u64>()) {
                (Ok(x), Ok(y)) => x.cmp(&y),
                (Ok(_), Err(_)) => Ordering::Less,
                (Err(_), Ok(_)) => Ordering::Greater,
                (Err(_), Err(_)) => a.to_ascii_lowercase().cmp(&b.to_ascii_lowercase()),
            };
            if order != Ordering::Equal {
                return order;
            }
        }
        self.release.len().cmp(&other.release.len())
    }

    pub fn is_prerelease(&self) -> bool {
        !self.release.is_empty()
    }

    /// SemVer 2.0.0 by the version alone: a dotted release label or metadata.
    pub fn is_semver2(&self) -> bool {
        self.release.len() > 1 || self.metadata.is_some()
    }
}

impl fmt::Display for NuGetVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.normalized())
    }
}

fn parse_numbers(text: &str) -> Option<[u32; 4]> {
    let mut parts = [0u32; 4];
    let mut count = 0;
    for piece in text.split('.') {
        if count == 4 || piece.is_empty() || !piece.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let digits = piece.trim_start_matches('0');
        // Leading zeros vanish; more than 10 significant digits cannot fit.
        if digits.len() > 10 {
            return None;
        }
        let value: u64 = if digits.is_empty() { 0 } else { digits.parse().ok()? };
        if value > MAX_PART {
            return None;
        }
        parts[count] = value as u32;
        count += 1;
    }
    (count > 0).then_some(parts)
}

/// `a.b.c` identifiers of `[0-9A-Za-z-]`; for release labels, numeric
/// identifiers may not have leading zeros (SemVer 2.0.0 rule NuGet enforces).
fn dotted_identifiers(text: &str, no_leading_zero: bool) -> bool {
    text.split('.').all(|id| {
        let valid_chars = !id.is_empty() && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
        let numeric = id.bytes().all(|b| b.is_ascii_digit());
        valid_chars && !(no_leading_zero && numeric && id.len() > 1 && id.starts_with('0'))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(text: &str) -> String {
        NuGetVersion::parse(text)
            .map(|v| v.normalized())
            .unwrap_or_else(|e| e.to_string())
    }

    #[test]
    fn normalizes_like_nuget() {
        let cases = [
            ("1.0", "1.0.0"),
            ("1", "1.0.0"),
            ("1.0.0.0", "1.0.0"),
            ("1.0.0.1", "1.0.0.1"),
            ("01.002.0003", "1.2.3"),
            ("1.00.0.4", "1.0.0.4"),
            ("1.0.0-Beta", "1.0.0-Beta"),
            ("1.0.0-beta.1+sha.abc", "1.0.0-beta.1"),
            ("2.0.0+build.7", "2.0.0"),
            ("3.0.0-rc.1+build.5", "3.0.0-rc.1"),
            ("1.0.0-alpha-2", "1.0.0-alpha-2"),
        ];
        for (input, expected) in cases {
            assert_eq!(norm(input), expected, "normalizing {input}");
        }
    }

    #[test]
    fn rejects_what_nuget_rejects() {
        for bad in [
            "",
            "1.2.3.4.5",
            "1.0.0-RC.01",
            "a.b",
            "1..2",
            "1.0.0-",
            "1.0.0+",
            "1.0.0-be ta",
            "1.0.0-beta..1",
            "99999999999",
            "2147483648",
            "1.0.0/../x",
            "-1.0.0",
            ".1",
        ] {
            assert!(NuGetVersion::parse(bad).is_err(), "{bad:?} must be invalid");
        }
        assert!(NuGetVersion::parse("2147483647").is_ok());
    }

    #[test]
    fn lowercases_labels_for_urls_and_keeps_metadata_in_full() {
        let v = NuGetVersion::parse("1.0.0-RC.1+Build.5").map_err(|e| e.to_string());
        assert_eq!(v.as_ref().map(|v| v.lower_normalized()), Ok("1.0.0-rc.1".to_string()));
        assert_eq!(v.as_ref().map(|v| v.full()), Ok("1.0.0-RC.1+Build.5".to_string()));
        assert_eq!(v.map(|v| (v.is_prerelease(), v.is_semver2())), Ok((true, true)));
    }

    #[test]
    fn precedence_is_nugets_order() {
        let ordered = [
            "1.0.0-alpha",
            "1.0.0-alpha.1",
            "1.0.0-alpha.beta",
            "1.0.0-BETA",
            "1.0.0-beta.2",
            "1.0.0-beta.11",
            "1.0.0-rc.1",
            "1.0.0",
            "1.0.0.1",
            "1.2.0",
            "10.0.0",
        ];
        let parsed: Vec<NuGetVersion> = ordered.iter().filter_map(|v| NuGetVersion::parse(v).ok()).collect();
        assert_eq!(parsed.len(), ordered.len());
        for pair in parsed.windows(2) {
            assert_eq!(pair[0].precedence(&pair[1]), std::cmp::Ordering::Less, "{pair:?}");
        }
        let a = NuGetVersion::parse("1.0.0-Beta+one").ok();
        let b = NuGetVersion::parse("1.0.0-beta+two").ok();
        assert_eq!(a.zip(b).map(|(a, b)| a.precedence(&b)), Some(std::cmp::Ordering::Equal));
    }

    #[test]
    fn semver2_needs_dotted_label_or_metadata() {
        let classify = |t: &str| NuGetVersion::parse(t).map(|v| v.is_semver2()).ok();
        assert_eq!(classify("1.0.0-beta"), Some(false));
        assert_eq!(classify("1.0.0.1"), Some(false));
        assert_eq!(classify("1.0.0-beta.1"), Some(true));
        assert_eq!(classify("1.0.0+abc"), Some(true));
    }
}
