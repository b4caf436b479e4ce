//! The blob store: what any backend that keeps the cache's objects must
//! offer ([`BlobStore`]), and the writer every object starts as.
//!
//! An object is first written to a local temporary file ([`BlobWriter`]):
//! hashed as it is written and readable while it grows, because the
//! clients of a download in flight read it from there, whatever the
//! backend. Committing seals it with its record (`record.rs`) and makes it
//! durable and visible under its name at once; a reader sees a whole
//! object with its record, or none. `fs_store` keeps objects as files;
//! every backend passes the suite in `compliance.rs`.

use std::fs::{self, File};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use sha2::{Digest, Sha512};
use xxhash_rust::xxh3::Xxh3;

use super::record::Record;
use crate::error::{RecordProblem, StorageError};

/// Size and hashes of a finished blob.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobInfo {
    pub size: u64,
    pub sha512: String,
    /// XXH3-128 of the bytes: the fast at-rest checksum every read is
    /// verified against (SHA-512 stays NuGet's hash). `None` for blobs
    /// committed before nucache recorded it.
    pub xxh3: Option<u128>,
}

/// Where the cache's objects live. Objects are named by
/// `record::object_name`; each carries its [`Record`]. Every call may do
/// blocking I/O.
pub(crate) trait BlobStore: Send + Sync + 'static {
    /// Starts an object in a local temporary file (see [`BlobWriter`]);
    /// nothing is visible until it is committed.
    fn create(&self) -> Result<BlobWriter, StorageError>;
    /// Makes `writer`'s bytes and `record` durable and visible as `name`
    /// at once, replacing an object of that name.
    fn commit(&self, writer: BlobWriter, name: &str, record: &Record) -> Result<(), StorageError>;
    /// Opens `name`'s content; `None` when there is no such object or it is
    /// not `size` bytes of content followed by a record.
    fn open(&self, name: &str, size: u64) -> Result<Option<Box<dyn BlobRead>>, StorageError>;
    /// The record stored with `name` (`None`: no such object; an error: it
    /// has no usable record).
    fn record(&self, name: &str) -> Result<Option<Record>, StorageError>;
    /// The names of every committed object, in no particular order.
    fn names(&self) -> Result<Vec<String>, StorageError>;
    /// Moves object `from` to `to` with a new record, without copying its
    /// content; `false` when there is no object `from`.
    fn rename(&self, from: &str, to: &str, record: &Record) -> Result<bool, StorageError>;
    /// Deletes `name` (gone already is fine).
    fn remove(&self, name: &str) -> Result<(), StorageError>;
    /// Deletes what uncommitted writers left behind (a crash); returns how many.
    fn sweep_temp(&self) -> Result<usize, StorageError>;
}

/// A committed object's content, opened: reads never reach its record.
pub(crate) trait BlobRead: Send + Sync {
    /// Up to `len` bytes at `offset` (blocking), fewer only at the end of
    /// the content.
    fn read_at(&self, offset: u64, len: usize) -> io::Result<Vec<u8>>;
}

/// A blob being written. Readers may read what is written so far through
/// [`BlobWriter::file`]; dropping an uncommitted writer deletes its file.
pub(crate) struct BlobWriter {
    file: Arc<File>,
    temp: PathBuf,
    hasher: Sha512,
    fast: Xxh3,
    /// The SHA-512 (hex), once the writer is finished.
    digest: Option<String>,
    written: u64,
    committed: bool,
}

impl BlobWriter {
    /// A writer into `temp` (a new, empty file a backend created for it).
    pub fn staged(file: File, temp: PathBuf) -> BlobWriter {
        BlobWriter {
            file: Arc::new(file),
            temp,
            hasher: Sha512::new(),
            fast: Xxh3::new(),
            digest: None,
            written: 0,
            committed: false,
        }
    }

    /// Appends `data` (blocking I/O: call from a blocking context).
    pub fn write(&mut self, data: &[u8]) -> io::Result<()> {
        if self.digest.is_some() {
            return Err(io::Error::other("write after the blob was finished"));
        }
        self.file.write_all_at(data, self.written)?;
        self.hasher.update(data);
        self.fast.update(data);
        self.written += data.len() as u64;
        Ok(())
    }

