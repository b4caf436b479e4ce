//! The package model of the fake upstream: versions, packages, the public
//! [`Corpus`] and the mutable [`Store`] the server reads from.

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::sync::OnceLock;

use bytes::Bytes;
use sha2::{Digest, Sha256};

/// 2020-01-01T00:00:00Z: the publish time of the first corpus package.
pub(crate) const BASE_TIME: u64 = 1_577_836_800;
/// Registration `published` value nuget.org uses for unlisted versions.
pub(crate) const UNLISTED_PUBLISHED: &str = "1900-01-01T00:00:00+00:00";

// ---------------------------------------------------------------------------
// versions

/// A NuGet version: 1-4 numeric parts, optional release labels and metadata.
#[derive(Clone, Debug)]
pub(crate) struct Version {
    nums: [u64; 4],
    pre: String,
    meta: String,
}

impl Version {
    pub(crate) fn parse(text: &str) -> Option<Version> {
        let text = text.trim();
        let (rest, meta) = text.split_once('+').unwrap_or((text, ""));
        let (core, pre) = rest.split_once('-').unwrap_or((rest, ""));
        let parts: Vec<&str> = core.split('.').collect();
        if parts.len() > 4 {
            return None;
        }
        let mut nums = [0u64; 4];
        for (slot, part) in nums.iter_mut().zip(&parts) {
            if part.is_empty() || !part.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            *slot = part.parse().ok()?;
        }
        if (rest.contains('-') && !valid_labels(pre)) || (text.contains('+') && !valid_labels(meta)) {
            return None;
        }
        Some(Version {
            nums,
            pre: pre.to_string(),
            meta: meta.to_string(),
        })
    }

    /// `Major.Minor.Patch[.Revision][-labels]`, no metadata (NuGet format `N`).
    pub(crate) fn normalized(&self) -> String {
        let [a, b, c, d] = self.nums;
        let mut s = format!("{a}.{b}.{c}");
        if d > 0 {
            s.push_str(&format!(".{d}"));
        }
        if !self.pre.is_empty() {
            s.push('-');
            s.push_str(&self.pre);
        }
        s
    }

    /// The normalized version plus `+metadata` when there is some.
    pub(crate) fn full(&self) -> String {
        match self.meta.is_empty() {
            true => self.normalized(),
            false => format!("{}+{}", self.normalized(), self.meta),
        }
    }

    /// The form used in URLs (`LOWER_VERSION`).
    pub(crate) fn lower(&self) -> String {
        self.normalized().to_lowercase()
    }

    pub(crate) fn is_prerelease(&self) -> bool {
        !self.pre.is_empty()
    }

    /// Dotted release labels or build metadata make a version SemVer 2.0.0.
    pub(crate) fn is_semver2(&self) -> bool {
        self.pre.contains('.') || !self.meta.is_empty()
    }

    fn precedence(&self, other: &Version) -> Ordering {
        self.nums
            .cmp(&other.nums)
            .then_with(|| match (self.pre.is_empty(), other.pre.is_empty()) {
                (true, true) => Ordering::Equal,
                (true, false) => Ordering::Greater,
                (false, true) => Ordering::Less,
                (false, false) => compare_labels(&self.pre, &other.pre),
            })
    }
}

impl PartialEq for Version {
    fn eq(&self, other: &Self) -> bool {
        self.precedence(other) == Ordering::Equal
    }
}

impl Eq for Version {}

