//! The blob store: cached bytes as files. A blob is written to a temporary
//! file (hashed as it is written, readable while it grows), then made
//! durable (fsync) and renamed into place. Files are named by a hash of the
//! cache key and of the content, so no request can choose a path.

use std::collections::HashSet;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use sha2::{Digest, Sha256, Sha512};
use xxhash_rust::xxh3::Xxh3;

use crate::error::StorageError;

const TEMP_SUFFIX: &str = ".part";

/// Size and hashes of a committed blob.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobInfo {
    pub size: u64,
    pub sha512: String,
    /// XXH3-128 of the bytes: the fast at-rest checksum every read is
    /// verified against (SHA-512 stays NuGet's hash). `None` for blobs
    /// committed before nucache recorded it.
    pub xxh3: Option<u128>,
}

/// Where blobs live. One backend today (files); every backend must pass
/// the compliance suite in `compliance.rs`.
pub(crate) trait BlobStore: Send + Sync + 'static {
    /// Starts a new blob in a temporary place.
    fn create(&self) -> Result<BlobWriter, StorageError>;
    /// Makes a finished blob durable and visible under `key`.
    fn commit(&self, writer: BlobWriter, key: &str) -> Result<BlobInfo, StorageError>;
    /// Opens a committed blob; `None` when it is missing or not `info.size` long.
    fn open(&self, key: &str, info: &BlobInfo) -> Result<Option<File>, StorageError>;
    fn remove(&self, key: &str, info: &BlobInfo) -> Result<(), StorageError>;
    /// Deletes temporary files left behind (by a crash); returns how many.
    fn sweep_temp(&self) -> Result<usize, StorageError>;
    /// Deletes committed blobs that are not in `live` (key, sha512); returns how many.
    fn sweep_orphans(&self, live: &[(String, String)]) -> Result<usize, StorageError>;
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

    /// Gives up on the blob (the disk failed): its temporary file is
    /// deleted (open descriptors still read it) and the SHA-512 of what was
    /// written goes on in the caller's hands.
    pub fn abandon(mut self) -> Sha512 {
        std::mem::take(&mut self.hasher)
    }

    /// The file being written, for concurrent positional reads.
    pub fn file(&self) -> Arc<File> {
        self.file.clone()
    }
}

impl Drop for BlobWriter {
    fn drop(&mut self) {
        if !self.committed {
            let _ = fs::remove_file(&self.temp);
        }
    }
}

/// Blobs as files under `{dir}/content`, temporaries under `{dir}/tmp`.
pub(crate) struct FsBlobStore {
    content: PathBuf,
    temp: PathBuf,
    counter: AtomicU64,
}

impl FsBlobStore {
    pub fn open(dir: &Path) -> Result<FsBlobStore, StorageError> {
        let content = dir.join("content");
        let temp = dir.join("tmp");
        fs::create_dir_all(&content).map_err(StorageError::io("creating the content directory"))?;
        fs::create_dir_all(&temp).map_err(StorageError::io("creating the temporary directory"))?;
        Ok(FsBlobStore {
            content,
            temp,
            counter: AtomicU64::new(0),
        })
    }

    /// `content/ab/cd/{sha256(key)}-{sha512 prefix}`.
    fn path_of(&self, key: &str, sha512: &str) -> PathBuf {
        let key_hash = hex::encode(Sha256::digest(key.as_bytes()));
        let content_tag: String = sha512.chars().take(16).collect();
        self.content
            .join(&key_hash[0..2])
            .join(&key_hash[2..4])
            .join(format!("{key_hash}-{content_tag}"))
    }

    fn temp_name(&self) -> PathBuf {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        let nanos = crate::cache::now_ms();
        self.temp
            .join(format!("{}-{nanos}-{n}{TEMP_SUFFIX}", std::process::id()))
    }
}

impl BlobStore for FsBlobStore {
    fn create(&self) -> Result<BlobWriter, StorageError> {
        let temp = self.temp_name();
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&temp)
            .map_err(StorageError::io("creating a temporary file"))?;
        Ok(BlobWriter {
            file: Arc::new(file),
            temp,
            hasher: Sha512::new(),
            fast: Xxh3::new(),
            digest: None,
            written: 0,
            committed: false,
        })
    }

    fn commit(&self, mut writer: BlobWriter, key: &str) -> Result<BlobInfo, StorageError> {
        writer.file.sync_all().map_err(StorageError::io("syncing a blob"))?;
        let sha512 = writer.finish();
        let target = self.path_of(key, &sha512);
        let parent = target.parent().unwrap_or(&self.content);
        fs::create_dir_all(parent).map_err(StorageError::io("creating a content directory"))?;
        fs::rename(&writer.temp, &target).map_err(StorageError::io("renaming a blob into place"))?;
        writer.committed = true;
        // The rename is durable only once its directory is.
        if let Ok(dir) = File::open(parent) {
            let _ = dir.sync_all();
        }
        Ok(BlobInfo {
            size: writer.written,
            sha512,
            xxh3: Some(writer.fast.digest128()),
        })
    }

    fn open(&self, key: &str, info: &BlobInfo) -> Result<Option<File>, StorageError> {
        let file = match File::open(self.path_of(key, &info.sha512)) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(StorageError::io("opening a blob")(e)),
        };
        let size = file
            .metadata()
            .map_err(StorageError::io("reading blob metadata"))?
            .len();
        Ok((size == info.size).then_some(file))
    }

    fn remove(&self, key: &str, info: &BlobInfo) -> Result<(), StorageError> {
        match fs::remove_file(self.path_of(key, &info.sha512)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(StorageError::io("removing a blob")(e)),
            _ => Ok(()),
        }
    }

    fn sweep_temp(&self) -> Result<usize, StorageError> {
        let mut removed = 0;
        for item in fs::read_dir(&self.temp).map_err(StorageError::io("listing temporary files"))? {
            let path = item.map_err(StorageError::io("listing temporary files"))?.path();
            if path.is_file() && fs::remove_file(&path).is_ok() {
                removed += 1;
            }
        }
        Ok(removed)
    }

    fn sweep_orphans(&self, live: &[(String, String)]) -> Result<usize, StorageError> {
        let keep: HashSet<PathBuf> = live.iter().map(|(key, sha)| self.path_of(key, sha)).collect();
        let mut removed = 0;
        for path in walk_files(&self.content)? {
            if !keep.contains(&path) && fs::remove_file(&path).is_ok() {
                removed += 1;
            }
        }
        Ok(removed)
    }
}

fn walk_files(root: &Path) -> Result<Vec<PathBuf>, StorageError> {
    let mut files = Vec::new();
    let mut pending = vec![root.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for item in fs::read_dir(&dir).map_err(StorageError::io("walking the content directory"))? {
            let item = item.map_err(StorageError::io("walking the content directory"))?;
            let file_type = item
                .file_type()
                .map_err(StorageError::io("walking the content directory"))?;
            if file_type.is_dir() {
                pending.push(item.path());
            } else if file_type.is_file() {
                files.push(item.path());
            }
        }
    }
    Ok(files)
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
