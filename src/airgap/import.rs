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
//!
//! A bundle is served as the upstream it came from (its manifest's
//! `upstream`), and only by a nucache that fronts that upstream: its files
//! go to that upstream's cache namespace, whatever else is configured, and
//! only the ids the patterns let that upstream serve are stored. A bundle
//! from an upstream this nucache does not front is refused: its packages
//! would otherwise stand in for another feed's (a public squatter's
//! `Acme.Core` served as the private feed's). Its service index is that
//! upstream's offline copy, stored only when none is cached; it never
//! replaces another upstream's index.

use std::io::Read;
use std::path::{Path, PathBuf};

use bytes::Bytes;

use super::bundle::{self, Manifest, SERVICE_INDEX, SOURCES};
use crate::cache::{Cache, EntryKind, Namespace, Origin};
use crate::config::Config;
use crate::merge::mapping::SourceMapping;
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
    /// Files left out: ids the patterns do not let the bundle's upstream serve.
    pub refused: usize,
}

impl std::fmt::Display for ImportSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "import: every file matches the manifest; stored {} packages ({} package files) and {} metadata documents, {} bytes",
            self.packages, self.package_files, self.documents, self.bytes
        )?;
        if self.refused > 0 {
            writeln!(
                f,
                "import: left out {} files of ids the patterns do not let the bundle's upstream serve",
                self.refused
            )?;
        }
        Ok(())
    }
}

/// Where a bundle goes: the configured upstream it came from.
struct Destination {
    name: String,
    namespace: Namespace,
    /// Its service index URL as configured.
    url: String,
    mapping: SourceMapping,
    /// The primary's namespace, when the destination is not the primary
    /// (its mounts are then aligned to the primary's local names).
    primary: Option<Namespace>,
}

impl Destination {
    /// The configured upstream the bundle (its manifest's `upstream`) came
    /// from; an error naming both when none is.
    fn of(manifest: &Manifest, config: &Config) -> Result<Destination, String> {
        let wanted = Namespace::of_upstream(&manifest.upstream);
        let set = config.upstream_set();
        let Some((name, upstream)) = set
            .iter()
            .find(|(_, upstream)| Namespace::of_upstream(&upstream.service_index) == wanted)
        else {
            let configured: Vec<&str> = set.iter().map(|(_, u)| u.service_index.as_str()).collect();
            return Err(format!(
                "refused, nothing imported: the bundle comes from {}, which is not an upstream of this nucache ({}); \
                 a bundle is only served as the upstream it came from",
                manifest.upstream,
                configured.join(", ")
            ));
        };
        let patterns = set.iter().map(|(name, u)| (*name, u.packages.as_slice()));
        let mapping = SourceMapping::new(patterns).map_err(|e| e.to_string())?;
        let primary = set
            .first()
            .filter(|(first, _)| first != name)
            .map(|(_, u)| Namespace::of_upstream(&u.service_index));
        Ok(Destination {
            name: name.to_string(),
            namespace: wanted,
            url: upstream.service_index.clone(),
            mapping,
            primary,
        })
    }

    /// Whether the destination may serve package `id`.
    fn serves(&self, id: &str) -> bool {
        self.mapping.sources_for(id).contains(&self.name.as_str())
    }
}

/// One file to store: its bundle path, cache key (local: before the
/// namespace), upstream URL, the package id it is about, and how.
#[derive(Debug)]
struct Planned {
    path: String,
    key: String,
    url: String,
    id: Option<String>,
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
    let opened = Cache::open(&cache_config, config.ttl.not_found).and_then(|(cache, _repair)| {
        cache.migrate_legacy_keys(&config.upstream_urls())?;
        Ok(cache)
    });
    let cache = opened.map_err(|e| format!("{}: {e}", cache_dir.display()))?;
    store_bundle(bundle_dir, checked, &cache, config)
}

/// Imports `bundle` into the cache of a running nucache (blocking I/O):
/// `POST /admin/import/{upload}` once the files are uploaded.
pub(crate) fn import_into_running(bundle_dir: &Path, cache: &Cache, config: &Config) -> Result<ImportSummary, String> {
    let checked = check_bundle(bundle_dir, config)?;
    store_bundle(bundle_dir, checked, cache, config)
}

/// A bundle whose files all match its manifest, from an upstream this
/// nucache fronts.
struct Checked {
    manifest: Manifest,
    destination: Destination,
    bundled: Option<Bytes>,
}

/// Verifies every file, and where the bundle goes, before anything is
/// stored; with the service index in the bundle, every path is mapped to
/// its key before the cache is touched.
fn check_bundle(bundle_dir: &Path, config: &Config) -> Result<Checked, String> {
    let manifest = Manifest::read(bundle_dir).map_err(|e| e.to_string())?;
    bundle::verify(bundle_dir, &manifest).map_err(|e| format!("refused, nothing imported: {e}"))?;
    let destination = Destination::of(&manifest, config)?;
    let bundled = bundled_index(bundle_dir, &manifest)?;
    if let Some(index) = &bundled {
        mapped(index, &manifest, None, config)?;
    }
    Ok(Checked {
        manifest,
        destination,
        bundled,
    })
}

