//! Package hashes published in metadata: a catalog entry (inlined in
//! registration pages on some servers, always in catalog leaves) may carry
//! `packageHash` (base64) with `packageHashAlgorithm` (`SHA512`). nucache
//! checks downloads against them.

use std::borrow::Cow;
use std::fmt;

use base64::Engine as _;
use serde::de::{DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};

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

/// Every SHA-512 package hash stated anywhere in the JSON document `body`,
/// read in one pass that builds no tree and also validates `body`: it
/// accepts exactly what `serde_json::Value` accepts (so it can stand in for
/// the rewriter's validation, see `rewrite::rewrite_checked`).
pub fn package_hashes(body: &[u8]) -> Result<Vec<PackageHash>, serde_json::Error> {
    let mut found = Vec::new();
    let mut deserializer = serde_json::Deserializer::from_slice(body);
    Walk {
        found: &mut found,
        keep_text: false,
    }
    .deserialize(&mut deserializer)?;
    deserializer.end()?;
    Ok(found)
}

/// Reads one JSON value, adding the hashes stated below it to `found`, in
/// document order (an entry before the entries nested in it). Returns the
/// value's text when it is a string and `keep_text` asks for it.
struct Walk<'f> {
    found: &'f mut Vec<PackageHash>,
    keep_text: bool,
}

impl<'de> DeserializeSeed<'de> for Walk<'_> {
    type Value = Option<Cow<'de, str>>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Walk<'_> {
    type Value = Option<Cow<'de, str>>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_borrowed_str<E>(self, text: &'de str) -> Result<Self::Value, E> {
        Ok(self.keep_text.then_some(Cow::Borrowed(text)))
    }

    fn visit_str<E>(self, text: &str) -> Result<Self::Value, E> {
        Ok(self.keep_text.then(|| Cow::Owned(text.to_string())))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let found = self.found;
        while seq
            .next_element_seed(Walk {
                found: &mut *found,
                keep_text: false,
            })?
            .is_some()
        {}
        Ok(None)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let found = self.found;
        let first_nested = found.len();
        let mut entry = Entry::default();
        while let Some(field) = map.next_key_seed(FieldSeed)? {
            let value = map.next_value_seed(Walk {
                found: &mut *found,
                keep_text: field != Field::Other,
            })?;
            // As in a parsed object, the last of duplicate keys counts.
            match field {
                Field::Id => entry.id = value,
                Field::Version => entry.version = value,
                Field::Hash => entry.hash = value,
                Field::Algorithm => entry.algorithm = value,
                Field::Other => {}
            }
        }
        if let Some(hash) = entry.hash() {
            found.insert(first_nested, hash);
        }
        Ok(None)
    }
}

/// The fields of an object that state a package hash, when they are strings.
#[derive(Default)]
struct Entry<'de> {
    id: Option<Cow<'de, str>>,
    version: Option<Cow<'de, str>>,
    hash: Option<Cow<'de, str>>,
    algorithm: Option<Cow<'de, str>>,
}

impl Entry<'_> {
    fn hash(&self) -> Option<PackageHash> {
        // A missing (or non-string) algorithm means SHA-512.
        let algorithm = self.algorithm.as_deref().unwrap_or("SHA512");
        if !algorithm.eq_ignore_ascii_case("SHA512") {
            return None;
        }
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(self.hash.as_deref()?)
            .ok()?;
        if bytes.len() != 64 {
            return None;
        }
        let version = NuGetVersion::parse(self.version.as_deref()?).ok()?;
        Some(PackageHash {
            lower_id: lower_invariant(self.id.as_deref()?),
            lower_version: version.lower_normalized(),
            sha512: hex::encode(bytes),
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Field {
    Id,
    Version,
    Hash,
    Algorithm,
    Other,
}

/// Reads an object key as the `Field` it names, without keeping it.
struct FieldSeed;

impl<'de> DeserializeSeed<'de> for FieldSeed {
    type Value = Field;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Field, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl Visitor<'_> for FieldSeed {
    type Value = Field;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an object key")
    }

    fn visit_str<E>(self, key: &str) -> Result<Field, E> {
        Ok(match key {
            "id" => Field::Id,
            "version" => Field::Version,
            "packageHash" => Field::Hash,
            "packageHashAlgorithm" => Field::Algorithm,
            _ => Field::Other,
        })
    }
}

/// The hashes as they were read from a parsed document, kept as the
/// reference of the differential tests.
#[cfg(any(test, feature = "reference"))]
pub fn package_hashes_in_value(doc: &serde_json::Value) -> Vec<PackageHash> {
    let mut found = Vec::new();
    collect(doc, &mut found);
    found
}

#[cfg(any(test, feature = "reference"))]
fn collect(value: &serde_json::Value, found: &mut Vec<PackageHash>) {
    use serde_json::Value;
    match value {
        Value::Object(map) => {
            let text = |key: &str| map.get(key).and_then(Value::as_str).map(Cow::Borrowed);
            let entry = Entry {
                id: text("id"),
                version: text("version"),
                hash: text("packageHash"),
                algorithm: text("packageHashAlgorithm"),
            };
            found.extend(entry.hash());
            map.values().for_each(|v| collect(v, found));
        }
        Value::Array(items) => items.iter().for_each(|v| collect(v, found)),
        _ => {}
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
        let body = serde_json::to_vec(&doc).unwrap_or_default();
        let found = package_hashes(&body).unwrap_or_default();
        assert_eq!(found, package_hashes_in_value(&doc));
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].key(), "foo.bar/1.0.0");
        assert_eq!(found[0].sha512, "07".repeat(64));
    }
}
