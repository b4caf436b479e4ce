//! Rewriting a JSON document: every string value that holds a mounted
//! upstream URL is pointed at nucache (as a template, see `template.rs`).
//! Object keys and third-party URLs are left alone; the text is kept as the
//! upstream wrote it (see `scan.rs`). The tree-based functions below serve
//! the service index, which is edited, not only rewritten.

use std::fmt;
use std::io::{self, Read};

use bytes::Bytes;
use serde::de::{DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::ser::{CharEscape, CompactFormatter, Formatter};
use serde_json::Value;

use super::{scan, Mounts, RewriteError, PLACEHOLDER};

/// The two bytes every gzip stream starts with.
const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// Decodes a body that may be gzip-compressed, recognised by its magic
/// bytes rather than by `Content-Encoding` (blob stores mislabel), refusing
/// to inflate beyond `cap` bytes.
pub fn decode_body(body: &[u8], cap: u64) -> Result<Bytes, RewriteError> {
    if !body.starts_with(&GZIP_MAGIC) {
        return Ok(Bytes::copy_from_slice(body));
    }
    let mut out = Vec::with_capacity(body.len() * 4);
    let mut decoder = flate2::read::MultiGzDecoder::new(body).take(cap + 1);
    decoder
        .read_to_end(&mut out)
        .map_err(|e| RewriteError::Gzip(e.to_string()))?;
    if out.len() as u64 > cap {
        return Err(RewriteError::TooLarge(cap));
    }
    Ok(Bytes::from(out))
}

/// Returns `body`, which must be JSON, as a template with every mounted
/// upstream URL rewritten.
pub fn rewrite_document(body: &[u8], mounts: &Mounts) -> Result<Bytes, RewriteError> {
    rewrite_checked(body, mounts, validate).map(|(template, ())| template)
}

/// `rewrite_document` with the caller's own parse of `body` standing in for
/// the validation, so a caller that reads something out of the document
/// (package hashes) reads it in the one pass that validates it. `check` must
/// parse the whole of `body` and accept exactly what `serde_json::Value`
/// accepts: the rewrite relies on valid JSON.
pub fn rewrite_checked<T>(
    body: &[u8],
    mounts: &Mounts,
    check: impl FnOnce(&[u8]) -> Result<T, serde_json::Error>,
) -> Result<(Bytes, T), RewriteError> {
    let found = check(body).map_err(|e| RewriteError::Json(e.to_string()))?;
    Ok((Bytes::from(scan::rewrite_valid(body, mounts)), found))
}

/// Parses `body` as JSON without keeping anything: accepts what
/// `serde_json::Value` accepts (numbers out of `f64`'s range and nesting
/// deeper than 128 included: both are refused), building nothing.
pub fn validate(body: &[u8]) -> Result<(), serde_json::Error> {
    let mut deserializer = serde_json::Deserializer::from_slice(body);
    Skip.deserialize(&mut deserializer)?;
    deserializer.end()
}

/// Reads any JSON value and drops it.
struct Skip;

impl<'de> DeserializeSeed<'de> for Skip {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(Skip)
    }
}

impl<'de> Visitor<'de> for Skip {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }

    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }

    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }

    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }

    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }

    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element_seed(Skip)?.is_some() {}
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while map.next_key_seed(Skip)?.is_some() {
            map.next_value_seed(Skip)?;
        }
        Ok(())
    }
}

pub fn parse_json(body: &[u8]) -> Result<Value, RewriteError> {
    serde_json::from_slice(body).map_err(|e| RewriteError::Json(e.to_string()))
}

