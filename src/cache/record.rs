//! The record every stored object carries: its cache key and its [`Entry`]
//! (kind, upstream URL, size, SHA-512, XXH3, content type, validators,
//! when it was fetched), so that the index can be rebuilt from the objects
//! alone. It is a footer after the content:
//!
//! ```text
//! [content: size bytes][record JSON][u32 LE length of the JSON][MAGIC]
//! ```
//!
//! The content still starts at offset 0 (readers of a download in flight
//! read the temporary file while it grows; verified reads and the scrub
//! read `[0, size)`), and the record becomes durable with the same fsync
//! and rename (or upload) as the content: an object and its record are
//! never apart. An object is named from its key and content
//! ([`object_name`]), so no request can choose a name.

use std::io;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::index::Entry;
use crate::error::RecordProblem;

/// The record's format; a newer one is refused, not misread.
pub(crate) const FORMAT: u32 = 1;
/// Ends every object that carries a record.
const MAGIC: [u8; 8] = *b"NUCACHE1";
/// The JSON length and the magic.
pub(crate) const TRAILER: u64 = 12;
/// No real record comes near this (a key and a URL); a longer one is damage.
const MAX_RECORD: u64 = 1024 * 1024;

/// What an object says about itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Record {
    pub format: u32,
    pub key: String,
    pub entry: Entry,
}

impl Record {
    pub fn new(key: &str, entry: &Entry) -> Record {
        Record {
            format: FORMAT,
            key: key.to_string(),
            entry: entry.clone(),
        }
    }

    /// The name its object has.
    pub fn name(&self) -> String {
        object_name(&self.key, &self.entry.sha512)
    }

    /// The bytes that follow the content.
    pub fn footer(&self) -> Vec<u8> {
        // An `Entry` is strings and numbers: serialising it cannot fail.
        let json = serde_json::to_vec(self).unwrap_or_default();
        let mut footer = Vec::with_capacity(json.len() + TRAILER as usize);
        footer.extend_from_slice(&json);
        footer.extend_from_slice(&(json.len() as u32).to_le_bytes());
        footer.extend_from_slice(&MAGIC);
        footer
    }
}

/// `ab/cd/{sha256(key)}-{first 16 hex digits of the SHA-512}`: the key's
/// hash spreads objects over directories (or prefixes); the content's tag
/// keeps a replaced object apart from its successor.
pub(crate) fn object_name(key: &str, sha512: &str) -> String {
    let key_hash = hex::encode(Sha256::digest(key.as_bytes()));
    let content_tag: String = sha512.chars().take(16).collect();
    format!("{}/{}/{key_hash}-{content_tag}", &key_hash[0..2], &key_hash[2..4])
}

/// Whether `name` is one [`object_name`] makes (a backend refuses others).
pub(crate) fn is_object_name(name: &str) -> bool {
    let parts: Vec<&str> = name.split('/').collect();
    let hex = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_hexdigit());
    match parts.as_slice() {
        [a, b, last] => {
            let (key_hash, tag) = last.split_once('-').unwrap_or((last, ""));
            a.len() == 2 && b.len() == 2 && hex(a) && hex(b) && key_hash.len() == 64 && hex(key_hash) && hex(tag)
        }
        _ => false,
    }
}

/// The content length of an object of `len` bytes, from its trailer
/// alone (one small read: what opening an object costs).
pub(crate) fn content_len(len: u64, read_at: impl Fn(u64, usize) -> io::Result<Vec<u8>>) -> Result<u64, RecordProblem> {
    let json_len = json_len(len, &read_at)?;
    Ok(len - TRAILER - json_len)
}

