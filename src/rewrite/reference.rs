//! The rewriter as it was before the streaming one: parse into a
//! `serde_json::Value`, search every string value for every mount prefix
//! with `str::find`, serialize. Slow and plainly right, so it is kept as the
//! reference the differential tests and the `rewrite` fuzzer hold the
//! streaming rewriter to (built for tests and with the `reference` feature).
//! It shares only `parse_json` and `to_template` with the real path.

use bytes::Bytes;
use serde_json::Value;

use super::{parse_json, to_template, Mount, Mounts, RewriteError, PLACEHOLDER};

/// The template for `body`, as the Value-based rewriter made it.
pub fn rewrite_document(body: &[u8], mounts: &Mounts) -> Result<Bytes, RewriteError> {
    let mut doc = parse_json(body)?;
    rewrite_value(&mut doc, mounts);
    to_template(&doc)
}

/// Rewrites all string values below `value` in place.
pub fn rewrite_value(value: &mut Value, mounts: &Mounts) {
    match value {
        Value::String(text) => {
            if text.contains(PLACEHOLDER) {
                *text = text.replace(PLACEHOLDER, "\u{FFFD}");
            }
            if let Some(rewritten) = rewrite_text(mounts, text) {
                *text = rewritten;
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|v| rewrite_value(v, mounts)),
        Value::Object(map) => map.values_mut().for_each(|v| rewrite_value(v, mounts)),
        Value::Null | Value::Bool(_) | Value::Number(_) => {}
    }
}

/// `Mounts::rewrite` as it was.
pub fn rewrite_text(mounts: &Mounts, text: &str) -> Option<String> {
    if !text.contains("://") {
        return None;
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    let mut changed = false;
    while let Some((at, mount)) = next_match(mounts, rest) {
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
/// boundary. (An empty prefix, which made the old loop spin, is skipped.)
fn next_match<'m>(mounts: &'m Mounts, text: &str) -> Option<(usize, &'m Mount)> {
    let mut best: Option<(usize, &Mount)> = None;
    for m in mounts.iter().filter(|m| !m.upstream.is_empty()) {
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
            from = at + text[at..].chars().next().map_or(1, char::len_utf8);
        }
    }
    best
}

/// The same JSON, floats within a few ulps: the reference re-serializes
/// numbers, and serde_json's parse of its shortest form can land an ulp
/// away (a 48-digit integer came back as 1e48 instead of
/// 9.999999999999999e47), while the streaming rewriter copies the digits.
pub fn same_json(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) if x.is_f64() || y.is_f64() => {
            let (x, y) = (x.as_f64().unwrap_or(f64::NAN), y.as_f64().unwrap_or(f64::NAN));
            x == y || (x - y).abs() <= 1e-14 * x.abs().max(y.abs())
        }
        (Value::Array(xs), Value::Array(ys)) => xs.len() == ys.len() && xs.iter().zip(ys).all(|(x, y)| same_json(x, y)),
        (Value::Object(xs), Value::Object(ys)) => {
            xs.len() == ys.len() && xs.iter().zip(ys).all(|((kx, x), (ky, y))| kx == ky && same_json(x, y))
        }
        _ => a == b,
    }
}