/// Rewrites all string values below `value` in place.
pub fn rewrite_value(value: &mut Value, mounts: &Mounts) {
    match value {
        Value::String(text) => {
            if text.contains(PLACEHOLDER) {
                // A raw NUL in upstream data would read as a placeholder.
                *text = text.replace(PLACEHOLDER, "\u{FFFD}");
            }
            if let Some(rewritten) = mounts.rewrite(text) {
                *text = rewritten;
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|v| rewrite_value(v, mounts)),
        Value::Object(map) => map.values_mut().for_each(|v| rewrite_value(v, mounts)),
        Value::Null | Value::Bool(_) | Value::Number(_) => {}
    }
}

/// Serializes compactly, writing the placeholder as a raw NUL byte in
/// string values (a NUL in an object key stays escaped: keys are never
/// rewritten, so a NUL there is upstream data).
pub fn to_template(doc: &Value) -> Result<Bytes, RewriteError> {
    let mut out = Vec::with_capacity(4096);
    let mut serializer = serde_json::Serializer::with_formatter(&mut out, PlaceholderFormatter::default());
    serde::Serialize::serialize(doc, &mut serializer).map_err(|e| RewriteError::Json(e.to_string()))?;
    Ok(Bytes::from(out))
}

#[derive(Default)]
pub(super) struct PlaceholderFormatter {
    in_key: bool,
}

impl Formatter for PlaceholderFormatter {
    fn write_char_escape<W: ?Sized + io::Write>(&mut self, writer: &mut W, escape: CharEscape) -> io::Result<()> {
        match escape {
            CharEscape::AsciiControl(0) if !self.in_key => writer.write_all(&[0]),
            other => CompactFormatter.write_char_escape(writer, other),
        }
    }

    fn begin_object_key<W: ?Sized + io::Write>(&mut self, writer: &mut W, first: bool) -> io::Result<()> {
        self.in_key = true;
        CompactFormatter.begin_object_key(writer, first)
    }

    fn end_object_key<W: ?Sized + io::Write>(&mut self, writer: &mut W) -> io::Result<()> {
        self.in_key = false;
        CompactFormatter.end_object_key(writer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rewrite::{MountKind, Template};

    #[test]
    fn rewrites_values_not_keys_and_keeps_order() {
        let mut mounts = Mounts::default();
        mounts.add(MountKind::PackageBase, "https://api.example/flat/", "");
        let body = br#"{"z":"https://api.example/flat/a.nupkg","https://api.example/flat/k":1,"p":"https://github.com/x","n":"a\u0000b"}"#;
        let template = rewrite_document(body, &mounts).map_err(|e| e.to_string());
        let expected = "{\"z\":\"\0/v3/flatcontainer/a.nupkg\",\"https://api.example/flat/k\":1,\"p\":\"https://github.com/x\",\"n\":\"a\u{FFFD}b\"}";
        assert_eq!(template, Ok(Bytes::from(expected)));
    }

    #[test]
    fn a_nul_in_an_object_key_never_becomes_a_placeholder() {
        let mut mounts = Mounts::default();
        mounts.add(MountKind::PackageBase, "https://api.example/flat/", "");
        let body = br#"{"k\u0000ey":"https://api.example/flat/a","v":"a\u0000b"}"#;
        let template = rewrite_document(body, &mounts).unwrap_or_default();
        let rendered = Template::new(template, "00").render("http://nucache");
        let doc: Value = serde_json::from_slice(rendered.identity()).unwrap_or_default();
        assert_eq!(
            doc,
            serde_json::json!({"k\u{0}ey": "http://nucache/v3/flatcontainer/a", "v": "a\u{FFFD}b"})
        );
    }

    #[test]
    fn decodes_gzip_by_magic_and_caps_it() {
        let plain = br#"{"a":1}"#.repeat(100);
        let zipped = crate::rewrite::template::gzip(&plain);
        assert_eq!(decode_body(&zipped, 10_000).ok(), Some(Bytes::from(plain.clone())));
        assert_eq!(decode_body(&plain, 10).ok(), Some(Bytes::from(plain.clone())));
        assert!(matches!(decode_body(&zipped, 100), Err(RewriteError::TooLarge(100))));
        assert!(matches!(
            decode_body(&[0x1f, 0x8b, 1, 2, 3], 100),
            Err(RewriteError::Gzip(_))
        ));
    }

    #[test]
    fn invalid_json_is_an_error() {
        assert!(matches!(
            rewrite_document(b"<html>", &Mounts::default()),
            Err(RewriteError::Json(_))
        ));
    }
}
