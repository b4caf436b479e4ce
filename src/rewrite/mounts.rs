//! The mount table: which upstream URL prefix nucache serves under which of
//! its own paths. Built from the upstream service index (see
//! `service_index.rs`); used to route requests and to rewrite URLs.

use std::sync::OnceLock;

use super::matcher::{Hit, PrefixMatcher};
use super::PLACEHOLDER;

/// What a mounted upstream resource is; decides how requests under it are
/// routed, cached and forwarded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MountKind {
    PackageBase,
    Registrations,
    Search,
    Autocomplete,
    Catalog,
    Vulnerabilities,
    RepositorySignatures,
    Publish,
    SymbolPublish,
}

impl MountKind {
    /// The local name a mount of this kind gets under `/v3/`. Directory
    /// kinds end with `/`; endpoints are exact paths.
    fn local_stem(self) -> &'static str {
        match self {
            MountKind::PackageBase => "flatcontainer/",
            MountKind::Registrations => "registration/",
            MountKind::Search => "query",
            MountKind::Autocomplete => "autocomplete",
            MountKind::Catalog => "catalog/",
            MountKind::Vulnerabilities => "vulnerabilities/",
            MountKind::RepositorySignatures => "repository-signatures/",
            MountKind::Publish => "package",
            MountKind::SymbolPublish => "symbolpackage",
        }
    }

    /// Endpoints take a query string or a path suffix; directories hold documents.
    pub fn is_endpoint(self) -> bool {
        !self.local_stem().ends_with('/')
    }
}

/// One upstream prefix served by nucache under `/v3/{local}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    pub kind: MountKind,
    /// Path under `/v3/`: `flatcontainer/`, `registration/gz-semver2/`, `query`...
    pub local: String,
    /// Absolute upstream URL prefix; directories end with `/`.
    pub upstream: String,
}

impl Mount {
    /// The upstream URL of `rest` (a path relative to the mount, or a query
    /// string starting with `?` for endpoints).
    pub fn upstream_url(&self, rest: &str) -> String {
        format!("{}{rest}", self.upstream)
    }
}

/// All mounts of one service index.
#[derive(Debug, Clone, Default)]
pub struct Mounts {
    mounts: Vec<Mount>,
    /// Built on first use, after the last `add`.
    matcher: OnceLock<PrefixMatcher>,
}

impl PartialEq for Mounts {
    fn eq(&self, other: &Self) -> bool {
        self.mounts == other.mounts
    }
}

impl Eq for Mounts {}

impl Mounts {
    /// Adds a mount for `upstream` unless that prefix is mounted already;
    /// `hint` names registration hives. Returns the mount's index.
    pub fn add(&mut self, kind: MountKind, upstream: &str, hint: &str) -> usize {
        if let Some(i) = self.mounts.iter().position(|m| m.upstream == upstream) {
            return i;
        }
        let stem = match kind {
            MountKind::Registrations => format!("{}{}/", kind.local_stem(), sanitize(hint)),
            _ => kind.local_stem().to_string(),
        };
        let local = self.unique_local(&stem);
        self.mounts.push(Mount {
            kind,
            local,
            upstream: upstream.to_string(),
        });
        self.matcher = OnceLock::new();
        self.mounts.len() - 1
    }

    /// `stem`, or `stem` with `-2`, `-3`... when another upstream has it.
    fn unique_local(&self, stem: &str) -> String {
        let (base, slash) = match stem.strip_suffix('/') {
            Some(base) => (base, "/"),
            None => (stem, ""),
        };
        (1..)
            .map(|n| {
                if n == 1 {
                    stem.to_string()
                } else {
                    format!("{base}-{n}{slash}")
                }
            })
            .find(|candidate| self.mounts.iter().all(|m| &m.local != candidate))
            .unwrap_or_else(|| stem.to_string())
    }

