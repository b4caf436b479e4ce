//! `nucache warm`: fills a running nucache through its own feed with what
//! a restore of the inputs needs: each package's version list, `.nupkg`
//! and `.nuspec`, its registration documents in every hive, and the
//! vulnerability documents. Dependencies are walked (`--with-dependencies`)
//! wave by wave, each wave with at most `--jobs` requests in flight.

use std::collections::BTreeSet;
use std::sync::Arc;

use futures_util::stream::{self, StreamExt};
use serde_json::Value;

use super::client::{FeedClient, FeedIndex};
use super::inputs::Wanted;
use super::nuspec;
use crate::nuget::NuGetVersion;

/// What `warm` is asked to do.
pub struct WarmOptions {
    pub feed: String,
    pub with_dependencies: bool,
    pub framework: Option<String>,
    pub jobs: usize,
    pub files: Vec<std::path::PathBuf>,
    /// Draw a progress bar (stderr is a terminal).
    pub progress: bool,
}

/// How one package came out.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Outcome {
    Fetched,
    Cached,
    Failed(String),
}

/// The summary `warm` prints.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct WarmSummary {
    pub wanted: usize,
    pub dependencies: usize,
    pub fetched: usize,
    pub cached: usize,
    /// `what: why`, one a failure.
    pub failed: Vec<String>,
    /// Version lists, registration and vulnerability documents warmed.
    pub documents: usize,
}

impl std::fmt::Display for WarmSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "warm: {} packages wanted ({} from the inputs, {} dependencies): {} fetched, {} already cached, {} failed; {} metadata documents warmed",
            self.wanted + self.dependencies,
            self.wanted,
            self.dependencies,
            self.fetched,
            self.cached,
            self.failed.len(),
            self.documents
        )?;
        for failure in &self.failed {
            writeln!(f, "failed: {failure}")?;
        }
        Ok(())
    }
}

struct Context {
    client: FeedClient,
    index: FeedIndex,
    framework: Option<String>,
    with_dependencies: bool,
}

/// A resolved package: display id, lower id, version.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Resolved {
    lower_id: String,
    version: String,
    id: String,
}

/// Runs the warm-up; an error means nothing could be done (no feed).
pub async fn warm(options: WarmOptions, config: &crate::config::Config) -> Result<WarmSummary, String> {
    let files = options.files.clone();
    let inputs = tokio::task::spawn_blocking(move || super::inputs::read_all(&files))
        .await
        .map_err(|e| format!("reading the inputs failed: {e}"))?
        .map_err(|e| e.to_string())?;
    let client = FeedClient::new(&options.feed, config);
    let index = read_index(&client, &options.feed).await?;
    let context = Arc::new(Context {
        client,
        index,
        framework: options.framework.clone(),
        with_dependencies: options.with_dependencies,
    });
    let bar = progress_bar(options.progress, inputs.len());
    let mut summary = WarmSummary {
        wanted: inputs.len(),
        ..WarmSummary::default()
    };
    summary.documents += warm_vulnerabilities(&context, &mut summary.failed).await;
    let jobs = options.jobs.max(1);
    let mut seen_packages: BTreeSet<(String, String)> = BTreeSet::new();
    let mut seen_wanted: BTreeSet<(String, String)> =
        inputs.iter().map(|w| (w.lower_id(), w.range.to_string())).collect();
    let mut wave = inputs;
    let mut first = true;
    while !wave.is_empty() {
        // Resolve the wave's ranges against the version lists.
        let resolved: Vec<(Wanted, Result<Resolved, String>)> = stream::iter(wave)
            .map(|wanted| {
                let context = context.clone();
                async move {
                    let result = resolve(&context, &wanted).await;
                    (wanted, result)
                }
            })
            .buffered(jobs)
            .collect()
            .await;
        let mut packages = Vec::new();
        for (wanted, result) in resolved {
            summary.documents += 1;
            match result {
                Ok(package) if seen_packages.insert((package.lower_id.clone(), package.version.clone())) => {
                    packages.push(package)
                }
                Ok(_) => {}
                Err(reason) => {
                    bar.inc(1);
                    summary
                        .failed
                        .push(format!("{} {} ({}): {reason}", wanted.id, wanted.range, wanted.from));
                }
            }
        }
        if !first {
            summary.dependencies += packages.len();
            bar.inc_length(packages.len() as u64);
        }
        // Warm the packages, collecting their dependencies.
        let outcomes: Vec<(Resolved, Outcome, usize, Vec<Wanted>)> = stream::iter(packages)
            .map(|package| {
                let context = context.clone();
                async move {
                    let (outcome, documents, dependencies) = warm_package(&context, &package).await;
                    (package, outcome, documents, dependencies)
                }
            })
            .buffered(jobs)
            .collect()
            .await;
        let mut next = Vec::new();
        for (package, outcome, documents, dependencies) in outcomes {
            bar.inc(1);
            summary.documents += documents;
            match outcome {
                Outcome::Fetched => summary.fetched += 1,
                Outcome::Cached => summary.cached += 1,
                Outcome::Failed(reason) => summary
                    .failed
                    .push(format!("{} {}: {reason}", package.id, package.version)),
            }
            for dependency in dependencies {
                if seen_wanted.insert((dependency.lower_id(), dependency.range.to_string())) {
                    next.push(dependency);
                }
            }
        }
        wave = next;
        first = false;
    }
    bar.finish_and_clear();
    Ok(summary)
}