impl PartialOrd for Version {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Version {
    fn cmp(&self, other: &Self) -> Ordering {
        self.precedence(other)
    }
}

fn valid_labels(s: &str) -> bool {
    !s.is_empty()
        && s.split('.')
            .all(|label| !label.is_empty() && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'))
}

/// SemVer 2.0.0 precedence of release labels (alphanumeric ones compared
/// case-insensitively, as NuGet does).
fn compare_labels(a: &str, b: &str) -> Ordering {
    let mut left = a.split('.');
    let mut right = b.split('.');
    loop {
        let ord = match (left.next(), right.next()) {
            (None, None) => return Ordering::Equal,
            (None, Some(_)) => return Ordering::Less,
            (Some(_), None) => return Ordering::Greater,
            (Some(x), Some(y)) => compare_label(x, y),
        };
        if ord != Ordering::Equal {
            return ord;
        }
    }
}

fn compare_label(x: &str, y: &str) -> Ordering {
    match (x.parse::<u64>(), y.parse::<u64>()) {
        (Ok(a), Ok(b)) => a.cmp(&b),
        (Ok(_), Err(_)) => Ordering::Less,
        (Err(_), Ok(_)) => Ordering::Greater,
        (Err(_), Err(_)) => x.to_lowercase().cmp(&y.to_lowercase()),
    }
}

/// Lowercase form of a package id (stand-in for .NET `ToLowerInvariant`).
pub(crate) fn lower_id(id: &str) -> String {
    id.to_lowercase()
}

// ---------------------------------------------------------------------------
// packages

/// One dependency group of a package (`targetFramework` may be empty).
#[derive(Clone, Debug)]
pub(crate) struct DepGroup {
    pub(crate) target_framework: String,
    /// (dependency id, version range)
    pub(crate) deps: Vec<(String, String)>,
}

#[derive(Clone, Debug)]
pub(crate) struct Package {
    pub(crate) id: String,
    pub(crate) version: Version,
    pub(crate) nupkg: Bytes,
    pub(crate) listed: bool,
    /// Unix seconds.
    pub(crate) published: u64,
    pub(crate) groups: Vec<DepGroup>,
    /// Carries one vulnerability in its registration entry.
    pub(crate) vulnerable: bool,
}

impl Package {
    pub(crate) fn lower_id(&self) -> String {
        lower_id(&self.id)
    }

    pub(crate) fn lower_ver(&self) -> String {
        self.version.lower()
    }

    /// The `.nuspec` served from the flat container.
    pub(crate) fn nuspec(&self) -> String {
        let mut xml = String::from("<?xml version=\"1.0\" encoding=\"utf-8\"?>\n");
        xml.push_str("<package xmlns=\"http://schemas.microsoft.com/packaging/2013/05/nuspec.xsd\">\n");
        xml.push_str("  <metadata>\n");
        xml.push_str(&format!("    <id>{}</id>\n", xml_escape(&self.id)));
        xml.push_str(&format!(
            "    <version>{}</version>\n",
            xml_escape(&self.version.full())
        ));
        xml.push_str("    <authors>nucache tests</authors>\n");
        xml.push_str(&format!(
            "    <description>{}</description>\n",
            xml_escape(&self.description())
        ));
        if !self.groups.is_empty() {
            xml.push_str("    <dependencies>\n");
            for group in &self.groups {
                xml.push_str(&nuspec_group(group));
            }
            xml.push_str("    </dependencies>\n");
        }
        xml.push_str("  </metadata>\n</package>\n");
        xml
    }

    pub(crate) fn description(&self) -> String {
        format!("Fake package {} {} for nucache tests.", self.id, self.version.full())
    }
}

fn nuspec_group(group: &DepGroup) -> String {
    let mut xml = match group.target_framework.is_empty() {
        true => String::from("      <group>\n"),
        false => format!(
            "      <group targetFramework=\"{}\">\n",
            xml_escape(&group.target_framework)
        ),
    };
    for (id, range) in &group.deps {
        xml.push_str(&format!(
            "        <dependency id=\"{}\" version=\"{}\" />\n",
            xml_escape(id),
            xml_escape(range)
        ));
    }
    xml.push_str("      </group>\n");
    xml
}

pub(crate) fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Deterministic pseudo-random `.nupkg` bytes for `id` + `version`: 20 KiB
/// plus up to 4 KiB (seeded too), starting with the zip magic `PK\x03\x04`.
/// They are not a valid zip archive.
pub(crate) fn fake_nupkg(id: &str, version: &str) -> Vec<u8> {
    let seed: [u8; 32] = Sha256::digest(format!("{id}\n{version}").as_bytes()).into();
    let len = 20 * 1024 + usize::from(seed[0]) * 16;
    let mut state = u64::from_le_bytes([seed[1], seed[2], seed[3], seed[4], seed[5], seed[6], seed[7], seed[8]]) | 1;
    let mut out = Vec::with_capacity(len + 8);
    out.extend_from_slice(b"PK\x03\x04");
    while out.len() < len {
        // xorshift64
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        out.extend_from_slice(&state.to_le_bytes());
    }
    out.truncate(len);
    out
}

// ---------------------------------------------------------------------------
// corpus

/// The packages a [`super::FakeUpstream`] starts with.
#[derive(Clone, Debug, Default)]
pub struct Corpus {
    pub(crate) packages: Vec<Package>,
}

impl Corpus {
    /// No packages at all.
    pub fn empty() -> Corpus {
        Corpus::default()
    }

    /// `Fake.Core`, `Fake.Dep`, `Fake.Many` (200 versions) and `Fake.MixedCASE`.
    /// Built once per test binary, then cloned (the bytes are shared).
    pub fn default_corpus() -> Corpus {
        static DEFAULT: OnceLock<Corpus> = OnceLock::new();
        DEFAULT.get_or_init(Corpus::build_default).clone()
    }

    fn build_default() -> Corpus {
        let mut c = Corpus::empty();
        for v in ["1.0.0", "1.1.0", "1.2.0-beta", "2.0.0-rc.1", "3.0.0+build.7"] {
            c.add_generated("Fake.Core", v, true);
        }
        c.add_generated("Fake.Core", "1.3.0", false);
        c.add_dependency("Fake.Core", "1.1.0", "netstandard2.0", "Fake.Dep", "[1.0.0, )");
        c.set_vulnerable("Fake.Core", "1.0.0");
        for v in ["1.0.0", "1.0.1", "1.0.0.5"] {
            c.add_generated("Fake.Dep", v, true);
        }
        for minor in 0..200 {
            c.add_generated("Fake.Many", &format!("1.{minor}.0"), true);
        }
        c.add_generated("Fake.MixedCASE", "1.0.0", true);
        c
    }

    /// Adds (or replaces) `id` `version` with the given `.nupkg` bytes.
    /// Panics on an invalid version (this is a test helper).
    pub fn add(&mut self, id: &str, version: &str, nupkg: Vec<u8>, listed: bool) {
        let version = Version::parse(version).unwrap_or_else(|| panic!("fake upstream: invalid version {version:?}"));
        let published = BASE_TIME + 60 * self.packages.len() as u64;
        self.remove(id, &version);
        self.packages.push(Package {
            id: id.to_string(),
            version,
            nupkg: Bytes::from(nupkg),
            listed,
            published,
            groups: Vec::new(),
            vulnerable: false,
        });
    }

    /// Adds a package whose bytes are [`fake_nupkg`]`(id, version)`.
    pub fn add_generated(&mut self, id: &str, version: &str, listed: bool) {
        self.add(id, version, fake_nupkg(id, version), listed);
    }

    /// Adds a dependency on `dep_id` `range` to the group for
    /// `target_framework` ("" = all frameworks) of an already added package.
    pub fn add_dependency(&mut self, id: &str, version: &str, target_framework: &str, dep_id: &str, range: &str) {
        let pkg = self.find_mut(id, version);
        let group = match pkg.groups.iter().position(|g| g.target_framework == target_framework) {
            Some(i) => &mut pkg.groups[i],
            None => {
                pkg.groups.push(DepGroup {
                    target_framework: target_framework.to_string(),
                    deps: Vec::new(),
                });
                pkg.groups.last_mut().expect("just pushed")
            }
        };
        group.deps.push((dep_id.to_string(), range.to_string()));
    }

    /// Gives an already added package one (GitHub advisory) vulnerability.
    pub fn set_vulnerable(&mut self, id: &str, version: &str) {
        self.find_mut(id, version).vulnerable = true;
    }

    fn remove(&mut self, id: &str, version: &Version) {
        let lid = lower_id(id);
        self.packages
            .retain(|p| !(p.lower_id() == lid && &p.version == version));
    }

    fn find_mut(&mut self, id: &str, version: &str) -> &mut Package {
        let lid = lower_id(id);
        let wanted = Version::parse(version);
        self.packages
            .iter_mut()
            .find(|p| p.lower_id() == lid && Some(&p.version) == wanted.as_ref())
            .unwrap_or_else(|| panic!("fake upstream: add {id} {version} first"))
    }
}

// ---------------------------------------------------------------------------
// store

/// The live package set. `clock` is the deterministic "now": it starts one
/// day after [`BASE_TIME`] and ticks one second per mutation.
#[derive(Debug)]
pub(crate) struct Store {
    packages: BTreeMap<String, Vec<Package>>,
    clock: u64,
    commit: u64,
}

impl Store {
    pub(crate) fn new(corpus: Corpus) -> Store {
        let mut store = Store {
            packages: BTreeMap::new(),
            clock: BASE_TIME + 86_400,
            commit: 1,
        };
        for pkg in corpus.packages {
            store.insert(pkg);
        }
        store
    }

    fn insert(&mut self, pkg: Package) {
        let list = self.packages.entry(pkg.lower_id()).or_default();
        list.retain(|p| p.version != pkg.version);
        list.push(pkg);
        list.sort_by(|a, b| a.version.cmp(&b.version));
    }

    /// Adds a package at runtime; returns false for an invalid version.
    pub(crate) fn add(&mut self, id: &str, version: &str, nupkg: Vec<u8>) -> bool {
        let Some(version) = Version::parse(version) else {
            return false;
        };
        self.touch();
        let pkg = Package {
            id: id.to_string(),
            version,
            nupkg: Bytes::from(nupkg),
            listed: true,
            published: self.clock,
            groups: Vec::new(),
            vulnerable: false,
        };
        self.insert(pkg);
        true
    }

    /// Sets the listing state; returns false when the package is unknown.
    pub(crate) fn set_listed(&mut self, id: &str, version: &str, listed: bool) -> bool {
        let found = self.find_mut(id, version).map(|p| p.listed = listed).is_some();
        if found {
            self.touch();
        }
        found
    }

    fn find_mut(&mut self, id: &str, version: &str) -> Option<&mut Package> {
        let wanted = Version::parse(version)?;
        self.packages
            .get_mut(&lower_id(id))?
            .iter_mut()
            .find(|p| p.version == wanted)
    }

    /// Looks a package up by any spelling of id and version.
    pub(crate) fn find(&self, id: &str, version: &str) -> Option<&Package> {
        let wanted = Version::parse(version)?;
        self.packages.get(&lower_id(id))?.iter().find(|p| p.version == wanted)
    }

    /// Looks a package up by the exact URL forms `LOWER_ID` / `LOWER_VERSION`.
    pub(crate) fn get(&self, lower_id: &str, lower_ver: &str) -> Option<&Package> {
        self.packages.get(lower_id)?.iter().find(|p| p.lower_ver() == lower_ver)
    }

    /// Versions of `lower_id` ascending; semver2 ones only if `semver2`.
    pub(crate) fn versions(&self, lower_id: &str, semver2: bool) -> Vec<&Package> {
        self.packages
            .get(lower_id)
            .map(|list| list.iter().filter(|p| semver2 || !p.version.is_semver2()).collect())
            .unwrap_or_default()
    }

    /// Lowercase ids, sorted.
    pub(crate) fn ids(&self) -> impl Iterator<Item = &String> {
        self.packages.keys()
    }

    pub(crate) fn all(&self) -> impl Iterator<Item = &Package> {
        self.packages.values().flatten()
    }

    fn touch(&mut self) {
        self.clock += 1;
        self.commit += 1;
    }

    /// Last-Modified of documents that change with the package set.
    pub(crate) fn mtime(&self) -> u64 {
        self.clock
    }

    pub(crate) fn commit_id(&self) -> String {
        format!("00000000-0000-4000-8000-{:012}", self.commit)
    }
}

// ---------------------------------------------------------------------------
// time formatting (no chrono)

struct Civil {
    year: i64,
    month: u32,
    day: u32,
    hour: u64,
    minute: u64,
    second: u64,
    weekday: u64,
}

fn civil(secs: u64) -> Civil {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    Civil {
        year,
        month,
        day,
        hour: rem / 3600,
        minute: rem / 60 % 60,
        second: rem % 60,
        weekday: (secs / 86_400 + 4) % 7,
    }
}

/// `2020-01-01T00:00:00+00:00`
pub(crate) fn iso(secs: u64) -> String {
    let c = civil(secs);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}+00:00",
        c.year, c.month, c.day, c.hour, c.minute, c.second
    )
}

/// `Wed, 01 Jan 2020 00:00:00 GMT`
pub(crate) fn http_date(secs: u64) -> String {
    const DAYS: [&str; 7] = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let c = civil(secs);
    format!(
        "{}, {:02} {} {:04} {:02}:{:02}:{:02} GMT",
        DAYS[c.weekday as usize],
        c.day,
        MONTHS[(c.month - 1) as usize],
        c.year,
        c.hour,
        c.minute,
        c.second
    )
}
