//! The air gap's moves for tests: warm a nucache A from a list, export its
//! bundle, import a bundle into a cache directory.

use std::path::{Path, PathBuf};

use nucache::airgap::{export, import_into_cache, warm, ExportOptions, WarmOptions};
use nucache::config::digest_hex;

use super::nucache::Nucache;
use super::upstream::FakeUpstream;

/// The exporting nucache's admin key: `/admin/packages` is an admin call.
pub const ADMIN_KEY: &str = "export-admin-key";

pub fn warm_options(feed: &str, files: Vec<PathBuf>) -> WarmOptions {
    WarmOptions {
        feed: feed.to_string(),
        with_dependencies: true,
        framework: None,
        jobs: 4,
        files,
        progress: false,
    }
}

pub fn export_options(dir: &Path, feed: &str, since: Option<PathBuf>) -> ExportOptions {
    ExportOptions {
        dir: dir.to_path_buf(),
        feed: feed.to_string(),
        only: Vec::new(),
        since,
        admin_key: Some(ADMIN_KEY.to_string()),
    }
}

/// Nucache A in front of a fake upstream, warmed with what `wanted` (a
/// plain list) names, and the bundle exported from it.
pub struct Exported {
    pub upstream: FakeUpstream,
    pub a: Nucache,
    pub work: tempfile::TempDir,
    pub bundle: PathBuf,
}

pub async fn exported(wanted: &str) -> Exported {
    exported_from(FakeUpstream::start().await, wanted).await
}

/// [`exported`], from `upstream`.
pub async fn exported_from(upstream: FakeUpstream, wanted: &str) -> Exported {
    let a = Nucache::start(&upstream.index_url(), |c| c.admin.keys = vec![digest_hex(ADMIN_KEY)]).await;
    let feed = a.url("/v3/index.json");
    let work = tempfile::tempdir().expect("tempdir");
    let list = work.path().join("wanted.txt");
    std::fs::write(&list, wanted).expect("list");
    let config = nucache::Config::default();
    warm(warm_options(&feed, vec![list]), &config).await.expect("warm");
    let bundle = work.path().join("bundle");
    export(export_options(&bundle, &feed, None), &config)
        .await
        .expect("export");
    Exported {
        upstream,
        a,
        work,
        bundle,
    }
}

/// `nucache import` into the cache at `cache` of a nucache whose one
/// upstream is `upstream` (a bundle is only served as the upstream it came
/// from).
pub async fn import(bundle: &Path, cache: &Path, upstream: &str) -> Result<nucache::airgap::ImportSummary, String> {
    let mut config = nucache::Config::default();
    config.upstream.service_index = upstream.to_string();
    import_with(bundle, cache, config).await
}

pub async fn import_with(
    bundle: &Path,
    cache: &Path,
    config: nucache::Config,
) -> Result<nucache::airgap::ImportSummary, String> {
    let (bundle, cache) = (bundle.to_path_buf(), cache.to_path_buf());
    tokio::task::spawn_blocking(move || import_into_cache(&bundle, &cache, &config))
        .await
        .expect("import task")
}