    /// These mounts under `primary`'s local names: among several
    /// upstreams clients see the primary's service index, so another
    /// upstream's documents must point at the paths that index names. A
    /// mount takes the primary's mount of the same kind and local name,
    /// else one of the same kind not yet taken (a SemVer 2 hive preferring
    /// a SemVer 2 hive), else keeps a name of its own.
    pub fn aligned_to(&self, primary: &Mounts) -> Mounts {
        let mut locals: Vec<Option<String>> = self
            .mounts
            .iter()
            .map(|m| {
                primary
                    .mounts
                    .iter()
                    .find(|p| p.kind == m.kind && p.local == m.local)
                    .map(|p| p.local.clone())
            })
            .collect();
        let semver2 = |local: &str| local.contains("semver2");
        // Hives of the same SemVer level first, then whatever is left.
        for same_level in [true, false] {
            for (i, mount) in self.mounts.iter().enumerate() {
                if locals[i].is_some() {
                    continue;
                }
                let chosen = primary
                    .mounts
                    .iter()
                    .filter(|p| p.kind == mount.kind && !locals.iter().flatten().any(|l| l == &p.local))
                    .find(|p| !same_level || semver2(&p.local) == semver2(&mount.local))
                    .map(|p| p.local.clone());
                locals[i] = chosen;
            }
        }
        let mut aligned = Mounts::default();
        for (mount, local) in self.mounts.iter().zip(locals) {
            let local = match local {
                Some(local) => local,
                None => {
                    let own = primary.unique_local(&mount.local);
                    aligned.unique_local(&own)
                }
            };
            aligned.mounts.push(Mount {
                kind: mount.kind,
                local,
                upstream: mount.upstream.clone(),
            });
        }
        aligned
    }

    pub fn get(&self, index: usize) -> Option<&Mount> {
        self.mounts.get(index)
    }

    pub fn iter(&self) -> impl Iterator<Item = &Mount> {
        self.mounts.iter()
    }

    pub fn first_of(&self, kind: MountKind) -> Option<&Mount> {
        self.mounts.iter().find(|m| m.kind == kind)
    }

    /// Finds the mount serving `path` (relative to `/v3/`, already decoded
    /// and validated) and returns it with the rest of the path.
    pub fn find_local<'p>(&self, path: &'p str) -> Option<(usize, &'p str)> {
        let mut best: Option<(usize, &'p str)> = None;
        for (i, m) in self.mounts.iter().enumerate() {
            let rest = if m.kind.is_endpoint() {
                (path == m.local || path.strip_prefix(m.local.as_str()).is_some_and(|r| r.starts_with('/')))
                    .then(|| &path[m.local.len()..])
            } else {
                path.strip_prefix(m.local.as_str())
            };
            let longer = best.is_none_or(|(b, _)| self.mounts[b].local.len() < m.local.len());
            if let (Some(rest), true) = (rest, longer) {
                best = Some((i, rest));
            }
        }
        best
    }

    pub(super) fn matcher(&self) -> &PrefixMatcher {
        self.matcher.get_or_init(|| PrefixMatcher::new(&self.mounts))
    }

    /// Rewrites every mounted upstream prefix inside `text` to
    /// `PLACEHOLDER/v3/{local}`; `None` when nothing was mounted there.
    /// Only text holding a URL (`://`) is rewritten.
    pub fn rewrite(&self, text: &str) -> Option<String> {
        if !text.contains("://") {
            return None;
        }
        let hits = self.matcher().hits(text.as_bytes());
        let mut out = Vec::with_capacity(text.len());
        let copied = self.write_replaced(&mut out, text.as_bytes(), 0, &hits)?;
        out.extend_from_slice(text.as_bytes().get(copied..).unwrap_or_default());
        // Prefixes are whole UTF-8 strings, so they start and end on
        // character boundaries of `text`.
        String::from_utf8(out).ok()
    }

    /// Appends `text[from..]` to `out` up to the end of the last hit
    /// replaced, each replaced by `PLACEHOLDER/v3/{local}`, and returns
    /// where it stopped; `None` when nothing was replaced. `hits` (sorted,
    /// as `PrefixMatcher::hits` returns them) index `text` and lie after `from`.
    pub(super) fn write_replaced(&self, out: &mut Vec<u8>, text: &[u8], from: usize, hits: &[Hit]) -> Option<usize> {
        let mut copied = None;
        for hit in self.matcher().chosen(text, hits) {
            let Some(mount) = self.mounts.get(hit.mount) else {
                continue;
            };
            out.extend_from_slice(text.get(copied.unwrap_or(from)..hit.start).unwrap_or_default());
            let mut placeholder = [0; 4];
            out.extend_from_slice(PLACEHOLDER.encode_utf8(&mut placeholder).as_bytes());
            out.extend_from_slice(b"/v3/");
            out.extend_from_slice(mount.local.as_bytes());
            copied = Some(hit.end);
        }
        copied
    }
}

