//! `nucache import`: loads a bundle into a stopped cache directory, through
//! the cache's own storage (the records and files nucache writes when it
//! fetches: the service index as received, documents rewritten into
//! templates, packages as blobs with their SHA-512 and XXH3), so that a
//! nucache on that directory serves them as if it had fetched them, with
//! the upstream unreachable (past their TTL they are served `STALE` while
//! the upstream fails, and refreshed once it answers).
//!
//! Every file is checked against the manifest before anything is stored,
//! and every path mapped to its cache key: a bad bundle imports nothing.

use std::io::Read;
use std::path::{Path, PathBuf};

use bytes::Bytes;

use super::bundle::{self, Manifest, SERVICE_INDEX, SOURCES};
use crate::cache::{Cache, EntryKind, Origin};
use crate::config::Config;
use crate::rewrite::{build_service_map, rewrite_with_hashes, MountKind, ServiceMap};
use crate::route::SERVICE_INDEX_KEY;
use crate::route::{self, TargetKind};

const JSON: &str = "application/json; charset=utf-8";

/// What `import` stored.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ImportSummary {
    pub packages: usize,
    pub package_files: usize,
    pub documents: usize,
    pub bytes: u64,
}

impl std::fmt::Display for ImportSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "import: every file matches the manifest; stored {} packages ({} package files) and {} metadata documents, {} bytes",
            self.packages, self.package_files, self.documents, self.bytes
        )
    }
}

