//! The mount table: which upstream URL prefix nucache serves under which of
//! its own paths. Built from the upstream service index (see
//! `service_index.rs`); used to route requests and to rewrite URLs.

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
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Mounts {
    mounts: Vec<Mount>,
}

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

    /// Rewrites every mounted upstream prefix inside `text` to
    /// `PLACEHOLDER/v3/{local}`; `None` when nothing was mounted there.
    pub fn rewrite(&self, text: &str) -> Option<String> {
        if !text.contains("://") {
            return None;
        }
        let mut out = String::with_capacity(text.len());
        let mut rest = text;
        let mut changed = false;
        while let Some((at, mount)) = self.next_match(rest) {
            out.push_str(&rest[..at]);
            out.push(PLACEHOLDER);
            out.push_str("/v3/");
            out.push_str(&mount.local);
            rest = &rest[at + mount.upstream.len()..];
            changed = true;
        }
        out.push_str(rest);
        changed.then_some(out)
    }

    /// The earliest occurrence of a mounted prefix in `text`; the longest
    /// prefix wins at the same position. Endpoint prefixes must end at a URL
    /// boundary so `.../query` does not match `.../queryable`.
    fn next_match(&self, text: &str) -> Option<(usize, &Mount)> {
        let mut best: Option<(usize, &Mount)> = None;
        for m in &self.mounts {
            let mut from = 0;
            while let Some(found) = text[from..].find(m.upstream.as_str()) {
                let at = from + found;
                let after = text[at + m.upstream.len()..].chars().next();
                let boundary = !m.kind.is_endpoint() || matches!(after, None | Some('/' | '?' | '#' | ' ' | '"'));
                if boundary {
                    let better = match best {
                        None => true,
                        Some((b, bm)) => at < b || (at == b && m.upstream.len() > bm.upstream.len()),
                    };
                    if better {
                        best = Some((at, m));
                    }
                    break;
                }
                from = at + 1;
            }
        }
        best
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
