//! Package hashes published in metadata: a catalog entry (inlined in
//! registration pages on some servers, always in catalog leaves) may carry
//! `packageHash` (base64) with `packageHashAlgorithm` (`SHA512`). nucache
//! checks downloads against them.

use base64::Engine as _;
use serde_json::Value;

use super::{lower_invariant, NuGetVersion};

/// A package's expected SHA-512, as the metadata states it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackageHash {
    pub lower_id: String,
    pub lower_version: String,
    /// SHA-512, lowercase hex.
    pub sha512: String,
}

impl PackageHash {
    /// The key the hash is kept under: `{lower_id}/{lower_version}`.
    pub fn key(&self) -> String {
        format!("{}/{}", self.lower_id, self.lower_version)
    }
}

/// Every SHA-512 package hash stated anywhere in `doc`, in document order
/// (an entry before the entries nested in it). Documents being rewritten
/// have theirs read by the rewriter's own pass instead
/// (`rewrite::rewrite_with_hashes`); this reads a parsed document.
pub fn package_hashes(doc: &Value) -> Vec<PackageHash> {
    let mut found = Vec::new();
    collect(doc, &mut found);
    found
}

fn collect(value: &Value, found: &mut Vec<PackageHash>) {
    match value {
        Value::Object(map) => {
            if let Some(hash) = hash_of(map) {
                found.push(hash);
            }
            map.values().for_each(|v| collect(v, found));
        }
        Value::Array(items) => items.iter().for_each(|v| collect(v, found)),
        _ => {}
    }
}

fn hash_of(entry: &serde_json::Map<String, Value>) -> Option<PackageHash> {
    let text = |key: &str| entry.get(key).and_then(Value::as_str);
    PackageHash::stated(
        text("id"),
        text("version"),
        text("packageHash"),
        text("packageHashAlgorithm"),
    )
}

impl PackageHash {
    /// The hash an entry states with these fields (the values of its `id`,
    /// `version`, `packageHash` and `packageHashAlgorithm` keys that are
    /// strings), if it states a SHA-512 of a package with a valid version.
    pub fn stated(
        id: Option<&str>,
        version: Option<&str>,
        hash: Option<&str>,
        algorithm: Option<&str>,
    ) -> Option<PackageHash> {
        // No algorithm means SHA-512.
        if !algorithm.unwrap_or("SHA512").eq_ignore_ascii_case("SHA512") {
            return None;
        }
        let bytes = base64::engine::general_purpose::STANDARD.decode(hash?).ok()?;
        if bytes.len() != 64 {
            return None;
        }
        let version = NuGetVersion::parse(version?).ok()?;
        Some(PackageHash {
            lower_id: lower_invariant(id?),
            lower_version: version.lower_normalized(),
            sha512: hex::encode(bytes),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_hashes_in_nested_catalog_entries() {
        let hash = base64::engine::general_purpose::STANDARD.encode([7u8; 64]);
        let doc = serde_json::json!({"items": [{"items": [
            {"catalogEntry": {"id": "Foo.Bar", "version": "1.0.0.0+meta", "packageHash": hash, "packageHashAlgorithm": "SHA512"}},
            {"catalogEntry": {"id": "Foo.Bar", "version": "2.0.0", "packageHash": "bm90IGEgaGFzaA=="}},
            {"catalogEntry": {"id": "Foo.Bar", "version": "3.0.0", "packageHash": hash, "packageHashAlgorithm": "SHA256"}},
            {"catalogEntry": {"id": "Foo.Bar", "version": "4.0.0"}}
        ]}]});
        let found = package_hashes(&doc);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].key(), "foo.bar/1.0.0");
        assert_eq!(found[0].sha512, "07".repeat(64));
    }
}
