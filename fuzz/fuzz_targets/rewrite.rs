//! The streaming JSON rewriter against the reference (the Value-based
//! rewriter it replaced): both refuse an input or neither does; what they
//! accept renders to valid JSON, the same JSON (floats within a few ulps); and both read the same
//! package hashes (compared where no object repeats a key: for repeated
//! keys the reference keeps the hashes of the last value only).
#![no_main]

use std::collections::HashSet;
use std::fmt;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use nucache::nuget::package_hashes;
use nucache::rewrite::{reference, rewrite_with_hashes, MountKind, Mounts, RewriteError, Template};
use serde::de::{DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::Value;

/// The mounts of the unit differential test: overlapping prefixes, an
/// endpoint inside a directory, non-ASCII, quotes, a prefix without `://`.
fn mounts() -> &'static Mounts {
    static MOUNTS: OnceLock<Mounts> = OnceLock::new();
    MOUNTS.get_or_init(|| {
        let mut m = Mounts::default();
        m.add(MountKind::PackageBase, "https://api.example/flat/", "");
        m.add(MountKind::Registrations, "https://api.example/reg/", "reg");
        m.add(MountKind::Registrations, "https://api.example/reg/gz/", "gz");
        m.add(MountKind::Search, "https://s.example/query", "");
        m.add(MountKind::Catalog, "https://s.example/query/cat/", "");
        m.add(MountKind::Autocomplete, "http://s.example/auto\u{e9}", "");
        m.add(MountKind::PackageBase, "\"https://q.example/", "");
        m.add(MountKind::PackageBase, "https://q.example/end\"", "");
        m.add(MountKind::Vulnerabilities, "urn:x/", "");
        m
    })
}

/// The rendered template, parsed.
fn rendered(template: bytes::Bytes) -> Value {
    let body = Template::new(template, "fuzz")
        .render("http://nucache:5000")
        .identity()
        .clone();
    match serde_json::from_slice::<Value>(&body) {
        Ok(doc) => doc,
        Err(error) => panic!(
            "rendered body is not JSON ({error}): {:?}",
            String::from_utf8_lossy(&body)
        ),
    }
}

fuzz_target!(|data: &[u8]| {
    let new = rewrite_with_hashes(data, mounts());
    let old = reference::rewrite_document(data, mounts());
    match (new, old) {
        (Ok((template, hashes)), Ok(reference)) => {
            let (new, old) = (rendered(template), rendered(reference));
            assert!(reference::same_json(&new, &old), "renderings differ:\n{new}\n{old}");
            if !repeats_a_key(data) {
                let doc: Value = serde_json::from_slice(data).unwrap_or(Value::Null);
                assert_eq!(hashes, package_hashes(&doc), "package hashes differ");
            }
        }
        (Err(RewriteError::Json(_)), Err(RewriteError::Json(_))) => {}
        (new, old) => panic!(
            "the rewriters disagree: new {:?}, reference {:?}",
            new.map(|_| ()),
            old.map(|_| ())
        ),
    }
});


/// Whether some object in the JSON `data` has a key twice.
fn repeats_a_key(data: &[u8]) -> bool {
    let mut de = serde_json::Deserializer::from_slice(data);
    DupCheck.deserialize(&mut de).unwrap_or(true)
}

struct DupCheck;

impl<'de> DeserializeSeed<'de> for DupCheck {
    type Value = bool;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<bool, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for DupCheck {
    type Value = bool;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("JSON")
    }
    fn visit_bool<E>(self, _: bool) -> Result<bool, E> {
        Ok(false)
    }
    fn visit_i64<E>(self, _: i64) -> Result<bool, E> {
        Ok(false)
    }
    fn visit_u64<E>(self, _: u64) -> Result<bool, E> {
        Ok(false)
    }
    fn visit_f64<E>(self, _: f64) -> Result<bool, E> {
        Ok(false)
    }
    fn visit_str<E>(self, _: &str) -> Result<bool, E> {
        Ok(false)
    }
    fn visit_unit<E>(self) -> Result<bool, E> {
        Ok(false)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<bool, A::Error> {
        let mut any = false;
        while let Some(dup) = seq.next_element_seed(DupCheck)? {
            any |= dup;
        }
        Ok(any)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<bool, A::Error> {
        let mut keys = HashSet::new();
        let mut any = false;
        while let Some(key) = map.next_key::<String>()? {
            any |= !keys.insert(key);
            any |= map.next_value_seed(DupCheck)?;
        }
        Ok(any)
    }
}
