//! The one-time move of a cache made before namespaces: keys without a
//! prefix (one upstream) or with `NAME@/` (several) go to the namespace of
//! the upstream they came from (`namespace.rs`), found by the URL in the
//! record of that prefix's service index, else by the name (`NAME@/` of a
//! configured upstream), else (no prefix, one upstream configured) the one
//! upstream. Keys of an upstream no longer configured stay where they are
//! (never served, evicted in time) and are counted. Runs at start-up,
//! before serving; logged once; costs nothing on a cache with no such key.

use std::collections::HashMap;

use super::namespace::Namespace;
use super::Cache;
use crate::error::StorageError;
use crate::route::SERVICE_INDEX_KEY;

/// What the move did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Migration {
    /// Records moved to their upstream's namespace.
    pub moved: usize,
    /// Prefixes of no configured upstream, left as they were.
    pub unclaimed_prefixes: usize,
}

impl Cache {
    /// Moves the keys of a cache made before namespaces; `upstreams` is the
    /// configured set, `(name, service index URL)` in priority order.
    pub fn migrate_legacy_keys(&self, upstreams: &[(String, String)]) -> Result<Migration, StorageError> {
        if !self.has_legacy_keys()? {
            return Ok(Migration::default());
        }
        let prefixes = self.legacy_prefixes();
        let mut targets: HashMap<String, Namespace> = HashMap::new();
        let mut migration = Migration::default();
        for prefix in prefixes {
            match self.owner_of_prefix(&prefix, upstreams) {
                Some(namespace) => {
                    targets.insert(prefix, namespace);
                }
                None => {
                    tracing::warn!(
                        prefix,
                        "cached objects of an upstream that is no longer configured: left as they are"
                    );
                    migration.unclaimed_prefixes += 1;
                }
            }
        }
        migration.moved = self.rename_keys(|key| {
            let prefix = legacy_prefix(key)?;
            let namespace = targets.get(prefix)?;
            Some(namespace.key(&key[prefix.len()..]))
        })?;
        tracing::info!(
            moved = migration.moved,
            unclaimed_prefixes = migration.unclaimed_prefixes,
            "cache keys moved to per-upstream namespaces (once, for a cache made before them)"
        );
        Ok(migration)
    }

    /// Whether any key is outside the namespaces: every namespaced key
    /// starts with `@` and a hex digit, so the index (in key order) has a
    /// key before `@` or after `@g` exactly when one is legacy.
    fn has_legacy_keys(&self) -> Result<bool, StorageError> {
        let first = self.index.entries_after(None, 1)?;
        let before = first.first().is_some_and(|(key, _)| !key.starts_with('@'));
        Ok(before || !self.index.entries_after(Some("@g"), 1)?.is_empty() || self.has_legacy_hashes()?)
    }

    fn has_legacy_hashes(&self) -> Result<bool, StorageError> {
        Ok(self
            .index
            .package_hashes()?
            .iter()
            .any(|(package, _)| legacy_prefix(package).is_some()))
    }

    /// The distinct prefixes of the legacy keys (and package hashes).
    fn legacy_prefixes(&self) -> Vec<String> {
        let mut prefixes: Vec<String> = Vec::new();
        let keys = self.index.records().map(|(key, _)| key);
        let hashes = self
            .index
            .package_hashes()
            .unwrap_or_default()
            .into_iter()
            .map(|(k, _)| k);
        for key in keys.chain(hashes) {
            if let Some(prefix) = legacy_prefix(&key) {
                if !prefixes.iter().any(|p| p == prefix) {
                    prefixes.push(prefix.to_string());
                }
            }
        }
        prefixes
    }

    /// The namespace the keys under `prefix` belong to, if a configured
    /// upstream claims them.
    fn owner_of_prefix(&self, prefix: &str, upstreams: &[(String, String)]) -> Option<Namespace> {
        let recorded = self
            .entry(&format!("{prefix}{SERVICE_INDEX_KEY}"))
            .ok()
            .flatten()
            .map(|entry| Namespace::of_upstream(&entry.url));
        let configured = || upstreams.iter().map(|(_, url)| Namespace::of_upstream(url));
        if let Some(recorded) = recorded {
            return configured().find(|ns| *ns == recorded);
        }
        let by_name = prefix
            .strip_suffix("@/")
            .and_then(|name| upstreams.iter().find(|(n, _)| n == name));
        match (prefix, by_name, upstreams) {
            (_, Some((_, url)), _) => Some(Namespace::of_upstream(url)),
            ("", None, [(_, only)]) => Some(Namespace::of_upstream(only)),
            _ => None,
        }
    }
}

