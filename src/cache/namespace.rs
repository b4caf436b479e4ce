//! Cache-key namespaces: the one place a cache key gets its prefix.
//!
//! Every object an upstream gave lives under its upstream's namespace,
//! `@{id}/` followed by the canonical local path below `/v3/` (`route.rs`).
//! The id is a hash of the upstream's normalised service index URL, not of
//! its name or of how many upstreams there are: adding, removing or
//! renaming an upstream leaves every other upstream's entries where they
//! are, and nodes that front the same upstream agree on its keys whatever
//! they call it. Merged answers (several upstreams as one document) live
//! under `@merged/`, in memory only. Keys of caches made before namespaces
//! (no prefix, or `NAME@/`) are moved once at start-up (`legacy_prefix`).

use sha2::{Digest, Sha256};

/// Hex digits of the URL hash in a namespace id: 48 bits, far from any
/// collision among the handful of upstreams one nucache fronts.
const ID_DIGITS: usize = 12;
const MERGED: &str = "@merged/";

/// A key prefix owned by one upstream (or by merged answers).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct Namespace {
    prefix: String,
}

impl Namespace {
    /// The namespace of the upstream whose service index is `service_index`.
    pub fn of_upstream(service_index: &str) -> Namespace {
        let digest = hex::encode(Sha256::digest(normalized_url(service_index).as_bytes()));
        Namespace {
            prefix: format!("@{}/", &digest[..ID_DIGITS]),
        }
    }

    /// Where answers merged from several upstreams are kept.
    pub fn merged() -> Namespace {
        Namespace {
            prefix: MERGED.to_string(),
        }
    }

    /// `local` (a canonical path below `/v3/`, or `index.json`) in this namespace.
    pub fn key(&self, local: &str) -> String {
        format!("{}{local}", self.prefix)
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }
}

/// `(namespace id, local path)` of an upstream's cache key (`@{id}/{local}`):
/// the 12 hex digits without the `@`, and the rest. `None` for merged
/// answers and anything else.
pub(crate) fn split_key(key: &str) -> Option<(&str, &str)> {
    let (id, local) = key.strip_prefix('@')?.split_once('/')?;
    let hex = id.len() == ID_DIGITS && id.bytes().all(|b| b.is_ascii_hexdigit());
    (hex && !local.is_empty()).then_some((id, local))
}

/// A service index URL with what does not change the resource taken out:
/// scheme and host in lower case, the default port dropped, no fragment,
/// no trailing `/`. Text that is not a URL is kept as it is.
pub(crate) fn normalized_url(url: &str) -> String {
    match url::Url::parse(url.trim()) {
        Ok(mut parsed) => {
            parsed.set_fragment(None);
            parsed.as_str().trim_end_matches('/').to_string()
        }
        Err(_) => url.trim().trim_end_matches('/').to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_upstream_gets_the_same_namespace_however_it_is_spelled() {
        let a = Namespace::of_upstream("https://api.nuget.org/v3/index.json");
        assert_eq!(a, Namespace::of_upstream("HTTPS://API.NuGet.org:443/v3/index.json"));
        assert_eq!(a, Namespace::of_upstream("https://api.nuget.org/v3/index.json/"));
        assert_ne!(a, Namespace::of_upstream("https://api.nuget.org/v3/INDEX.json"));
        assert_ne!(a, Namespace::of_upstream("http://api.nuget.org/v3/index.json"));
        assert_ne!(a, Namespace::merged());
        assert!(a.prefix().starts_with('@') && a.prefix().ends_with('/'));
        assert_eq!(a.prefix().len(), ID_DIGITS + 2);
    }

    #[test]
    fn a_key_splits_into_its_namespace_and_local_path() {
        let ns = Namespace::of_upstream("https://feed.corp/v3/index.json");
        let key = ns.key("flatcontainer/foo/index.json");
        let (id, local) = split_key(&key).expect("an upstream's key");
        assert_eq!(format!("@{id}/"), ns.prefix());
        assert_eq!(local, "flatcontainer/foo/index.json");
        assert_eq!(split_key(&Namespace::merged().key("x")), None);
        assert_eq!(split_key("flatcontainer/foo/index.json"), None);
        assert_eq!(split_key(&ns.key("")), None);
    }

    #[test]
    fn keys_and_local_paths() {
        let ns = Namespace::of_upstream("https://feed.corp/v3/index.json");
        let key = ns.key("flatcontainer/foo/index.json");
        assert_eq!(crate::route::local_part(&key), "flatcontainer/foo/index.json");
        assert_eq!(
            crate::route::local_part("flatcontainer/foo/index.json"),
            "flatcontainer/foo/index.json"
        );
    }
}
