//! Request classification: a raw request path becomes a [`Route`], and a
//! path under a mount becomes a [`Target`] with its cache key and upstream
//! URL. Hostile paths stop here: every segment is percent-decoded once and
//! must be clean UTF-8 without separators, NULs or dot segments. Nothing
//! from a path ever names a file (blob files are named by hashes).

use crate::nuget::{lower_invariant, LowerId, NuGetVersion, PackageFile};
use crate::rewrite::{MountKind, Mounts};

/// Longest request path nucache looks at.
const MAX_PATH: usize = 2048;

/// Why a path is refused; `NotFound` is a 404, the rest are 400s.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RouteError {
    #[error("malformed path: {0}")]
    Malformed(&'static str),
    #[error("invalid package id: {0}")]
    Id(#[from] crate::nuget::IdError),
    #[error("{0}")]
    Version(#[from] crate::nuget::VersionError),
    #[error("no such resource")]
    NotFound,
}

/// The cache key of an upstream's service index, in its namespace
/// (`cache::namespace`).
pub(crate) const SERVICE_INDEX_KEY: &str = "index.json";

/// The first cut, before the mount table is needed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    Home,
    Health,
    /// `/ready`: whether nucache can serve (503 with a reason if not).
    Ready,
    /// `/metrics`: Prometheus text.
    Metrics,
    /// Below `/admin/` (what follows it, decoded).
    Admin(String),
    ServiceIndex,
    /// A decoded path below `/v3/`, to be resolved against the mounts.
    Mounted(String),
}

/// What a mounted path asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetKind {
    VersionList,
    PackageFile(PackageFile),
    Registration,
    /// Catalog, vulnerability index and repository-signature documents.
    Document,
    /// A page of `VulnerabilityInfo`: upstreams publish new data under new
    /// page URLs (and a new `@updated` in the index), so a page is
    /// immutable per URL; only the index changes.
    VulnerabilityPage,
    /// Search and autocomplete (the query string is part of the key).
    Search,
    Publish,
}

/// A resolved request for something under a mount.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub kind: TargetKind,
    pub mount: usize,
    /// The cache key: canonical local path below `/v3/` (plus `?query`).
    pub key: String,
    /// Appended to the mount's upstream prefix to form the upstream URL.
    pub rest: String,
    /// `id` or `id/version`, for logs.
    pub package: Option<String>,
}

impl Target {
    /// The package id a read is about (version lists, package files,
    /// registration documents), which decides the upstreams it may go to.
    pub fn read_id(&self) -> Option<&str> {
        match self.kind {
            TargetKind::VersionList | TargetKind::PackageFile(_) | TargetKind::Registration => {
                self.package.as_deref().and_then(|p| p.split('/').next())
            }
            _ => None,
        }
    }
}

pub fn classify(raw_path: &str) -> Result<Route, RouteError> {
    let segments = decode_segments(raw_path)?;
    let parts: Vec<&str> = segments.iter().map(String::as_str).collect();
    match parts.as_slice() {
        [""] => Ok(Route::Home),
        ["health"] => Ok(Route::Health),
        ["metrics"] => Ok(Route::Metrics),
        ["ready"] => Ok(Route::Ready),
        ["admin", rest @ ..] => Ok(Route::Admin(rest.join("/"))),
        ["v3", "index.json"] => Ok(Route::ServiceIndex),
        ["v3", rest @ ..] if !rest.is_empty() && rest != [""] => Ok(Route::Mounted(rest.join("/"))),
        _ => Err(RouteError::NotFound),
    }
}

/// Splits an absolute path into percent-decoded segments; the last one is
/// empty when the path ends with `/`.
fn decode_segments(raw_path: &str) -> Result<Vec<String>, RouteError> {
    if raw_path.len() > MAX_PATH {
        return Err(RouteError::Malformed("path too long"));
    }
    let Some(path) = raw_path.strip_prefix('/') else {
        return Err(RouteError::Malformed("path must start with '/'"));
    };
    let pieces: Vec<&str> = path.split('/').collect();
    let last = pieces.len() - 1;
    pieces
        .iter()
        .enumerate()
        .map(|(i, piece)| {
            if piece.is_empty() && i != last {
                return Err(RouteError::Malformed("empty path segment"));
            }
            decode_segment(piece)
        })
        .collect()
}