/// Reads and checks the record of an object of `len` bytes.
pub(crate) fn read(len: u64, read_at: impl Fn(u64, usize) -> io::Result<Vec<u8>>) -> Result<Record, RecordProblem> {
    let json_len = json_len(len, &read_at)?;
    let start = len - TRAILER - json_len;
    let json = read_exactly(&read_at, start, json_len as usize)?;
    let record: Record = serde_json::from_slice(&json).map_err(RecordProblem::Json)?;
    if record.format > FORMAT {
        return Err(RecordProblem::Format(record.format));
    }
    if record.entry.size != start {
        return Err(RecordProblem::Length);
    }
    Ok(record)
}

fn json_len(len: u64, read_at: &impl Fn(u64, usize) -> io::Result<Vec<u8>>) -> Result<u64, RecordProblem> {
    if len < TRAILER {
        return Err(RecordProblem::Missing);
    }
    let trailer = read_exactly(read_at, len - TRAILER, TRAILER as usize)?;
    if trailer[4..] != MAGIC {
        return Err(RecordProblem::Missing);
    }
    let json_len = u64::from(u32::from_le_bytes([trailer[0], trailer[1], trailer[2], trailer[3]]));
    if json_len > MAX_RECORD {
        return Err(RecordProblem::TooLong(json_len));
    }
    if json_len > len - TRAILER {
        return Err(RecordProblem::Length);
    }
    Ok(json_len)
}

fn read_exactly(
    read_at: &impl Fn(u64, usize) -> io::Result<Vec<u8>>,
    offset: u64,
    len: usize,
) -> Result<Vec<u8>, RecordProblem> {
    let bytes = read_at(offset, len).map_err(RecordProblem::Io)?;
    if bytes.len() < len {
        return Err(RecordProblem::Missing);
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::index_compliance::entry;

    fn reader(bytes: &[u8]) -> impl Fn(u64, usize) -> io::Result<Vec<u8>> + '_ {
        move |offset, len| {
            let start = (offset as usize).min(bytes.len());
            Ok(bytes[start..(start + len).min(bytes.len())].to_vec())
        }
    }

    fn object(content: &[u8], record: &Record) -> Vec<u8> {
        let mut bytes = content.to_vec();
        bytes.extend_from_slice(&record.footer());
        bytes
    }

    #[test]
    fn a_record_reads_back_after_its_content() {
        let record = Record::new("v3/flatcontainer/a/1.0.0/a.1.0.0.nupkg", &entry(5));
        let bytes = object(b"hello", &record);
        let len = bytes.len() as u64;
        assert_eq!(content_len(len, reader(&bytes)).expect("trailer"), 5);
        assert_eq!(read(len, reader(&bytes)).expect("record"), record);
    }

    #[test]
    fn an_object_without_a_whole_record_has_none() {
        let record = Record::new("v3/a", &entry(5));
        let bytes = object(b"hello", &record);
        let problem = |bytes: &[u8]| read(bytes.len() as u64, reader(bytes)).expect_err("no record");
        assert!(
            matches!(problem(b"hello"), RecordProblem::Missing),
            "legacy: content only"
        );
        assert!(
            matches!(problem(&bytes[..bytes.len() - 1]), RecordProblem::Missing),
            "cut short"
        );
        let mut rotten = bytes.clone();
        rotten[7] ^= 0xff;
        assert!(matches!(problem(&rotten), RecordProblem::Json(_)), "damaged JSON");
        let other_size = object(b"hello!", &record);
        assert!(matches!(problem(&other_size), RecordProblem::Length), "size disagrees");
        let mut newer = record.clone();
        newer.format = FORMAT + 1;
        assert!(matches!(problem(&object(b"hello", &newer)), RecordProblem::Format(_)));
    }

    #[test]
    fn names_are_made_from_key_and_content_only() {
        let name = object_name("v3/a", &"ab".repeat(64));
        assert!(is_object_name(&name), "{name}");
        assert!(name.ends_with(&format!("-{}", "ab".repeat(8))));
        for bad in ["../etc/passwd", "ab/cd", "ab/cd/../../x", "/ab/cd/x-1", "zz/cd/00-1"] {
            assert!(!is_object_name(bad), "{bad}");
        }
    }
}