fn progress_bar(shown: bool, length: usize) -> indicatif::ProgressBar {
    if !shown {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(length as u64);
    if let Ok(style) = indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} packages {elapsed}") {
        bar.set_style(style);
    }
    bar
}

pub(super) async fn read_index(client: &FeedClient, feed: &str) -> Result<FeedIndex, String> {
    match client.json(feed).await {
        Ok(Some(answer)) => FeedIndex::read(&answer.body).map_err(|e| format!("{feed}: {e}")),
        Ok(None) => Err(format!("{feed}: no service index there (404)")),
        Err(error) => Err(error.to_string()),
    }
}

/// The vulnerability index and its pages; how many documents were warmed.
async fn warm_vulnerabilities(context: &Context, failed: &mut Vec<String>) -> usize {
    let Some(url) = context.index.vulnerabilities.clone() else {
        return 0;
    };
    let pages = match context.client.json(&url).await {
        Ok(Some(answer)) => vulnerability_pages(&answer.body),
        Ok(None) => {
            failed.push(format!("vulnerability index {url}: not found"));
            return 0;
        }
        Err(error) => {
            failed.push(format!("vulnerability index: {error}"));
            return 0;
        }
    };
    let mut warmed = 1;
    for page in pages {
        match context.client.document(&page).await {
            Ok(Some(_)) => warmed += 1,
            Ok(None) => failed.push(format!("vulnerability page {page}: not found")),
            Err(error) => failed.push(format!("vulnerability page: {error}")),
        }
    }
    warmed
}