fn store_bundle(bundle_dir: &Path, checked: Checked, cache: &Cache, config: &Config) -> Result<ImportSummary, String> {
    let Checked {
        manifest,
        destination,
        bundled,
    } = checked;
    let index_key = destination.namespace.key(SERVICE_INDEX_KEY);
    let service_index = match &bundled {
        Some(index) => index.clone(),
        None => cached_index(cache, &index_key)?,
    };
    let primary = primary_mounts(cache, &destination, config);
    let (map, plan) = mapped(&service_index, &manifest, primary.as_ref(), config)?;
    let mut summary = ImportSummary::default();
    if bundled.is_some() && !matches!(cache.entry(&index_key), Ok(Some(_))) {
        // The upstream's offline copy, under its own namespace only.
        let origin = Origin {
            url: destination.url.clone(),
            content_type: JSON.into(),
            ..Origin::default()
        };
        cache
            .store_document(&index_key, EntryKind::ServiceIndex, origin, service_index, true)
            .map_err(|e| format!("storing the service index: {e}"))?;
        summary.documents += 1;
    }
    for planned in &plan {
        if planned.id.as_deref().is_some_and(|id| !destination.serves(id)) {
            summary.refused += 1;
            continue;
        }
        let file = bundle_dir.join(bundle::checked_path(&planned.path).map_err(|e| e.to_string())?);
        let stored = match planned.kind {
            Stored::Document => store_document(cache, &map, &destination.namespace, planned, &file),
            Stored::Nupkg | Stored::Nuspec => store_blob(cache, &destination.namespace, planned, &file),
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
    if summary.refused > 0 {
        tracing::warn!(
            refused = summary.refused,
            upstream = destination.name,
            "import: files of ids the patterns give to other upstreams were left out"
        );
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

/// The cache's service index of the bundle's upstream, for an incremental
/// bundle whose index did not change.
fn cached_index(cache: &Cache, key: &str) -> Result<Bytes, String> {
    match cache.document(key) {
        Ok(Some(doc)) => Ok(doc.body.text().clone()),
        _ => Err(format!(
            "the bundle has no {SERVICE_INDEX} and the cache no service index of its upstream: import the full bundle first"
        )),
    }
}

/// The primary's mounts, when the destination is another upstream and the
/// primary's index is cached: the destination's mounts are aligned to them,
/// as the running nucache aligns them.
fn primary_mounts(cache: &Cache, destination: &Destination, config: &Config) -> Option<ServiceMap> {
    let primary = destination.primary.as_ref()?;
    let doc = cache.document(&primary.key(SERVICE_INDEX_KEY)).ok()??;
    build_service_map(doc.body.text(), config.publish.enabled).ok()
}

/// The mounts of `service_index` (aligned to `primary`'s, when given) and
/// every file's place in the cache.
fn mapped(
    service_index: &Bytes,
    manifest: &Manifest,
    primary: Option<&ServiceMap>,
    config: &Config,
) -> Result<(ServiceMap, Vec<Planned>), String> {
    let mut map = build_service_map(service_index, config.publish.enabled)
        .map_err(|e| format!("{SERVICE_INDEX}: not a usable service index: {e}"))?;
    if let Some(primary) = primary {
        map.align(&primary.mounts);
    }
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
                id: target.read_id().map(str::to_string),
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
                id: target.read_id().map(str::to_string),
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
fn store_document(
    cache: &Cache,
    map: &ServiceMap,
    namespace: &Namespace,
    planned: &Planned,
    file: &PathBuf,
) -> Result<u64, String> {
    let body = std::fs::read(file).map_err(|e| e.to_string())?;
    let (template, hashes) = rewrite_with_hashes(&body, &map.mounts).map_err(|e| e.to_string())?;
    let origin = Origin {
        url: planned.url.clone(),
        content_type: JSON.into(),
        ..Origin::default()
    };
    cache
        .store_document(
            &namespace.key(&planned.key),
            EntryKind::Document,
            origin,
            template,
            true,
        )
        .map_err(|e| e.to_string())?;
    let hashes: Vec<_> = hashes
        .into_iter()
        .map(|h| crate::nuget::PackageHash {
            lower_id: namespace.key(&h.lower_id),
            ..h
        })
        .collect();
    cache.record_package_hashes(&hashes).map_err(|e| e.to_string())?;
    Ok(body.len() as u64)
}

/// A package file as a blob, streamed from the bundle.
fn store_blob(cache: &Cache, namespace: &Namespace, planned: &Planned, file: &PathBuf) -> Result<u64, String> {
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
        .commit_blob(&namespace.key(&planned.key), writer, origin)
        .map_err(|e| e.to_string())?;
    Ok(entry.size)
}
