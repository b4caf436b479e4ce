//! Where a running nucache stages the files of a `nucache import --url`
//! upload: `{cache.dir}/import/{upload}/`. An upload's staged bytes are
//! bounded by `limits.import_staging` (past it the upload is refused and
//! its directory removed), any failure while receiving removes the
//! upload's directory, and the whole staging directory is swept at
//! start-up: the staged size is counted in memory, so an upload never
//! outlives the process that received it.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use futures_util::StreamExt;
use http_body_util::BodyStream;
use hyper::body::Incoming;
use tokio::io::AsyncWriteExt;

#[derive(Debug, thiserror::Error)]
pub enum StagingError {
    #[error("upload {upload} is larger than limits.import_staging ({limit} bytes); it was discarded")]
    TooLarge { upload: String, limit: u64 },
    #[error("staging an imported file: {0}")]
    Io(#[source] std::io::Error),
    #[error("the upload broke off: {0}")]
    BrokeOff(#[source] hyper::Error),
}

/// The uploads being staged, and their bytes so far.
pub(crate) struct Staging {
    root: PathBuf,
    limit: u64,
    staged: Mutex<HashMap<String, u64>>,
}

/// The staging directory below `cache_dir`.
fn root_of(cache_dir: &Path) -> PathBuf {
    cache_dir.join("import")
}

/// Removes every staged upload (at start-up, before any is received);
/// what it removed, if anything.
pub async fn sweep_staging(cache_dir: &Path) -> std::io::Result<bool> {
    match tokio::fs::remove_dir_all(root_of(cache_dir)).await {
        Ok(()) => Ok(true),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(error) => Err(error),
    }
}

impl Staging {
    pub fn new(cache_dir: &Path, limit: u64) -> Staging {
        Staging {
            root: root_of(cache_dir),
            limit,
            staged: Mutex::new(HashMap::new()),
        }
    }

    /// The directory of `upload` (a name `AdminCall::parse` checked:
    /// letters and digits only).
    pub fn dir(&self, upload: &str) -> PathBuf {
        self.root.join(upload)
    }

    fn staged(&self) -> MutexGuard<'_, HashMap<String, u64>> {
        // Sizes only: a panic elsewhere cannot leave them torn.
        self.staged.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Writes `body` as `path` (already checked to stay inside the bundle)
    /// of `upload`; the bytes received. On any error the whole upload is
    /// discarded.
    pub async fn receive(&self, upload: &str, path: &Path, body: Incoming) -> Result<u64, StagingError> {
        let result = self.write(upload, &self.dir(upload).join(path), body).await;
        if result.is_err() {
            self.discard(upload).await;
        }
        result
    }

    async fn write(&self, upload: &str, target: &Path, body: Incoming) -> Result<u64, StagingError> {
        if let Some(parent) = target.parent() {
            tokio::fs::create_dir_all(parent).await.map_err(StagingError::Io)?;
        }
        // A file sent again (a retried PUT) replaces its earlier bytes.
        if let Ok(earlier) = tokio::fs::metadata(target).await {
            self.give_back(upload, earlier.len());
        }
        let mut file = tokio::fs::File::create(target).await.map_err(StagingError::Io)?;
        let mut frames = BodyStream::new(body);
        let mut received = 0u64;
        while let Some(frame) = frames.next().await {
            let frame = frame.map_err(StagingError::BrokeOff)?;
            if let Ok(data) = frame.into_data() {
                self.count(upload, data.len() as u64)?;
                received += data.len() as u64;
                file.write_all(&data).await.map_err(StagingError::Io)?;
            }
        }
        file.flush().await.map_err(StagingError::Io)?;
        Ok(received)
    }

    /// Counts `bytes` more for `upload`, refusing them past the limit.
    fn count(&self, upload: &str, bytes: u64) -> Result<(), StagingError> {
        let mut staged = self.staged();
        let total = staged.entry(upload.to_string()).or_default();
        if total.saturating_add(bytes) > self.limit {
            return Err(StagingError::TooLarge {
                upload: upload.to_string(),
                limit: self.limit,
            });
        }
        *total += bytes;
        Ok(())
    }

    fn give_back(&self, upload: &str, bytes: u64) {
        if let Some(total) = self.staged().get_mut(upload) {
            *total = total.saturating_sub(bytes);
        }
    }

    /// Removes `upload`'s directory and forgets its size (after a commit,
    /// or a failure).
    pub async fn discard(&self, upload: &str) {
        self.staged().remove(upload);
        let dir = self.dir(upload);
        match tokio::fs::remove_dir_all(&dir).await {
            Err(error) if error.kind() != std::io::ErrorKind::NotFound => {
                tracing::warn!(dir = %dir.display(), %error, "could not remove an import's staging directory");
            }
            _ => {}
        }
    }
}
