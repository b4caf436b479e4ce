//! The blob store on local disk: objects as files under `{dir}/content`
//! (`content/{object name}`), temporaries under `{dir}/tmp`. A commit
//! appends the record, fsyncs, renames into place and fsyncs the
//! directory; a rename for a key migration rewrites the record, then
//! renames (a crash between leaves the object under its old name with the
//! new record, which the migration, run again, finishes).

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use super::blobs::{read_at, BlobRead, BlobStore, BlobWriter};
use super::record::{self, is_object_name, Record};
use crate::error::{RecordProblem, StorageError};

const TEMP_SUFFIX: &str = ".part";

pub(crate) struct FsBlobStore {
    content: PathBuf,
    temp: PathBuf,
    counter: AtomicU64,
}

/// An object's file, read within its content.
struct FileBlob {
    file: File,
    size: u64,
}

impl BlobRead for FileBlob {
    fn read_at(&self, offset: u64, len: usize) -> io::Result<Vec<u8>> {
        let within = self.size.saturating_sub(offset).min(len as u64) as usize;
        read_at(&self.file, offset, within)
    }
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

    /// The file of `name`; a name [`record::object_name`] cannot make is
    /// refused, so no path outside `content/` is ever touched.
    fn path(&self, name: &str) -> Result<PathBuf, StorageError> {
        if !is_object_name(name) {
            return Err(StorageError::ObjectName(name.to_string()));
        }
        Ok(self.content.join(name))
    }

    fn temp_name(&self) -> PathBuf {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        let nanos = crate::cache::now_ms();
        self.temp
            .join(format!("{}-{nanos}-{n}{TEMP_SUFFIX}", std::process::id()))
    }

    /// Gives a file written before objects carried records (exactly
    /// `record.entry.size` bytes, content only) its record, in place: no
    /// content is copied. `false` when the file is not such a file.
    pub fn add_record(&self, name: &str, record: &Record) -> Result<bool, StorageError> {
        let path = self.path(name)?;
        // Every start-up asks this of every file: a stat, not an open.
        match fs::metadata(&path) {
            Ok(meta) if meta.len() == record.entry.size => {}
            Ok(_) => return Ok(false),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(StorageError::io("reading blob metadata")(e)),
        }
        let Some(file) = open_existing(&path, true)? else {
            return Ok(false);
        };
        write_record(&file, record)?;
        Ok(true)
    }

    /// `name`'s file (opened for writing too with `write`) and its length;
    /// `None` when there is none.
    fn file_of(&self, name: &str, write: bool) -> Result<Option<(File, u64)>, StorageError> {
        let Some(file) = open_existing(&self.path(name)?, write)? else {
            return Ok(None);
        };
        let len = file
            .metadata()
            .map_err(StorageError::io("reading blob metadata"))?
            .len();
        Ok(Some((file, len)))
    }

    /// Moves `path` to `name`, creating its directory, durably.
    fn publish(&self, path: &Path, name: &str) -> Result<(), StorageError> {
        let target = self.path(name)?;
        let parent = target.parent().unwrap_or(&self.content);
        fs::create_dir_all(parent).map_err(StorageError::io("creating a content directory"))?;
        fs::rename(path, &target).map_err(StorageError::io("renaming a blob into place"))?;
        // The rename is durable only once its directory is.
        if let Ok(dir) = File::open(parent) {
            let _ = dir.sync_all();
        }
        Ok(())
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
        Ok(BlobWriter::staged(file, temp))
    }

    fn commit(&self, mut writer: BlobWriter, name: &str, record: &Record) -> Result<(), StorageError> {
        let temp = writer.seal(name, record)?.to_path_buf();
        self.publish(&temp, name)?;
        writer.published();
        Ok(())
    }

    fn open(&self, name: &str, size: u64) -> Result<Option<Box<dyn BlobRead>>, StorageError> {
        let Some((file, len)) = self.file_of(name, false)? else {
            return Ok(None);
        };
        match record::content_len(len, |offset, n| read_at(&file, offset, n)) {
            Ok(content) if content == size => Ok(Some(Box::new(FileBlob { file, size }))),
            Err(RecordProblem::Io(error)) => Err(StorageError::io("reading a record")(error)),
            _ => Ok(None),
        }
    }

