//! The serde_json formatter of templates: the placeholder for the public
//! base URL is written as a raw NUL in string values, never in object keys
//! (keys are never rewritten, so a NUL there is upstream data).

use std::io;

use serde_json::ser::{CharEscape, CompactFormatter, Formatter};

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