    pub fn written(&self) -> u64 {
        self.written
    }

    /// The SHA-512 (hex) of everything written; no more writes after this.
    pub fn finish(&mut self) -> String {
        let hasher = &mut self.hasher;
        self.digest
            .get_or_insert_with(|| hex::encode(std::mem::take(hasher).finalize()))
            .clone()
    }

    /// Size and hashes of everything written; no more writes after this.
    pub fn info(&mut self) -> BlobInfo {
        BlobInfo {
            size: self.written,
            sha512: self.finish(),
            xxh3: Some(self.fast.digest128()),
        }
    }

    /// Gives up on the blob (the disk failed): its temporary file is
    /// deleted (open descriptors still read it) and the hashes of what was
    /// written go on in the caller's hands.
    pub fn abandon(mut self) -> (Sha512, Xxh3) {
        (std::mem::take(&mut self.hasher), self.fast.clone())
    }

    /// The file being written, for concurrent positional reads.
    pub fn file(&self) -> Arc<File> {
        self.file.clone()
    }

    /// Appends `record` after the content and makes the temporary file
    /// durable; returns its path, for the backend to publish.
    pub fn seal(&mut self, name: &str, record: &Record) -> Result<&Path, StorageError> {
        if record.entry.size != self.written {
            return Err(StorageError::ObjectRecord {
                object: name.to_string(),
                problem: RecordProblem::Length,
            });
        }
        self.file
            .write_all_at(&record.footer(), self.written)
            .map_err(StorageError::io("writing a record"))?;
        self.file.sync_all().map_err(StorageError::io("syncing a blob"))?;
        Ok(&self.temp)
    }

    /// The backend published the temporary file: it is no longer the
    /// writer's to delete.
    pub fn published(mut self) {
        self.committed = true;
    }
}

impl Drop for BlobWriter {
    fn drop(&mut self) {
        if !self.committed {
            let _ = fs::remove_file(&self.temp);
        }
    }
}

/// Reads `len` bytes at `offset` (blocking), fewer at the end of the file.
/// The buffer is not zeroed first: on a warm 50 MiB hit the zero-filling
/// alone was 11% of nucache's CPU (perf), more than the XXH3 check.
pub(crate) fn read_at(file: &File, offset: u64, len: usize) -> io::Result<Vec<u8>> {
    use std::os::fd::AsRawFd;
    let mut buffer: Vec<u8> = Vec::with_capacity(len);
    while buffer.len() < len {
        let filled = buffer.len();
        let spare = &mut buffer.spare_capacity_mut()[..len - filled];
        let at = libc::off_t::try_from(offset + filled as u64).map_err(io::Error::other)?;
        // SAFETY: `spare` is writable memory of `spare.len()` bytes owned
        // by `buffer`; pread writes at most that many and returns how many.
        let read = unsafe { libc::pread(file.as_raw_fd(), spare.as_mut_ptr().cast(), spare.len(), at) };
        match read {
            0 => break,
            n if n > 0 => {
                // SAFETY: pread initialised the first `n` bytes of `spare`.
                unsafe { buffer.set_len(filled + n as usize) };
            }
            _ => {
                let error = io::Error::last_os_error();
                if error.kind() != io::ErrorKind::Interrupted {
                    return Err(error);
                }
            }
        }
    }
    Ok(buffer)
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::read_at;

    #[test]
    fn positional_reads_return_exactly_the_bytes_there() {
        let data: Vec<u8> = (0..300_000u32).map(|i| (i % 253) as u8).collect();
        let mut file = tempfile::tempfile().expect("temp file");
        file.write_all(&data).expect("write");
        assert_eq!(read_at(&file, 0, 10).expect("start"), data[..10]);
        assert_eq!(
            read_at(&file, 123_457, 100_000).expect("middle"),
            data[123_457..223_457]
        );
        assert_eq!(
            read_at(&file, 299_990, 64).expect("end"),
            data[299_990..],
            "short at the end"
        );
        assert!(read_at(&file, 400_000, 64).expect("past the end").is_empty());
        assert!(read_at(&file, 5, 0).expect("nothing").is_empty());
    }
}
