//! What the shared store holds: object names an operator can read, and
//! objects that describe themselves with their record FIRST, so that a hit
//! is one GET whose first bytes say what follows:
//!
//! ```text
//! [MAGIC "NUSHARE1"][u32 LE length of the JSON][record JSON][content: size bytes]
//! ```
//!
//! Names are `packages/<namespace>/<local path>` and
//! `documents/<namespace>/<local path>` (under the URL's prefix), where the
//! namespace is the 12 hex digits of a cache key (`@<namespace>/<local>`)
//! without its `@`: an S3 lifecycle rule can expire `documents/` apart
//! from packages, and no name holds an `@`.

use bytes::{Bytes, BytesMut};
use object_store::path::Path;
use serde::{Deserialize, Serialize};

/// The object format; a newer one is a miss, never misread.
pub(crate) const FORMAT: u32 = 1;
const MAGIC: [u8; 8] = *b"NUSHARE1";
/// The magic and the JSON length.
pub(crate) const PREFIX_LEN: usize = 12;
/// No real record comes near this (a key, a URL, validators).
pub(crate) const MAX_RECORD: usize = 64 * 1024;

/// What an object holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum ObjectKind {
    /// A package file, as the upstream sent it.
    Package,
    /// A metadata document as a node stores it (a template).
    Document,
    /// An upstream's service index, as received.
    ServiceIndex,
}

impl ObjectKind {
    /// The first segment of its objects' names.
    fn folder(self) -> &'static str {
        match self {
            ObjectKind::Package => "packages",
            ObjectKind::Document | ObjectKind::ServiceIndex => "documents",
        }
    }
}

/// What an object says about itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Record {
    pub format: u32,
    /// The cache key it was stored under.
    pub key: String,
    pub kind: ObjectKind,
    /// Bytes of content after the record.
    pub size: u64,
    /// SHA-512 of the content, hex.
    pub sha512: String,
    pub content_type: String,
    /// The upstream URL it came from.
    pub url: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub etag: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_modified: Option<String>,
}

impl Record {
    /// The bytes before the content: magic, length, JSON.
    pub fn header(&self) -> Bytes {
        // A record is strings and numbers: serialising it cannot fail.
        let json = serde_json::to_vec(self).unwrap_or_default();
        let mut header = BytesMut::with_capacity(PREFIX_LEN + json.len());
        header.extend_from_slice(&MAGIC);
        header.extend_from_slice(&(json.len() as u32).to_le_bytes());
        header.extend_from_slice(&json);
        header.freeze()
    }
}

/// Why the start of an object is not a usable record.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum HeaderProblem {
    #[error("it does not start with a nucache record")]
    Magic,
    #[error("its record is {0} bytes long")]
    TooLong(usize),
    #[error("its record is not JSON: {0}")]
    Json(String),
    #[error("its record is of format {0}, newer than this nucache reads")]
    Format(u32),
}

/// How far the start of an object has been read.
pub(crate) enum Parsed {
    /// More bytes are needed.
    Need,
    /// The record, the length of the header it came in (magic, length,
    /// JSON: what its writer wrote, which a reader does not recompute),
    /// and the content bytes that came with it.
    Done(Record, usize, Bytes),
}

/// Reads the record from the first bytes of an object.
pub(crate) fn parse_header(start: &[u8]) -> Result<Parsed, HeaderProblem> {
    if start.len() < PREFIX_LEN {
        return match start.iter().zip(MAGIC.iter()).all(|(a, b)| a == b) {
            true => Ok(Parsed::Need),
            false => Err(HeaderProblem::Magic),
        };
    }
    if start[..8] != MAGIC {
        return Err(HeaderProblem::Magic);
    }
    let json_len = u32::from_le_bytes([start[8], start[9], start[10], start[11]]) as usize;
    if json_len > MAX_RECORD {
        return Err(HeaderProblem::TooLong(json_len));
    }
    let end = PREFIX_LEN + json_len;
    if start.len() < end {
        return Ok(Parsed::Need);
    }
    let record: Record =
        serde_json::from_slice(&start[PREFIX_LEN..end]).map_err(|e| HeaderProblem::Json(e.to_string()))?;
    if record.format > FORMAT {
        return Err(HeaderProblem::Format(record.format));
    }
    Ok(Parsed::Done(record, end, Bytes::copy_from_slice(&start[end..])))
}

