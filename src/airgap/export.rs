//! `nucache export`: writes a bundle (see `bundle.rs`) of what a restore of
//! the cached packages (or of `--only`'s) needs, from a running nucache:
//! packages streamed to disk through its feed, metadata documents turned
//! back into the upstream's form (every nucache URL of a mount replaced by
//! the upstream prefix it stands for), so that the bundle does not depend
//! on where nucache A was reachable. Deterministic: packages and documents
//! in sorted order, the same bytes for the same cache (only `created`
//! differs). `--since` leaves out what an earlier bundle already holds.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use base64::Engine as _;
use serde_json::Value;

use super::bundle::{BundleWriter, Manifest, SOURCES};
use super::client::{FeedClient, FeedIndex};
use super::warm::{read_index, registration_pages, resolve_with, vulnerability_pages};

pub struct ExportOptions {
    pub dir: PathBuf,
    pub feed: String,
    pub only: Vec<PathBuf>,
    pub since: Option<PathBuf>,
    /// The admin key for `/admin/packages` (the command reads it from
    /// `NUCACHE_ADMIN_KEY`).
    pub admin_key: Option<String>,
}

/// What `export` wrote.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ExportSummary {
    pub packages: usize,
    /// Packages left out because the `--since` bundle has them.
    pub skipped: usize,
    pub documents: usize,
    /// Files listed in the manifest, and their bytes.
    pub files: usize,
    pub bytes: u64,
}

impl std::fmt::Display for ExportSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "export: {} packages ({} already in the earlier bundle), {} metadata documents; {} files, {} bytes, plus manifest.json",
            self.packages, self.skipped, self.documents, self.files, self.bytes
        )
    }
}

/// Maps nucache's public URLs back to the upstream's, and to the URLs this
/// client can reach nucache at.
struct Mapping {
    /// `(public prefix, upstream prefix)`, longest public prefix first.
    mounts: Vec<(String, String)>,
    /// nucache's public base (`http://host:port`), as its documents say.
    public_base: String,
    /// The base the feed was given at.
    feed_base: String,
}

impl Mapping {
    fn read(listing: &Value, feed: &str) -> Result<Mapping, String> {
        let mut mounts = Vec::new();
        let mut public_base = None;
        for mount in listing.get("mounts").and_then(Value::as_array).into_iter().flatten() {
            let text = |key| mount.get(key).and_then(Value::as_str).unwrap_or("").to_string();
            let (public, upstream, local) = (text("public"), text("upstream"), text("local"));
            if public.is_empty() || upstream.is_empty() {
                continue;
            }
            if public_base.is_none() {
                public_base = public.strip_suffix(&format!("/v3/{local}")).map(str::to_string);
            }
            mounts.push((public, upstream));
        }
        mounts.sort_by(|a, b| b.0.len().cmp(&a.0.len()).then_with(|| a.0.cmp(&b.0)));
        let public_base = public_base.ok_or("the package listing names no mounts")?;
        let feed_base = feed
            .strip_suffix("/v3/index.json")
            .ok_or_else(|| format!("{feed}: a feed URL ends with /v3/index.json"))?
            .to_string();
        Ok(Mapping {
            mounts,
            public_base,
            feed_base,
        })
    }

    /// The document as the upstream sent it.
    fn to_upstream(&self, text: &str) -> String {
        let mut out = text.to_string();
        for (public, upstream) in &self.mounts {
            if out.contains(public.as_str()) {
                out = out.replace(public.as_str(), upstream);
            }
        }
        out
    }

    /// The upstream URL a public URL of nucache stands for.
    fn upstream_url(&self, public: &str) -> String {
        self.to_upstream(public)
    }

    /// Where this client fetches a URL nucache's documents name.
    fn reachable(&self, public: &str) -> String {
        match public.strip_prefix(&self.public_base) {
            Some(rest) => format!("{}{rest}", self.feed_base),
            None => public.to_string(),
        }
    }

    /// The bundle path of a document at `url` (public or reachable form):
    /// `metadata/` + its path below `/v3/`, without query or fragment.
    fn metadata_path(&self, url: &str) -> Option<String> {
        let rest = url
            .strip_prefix(&self.feed_base)
            .or_else(|| url.strip_prefix(&self.public_base))?
            .strip_prefix("/v3/")?;
        let rest = rest.split(['?', '#']).next()?;
        Some(format!("metadata/{rest}"))
    }
}

struct Exporter {
    client: FeedClient,
    mapping: Mapping,
    bundle: BundleWriter,
    since: BTreeMap<String, String>,
    sources: BTreeMap<String, String>,
    /// The upstream service index URL (the source of `metadata/index.json`).
    upstream: String,
    summary: ExportSummary,
}