fn decode_segment(piece: &str) -> Result<String, RouteError> {
    let bytes = percent_decode(piece)?;
    let text = String::from_utf8(bytes).map_err(|_| RouteError::Malformed("path is not valid UTF-8"))?;
    if text == "." || text == ".." {
        return Err(RouteError::Malformed("dot segments are not allowed"));
    }
    if text.chars().any(|c| c == '/' || c == '\\' || c.is_control()) {
        return Err(RouteError::Malformed(
            "encoded separators or control characters in path",
        ));
    }
    Ok(text)
}

fn percent_decode(piece: &str) -> Result<Vec<u8>, RouteError> {
    let bytes = piece.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes
                .get(i + 1..i + 3)
                .ok_or(RouteError::Malformed("bad percent-encoding"))?;
            let value = std::str::from_utf8(hex)
                .ok()
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or(RouteError::Malformed("bad percent-encoding"))?;
            out.push(value);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    Ok(out)
}

/// Resolves a [`Route::Mounted`] path (and query) against the mounts.
pub fn resolve(path: &str, query: Option<&str>, mounts: &Mounts) -> Result<Target, RouteError> {
    let (index, rest) = mounts.find_local(path).ok_or(RouteError::NotFound)?;
    let mount = mounts.get(index).ok_or(RouteError::NotFound)?;
    let local = mount.local.as_str();
    let target = |kind, key: String, rest: String, package| Target {
        kind,
        mount: index,
        key,
        rest,
        package,
    };
    match mount.kind {
        MountKind::PackageBase => {
            flat_container(rest).map(|(kind, rel, package)| target(kind, format!("{local}{rel}"), rel, Some(package)))
        }
        MountKind::Registrations => {
            let rel = lower_invariant(document_path(rest)?);
            let package = rel.split('/').next().map(str::to_string);
            Ok(target(TargetKind::Registration, format!("{local}{rel}"), rel, package))
        }
        MountKind::Catalog | MountKind::Vulnerabilities | MountKind::RepositorySignatures => {
            let rel = document_path(rest)?.to_string();
            // The mount is the index's directory; the index is `index.json`.
            let kind = match mount.kind {
                MountKind::Vulnerabilities if rel != "index.json" => TargetKind::VulnerabilityPage,
                _ => TargetKind::Document,
            };
            Ok(target(kind, format!("{local}{rel}"), rel, None))
        }
        MountKind::Search | MountKind::Autocomplete => {
            if !rest.is_empty() {
                return Err(RouteError::NotFound);
            }
            let rel = query.map(|q| format!("?{q}")).unwrap_or_default();
            Ok(target(TargetKind::Search, format!("{local}{rel}"), rel, None))
        }
        MountKind::Publish | MountKind::SymbolPublish => {
            let package = publish_package(rest)?;
            Ok(target(
                TargetKind::Publish,
                format!("{local}{rest}"),
                rest.to_string(),
                package,
            ))
        }
    }
}

/// `{id}/index.json` or `{id}/{version}/{file}` -> kind, canonical relative
/// path, and `id` / `id/version` for logs.
fn flat_container(rest: &str) -> Result<(TargetKind, String, String), RouteError> {
    let parts: Vec<&str> = rest.split('/').collect();
    match parts.as_slice() {
        [id, "index.json"] => {
            let id = LowerId::parse(id)?;
            Ok((TargetKind::VersionList, format!("{id}/index.json"), id.to_string()))
        }
        [raw_id, raw_version, file] => {
            let id = LowerId::parse(raw_id)?;
            let version = NuGetVersion::parse(raw_version)?.lower_normalized();
            let kind = PackageFile::recognise(file, (raw_id, raw_version), (id.as_str(), &version))
                .ok_or(RouteError::NotFound)?;
            Ok((
                TargetKind::PackageFile(kind),
                kind.path(&id, &version),
                format!("{id}/{version}"),
            ))
        }
        _ => Err(RouteError::NotFound),
    }
}

