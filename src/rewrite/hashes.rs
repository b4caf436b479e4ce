//! The package hashes a document states, read by the rewriter's own pass
//! (`scan`) so that a miss reads its document once: an object with a
//! `packageHash` string states one (see `nuget::PackageHash::stated`).

use std::borrow::Cow;

use super::scan::{Events, Str};
use crate::nuget::PackageHash;

/// Which of an entry's `fields` a key names.
fn field_of(key: &[u8]) -> Option<usize> {
    match key {
        b"id" => Some(0),
        b"version" => Some(1),
        b"packageHash" => Some(2),
        b"packageHashAlgorithm" => Some(3),
        _ => None,
    }
}

/// Collects the hashes, in document order (an entry before the entries
/// nested in it), as `nuget::package_hashes` reads them from a parsed
/// document.
pub(super) struct HashCollector<'b> {
    body: &'b [u8],
    /// One per open container; `None` for arrays.
    open: Vec<Option<Entry<'b>>>,
    pub found: Vec<PackageHash>,
}

/// An object being read.
#[derive(Default)]
struct Entry<'b> {
    /// The string values of `id`, `version`, `packageHash` and
    /// `packageHashAlgorithm` (the last of duplicate keys counts).
    fields: [Option<Cow<'b, str>>; 4],
    /// The field whose value comes next.
    pending: Option<usize>,
    /// Where the hashes nested in this object start in `found`.
    first_nested: usize,
}

impl<'b> HashCollector<'b> {
    pub fn new(body: &'b [u8]) -> Self {
        HashCollector {
            body,
            open: Vec::new(),
            found: Vec::new(),
        }
    }

    /// The field the value being read belongs to, if any (and then no more).
    fn take_pending(&mut self) -> Option<(&mut Entry<'b>, usize)> {
        let entry = self.open.last_mut()?.as_mut()?;
        let field = entry.pending.take()?;
        Some((entry, field))
    }
}

impl<'b> Events<'b> for HashCollector<'b> {
    fn key(&mut self, key: &Str<'b>) {
        let Some(Some(entry)) = self.open.last_mut() else {
            return;
        };
        let field = match key.escaped {
            false => field_of(key.raw),
            true => key.text(self.body).and_then(|text| field_of(text.as_bytes())),
        };
        if let Some(field) = field {
            // A value that is not a string leaves the field unset.
            entry.fields[field] = None;
        }
        entry.pending = field;
    }

    fn string(&mut self, value: &Str<'b>) {
        let body = self.body;
        if let Some((entry, field)) = self.take_pending() {
            entry.fields[field] = value.text(body);
        }
    }

    fn scalar(&mut self) {
        self.take_pending();
    }

    fn open(&mut self, object: bool) {
        self.take_pending();
        let first_nested = self.found.len();
        self.open.push(object.then(|| Entry {
            first_nested,
            ..Entry::default()
        }));
    }

    fn close(&mut self, _: bool) {
        let Some(Some(entry)) = self.open.pop() else {
            return;
        };
        let [id, version, hash, algorithm] = &entry.fields;
        if hash.is_none() {
            return;
        }
        let stated = PackageHash::stated(id.as_deref(), version.as_deref(), hash.as_deref(), algorithm.as_deref());
        if let Some(stated) = stated {
            self.found.insert(entry.first_nested, stated);
        }
    }
}