    fn record(&self, name: &str) -> Result<Option<Record>, StorageError> {
        let Some((file, len)) = self.file_of(name, false)? else {
            return Ok(None);
        };
        record::read(len, |offset, n| read_at(&file, offset, n))
            .map(Some)
            .map_err(|problem| StorageError::ObjectRecord {
                object: name.to_string(),
                problem,
            })
    }

    fn names(&self) -> Result<Vec<String>, StorageError> {
        let mut names = Vec::new();
        for path in walk_files(&self.content)? {
            let relative = path.strip_prefix(&self.content).unwrap_or(&path);
            // A file whose name nucache cannot have made (someone else's)
            // is not an object: listed never, removed never.
            match relative.to_str().filter(|name| is_object_name(name)) {
                Some(name) => names.push(name.to_string()),
                None => tracing::debug!(file = %path.display(), "not a cache object; left alone"),
            }
        }
        Ok(names)
    }

    fn rename(&self, from: &str, to: &str, record: &Record) -> Result<bool, StorageError> {
        let Some((file, len)) = self.file_of(from, true)? else {
            return Ok(false);
        };
        if len < record.entry.size {
            return Ok(false);
        }
        // The record first: see the module comment.
        write_record(&file, record)?;
        self.publish(&self.path(from)?, to)?;
        Ok(true)
    }

    fn remove(&self, name: &str) -> Result<(), StorageError> {
        match fs::remove_file(self.path(name)?) {
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
}

/// The file at `path`, `None` when there is none.
fn open_existing(path: &Path, write: bool) -> Result<Option<File>, StorageError> {
    match OpenOptions::new().read(true).write(write).open(path) {
        Ok(file) => Ok(Some(file)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(StorageError::io("opening a blob")(e)),
    }
}

/// Replaces whatever follows the content of `file` with `record`, durably.
/// A crash between the truncation and the write leaves content alone: a
/// file without a record, which start-up gives its record again from the
/// index.
fn write_record(file: &File, record: &Record) -> Result<(), StorageError> {
    let size = record.entry.size;
    file.set_len(size).map_err(StorageError::io("writing a record"))?;
    file.write_all_at(&record.footer(), size)
        .map_err(StorageError::io("writing a record"))?;
    file.sync_all().map_err(StorageError::io("syncing a record"))
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::compliance::suite;

    #[test]
    fn file_store_passes_the_suite() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = FsBlobStore::open(dir.path()).expect("open store");
        let content = dir.path().join("content");
        suite(&store, |name: &str| {
            let file = OpenOptions::new().write(true).open(content.join(name)).expect("open");
            let len = file.metadata().expect("metadata").len();
            file.set_len(len - 1).expect("truncate");
        });
    }

    #[test]
    fn a_file_without_a_record_is_not_served_until_it_gets_one() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = FsBlobStore::open(dir.path()).expect("open store");
        let entry = crate::cache::index_compliance::entry(5);
        let record = Record::new("v3/legacy", &entry);
        let name = record.name();
        let path = dir.path().join("content").join(&name);
        fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        fs::write(&path, b"hello").expect("legacy file: content only");

        assert!(store.open(&name, 5).expect("open").is_none(), "no record: not served");
        assert!(matches!(
            store.record(&name),
            Err(StorageError::ObjectRecord {
                problem: RecordProblem::Missing,
                ..
            })
        ));
        assert!(store.add_record(&name, &record).expect("upgrade"));
        assert!(!store.add_record(&name, &record).expect("twice"), "upgraded once");
        assert_eq!(store.record(&name).expect("record"), Some(record.clone()));
        let blob = store.open(&name, 5).expect("open").expect("served now");
        assert_eq!(blob.read_at(0, 100).expect("read"), b"hello", "content only");
        let appended = 5 + record.footer().len() as u64;
        assert_eq!(fs::metadata(&path).expect("metadata").len(), appended, "in place");
    }
}
