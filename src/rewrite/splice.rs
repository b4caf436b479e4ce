//! The rewrite itself, fed by `scan`: the text is copied through as the
//! upstream wrote it, and a string value (never an object key) is replaced
//! only where it holds a mounted upstream prefix or a NUL.

use std::borrow::Cow;

use memchr::memmem;
use serde::Serializer as _;

use super::matcher::Hit;
use super::placeholder::PlaceholderFormatter;
use super::scan::{Events, Str};
use super::{Mounts, PLACEHOLDER};

/// Builds the template of one document.
pub(super) struct Splicer<'b, 'm> {
    body: &'b [u8],
    mounts: &'m Mounts,
    out: Vec<u8>,
    /// `body[..copied]` is in `out` (rewritten where it had to be).
    copied: usize,
    urls: memmem::Finder<'static>,
    /// The next `://` in `body` after the strings seen so far (only text
    /// holding one is rewritten): one search over the body, as the scan goes.
    next_url: Option<usize>,
    hits: Vec<Hit>,
}

impl<'b, 'm> Splicer<'b, 'm> {
    pub fn new(body: &'b [u8], mounts: &'m Mounts) -> Self {
        let urls = memmem::Finder::new(b"://");
        Splicer {
            body,
            mounts,
            out: Vec::with_capacity(body.len() + 64),
            copied: 0,
            next_url: urls.find(body),
            urls,
            hits: Vec::new(),
        }
    }

    pub fn finish(mut self) -> Vec<u8> {
        self.out
            .extend_from_slice(self.body.get(self.copied..).unwrap_or_default());
        self.out
    }

    /// Whether `body[from..to]` holds a `://` (asked with growing `from`).
    fn url_between(&mut self, from: usize, to: usize) -> bool {
        if self.next_url.is_some_and(|at| at < from) {
            let rest = self.body.get(from..).unwrap_or_default();
            self.next_url = self.urls.find(rest).map(|at| from + at);
        }
        self.next_url.is_some_and(|at| at < to)
    }

    /// A value without escapes: its bytes are its text.
    fn plain(&mut self, value: &Str<'b>) {
        let content = value.open + 1;
        if !self.url_between(content, value.close) {
            return;
        }
        let matcher = self.mounts.matcher();
        matcher.hits_into(value.raw, content, &mut self.hits);
        // The text ends before the closing quote.
        let text = self.body.get(..value.close).unwrap_or_default();
        if let Some(end) = self.mounts.write_replaced(&mut self.out, text, self.copied, &self.hits) {
            self.copied = end;
        }
    }

    /// A value with escapes, which may spell a URL (`https:\/\/`) or a NUL
    /// (`\u0000`, which must not read as a placeholder): decoded, rewritten
    /// like any text, and written back escaped.
    fn escaped(&mut self, value: &Str<'b>) -> Option<()> {
        if !may_hide_a_url_or_nul(value.raw) {
            return None;
        }
        let rewritten = rewrite_text(&value.text(self.body)?, self.mounts)?;
        let mut literal = Vec::with_capacity(rewritten.len() + 2);
        let mut serializer = serde_json::Serializer::with_formatter(&mut literal, PlaceholderFormatter::default());
        // Writing into a Vec cannot fail.
        serializer.serialize_str(&rewritten).ok()?;
        self.out.extend_from_slice(self.body.get(self.copied..value.open)?);
        self.out.extend_from_slice(&literal);
        self.copied = value.close + 1;
        Some(())
    }
}

impl<'b> Events<'b> for Splicer<'b, '_> {
    fn key(&mut self, _: &Str<'b>) {}

    fn string(&mut self, value: &Str<'b>) {
        if value.escaped {
            self.escaped(value);
        } else {
            self.plain(value);
        }
    }

    fn scalar(&mut self) {}

    fn open(&mut self, _: bool) {}

    fn close(&mut self, _: bool) {}
}

/// Whether the text of an escaped string written as `raw` could hold `://`
/// or a NUL. Without `\u`, a colon is written as itself and a slash as `/`
/// or `\/`; a NUL needs `\u0000`.
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