/// One file to store: its bundle path, cache key, upstream URL and how.
#[derive(Debug)]
struct Planned {
    path: String,
    key: String,
    url: String,
    kind: Stored,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stored {
    Document,
    Nupkg,
    Nuspec,
}

/// Imports `bundle` into the cache at `cache_dir` (blocking I/O; nucache
/// must not be running on it).
pub fn import_into_cache(bundle_dir: &Path, cache_dir: &Path, config: &Config) -> Result<ImportSummary, String> {
    let checked = check_bundle(bundle_dir, config)?;
    let cache_config = crate::config::CacheConfig {
        dir: cache_dir.to_path_buf(),
        ..config.cache.clone()
    };
    let (cache, _repair) =
        Cache::open(&cache_config, config.ttl.not_found).map_err(|e| format!("{}: {e}", cache_dir.display()))?;
    store_bundle(bundle_dir, checked, &cache, config)
}

/// Imports `bundle` into the cache of a running nucache (blocking I/O):
/// `POST /admin/import/{upload}` once the files are uploaded.
pub(crate) fn import_into_running(bundle_dir: &Path, cache: &Cache, config: &Config) -> Result<ImportSummary, String> {
    let checked = check_bundle(bundle_dir, config)?;
    store_bundle(bundle_dir, checked, cache, config)
}

/// A bundle whose files all match its manifest, and (when it has its
/// service index) every file's place in the cache.
struct Checked {
    manifest: Manifest,
    bundled: Option<Bytes>,
    mapped: Option<(ServiceMap, Vec<Planned>)>,
}

/// Verifies every file before anything is stored; with the service index in
/// the bundle, every path is mapped to its key before the cache is touched.
fn check_bundle(bundle_dir: &Path, config: &Config) -> Result<Checked, String> {
    let manifest = Manifest::read(bundle_dir).map_err(|e| e.to_string())?;
    bundle::verify(bundle_dir, &manifest).map_err(|e| format!("refused, nothing imported: {e}"))?;
    let bundled = bundled_index(bundle_dir, &manifest)?;
    let mapped = bundled
        .as_ref()
        .map(|index| mapped(index, &manifest, config))
        .transpose()?;
    Ok(Checked {
        manifest,
        bundled,
        mapped,
    })
}

fn store_bundle(bundle_dir: &Path, checked: Checked, cache: &Cache, config: &Config) -> Result<ImportSummary, String> {
    let Checked {
        manifest,
        bundled,
        mapped: checked,
    } = checked;
    let service_index = match bundled {
        Some(index) => index,
        None => cached_index(cache)?,
    };
    let (map, plan) = match checked {
        Some(checked) => checked,
        None => mapped(&service_index, &manifest, config)?,
    };
    let mut summary = ImportSummary::default();
    if manifest.files.iter().any(|f| f.path == SERVICE_INDEX) {
        let origin = Origin {
            url: manifest.upstream.clone(),
            content_type: JSON.into(),
            ..Origin::default()
        };
        cache
            .store_document(SERVICE_INDEX_KEY, EntryKind::ServiceIndex, origin, service_index, true)
            .map_err(|e| format!("storing the service index: {e}"))?;
        summary.documents += 1;
    }
    for planned in &plan {
        let file = bundle_dir.join(bundle::checked_path(&planned.path).map_err(|e| e.to_string())?);
        let stored = match planned.kind {
            Stored::Document => store_document(cache, &map, planned, &file),
            Stored::Nupkg | Stored::Nuspec => store_blob(cache, planned, &file),
        }
        .map_err(|e| format!("{}: {e}", planned.path))?;
        summary.bytes += stored;
        match planned.kind {
            Stored::Document => summary.documents += 1,
            Stored::Nupkg => {
                summary.packages += 1;
                summary.package_files += 1;
            }
            Stored::Nuspec => summary.package_files += 1,
        }
    }
    cache.flush().map_err(|e| format!("flushing the cache index: {e}"))?;
    Ok(summary)
}

/// The bundle's service index, if it has one.
fn bundled_index(bundle_dir: &Path, manifest: &Manifest) -> Result<Option<Bytes>, String> {
    if !manifest.files.iter().any(|f| f.path == SERVICE_INDEX) {
        return Ok(None);
    }
    let path = bundle_dir.join(bundle::checked_path(SERVICE_INDEX).map_err(|e| e.to_string())?);
    std::fs::read(&path)
        .map(|body| Some(Bytes::from(body)))
        .map_err(|e| format!("{SERVICE_INDEX}: {e}"))
}

/// The cache's service index, for an incremental bundle whose index did
/// not change.
fn cached_index(cache: &Cache) -> Result<Bytes, String> {
    match cache.document(SERVICE_INDEX_KEY) {
        Ok(Some(doc)) => Ok(doc.body.text().clone()),
        _ => Err(format!(
            "the bundle has no {SERVICE_INDEX} and the cache no service index: import the full bundle first"
        )),
    }
}

/// The mounts of `service_index` and every file's place in the cache.
fn mapped(service_index: &Bytes, manifest: &Manifest, config: &Config) -> Result<(ServiceMap, Vec<Planned>), String> {
    let map = build_service_map(service_index, config.publish.enabled)
        .map_err(|e| format!("{SERVICE_INDEX}: not a usable service index: {e}"))?;
    let plan = plan(manifest, &map)?;
    Ok((map, plan))
}

/// Maps every file to its cache key before anything is stored.
fn plan(manifest: &Manifest, map: &ServiceMap) -> Result<Vec<Planned>, String> {
    let flat = map
        .mounts
        .first_of(MountKind::PackageBase)
        .ok_or("the service index lists no PackageBaseAddress")?;
    let mut plan = Vec::new();
    for file in &manifest.files {
        let path = file.path.as_str();
        let unknown = |why: &str| format!("{path}: {why}; nothing imported");
        if path == SERVICE_INDEX || path == SOURCES {
            continue;
        }
        if let Some(rest) = path.strip_prefix("metadata/") {
            let target = route::resolve(rest, None, &map.mounts)
                .map_err(|e| unknown(&format!("no resource of the service index serves it ({e})")))?;
            if !matches!(
                target.kind,
                TargetKind::VersionList
                    | TargetKind::Registration
                    | TargetKind::Document
                    | TargetKind::VulnerabilityPage
            ) {
                return Err(unknown("not a metadata document"));
            }
            let url = map
                .mounts
                .get(target.mount)
                .map(|m| m.upstream_url(&target.rest))
                .unwrap_or_default();
            plan.push(Planned {
                path: path.to_string(),
                key: target.key,
                url,
                kind: Stored::Document,
            });
        } else if let Some(rest) = path.strip_prefix("packages/") {
            if rest.ends_with(".nupkg.sha512") {
                continue;
            }
            let local = format!("{}{rest}", flat.local);
            let target = route::resolve(&local, None, &map.mounts).map_err(|e| unknown(&e.to_string()))?;
            let kind = match target.kind {
                TargetKind::PackageFile(crate::nuget::PackageFile::Nupkg) => Stored::Nupkg,
                TargetKind::PackageFile(crate::nuget::PackageFile::Nuspec) => Stored::Nuspec,
                _ => return Err(unknown("not a .nupkg, .nupkg.sha512 or .nuspec")),
            };
            plan.push(Planned {
                path: path.to_string(),
                key: target.key,
                url: flat.upstream_url(&target.rest),
                kind,
            });
        } else {
            return Err(unknown("neither under packages/ nor under metadata/"));
        }
    }
    Ok(plan)
}

/// A document as the fetcher stores it: rewritten into a template, with
/// the package hashes it states recorded.
fn store_document(cache: &Cache, map: &ServiceMap, planned: &Planned, file: &PathBuf) -> Result<u64, String> {
    let body = std::fs::read(file).map_err(|e| e.to_string())?;
    let (template, hashes) = rewrite_with_hashes(&body, &map.mounts).map_err(|e| e.to_string())?;
    let origin = Origin {
        url: planned.url.clone(),
        content_type: JSON.into(),
        ..Origin::default()
    };
    cache
        .store_document(&planned.key, EntryKind::Document, origin, template, true)
        .map_err(|e| e.to_string())?;
    cache.record_package_hashes(&hashes).map_err(|e| e.to_string())?;
    Ok(body.len() as u64)
}

/// A package file as a blob, streamed from the bundle.
fn store_blob(cache: &Cache, planned: &Planned, file: &PathBuf) -> Result<u64, String> {
    let mut reader = std::fs::File::open(file).map_err(|e| e.to_string())?;
    let mut writer = cache.start_blob().map_err(|e| e.to_string())?;
    let mut buffer = vec![0; 256 * 1024];
    loop {
        let n = reader.read(&mut buffer).map_err(|e| e.to_string())?;
        if n == 0 {
            break;
        }
        writer.write(&buffer[..n]).map_err(|e| e.to_string())?;
    }
    let content_type = match planned.kind {
        Stored::Nuspec => "application/xml",
        _ => "application/octet-stream",
    };
    let origin = Origin {
        url: planned.url.clone(),
        content_type: content_type.into(),
        ..Origin::default()
    };
    let entry = cache
        .commit_blob(&planned.key, writer, origin)
        .map_err(|e| e.to_string())?;
    Ok(entry.size)
}