pub async fn export(options: ExportOptions, config: &crate::config::Config) -> Result<ExportSummary, String> {
    // Files left there by something else would sit in the bundle unlisted.
    let occupied = match tokio::fs::read_dir(&options.dir).await {
        Ok(mut entries) => entries.next_entry().await.ok().flatten().is_some(),
        Err(_) => false,
    };
    if occupied {
        return Err(format!(
            "{}: not empty; export into a new directory (--since takes the earlier bundle)",
            options.dir.display()
        ));
    }
    let client = FeedClient::new(&options.feed, config);
    let index = read_index(&client, &options.feed).await?;
    let mapping_base = options
        .feed
        .strip_suffix("/v3/index.json")
        .ok_or_else(|| format!("{}: a feed URL ends with /v3/index.json", options.feed))?
        .to_string();
    let listing_url = format!("{mapping_base}/admin/packages");
    let listing = match client.admin_json(&listing_url, options.admin_key.as_deref()).await {
        Ok(Some(answer)) => answer.body,
        Ok(None) => {
            return Err(format!(
                "{listing_url}: not found (export needs the admin API: admin.keys on the server, the key in NUCACHE_ADMIN_KEY)"
            ))
        }
        Err(error) => return Err(error.to_string()),
    };
    let upstream = listing
        .get("upstream")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let mapping = Mapping::read(&listing, &options.feed)?;
    // The index names nucache by its public URL; fetch where the feed was given.
    let index = FeedIndex {
        flat_container: mapping.reachable(&index.flat_container),
        hives: index.hives.iter().map(|h| mapping.reachable(h)).collect(),
        vulnerabilities: index.vulnerabilities.as_deref().map(|v| mapping.reachable(v)),
    };
    let since = match &options.since {
        Some(dir) => disk(|| Manifest::read(dir)).map_err(|e| e.to_string())?.hashes(),
        None => BTreeMap::new(),
    };
    let packages = chosen_packages(&client, &index, &listing, &options.only).await?;
    let mut exporter = Exporter {
        client,
        mapping,
        bundle: disk(|| BundleWriter::new(&options.dir)).map_err(|e| e.to_string())?,
        since,
        sources: BTreeMap::new(),
        upstream: upstream.clone(),
        summary: ExportSummary::default(),
    };
    exporter.document(&options.feed).await?;
    if let Some(url) = &index.vulnerabilities {
        if let Some(body) = exporter.document(url).await? {
            for page in vulnerability_pages(&body) {
                exporter.document(&exporter.mapping.reachable(&page)).await?;
            }
        }
    }
    let ids: BTreeSet<&String> = packages.iter().map(|(id, _)| id).collect();
    for id in ids {
        exporter
            .document(&format!("{}{id}/index.json", index.flat_container))
            .await?;
        for hive in &index.hives {
            if let Some(body) = exporter.document(&format!("{hive}{id}/index.json")).await? {
                for page in registration_pages(&body) {
                    exporter.document(&exporter.mapping.reachable(&page)).await?;
                }
            }
        }
    }
    for (id, version) in &packages {
        exporter.package(&index, id, version).await?;
    }
    let sources = serde_json::to_vec_pretty(&exporter.sources).map_err(|e| e.to_string())?;
    disk(|| exporter.bundle.put(SOURCES, &sources)).map_err(|e| e.to_string())?;
    let mut summary = exporter.summary.clone();
    let manifest = disk(|| exporter.bundle.finish_bundle(&upstream)).map_err(|e| e.to_string())?;
    summary.files = manifest.files.len();
    summary.bytes = manifest.files.iter().map(|f| f.size).sum();
    Ok(summary)
}

/// Bundle files are written on the worker, which is told that it blocks
/// (`export` runs on a multi-threaded runtime, as `main` builds it).
fn disk<T>(work: impl FnOnce() -> T) -> T {
    tokio::task::block_in_place(work)
}

/// `(lower id, lower version)` sorted: `--only`'s inputs resolved on the
/// feed, else every package the cache holds.
async fn chosen_packages(
    client: &FeedClient,
    index: &FeedIndex,
    listing: &Value,
    only: &[PathBuf],
) -> Result<Vec<(String, String)>, String> {
    let mut chosen = BTreeSet::new();
    if only.is_empty() {
        for package in listing.get("packages").and_then(Value::as_array).into_iter().flatten() {
            let text = |key| package.get(key).and_then(Value::as_str).map(str::to_string);
            if let (Some(id), Some(version)) = (text("id"), text("version")) {
                chosen.insert((id, version));
            }
        }
        return Ok(chosen.into_iter().collect());
    }
    let files = only.to_vec();
    let inputs = tokio::task::spawn_blocking(move || super::inputs::read_all(&files))
        .await
        .map_err(|e| format!("reading the inputs failed: {e}"))?
        .map_err(|e| e.to_string())?;
    for wanted in inputs {
        let resolved = resolve_with(client, index, &wanted)
            .await
            .map_err(|reason| format!("{} {} ({}): {reason}", wanted.id, wanted.range, wanted.from))?;
        chosen.insert(resolved);
    }
    Ok(chosen.into_iter().collect())
}

