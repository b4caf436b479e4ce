//! The bundle on disk:
//!
//! ```text
//! packages/{id}/{version}/{id}.{version}.nupkg     NuGet's hierarchical folder-feed layout,
//! packages/{id}/{version}/{id}.{version}.nupkg.sha512   lower-cased (base64 SHA-512)
//! packages/{id}/{version}/{id}.nuspec
//! metadata/{local path}                            documents as the upstream sent them
//! metadata/sources.json                            metadata path -> upstream URL
//! manifest.json                                    every other file: path, size, SHA-512
//! ```
//!
//! `{local path}` is the document's path below nucache's `/v3/` (so
//! `metadata/index.json` is the upstream service index), which is also its
//! cache key once the service index's mounts are known.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha512};

pub(crate) const MANIFEST: &str = "manifest.json";
pub(crate) const SOURCES: &str = "metadata/sources.json";
pub(crate) const SERVICE_INDEX: &str = "metadata/index.json";
pub(crate) const FORMAT: u32 = 1;

/// One file of the bundle.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct FileRecord {
    pub path: String,
    pub size: u64,
    pub sha512: String,
}

/// `manifest.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Manifest {
    pub format: u32,
    pub created: String,
    pub nucache: String,
    pub upstream: String,
    pub files: Vec<FileRecord>,
}

/// Why a bundle is refused; names the file.
#[derive(Debug, thiserror::Error)]
pub(crate) enum BundleError {
    #[error("{0}: cannot read the manifest: {1}")]
    Manifest(String, String),
    #[error("{path}: {reason}")]
    File { path: String, reason: String },
    #[error("{path}: cannot write: {source}")]
    Write { path: String, source: std::io::Error },
}

impl Manifest {
    pub fn read(bundle: &Path) -> Result<Manifest, BundleError> {
        let path = bundle.join(MANIFEST);
        let shown = path.display().to_string();
        let text = std::fs::read(&path).map_err(|e| BundleError::Manifest(shown.clone(), e.to_string()))?;
        let manifest: Manifest =
            serde_json::from_slice(&text).map_err(|e| BundleError::Manifest(shown.clone(), e.to_string()))?;
        if manifest.format != FORMAT {
            return Err(BundleError::Manifest(
                shown,
                format!("format {} (this nucache reads {FORMAT})", manifest.format),
            ));
        }
        for file in &manifest.files {
            checked_path(&file.path)?;
        }
        Ok(manifest)
    }

    /// `path` -> SHA-512 of every file listed.
    pub fn hashes(&self) -> BTreeMap<String, String> {
        self.files.iter().map(|f| (f.path.clone(), f.sha512.clone())).collect()
    }
}

/// A manifest path is relative, `/`-separated, without empty, `.` or `..`
/// segments: importing a bundle never touches a file outside it.
pub(crate) fn checked_path(path: &str) -> Result<PathBuf, BundleError> {
    let clean = !path.is_empty()
        && !path.starts_with('/')
        && path
            .split('/')
            .all(|s| !s.is_empty() && s != "." && s != ".." && !s.contains('\\') && !s.contains(':'));
    if !clean {
        return Err(BundleError::File {
            path: path.to_string(),
            reason: "not a relative path inside the bundle".into(),
        });
    }
    Ok(path.split('/').collect())
}

/// Checks every file the manifest lists against its size and SHA-512
/// (streamed); the first bad one is the error, naming it.
pub(crate) fn verify(bundle: &Path, manifest: &Manifest) -> Result<(), BundleError> {
    for record in &manifest.files {
        let bad = |reason: String| BundleError::File {
            path: record.path.clone(),
            reason,
        };
        let file = std::fs::File::open(bundle.join(checked_path(&record.path)?))
            .map_err(|e| bad(format!("listed in the manifest but cannot be read: {e}")))?;
        let (size, sha512) = hash_reader(file).map_err(|e| bad(format!("cannot be read: {e}")))?;
        if size != record.size {
            return Err(bad(format!("{size} bytes, the manifest says {}", record.size)));
        }
        if sha512 != record.sha512 {
            return Err(bad("SHA-512 differs from the manifest's: the file is corrupt".into()));
        }
    }
    Ok(())
}

/// Size and SHA-512 (hex) of everything `reader` gives, read in chunks.
pub(crate) fn hash_reader(mut reader: impl Read) -> std::io::Result<(u64, String)> {
    let mut hasher = Sha512::new();
    let mut buffer = vec![0; 256 * 1024];
    let mut size = 0u64;
    loop {
        let n = reader.read(&mut buffer)?;
        if n == 0 {
            break;
        }
        hasher.update(&buffer[..n]);
        size += n as u64;
    }
    Ok((size, hex::encode(hasher.finalize())))
}

/// Writes a bundle file through a temporary name, fsynced, then renamed:
/// a bundle never holds a half-written file under its real name.
pub(crate) struct BundleWriter {
    root: PathBuf,
    pub files: Vec<FileRecord>,
}