/// A relative document path: non-empty segments of URL-safe characters,
/// none starting with a dot or holding `..` (no document name needs them).
fn document_path(rest: &str) -> Result<&str, RouteError> {
    let clean = !rest.is_empty()
        && rest.split('/').all(|segment| {
            !segment.is_empty()
                && !segment.starts_with('.')
                && !segment.contains("..")
                && segment
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b'~' | b'+'))
        });
    if clean {
        Ok(rest)
    } else {
        Err(RouteError::NotFound)
    }
}

/// Publish paths: `""`, `"/"` (push) or `"/{id}/{version}"` (delete, relist).
fn publish_package(rest: &str) -> Result<Option<String>, RouteError> {
    let parts: Vec<&str> = rest.split('/').collect();
    match parts.as_slice() {
        [""] | ["", ""] => Ok(None),
        ["", id, version] | ["", id, version, ""] => {
            LowerId::parse(id)?;
            NuGetVersion::parse(version)?;
            Ok(Some(format!("{id}/{version}")))
        }
        _ => Err(RouteError::NotFound),
    }
}

/// The local path of a cache key: what follows its namespace (`@…/`, see
/// `cache::namespace`), or the key itself.
pub fn local_part(key: &str) -> &str {
    match key.strip_prefix('@').and_then(|rest| rest.split_once('/')) {
        Some((_, local)) => local,
        None => key,
    }
}