/// A path segment made only of `[a-z0-9._-]`, never empty.
fn sanitize(hint: &str) -> String {
    let clean: String = hint
        .chars()
        .map(|c| c.to_ascii_lowercase())
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        .collect();
    let clean = clean.trim_matches('.').to_string();
    if clean.is_empty() {
        "hive".to_string()
    } else {
        clean
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Mounts {
        let mut m = Mounts::default();
        m.add(MountKind::PackageBase, "https://api.example/v3-flatcontainer/", "");
        m.add(
            MountKind::Registrations,
            "https://api.example/v3/registration5-gz-semver2/",
            "registration5-gz-semver2",
        );
        m.add(
            MountKind::Registrations,
            "https://api.example/v3/registration5-semver1/",
            "registration5-semver1",
        );
        m.add(MountKind::Search, "https://search.example/query", "");
        m.add(MountKind::Search, "https://search2.example/query", "");
        m
    }

    #[test]
    fn names_mounts_stably_and_uniquely() {
        let m = sample();
        let locals: Vec<&str> = m.iter().map(|m| m.local.as_str()).collect();
        assert_eq!(
            locals,
            [
                "flatcontainer/",
                "registration/registration5-gz-semver2/",
                "registration/registration5-semver1/",
                "query",
                "query-2"
            ]
        );
        let mut again = sample();
        assert_eq!(again.add(MountKind::Search, "https://search.example/query", ""), 3);
    }

    #[test]
    fn rewrites_known_prefixes_only() {
        let m = sample();
        let p = PLACEHOLDER;
        assert_eq!(
            m.rewrite("https://api.example/v3/registration5-semver1/foo/index.json"),
            Some(format!("{p}/v3/registration/registration5-semver1/foo/index.json"))
        );
        assert_eq!(
            m.rewrite("see https://api.example/v3-flatcontainer/{id}/x and https://search.example/query?q=1"),
            Some(format!("see {p}/v3/flatcontainer/{{id}}/x and {p}/v3/query?q=1"))
        );
        assert_eq!(m.rewrite("https://api.example/packages/foo"), None);
        assert_eq!(m.rewrite("https://search.example/queryable"), None);
        assert_eq!(m.rewrite("https://github.com/x"), None);
    }

    #[test]
    fn another_upstreams_mounts_take_the_primary_names() {
        let primary = sample();
        let mut private = Mounts::default();
        private.add(MountKind::PackageBase, "https://feed/v3/flatcontainer/", "");
        private.add(
            MountKind::Registrations,
            "https://feed/v3/registrations2/",
            "registrations2",
        );
        private.add(
            MountKind::Registrations,
            "https://feed/v3/registrations2-semver2/",
            "registrations2-semver2",
        );
        private.add(MountKind::Search, "https://feed/v3/query2/", "");
        private.add(MountKind::Catalog, "https://feed/v3/catalog/", "");
        let aligned = private.aligned_to(&primary);
        let locals: Vec<&str> = aligned.iter().map(|m| m.local.as_str()).collect();
        assert_eq!(
            locals,
            [
                "flatcontainer/",
                "registration/registration5-semver1/",
                "registration/registration5-gz-semver2/",
                "query",
                "catalog/"
            ]
        );
        assert_eq!(
            aligned
                .find_local("registration/registration5-gz-semver2/a/index.json")
                .map(|(i, _)| i),
            Some(2)
        );
        assert_eq!(
            aligned.get(2).map(|m| m.upstream.as_str()),
            Some("https://feed/v3/registrations2-semver2/")
        );
    }

    #[test]
    fn finds_the_mount_of_a_local_path() {
        let m = sample();
        assert_eq!(
            m.find_local("flatcontainer/foo/index.json"),
            Some((0, "foo/index.json"))
        );
        assert_eq!(
            m.find_local("registration/registration5-semver1/a/index.json"),
            Some((2, "a/index.json"))
        );
        assert_eq!(m.find_local("query"), Some((3, "")));
        assert_eq!(m.find_local("query-2"), Some((4, "")));
        assert_eq!(m.find_local("queryx"), None);
        assert_eq!(m.find_local("registration/unknown/a"), None);
    }
}
