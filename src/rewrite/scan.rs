//! The streaming rewrite: one pass over JSON text already known to be
//! valid, copying it through as it is and replacing mounted upstream
//! prefixes inside string values (never object keys). No tree is built and
//! nothing is re-serialized: the whole document is searched for prefixes
//! once, and only strings holding a hit, or escapes that may hide a URL or
//! a NUL, are looked at more closely.

use std::borrow::Cow;

use memchr::{memchr2_iter, memmem, Memchr2};
use serde::Serializer as _;

use super::json::PlaceholderFormatter;
use super::matcher::Hit;
use super::{Mounts, PLACEHOLDER};

/// Rewrites `body`, which must be valid JSON (text that is not comes out
/// garbled but the call never panics), into a template.
pub(super) fn rewrite_valid(body: &[u8], mounts: &Mounts) -> Vec<u8> {
    let hits = mounts.matcher().hits(body);
    let mut out = Vec::with_capacity(body.len() + 64);
    let mut copied = 0;
    let mut next_hit = 0;
    for span in StringSpans::new(body) {
        let first = next_hit + count_while(&hits[next_hit..], |h| h.start <= span.open);
        next_hit = first + count_while(&hits[first..], |h| h.start < span.close);
        let inside = &hits[first..next_hit];
        let rewritten = if span.escaped {
            rewrite_escaped(&mut out, body, copied, &span, mounts)
        } else if !inside.is_empty() {
            rewrite_plain(&mut out, body, copied, &span, inside, mounts)
        } else {
            None
        };
        copied = rewritten.unwrap_or(copied);
    }
    out.extend_from_slice(body.get(copied..).unwrap_or_default());
    out
}

/// A string literal: `body[open]` and `body[close]` are its quotes.
struct Span {
    open: usize,
    close: usize,
    /// It holds a backslash escape.
    escaped: bool,
}

impl Span {
    fn content<'b>(&self, body: &'b [u8]) -> &'b [u8] {
        body.get(self.open + 1..self.close).unwrap_or_default()
    }

    /// An object key is followed by a colon (in valid JSON, only a key is).
    fn is_key(&self, body: &[u8]) -> bool {
        let after = body.get(self.close + 1..).unwrap_or_default();
        after.iter().find(|b| !matches!(b, b' ' | b'\t' | b'\n' | b'\r')) == Some(&b':')
    }
}

/// The string literals of valid JSON text, in order. Outside strings JSON
/// has no quotes or backslashes, so those two bytes are all there is to find.
struct StringSpans<'b> {
    body: &'b [u8],
    specials: Memchr2<'b>,
}

impl<'b> StringSpans<'b> {
    fn new(body: &'b [u8]) -> Self {
        StringSpans {
            body,
            specials: memchr2_iter(b'"', b'\\', body),
        }
    }
}

impl Iterator for StringSpans<'_> {
    type Item = Span;

    fn next(&mut self) -> Option<Span> {
        let mut open = None;
        let mut escaped = false;
        // The byte after a backslash is escaped, whatever it is.
        let mut escaped_byte = None;
        for at in self.specials.by_ref() {
            if escaped_byte.take() == Some(at) {
                continue;
            }
            match (self.body[at], open) {
                (b'"', None) => open = Some(at),
                (b'"', Some(open)) => {
                    return Some(Span {
                        open,
                        close: at,
                        escaped,
                    })
                }
                (_, Some(_)) => {
                    escaped = true;
                    escaped_byte = Some(at + 1);
                }
                // A backslash outside a string: not JSON; left as it is.
                (_, None) => {}
            }
        }
        None
    }
}

/// A string value without escapes: its bytes are its text, so the hits
/// found in the whole document are its hits.
fn rewrite_plain(
    out: &mut Vec<u8>,
    body: &[u8],
    copied: usize,
    span: &Span,
    hits: &[Hit],
    mounts: &Mounts,
) -> Option<usize> {
    if span.is_key(body) || memmem::find(span.content(body), b"://").is_none() {
        return None;
    }
    // The text ends before the closing quote: a hit must lie inside it.
    mounts.write_replaced(out, body.get(..span.close)?, copied, hits)
}

/// A string value with escapes, which may spell a URL (`https:\/\/`) or a
/// NUL (`\u0000`, which must not read as a placeholder): decoded and
/// rewritten like any text, then written back escaped.
fn rewrite_escaped(out: &mut Vec<u8>, body: &[u8], copied: usize, span: &Span, mounts: &Mounts) -> Option<usize> {
    if !may_hide_a_url_or_nul(span.content(body)) || span.is_key(body) {
        return None;
    }
    let text: String = serde_json::from_slice(body.get(span.open..=span.close)?).ok()?;
    let rewritten = rewrite_text(&text, mounts)?;
    let mut literal = Vec::with_capacity(rewritten.len() + 2);
    let mut serializer = serde_json::Serializer::with_formatter(&mut literal, PlaceholderFormatter::default());
    // Writing into a Vec cannot fail.
    serializer.serialize_str(&rewritten).ok()?;
    out.extend_from_slice(body.get(copied..span.open)?);
    out.extend_from_slice(&literal);
    Some(span.close + 1)
}

/// Whether the decoded form of an escaped string's `raw` bytes could hold
/// `://` or a NUL. Without `\u`, a colon is written as itself and a slash as
/// `/` or `\/`; a NUL needs `\u0000`.
fn may_hide_a_url_or_nul(raw: &[u8]) -> bool {
    memmem::find(raw, b"\\u").is_some() || memmem::find(raw, b":/").is_some() || memmem::find(raw, b":\\/").is_some()
}

/// A string value's new text, if it changes: a NUL from upstream becomes
/// U+FFFD (a NUL is the placeholder), then mounted prefixes are rewritten.
fn rewrite_text(text: &str, mounts: &Mounts) -> Option<String> {
    let text = match text.contains(PLACEHOLDER) {
        true => Cow::Owned(text.replace(PLACEHOLDER, "\u{FFFD}")),
        false => Cow::Borrowed(text),
    };
    match (mounts.rewrite(&text), text) {
        (Some(rewritten), _) => Some(rewritten),
        (None, Cow::Owned(cleaned)) => Some(cleaned),
        (None, Cow::Borrowed(_)) => None,
    }
}

fn count_while(hits: &[Hit], keep: impl Fn(&Hit) -> bool) -> usize {
    hits.iter().take_while(|h| keep(h)).count()
}