/// A cache key as an operator reads it: `foo 1.0.0 (foo.1.0.0.nupkg)`,
/// `foo (version list)`, `foo 1.0.0 (registration leaf, HIVE)`, `the
/// service index`; other keys as they are. For `nucache verify`'s report.
pub fn describe_key(namespaced: &str) -> String {
    let key = local_part(namespaced);
    if key == "index.json" {
        return "the upstream service index (index.json)".to_string();
    }
    let parts: Vec<&str> = key.split('/').collect();
    let described = match parts.as_slice() {
        [mount, id, "index.json"] if mount.starts_with("flatcontainer") => format!("{id} (version list)"),
        [mount, id, version, file] if mount.starts_with("flatcontainer") => format!("{id} {version} ({file})"),
        [mount, hive, id, "index.json"] if mount.starts_with("registration") => {
            format!("{id} (registration index, {hive})")
        }
        [mount, hive, id, "page", low, high] if mount.starts_with("registration") => {
            let high = high.trim_end_matches(".json");
            format!("{id} {low} to {high} (registration page, {hive})")
        }
        [mount, hive, id, leaf] if mount.starts_with("registration") => {
            format!("{id} {} (registration leaf, {hive})", leaf.trim_end_matches(".json"))
        }
        _ => return key.to_string(),
    };
    format!("{described} [{namespaced}]")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mounts() -> Mounts {
        let mut m = Mounts::default();
        m.add(MountKind::PackageBase, "https://api.up/v3-flatcontainer/", "");
        m.add(
            MountKind::Registrations,
            "https://api.up/v3/registration5-gz-semver2/",
            "registration5-gz-semver2",
        );
        m.add(MountKind::Search, "https://search.up/query", "");
        m.add(MountKind::Publish, "https://www.up/api/v2/package", "");
        m
    }

    fn target(path: &str, query: Option<&str>) -> Result<Target, RouteError> {
        match classify(path)? {
            Route::Mounted(rest) => resolve(&rest, query, &mounts()),
            other => panic!("{path} classified as {other:?}"),
        }
    }

    #[test]
    fn cache_keys_read_as_packages() {
        assert_eq!(
            describe_key("flatcontainer/foo/1.0.0/foo.1.0.0.nupkg"),
            "foo 1.0.0 (foo.1.0.0.nupkg) [flatcontainer/foo/1.0.0/foo.1.0.0.nupkg]"
        );
        assert_eq!(
            describe_key("flatcontainer/foo/index.json"),
            "foo (version list) [flatcontainer/foo/index.json]"
        );
        assert_eq!(
            describe_key("registration/gz-semver2/foo/index.json"),
            "foo (registration index, gz-semver2) [registration/gz-semver2/foo/index.json]"
        );
        assert_eq!(
            describe_key("registration/plain/foo/1.0.0.json"),
            "foo 1.0.0 (registration leaf, plain) [registration/plain/foo/1.0.0.json]"
        );
        assert!(describe_key("index.json").contains("service index"));
        assert_eq!(describe_key("catalog/index.json"), "catalog/index.json");
    }

    #[test]
    fn classifies_fixed_routes() {
        assert_eq!(classify("/"), Ok(Route::Home));
        assert_eq!(classify("/health"), Ok(Route::Health));
        assert_eq!(classify("/v3/index.json"), Ok(Route::ServiceIndex));
        assert_eq!(classify("/admin/packages"), Ok(Route::Admin("packages".into())));
        assert_eq!(classify("/v3/"), Err(RouteError::NotFound));
        assert_eq!(classify("/other"), Err(RouteError::NotFound));
    }

    #[test]
    fn canonicalizes_flat_container_paths() {
        let t = target("/v3/flatcontainer/Foo.Bar/1.0.0.0/Foo.Bar.1.0.0.0.nupkg", None);
        let t = t.map(|t| (t.kind, t.key, t.rest));
        assert_eq!(
            t,
            Ok((
                TargetKind::PackageFile(PackageFile::Nupkg),
                "flatcontainer/foo.bar/1.0.0/foo.bar.1.0.0.nupkg".to_string(),
                "foo.bar/1.0.0/foo.bar.1.0.0.nupkg".to_string()
            ))
        );
        let v = target("/v3/flatcontainer/Foo.Bar/index.json", None).map(|t| t.key);
        assert_eq!(v, Ok("flatcontainer/foo.bar/index.json".to_string()));
    }

    #[test]
    fn registration_and_search_keys() {
        let r = target(
            "/v3/registration/registration5-gz-semver2/Foo/Page/1.0.0/2.0.0.json",
            None,
        );
        assert_eq!(r.map(|t| t.rest), Ok("foo/page/1.0.0/2.0.0.json".to_string()));
        let s = target("/v3/query", Some("q=foo&take=5"));
        assert_eq!(
            s.map(|t| (t.key, t.rest)),
            Ok(("query?q=foo&take=5".to_string(), "?q=foo&take=5".to_string()))
        );
    }

    #[test]
    fn publish_paths() {
        assert_eq!(target("/v3/package/", None).map(|t| t.rest), Ok("/".to_string()));
        assert_eq!(target("/v3/package", None).map(|t| t.rest), Ok(String::new()));
        assert_eq!(
            target("/v3/package/Foo/1.0.0", None).map(|t| t.package),
            Ok(Some("Foo/1.0.0".to_string()))
        );
        assert!(target("/v3/package/Foo", None).is_err());
    }

    #[test]
    fn refuses_hostile_paths() {
        let malformed = [
            "/v3/flatcontainer/../../etc/passwd",
            "/v3/flatcontainer/%2e%2e/x",
            "/v3/flatcontainer/a%2fb/index.json",
            "/v3/flatcontainer/a%5cb/index.json",
            "/v3/flatcontainer/a\\b/index.json",
            "/v3/flatcontainer/a%00/index.json",
            "/v3/flatcontainer/%c0%ae%c0%ae/x",
            "/v3//flatcontainer",
            "/v3/flatcontainer/a%zz",
            "v3/index.json",
        ];
        for path in malformed {
            assert!(
                matches!(classify(path), Err(RouteError::Malformed(_))),
                "{path} must be malformed"
            );
        }
        let long_id = format!("/v3/flatcontainer/{}/index.json", "a".repeat(101));
        assert!(matches!(target(&long_id, None), Err(RouteError::Id(_))));
        assert!(matches!(
            target("/v3/flatcontainer/foo/1.0.0-RC.01/foo.nuspec", None),
            Err(RouteError::Version(_))
        ));
        assert_eq!(
            target("/v3/flatcontainer/foo/1.0.0/bar.1.0.0.nupkg", None),
            Err(RouteError::NotFound)
        );
        assert_eq!(
            target("/v3/registration/registration5-gz-semver2/a/b c.json", None),
            Err(RouteError::NotFound)
        );
    }
}