/// A file being written, hashed as it goes.
pub(crate) struct FileWriter {
    path: String,
    temp: PathBuf,
    target: PathBuf,
    file: std::fs::File,
    hasher: Sha512,
    size: u64,
}

impl FileWriter {
    pub fn write(&mut self, data: &[u8]) -> std::io::Result<()> {
        self.file.write_all(data)?;
        self.hasher.update(data);
        self.size += data.len() as u64;
        Ok(())
    }
}

impl BundleWriter {
    pub fn new(root: &Path) -> Result<BundleWriter, BundleError> {
        std::fs::create_dir_all(root).map_err(|source| BundleError::Write {
            path: root.display().to_string(),
            source,
        })?;
        Ok(BundleWriter {
            root: root.to_path_buf(),
            files: Vec::new(),
        })
    }

    pub fn create(&self, path: &str) -> Result<FileWriter, BundleError> {
        let target = self.root.join(checked_path(path)?);
        let failed = |source| BundleError::Write {
            path: path.to_string(),
            source,
        };
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent).map_err(failed)?;
        }
        let temp = target.with_extension("partial");
        let file = std::fs::File::create(&temp).map_err(failed)?;
        Ok(FileWriter {
            path: path.to_string(),
            temp,
            target,
            file,
            hasher: Sha512::new(),
            size: 0,
        })
    }

    /// Completes `writer`; returns its SHA-512 (raw bytes).
    pub fn finish(&mut self, writer: FileWriter) -> Result<Vec<u8>, BundleError> {
        let FileWriter {
            path,
            temp,
            target,
            file,
            hasher,
            size,
        } = writer;
        let failed = |source| BundleError::Write {
            path: path.clone(),
            source,
        };
        file.sync_all().map_err(failed)?;
        drop(file);
        std::fs::rename(&temp, &target).map_err(failed)?;
        let digest = hasher.finalize().to_vec();
        self.files.push(FileRecord {
            path,
            size,
            sha512: hex::encode(&digest),
        });
        Ok(digest)
    }

    /// Writes a small file whole.
    pub fn put(&mut self, path: &str, body: &[u8]) -> Result<Vec<u8>, BundleError> {
        let mut writer = self.create(path)?;
        writer.write(body).map_err(|source| BundleError::Write {
            path: path.to_string(),
            source,
        })?;
        self.finish(writer)
    }

    /// Writes `manifest.json` listing every file written, sorted by path.
    pub fn finish_bundle(mut self, upstream: &str) -> Result<Manifest, BundleError> {
        self.files.sort_by(|a, b| a.path.cmp(&b.path));
        let manifest = Manifest {
            format: FORMAT,
            created: humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
            nucache: env!("CARGO_PKG_VERSION").to_string(),
            upstream: upstream.to_string(),
            files: self.files.clone(),
        };
        let text = serde_json::to_vec_pretty(&manifest).map_err(|e| BundleError::Write {
            path: MANIFEST.into(),
            source: std::io::Error::other(e),
        })?;
        let mut writer = self.create(MANIFEST)?;
        writer.write(&text).map_err(|source| BundleError::Write {
            path: MANIFEST.into(),
            source,
        })?;
        self.finish(writer)?;
        Ok(manifest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_written_bundle_verifies_and_a_changed_byte_is_named() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut writer = BundleWriter::new(dir.path()).expect("bundle");
        writer.put("packages/a/1.0.0/a.nuspec", b"<package/>").expect("put");
        writer.put("metadata/index.json", b"{}").expect("put");
        writer.finish_bundle("http://up/v3/index.json").expect("finish");
        let manifest = Manifest::read(dir.path()).expect("manifest");
        let paths: Vec<&str> = manifest.files.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(paths, ["metadata/index.json", "packages/a/1.0.0/a.nuspec"]);
        assert!(verify(dir.path(), &manifest).is_ok());
        std::fs::write(dir.path().join("packages/a/1.0.0/a.nuspec"), b"<packagE/>").expect("corrupt");
        let error = verify(dir.path(), &manifest).map_err(|e| e.to_string());
        assert!(error.is_err_and(|e| e.starts_with("packages/a/1.0.0/a.nuspec: SHA-512 differs")));
        std::fs::remove_file(dir.path().join("metadata/index.json")).expect("remove");
        let error = verify(dir.path(), &manifest).map_err(|e| e.to_string());
        assert!(error.is_err_and(|e| e.starts_with("metadata/index.json: listed in the manifest")));
    }

    #[test]
    fn manifest_paths_stay_inside_the_bundle() {
        for bad in ["", "/etc/passwd", "../x", "a/../../x", "a//b", "a\\b", "c:/x", "./a"] {
            assert!(checked_path(bad).is_err(), "{bad:?}");
        }
        assert!(checked_path("packages/a/1.0.0/a.1.0.0.nupkg").is_ok());
    }
}