/// The name of `local` (a canonical path below `/v3/`) of namespace
/// `namespace` (12 hex digits) under `prefix`; `None` when the path cannot
/// be an object name (then the store is not used for it).
pub(crate) fn object_name(prefix: &str, kind: ObjectKind, namespace: &str, local: &str) -> Option<Path> {
    let hex = namespace.len() == 12 && namespace.bytes().all(|b| b.is_ascii_hexdigit());
    if !hex || local.is_empty() {
        return None;
    }
    let mut name = String::with_capacity(prefix.len() + local.len() + 32);
    if !prefix.is_empty() {
        name.push_str(prefix);
        name.push('/');
    }
    name.push_str(kind.folder());
    name.push('/');
    name.push_str(namespace);
    name.push('/');
    name.push_str(local);
    Path::parse(name).ok()
}

/// The folder all of `kind`'s objects of `namespace` whose local paths
/// start with `local_prefix` share (for a purge by prefix).
pub(crate) fn folder_name(prefix: &str, kind: ObjectKind, namespace: &str, local_prefix: &str) -> Option<Path> {
    object_name(prefix, kind, namespace, local_prefix.trim_end_matches('/'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> Record {
        Record {
            format: FORMAT,
            key: "@0123456789ab/flatcontainer/a/1.0.0/a.1.0.0.nupkg".into(),
            kind: ObjectKind::Package,
            size: 5,
            sha512: "ab".repeat(64),
            content_type: "application/octet-stream".into(),
            url: "https://up.example/a.1.0.0.nupkg".into(),
            etag: None,
            last_modified: None,
        }
    }

    #[test]
    fn the_record_comes_first_and_reads_back_from_any_split() {
        let mut object = record().header().to_vec();
        object.extend_from_slice(b"hello");
        for cut in 0..object.len() {
            match parse_header(&object[..cut]) {
                Ok(Parsed::Need) => assert!(cut < object.len() - 5, "asks for more at {cut}"),
                Ok(Parsed::Done(found, header_len, rest)) => {
                    assert_eq!(found, record());
                    assert_eq!(header_len, record().header().len());
                    assert_eq!(&object[cut - rest.len()..cut], &rest[..]);
                }
                Err(problem) => panic!("{cut}: {problem}"),
            }
        }
        assert!(matches!(parse_header(&object), Ok(Parsed::Done(_, _, rest)) if &rest[..] == b"hello"));
    }

    #[test]
    fn anything_but_a_record_is_refused() {
        assert_eq!(parse_header(b"PK\x03\x04").err(), Some(HeaderProblem::Magic));
        let mut long = MAGIC.to_vec();
        long.extend_from_slice(&(1u32 << 30).to_le_bytes());
        assert!(matches!(parse_header(&long), Err(HeaderProblem::TooLong(_))));
        let mut rotten = record().header().to_vec();
        rotten[PREFIX_LEN + 2] ^= 0x55;
        assert!(matches!(parse_header(&rotten), Err(HeaderProblem::Json(_))));
        let newer = Record {
            format: FORMAT + 1,
            ..record()
        };
        assert_eq!(
            parse_header(&newer.header()).err(),
            Some(HeaderProblem::Format(FORMAT + 1))
        );
    }

    #[test]
    fn names_are_readable_and_have_no_at_sign() {
        let name = object_name(
            "fleet/a",
            ObjectKind::Package,
            "0123456789ab",
            "flatcontainer/x/1.0.0/x.1.0.0.nupkg",
        );
        assert_eq!(
            name.map(|n| n.to_string()).as_deref(),
            Some("fleet/a/packages/0123456789ab/flatcontainer/x/1.0.0/x.1.0.0.nupkg")
        );
        let doc = object_name("", ObjectKind::ServiceIndex, "0123456789ab", "index.json");
        assert_eq!(
            doc.map(|n| n.to_string()).as_deref(),
            Some("documents/0123456789ab/index.json")
        );
        assert!(object_name("", ObjectKind::Document, "merged", "x").is_none());
        assert!(object_name("", ObjectKind::Document, "0123456789ab", "a/../b").is_none());
        assert!(object_name("", ObjectKind::Document, "0123456789ab", "").is_none());
        let folder = folder_name("", ObjectKind::Package, "0123456789ab", "flatcontainer/x/");
        assert_eq!(
            folder.map(|n| n.to_string()).as_deref(),
            Some("packages/0123456789ab/flatcontainer/x")
        );
    }
}
