//! Rewriting a JSON document: every string value that holds a mounted
//! upstream URL is pointed at nucache (as a template, see `template.rs`).
//! Object keys and third-party URLs are left alone; the text is kept as the
//! upstream wrote it (`scan.rs` reads it, `splice.rs` rewrites it). The
//! tree-based functions below serve the service index, which is edited, not
//! only rewritten.

use std::io::Read;

use bytes::Bytes;
use serde_json::Value;

use super::hashes::HashCollector;
use super::placeholder::PlaceholderFormatter;
use super::scan::scan;
use super::splice::Splicer;
use super::{Mounts, RewriteError, PLACEHOLDER};
use crate::nuget::PackageHash;

/// The two bytes every gzip stream starts with.
const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// The UTF-8 byte order mark some feeds put before their JSON. NuGet's
/// client skips it, so a feed that sends it works there and must here.
const BOM: &[u8] = b"\xef\xbb\xbf";

/// `body` without a leading byte order mark.
fn without_bom(body: &[u8]) -> &[u8] {
    body.strip_prefix(BOM).unwrap_or(body)
}

/// Decodes a body that may be gzip-compressed, recognised by its magic
/// bytes rather than by `Content-Encoding` (blob stores mislabel), refusing
/// to inflate beyond `cap` bytes, and drops a leading byte order mark.
pub fn decode_body(body: &[u8], cap: u64) -> Result<Bytes, RewriteError> {
    if !body.starts_with(&GZIP_MAGIC) {
        return Ok(Bytes::copy_from_slice(without_bom(body)));
    }
    let mut out = Vec::with_capacity(body.len() * 4);
    let mut decoder = flate2::read::MultiGzDecoder::new(body).take(cap + 1);
    decoder
        .read_to_end(&mut out)
        .map_err(|e| RewriteError::Gzip(e.to_string()))?;
    if out.len() as u64 > cap {
        return Err(RewriteError::TooLarge(cap));
    }
    let out = Bytes::from(out);
    let mark = out.len() - without_bom(&out).len();
    Ok(out.slice(mark..))
}

/// Returns `body`, which must be JSON, as a template with every mounted
/// upstream URL rewritten.
pub fn rewrite_document(body: &[u8], mounts: &Mounts) -> Result<Bytes, RewriteError> {
    rewrite_with_hashes(body, mounts).map(|(template, _)| template)
}

/// `rewrite_document`, and the package hashes the document states (as
/// `nuget::package_hashes` finds them), read in the same single pass: it
/// validates the text as serde_json would, copies it through as the
/// upstream wrote it and rewrites string values where a mounted prefix is.
/// A leading byte order mark is dropped (bodies read from a file, e.g. an
/// air-gap bundle's, have not been through `decode_body`).
pub fn rewrite_with_hashes(body: &[u8], mounts: &Mounts) -> Result<(Bytes, Vec<PackageHash>), RewriteError> {
    let body = without_bom(body);
    let mut events = (Splicer::new(body, mounts), HashCollector::new(body));
    scan(body, &mut events)?;
    let (splicer, hashes) = events;
    Ok((Bytes::from(splicer.finish()), hashes.found))
}

/// A template (see `template.rs`) as a JSON value: each placeholder
/// becomes a NUL character in its string, which [`to_template`] writes
/// back as the placeholder. For merging documents without rendering them
/// for any one base URL.
pub fn template_value(template: &[u8]) -> Result<Value, RewriteError> {
    let holes = memchr::memchr_iter(0, template).count();
    if holes == 0 {
        return parse_json(template);
    }
    let mut escaped = Vec::with_capacity(template.len() + holes * 5);
    for (i, piece) in template.split(|b| *b == 0).enumerate() {
        if i > 0 {
            escaped.extend_from_slice(b"\\u0000");
        }
        escaped.extend_from_slice(piece);
    }
    parse_json(&escaped)
}

/// Parses JSON, after a leading byte order mark.
pub fn parse_json(body: &[u8]) -> Result<Value, RewriteError> {
    serde_json::from_slice(without_bom(body)).map_err(|e| RewriteError::Json(e.to_string()))
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
    fn a_template_reads_as_a_value_and_back() {
        let mut mounts = Mounts::default();
        mounts.add(MountKind::PackageBase, "https://api.example/flat/", "");
        let body = br#"{"a":["https://api.example/flat/x.nupkg",1],"k\u0000":"b"}"#;
        let template = rewrite_document(body, &mounts).unwrap_or_default();
        let value = template_value(&template).map_err(|e| e.to_string());
        assert_eq!(
            value.as_ref().map(|v| v["a"][0].clone()),
            Ok(Value::from("\0/v3/flatcontainer/x.nupkg"))
        );
        let again = value.ok().and_then(|v| to_template(&v).ok());
        assert_eq!(again, Some(template));
    }

    #[test]
    fn decoding_drops_a_leading_byte_order_mark_plain_or_gzipped() {
        let doc = br#"{"a":"\u00e9"}"#;
        let marked = [BOM, doc].concat();
        assert_eq!(decode_body(&marked, 1000).ok(), Some(Bytes::from_static(doc)));
        let zipped = crate::rewrite::template::gzip(&marked);
        assert_eq!(decode_body(&zipped, 1000).ok(), Some(Bytes::from_static(doc)));
        // Only a leading one: inside, it is the document's (invalid) text.
        let inner = [b" ", BOM, doc].concat();
        assert_eq!(decode_body(&inner, 1000).ok(), Some(Bytes::from(inner)));
    }

    #[test]
    fn a_real_registration_that_starts_with_a_byte_order_mark_is_rewritten() {
        let (Some(index), Some(nunit)) = (
            crate::rewrite::realdocs::read("nuget.index.json"),
            crate::rewrite::realdocs::read("nunit.registration.json"),
        ) else {
            return;
        };
        let mounts = crate::rewrite::build_service_map(&index, false)
            .map(|map| map.mounts)
            .unwrap_or_default();
        let marked = [BOM, &nunit].concat();
        let plain = rewrite_with_hashes(&nunit, &mounts).map_err(|e| e.to_string());
        let template = plain.as_ref().map(|(template, _)| template.clone()).unwrap_or_default();
        assert!(template.windows(4).any(|w| w == b"\0/v3"), "nothing rewritten");
        assert!(rewrite_with_hashes(&marked, &mounts).map_err(|e| e.to_string()) == plain);
        assert_eq!(parse_json(&marked).ok(), parse_json(&nunit).ok());
    }

    #[test]
    fn invalid_json_is_an_error() {
        assert!(matches!(
            rewrite_document(b"<html>", &Mounts::default()),
            Err(RewriteError::Json(_))
        ));
    }
}