/// The page URLs of a vulnerability index (an array of `{@name, @id}`).
pub(crate) fn vulnerability_pages(index: &Value) -> Vec<String> {
    index
        .as_array()
        .map(|pages| {
            pages
                .iter()
                .filter_map(|p| p.get("@id").and_then(Value::as_str))
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

/// The versions of `lower_id` on the feed (its flat-container list).
async fn versions(client: &FeedClient, index: &FeedIndex, lower_id: &str) -> Result<Vec<NuGetVersion>, String> {
    let url = format!("{}{lower_id}/index.json", index.flat_container);
    let list = match client.json(&url).await {
        Ok(Some(answer)) => answer.body,
        Ok(None) => return Err("no such package on the feed (404)".into()),
        Err(error) => return Err(error.to_string()),
    };
    Ok(list
        .get("versions")
        .and_then(Value::as_array)
        .map(|vs| {
            vs.iter()
                .filter_map(Value::as_str)
                .filter_map(|v| NuGetVersion::parse(v).ok())
                .collect()
        })
        .unwrap_or_default())
}

async fn resolve(context: &Context, wanted: &Wanted) -> Result<Resolved, String> {
    let (lower_id, version) = resolve_with(&context.client, &context.index, wanted).await?;
    Ok(Resolved {
        lower_id,
        version,
        id: wanted.id.clone(),
    })
}

/// `(lower id, lower version)` restore would pick for `wanted` on the feed.
pub(super) async fn resolve_with(
    client: &FeedClient,
    index: &FeedIndex,
    wanted: &Wanted,
) -> Result<(String, String), String> {
    let lower_id = wanted.lower_id();
    let available = versions(client, index, &lower_id).await?;
    let version = wanted.range.pick(&available).ok_or_else(|| {
        format!(
            "no version in {} among the {} versions on the feed",
            wanted.range,
            available.len()
        )
    })?;
    Ok((lower_id, version.lower_normalized()))
}

/// Warms one package: nupkg (drained, not kept), nuspec, registration
/// documents; returns its outcome, the documents warmed, its dependencies.
async fn warm_package(context: &Context, package: &Resolved) -> (Outcome, usize, Vec<Wanted>) {
    let (id, version) = (&package.lower_id, &package.version);
    let base = &context.index.flat_container;
    let nupkg = format!("{base}{id}/{version}/{id}.{version}.nupkg");
    let outcome = match context.client.stream(&nupkg, |_| Ok(())).await {
        Ok(Some(answer)) if answer.cache.eq_ignore_ascii_case("MISS") => Outcome::Fetched,
        Ok(Some(_)) => Outcome::Cached,
        Ok(None) => Outcome::Failed("the .nupkg is not on the feed (404)".into()),
        Err(error) => Outcome::Failed(error.to_string()),
    };
    if let Outcome::Failed(_) = outcome {
        return (outcome, 0, Vec::new());
    }
    let mut documents = 0;
    let mut dependencies = Vec::new();
    let nuspec_url = format!("{base}{id}/{version}/{id}.nuspec");
    match context.client.document(&nuspec_url).await {
        Ok(Some(answer)) => {
            documents += 1;
            if context.with_dependencies {
                let text = String::from_utf8_lossy(&answer.body);
                match nuspec::dependencies(&text, context.framework.as_deref()) {
                    Ok(deps) => {
                        dependencies = deps
                            .into_iter()
                            .map(|d| Wanted {
                                id: d.id,
                                range: d.range,
                                from: format!("a dependency of {} {version}", package.id),
                            })
                            .collect()
                    }
                    Err(reason) => {
                        return (
                            Outcome::Failed(format!("{nuspec_url}: {reason}")),
                            documents,
                            Vec::new(),
                        )
                    }
                }
            }
        }
        Ok(None) => {
            return (
                Outcome::Failed("the .nuspec is not on the feed (404)".into()),
                0,
                Vec::new(),
            )
        }
        Err(error) => return (Outcome::Failed(error.to_string()), 0, Vec::new()),
    }
    for hive in &context.index.hives {
        match registration(context, &format!("{hive}{id}/index.json")).await {
            Ok(count) => documents += count,
            Err(reason) => return (Outcome::Failed(reason), documents, dependencies),
        }
    }
    (outcome, documents, dependencies)
}

/// A registration index and its pages that are not inlined; how many
/// documents. A hive without the package (semver1 hive, semver2-only
/// package) is not a failure.
async fn registration(context: &Context, url: &str) -> Result<usize, String> {
    let index = match context.client.json(url).await {
        Ok(Some(answer)) => answer.body,
        Ok(None) => return Ok(0),
        Err(error) => return Err(error.to_string()),
    };
    let mut count = 1;
    for page in registration_pages(&index) {
        match context.client.document(&page).await {
            Ok(Some(_)) => count += 1,
            Ok(None) => return Err(format!("{page}: registration page not found")),
            Err(error) => return Err(error.to_string()),
        }
    }
    Ok(count)
}

/// The `@id`s of the pages of a registration index whose items are not inlined.
pub(crate) fn registration_pages(index: &Value) -> Vec<String> {
    index
        .get("items")
        .and_then(Value::as_array)
        .map(|pages| {
            pages
                .iter()
                .filter(|page| page.get("items").is_none())
                .filter_map(|page| page.get("@id").and_then(Value::as_str))
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_to_fetch_are_the_ones_not_inlined() {
        let index = serde_json::json!({"count": 2, "items": [
            {"@id": "http://n/r/a/page/1.0.0/1.63.0.json", "lower": "1.0.0", "upper": "1.63.0"},
            {"@id": "http://n/r/a/index.json#page/2.0.0/2.0.0", "items": [{"@id": "leaf"}]}
        ]});
        assert_eq!(registration_pages(&index), ["http://n/r/a/page/1.0.0/1.63.0.json"]);
        let vulns = serde_json::json!([{"@name": "base", "@id": "http://n/v/base.json"}, {"@name": "update", "@id": "http://n/v/update.json"}]);
        assert_eq!(
            vulnerability_pages(&vulns),
            ["http://n/v/base.json", "http://n/v/update.json"]
        );
    }

    #[test]
    fn the_summary_names_every_failure() {
        let summary = WarmSummary {
            wanted: 3,
            dependencies: 2,
            fetched: 3,
            cached: 1,
            failed: vec!["Nope 1.0.0 (list.txt:2): no such package on the feed (404)".into()],
            documents: 12,
        };
        let text = summary.to_string();
        assert!(text.starts_with(
            "warm: 5 packages wanted (3 from the inputs, 2 dependencies): 3 fetched, 1 already cached, 1 failed"
        ));
        assert!(text.contains("failed: Nope 1.0.0 (list.txt:2)"));
    }
}
