//! Where everything lives: the hosts, the feed shape (nuget.org or a
//! private feed under a path prefix) and the base URL of every resource.
//! Documents build their URLs from here; the router parses the same shapes.

/// The `sig` query parameter the cdn host requires on blob URLs (as Azure
/// Blob Storage requires a SAS signature).
pub(crate) const CDN_SIGNATURE: &str = "fake-signature";

/// Hosts (origins without a trailing slash) and the feed shape.
#[derive(Clone, Debug)]
pub(crate) struct Layout {
    pub(crate) api: String,
    pub(crate) search: String,
    pub(crate) www: String,
    /// Present when `.nupkg` downloads are redirected.
    pub(crate) cdn: Option<String>,
    /// "" for the nuget.org shape, else `/segment/...` (no trailing slash).
    pub(crate) prefix: String,
}

/// A registration hive.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Hive {
    /// nuget.org `registration5-semver1` (plain JSON).
    Semver1,
    /// nuget.org `registration5-gz-semver1`.
    GzSemver1,
    /// nuget.org `registration5-gz-semver2`.
    GzSemver2,
    /// Private feed `registrations2` (plain JSON, SemVer 1 only).
    Private,
    /// Private feed `registrations2-semver2` (plain JSON).
    PrivateSemver2,
}

impl Hive {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Hive::Semver1 => "registration5-semver1",
            Hive::GzSemver1 => "registration5-gz-semver1",
            Hive::GzSemver2 => "registration5-gz-semver2",
            Hive::Private => "registrations2",
            Hive::PrivateSemver2 => "registrations2-semver2",
        }
    }

    pub(crate) fn gzip(self) -> bool {
        matches!(self, Hive::GzSemver1 | Hive::GzSemver2)
    }

    pub(crate) fn semver2(self) -> bool {
        matches!(self, Hive::GzSemver2 | Hive::PrivateSemver2)
    }
}

/// `"feed/nuget/"` -> `"/feed/nuget"`; `""` and `"/"` -> `""`.
pub(crate) fn normalize_prefix(prefix: &str) -> String {
    match prefix.trim_matches('/') {
        "" => String::new(),
        inner => format!("/{inner}"),
    }
}

impl Layout {
    /// A private feed (path prefix) rather than the nuget.org shape.
    pub(crate) fn private(&self) -> bool {
        !self.prefix.is_empty()
    }

    /// `{api}{prefix}`: every api resource lives below it.
    pub(crate) fn feed(&self) -> String {
        format!("{}{}", self.api, self.prefix)
    }

    pub(crate) fn index_url(&self) -> String {
        format!("{}/v3/index.json", self.feed())
    }

    /// The hives this shape serves.
    pub(crate) fn hives(&self) -> &'static [Hive] {
        match self.private() {
            false => &[Hive::Semver1, Hive::GzSemver1, Hive::GzSemver2],
            true => &[Hive::Private, Hive::PrivateSemver2],
        }
    }

    /// The hive served under `name` (a path segment), if any.
    pub(crate) fn hive(&self, name: &str) -> Option<Hive> {
        self.hives().iter().copied().find(|h| h.name() == name)
    }

    /// The hive search results point at.
    pub(crate) fn search_hive(&self, semver2: bool) -> Hive {
        match (self.private(), semver2) {
            (false, false) => Hive::Semver1,
            (false, true) => Hive::GzSemver2,
            (true, false) => Hive::Private,
            (true, true) => Hive::PrivateSemver2,
        }
    }

    pub(crate) fn hive_base(&self, hive: Hive) -> String {
        format!("{}/v3/{}/", self.feed(), hive.name())
    }

    pub(crate) fn flat_base(&self) -> String {
        match self.private() {
            false => format!("{}/v3-flatcontainer/", self.api),
            true => format!("{}/v3/flatcontainer/", self.feed()),
        }
    }

    pub(crate) fn query_url(&self) -> String {
        match self.private() {
            false => format!("{}/query", self.search),
            true => format!("{}/v3/query2/", self.feed()),
        }
    }

    pub(crate) fn autocomplete_url(&self) -> String {
        match self.private() {
            false => format!("{}/autocomplete", self.search),
            true => format!("{}/v3/autocomplete/", self.feed()),
        }
    }

    /// The `PackagePublish/2.0.0` `@id`.
    pub(crate) fn publish_url(&self) -> String {
        match self.private() {
            false => format!("{}/api/v2/package", self.api),
            true => format!("{}/v2/", self.feed()),
        }
    }

    /// Where a redirected `.nupkg` download points (None: no redirect).
    pub(crate) fn cdn_nupkg_url(&self, lower_id: &str, lower_ver: &str) -> Option<String> {
        let cdn = self.cdn.as_ref()?;
        Some(format!(
            "{cdn}/blobs/{lower_id}/{lower_ver}/{lower_id}.{lower_ver}.nupkg\
             ?sv=2020-01-01&sig={CDN_SIGNATURE}"
        ))
    }
}
