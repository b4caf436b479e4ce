//! Verified reads: a committed blob is hashed while it is read, and its
//! last chunk is handed out only once the whole file has been found to
//! match the checksum recorded at commit. A client therefore never receives
//! a complete corrupt file: on a mismatch its transfer breaks off short of
//! the announced length, and it retries.

use std::io;

use bytes::Bytes;
use sha2::{Digest, Sha512};
use xxhash_rust::xxh3::Xxh3;

use super::OpenBlob;

/// What the bytes must hash to.
enum Check {
    /// XXH3-128, recorded at commit (fast enough for every read).
    Fast(Box<Xxh3>, u128),
    /// SHA-512 (hex), for records older than the fast checksum.
    Full(Box<Sha512>, String),
    /// `cache.verify_reads = false`.
    Off,
}

/// Why a read was refused.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ReadError {
    #[error("cannot read a cached file: {0}")]
    Io(#[from] io::Error),
    #[error("cached file is shorter than its record")]
    Short,
    #[error("cached file does not match its recorded checksum (corrupted on disk)")]
    Corrupt,
}

/// Reads `size` bytes of a committed blob in chunks (blocking I/O: call it
/// from a blocking context).
pub(crate) struct BlobReader {
    blob: OpenBlob,
    size: u64,
    offset: u64,
    check: Check,
}

impl BlobReader {
    /// `xxh3` / `sha512` are the record's; with `verify` false nothing is checked.
    pub fn new(blob: OpenBlob, size: u64, (xxh3, sha512): (Option<u128>, &str), verify: bool) -> Self {
        let check = match (verify, xxh3) {
            (false, _) => Check::Off,
            (true, Some(expected)) => Check::Fast(Box::new(Xxh3::new()), expected),
            (true, None) => Check::Full(Box::default(), sha512.to_ascii_lowercase()),
        };
        BlobReader {
            blob,
            size,
            offset: 0,
            check,
        }
    }

    /// The next chunk (at most `max` bytes), `None` after the last; the
    /// last one only when the whole blob matched its checksum.
    pub fn next_chunk(&mut self, max: usize) -> Result<Option<Bytes>, ReadError> {
        if self.offset >= self.size {
            return Ok(None);
        }
        let len = (self.size - self.offset).min(max.max(1) as u64) as usize;
        let data = self.blob.read_at(self.offset, len)?;
        if data.len() < len {
            return Err(ReadError::Short);
        }
        self.offset += data.len() as u64;
        self.update(&data);
        if self.offset == self.size && !self.matches() {
            return Err(ReadError::Corrupt);
        }
        Ok(Some(Bytes::from(data)))
    }

    fn update(&mut self, data: &[u8]) {
        match &mut self.check {
            Check::Fast(hasher, _) => hasher.update(data),
            Check::Full(hasher, _) => hasher.update(data),
            Check::Off => {}
        }
    }

    fn matches(&mut self) -> bool {
        match &mut self.check {
            Check::Fast(hasher, expected) => hasher.digest128() == *expected,
            Check::Full(hasher, expected) => hex::encode(std::mem::take(hasher.as_mut()).finalize()) == *expected,
            Check::Off => true,
        }
    }
}

/// Reads a whole blob and tells whether it matches its record (the scrub
/// and `nucache verify`).
pub(crate) fn intact(blob: OpenBlob, size: u64, hashes: (Option<u128>, &str)) -> Result<bool, io::Error> {
    let mut reader = BlobReader::new(blob, size, hashes, true);
    loop {
        match reader.next_chunk(1024 * 1024) {
            Ok(Some(_)) => {}
            Ok(None) => return Ok(true),
            Err(ReadError::Io(error)) => return Err(error),
            Err(ReadError::Short | ReadError::Corrupt) => return Ok(false),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::BlobRead;

    /// Content in memory (the readers see only the trait).
    struct InMemory(Vec<u8>);

    impl BlobRead for InMemory {
        fn read_at(&self, offset: u64, len: usize) -> io::Result<Vec<u8>> {
            let start = (offset as usize).min(self.0.len());
            Ok(self.0[start..(start + len).min(self.0.len())].to_vec())
        }
    }

    fn file_with(data: &[u8]) -> OpenBlob {
        Box::new(InMemory(data.to_vec()))
    }

    fn read_all(mut reader: BlobReader) -> (Vec<u8>, Option<String>) {
        let mut out = Vec::new();
        loop {
            match reader.next_chunk(4096) {
                Ok(Some(chunk)) => out.extend_from_slice(&chunk),
                Ok(None) => return (out, None),
                Err(error) => return (out, Some(error.to_string())),
            }
        }
    }

    fn hashes(data: &[u8]) -> (u128, String) {
        (xxhash_rust::xxh3::xxh3_128(data), hex::encode(Sha512::digest(data)))
    }

    #[test]
    fn an_intact_blob_reads_whole() {
        let data: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
        let (fast, sha) = hashes(&data);
        for record in [(Some(fast), sha.as_str()), (None, sha.as_str())] {
            let reader = BlobReader::new(file_with(&data), data.len() as u64, record, true);
            assert_eq!(read_all(reader), (data.clone(), None));
        }
    }

    #[test]
    fn a_corrupt_blob_breaks_off_before_its_last_chunk() {
        let data: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
        let (fast, sha) = hashes(&data);
        let mut rotten = data.clone();
        rotten[5000] ^= 0xff;
        for record in [(Some(fast), sha.as_str()), (None, sha.as_str())] {
            let reader = BlobReader::new(file_with(&rotten), data.len() as u64, record, true);
            let (got, error) = read_all(reader);
            assert!(got.len() < data.len(), "the last chunk is withheld");
            assert!(error.is_some_and(|e| e.contains("checksum")));
        }
        let unchecked = BlobReader::new(file_with(&rotten), data.len() as u64, (Some(fast), &sha), false);
        assert_eq!(read_all(unchecked), (rotten, None), "verify_reads off reads as stored");
    }

    #[test]
    fn a_short_file_is_an_error() {
        let data = vec![7u8; 100];
        let (fast, sha) = hashes(&data);
        let reader = BlobReader::new(file_with(&data[..50]), 100, (Some(fast), &sha), true);
        assert!(read_all(reader).1.is_some_and(|e| e.contains("shorter")));
    }
}