impl Exporter {
    /// Fetches a document through nucache and writes it in the upstream's
    /// form (unless the earlier bundle has the same); returns it as nucache
    /// served it (for the URLs inside). `None` when nucache has no such
    /// document (a hive without the package).
    async fn document(&mut self, url: &str) -> Result<Option<Value>, String> {
        let Some(answer) = self.client.document(url).await.map_err(|e| e.to_string())? else {
            return Ok(None);
        };
        let served: Value = serde_json::from_slice(&answer.body).map_err(|e| format!("{url}: not JSON: {e}"))?;
        let path = self
            .mapping
            .metadata_path(url)
            .ok_or_else(|| format!("{url}: not a nucache URL below /v3/"))?;
        let text = String::from_utf8_lossy(&answer.body);
        let original = self.mapping.to_upstream(&text);
        if !self.already_there(&path, original.as_bytes()) {
            disk(|| self.bundle.put(&path, original.as_bytes())).map_err(|e| e.to_string())?;
            let public = format!(
                "{}{}",
                self.mapping.public_base,
                url.strip_prefix(&self.mapping.feed_base).unwrap_or(url)
            );
            let source = match path == super::bundle::SERVICE_INDEX {
                true => self.upstream.clone(),
                false => self.mapping.upstream_url(&public),
            };
            self.sources.insert(path, source);
            self.summary.documents += 1;
        }
        Ok(Some(served))
    }

    fn already_there(&self, path: &str, body: &[u8]) -> bool {
        use sha2::{Digest, Sha512};
        self.since
            .get(path)
            .is_some_and(|sha512| *sha512 == hex::encode(Sha512::digest(body)))
    }

    /// The `.nupkg` (streamed to disk), its `.sha512` and its `.nuspec`.
    async fn package(&mut self, index: &FeedIndex, id: &str, version: &str) -> Result<(), String> {
        let dir = format!("packages/{id}/{version}");
        let nupkg_path = format!("{dir}/{id}.{version}.nupkg");
        if self.since.contains_key(&nupkg_path) {
            self.summary.skipped += 1;
            return Ok(());
        }
        let base = &index.flat_container;
        let url = format!("{base}{id}/{version}/{id}.{version}.nupkg");
        let mut writer = disk(|| self.bundle.create(&nupkg_path)).map_err(|e| e.to_string())?;
        // A local file written a chunk at a time: the worker may block on it.
        let streamed = self
            .client
            .stream(&url, |chunk| disk(|| writer.write(chunk)))
            .await
            .map_err(|e| e.to_string())?;
        if streamed.is_none() {
            return Err(format!("{url}: listed as cached but nucache answered 404"));
        }
        let digest = disk(|| self.bundle.finish(writer)).map_err(|e| e.to_string())?;
        let sha512 = base64::engine::general_purpose::STANDARD.encode(digest);
        disk(|| self.bundle.put(&format!("{nupkg_path}.sha512"), sha512.as_bytes())).map_err(|e| e.to_string())?;
        let nuspec_url = format!("{base}{id}/{version}/{id}.nuspec");
        let nuspec = match self.client.document(&nuspec_url).await {
            Ok(Some(answer)) => answer.body,
            Ok(None) => return Err(format!("{nuspec_url}: nucache answered 404")),
            Err(error) => return Err(error.to_string()),
        };
        disk(|| self.bundle.put(&format!("{dir}/{id}.nuspec"), &nuspec)).map_err(|e| e.to_string())?;
        self.summary.packages += 1;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mapping() -> Mapping {
        let listing = serde_json::json!({"mounts": [
            {"local": "flatcontainer/", "public": "https://nuget.corp/v3/flatcontainer/", "upstream": "https://api.up/v3-flatcontainer/"},
            {"local": "query", "public": "https://nuget.corp/v3/query", "upstream": "https://search.up/query"},
            {"local": "query-2", "public": "https://nuget.corp/v3/query-2", "upstream": "https://search2.up/query"}
        ]});
        Mapping::read(&listing, "http://127.0.0.1:5000/v3/index.json").expect("mapping")
    }

    #[test]
    fn documents_go_back_to_the_upstream_form() {
        let m = mapping();
        let text = r#"{"a":"https://nuget.corp/v3/flatcontainer/x/index.json","b":"https://nuget.corp/v3/query-2","c":"https://nuget.corp/v3/query?q=1","d":"https://github.com/x"}"#;
        assert_eq!(
            m.to_upstream(text),
            r#"{"a":"https://api.up/v3-flatcontainer/x/index.json","b":"https://search2.up/query","c":"https://search.up/query?q=1","d":"https://github.com/x"}"#
        );
    }

    #[test]
    fn public_urls_are_fetched_at_the_feed_and_named_by_their_path() {
        let m = mapping();
        assert_eq!(
            m.reachable("https://nuget.corp/v3/registration/h/x/page/1.0.0/2.0.0.json"),
            "http://127.0.0.1:5000/v3/registration/h/x/page/1.0.0/2.0.0.json"
        );
        assert_eq!(
            m.metadata_path("http://127.0.0.1:5000/v3/flatcontainer/x/index.json")
                .as_deref(),
            Some("metadata/flatcontainer/x/index.json")
        );
        assert_eq!(
            m.metadata_path("http://127.0.0.1:5000/v3/index.json").as_deref(),
            Some(crate::airgap::bundle::SERVICE_INDEX)
        );
        assert_eq!(m.metadata_path("http://elsewhere/v3/x"), None);
    }
}