/// The prefix of a key written before namespaces: `""` for a cache with one
/// upstream, `NAME@/` among several. `None` for keys already namespaced.
pub(crate) fn legacy_prefix(key: &str) -> Option<&str> {
    if key.starts_with('@') {
        return None;
    }
    match key.find("@/") {
        Some(at) => Some(&key[..at + 2]),
        None => Some(""),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::{CacheConfig, EntryKind, Origin};
    use bytes::Bytes;
    use std::time::Duration;

    const PUBLIC: &str = "https://api.nuget.org/v3/index.json";
    const PRIVATE: &str = "https://pkgs.acme.corp/feed/v3/index.json";
    const LIST: &str = "flatcontainer/foo/index.json";
    const NUPKG: &str = "flatcontainer/foo/1.0.0/foo.1.0.0.nupkg";

    fn open(dir: &std::path::Path) -> Cache {
        let config = CacheConfig {
            dir: dir.to_path_buf(),
            ..CacheConfig::default()
        };
        Cache::open(&config, Duration::from_secs(60)).expect("open").0
    }

    fn origin(url: &str) -> Origin {
        Origin {
            url: url.to_string(),
            content_type: "application/json".into(),
            ..Origin::default()
        }
    }

    /// What an older nucache wrote under `prefix`: the service index of
    /// `upstream` (when given), a version list, a package and its hash.
    fn legacy(cache: &Cache, prefix: &str, upstream: Option<&str>) {
        if let Some(url) = upstream {
            let body = Bytes::from_static(b"{\"version\":\"3.0.0\",\"resources\":[]}");
            let key = format!("{prefix}{SERVICE_INDEX_KEY}");
            cache
                .store_document(&key, EntryKind::ServiceIndex, origin(url), body, true)
                .expect("index");
        }
        let list = Bytes::from_static(b"{\"versions\":[\"1.0.0\"]}");
        cache
            .store_document(&format!("{prefix}{LIST}"), EntryKind::Document, origin("u"), list, true)
            .expect("list");
        let mut writer = cache.start_blob().expect("blob");
        writer.write(b"package bytes").expect("write");
        cache
            .commit_blob(&format!("{prefix}{NUPKG}"), writer, origin("u"))
            .expect("commit");
        cache
            .record_package_hashes(&[crate::nuget::PackageHash {
                lower_id: format!("{prefix}foo"),
                lower_version: "1.0.0".into(),
                sha512: "ab".repeat(64),
            }])
            .expect("hash");
    }

    fn has(cache: &Cache, key: &str) -> bool {
        matches!(cache.entry(key), Ok(Some(_)))
    }

    #[test]
    fn a_one_upstream_cache_moves_to_that_upstream_s_namespace_once() {
        let dir = tempfile::tempdir().expect("dir");
        let cache = open(dir.path());
        legacy(&cache, "", Some(PUBLIC));
        let upstreams = [
            ("nugetorg".to_string(), PUBLIC.to_string()),
            ("acme".into(), PRIVATE.into()),
        ];
        let done = cache.migrate_legacy_keys(&upstreams).expect("migrate");
        assert_eq!(
            done,
            Migration {
                moved: 3,
                unclaimed_prefixes: 0
            }
        );
        let public = Namespace::of_upstream(PUBLIC);
        for local in [SERVICE_INDEX_KEY, LIST, NUPKG] {
            assert!(has(&cache, &public.key(local)), "{local} moved");
            assert!(!has(&cache, local), "{local} gone from the old key");
        }
        assert_eq!(
            cache.package_hash(&public.key("foo/1.0.0")).ok().flatten(),
            Some("ab".repeat(64))
        );
        assert_eq!(
            cache.migrate_legacy_keys(&upstreams).expect("again"),
            Migration::default()
        );
    }

    #[test]
    fn several_upstreams_keys_follow_their_recorded_url_even_renamed() {
        let dir = tempfile::tempdir().expect("dir");
        let cache = open(dir.path());
        legacy(&cache, "nugetorg@/", Some(PUBLIC));
        legacy(&cache, "acme@/", None);
        legacy(&cache, "gone@/", None);
        // nugetorg is now called "public"; acme kept its name; gone is gone.
        let upstreams = [
            ("public".to_string(), PUBLIC.to_string()),
            ("acme".into(), PRIVATE.into()),
        ];
        let done = cache.migrate_legacy_keys(&upstreams).expect("migrate");
        assert_eq!(
            done,
            Migration {
                moved: 5,
                unclaimed_prefixes: 1
            }
        );
        assert!(has(&cache, &Namespace::of_upstream(PUBLIC).key(NUPKG)));
        assert!(has(&cache, &Namespace::of_upstream(PRIVATE).key(NUPKG)));
        assert!(has(&cache, &format!("gone@/{NUPKG}")), "unclaimed: left as it was");
    }

    #[test]
    fn keys_without_a_recorded_index_go_to_the_only_upstream_else_stay() {
        let dir = tempfile::tempdir().expect("dir");
        let cache = open(dir.path());
        legacy(&cache, "", None);
        let two = [("a".to_string(), PUBLIC.to_string()), ("b".into(), PRIVATE.into())];
        assert_eq!(
            cache.migrate_legacy_keys(&two).expect("migrate"),
            Migration {
                moved: 0,
                unclaimed_prefixes: 1
            }
        );
        let one = [("a".to_string(), PUBLIC.to_string())];
        assert_eq!(cache.migrate_legacy_keys(&one).expect("migrate").moved, 2);
        assert!(has(&cache, &Namespace::of_upstream(PUBLIC).key(NUPKG)));
    }

    #[test]
    fn legacy_keys_are_told_apart_from_namespaced_ones() {
        assert_eq!(legacy_prefix("flatcontainer/foo/index.json"), Some(""));
        assert_eq!(legacy_prefix("index.json"), Some(""));
        assert_eq!(legacy_prefix("acme@/flatcontainer/foo/index.json"), Some("acme@/"));
        assert_eq!(legacy_prefix("@0123456789ab/index.json"), None);
        assert_eq!(legacy_prefix("@merged/query?q=x"), None);
    }
}
