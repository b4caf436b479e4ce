//! Search and autocomplete (phases 4 to 7): the answers of the upstreams
//! the query may go to (`resolve.rs` keeps ids named in it from the
//! upstreams the patterns do not give them to) merged as one (`merged.rs`;
//! with one upstream, its answer less the ids it may not serve). When no
//! upstream answers, the answer comes from what the cache holds of every
//! upstream (`crate::search`, the offline engine), served `X-Cache: STALE`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::request::Parts;
use serde_json::{json, Value};
use sha2::{Digest, Sha512};

use super::feeds::Feeds;
use super::merged::How;
use super::resolve::Plan;
use super::Pipeline;
use crate::cache::{Cache, CacheStatus, Namespace};
use crate::error::{ProxyError, UpstreamError};
use crate::nuget::NuGetVersion;
use crate::reply::{self, base, Reply};
use crate::rewrite::{MountKind, Template};
use crate::search::{self, CachedPackage, CachedVersion, Query};
use crate::stash::blocking;

impl Pipeline {
    pub(super) async fn serve_search(self: &Arc<Self>, plan: &Plan, request: &Parts) -> Result<Reply, ProxyError> {
        let how = match plan.resolved.mount {
            MountKind::Autocomplete => How::Autocomplete,
            _ => How::Search,
        };
        if plan.restricted {
            // The query names an id no upstream may serve: nobody is asked.
            return self.search_answer(request, json!({"totalHits": 0, "data": []}), CacheStatus::Hit);
        }
        match self.serve_merged(plan, request, how).await {
            // A loop of tiers is a configuration to fix: said, not hidden.
            Err(ProxyError::Upstream(error)) if !matches!(error, UpstreamError::Loop { .. }) => {
                self.offline_search(plan, request, how, error).await
            }
            Err(ProxyError::NotFound) if plan.parts.is_empty() => {
                let error = UpstreamError::NoServiceIndex("no upstream's service index is loaded".into());
                self.offline_search(plan, request, how, error).await
            }
            answered => answered,
        }
    }

    /// The answer to a search no upstream answered (`error`: why), from
    /// the cache.
    async fn offline_search(
        self: &Arc<Self>,
        plan: &Plan,
        request: &Parts,
        how: How,
        error: UpstreamError,
    ) -> Result<Reply, ProxyError> {
        let base = base::public_base(&self.config, request)?;
        let query = Query::parse(plan.target().rest.strip_prefix('?'));
        let hives = self.registration_hives();
        let (pipeline, url) = (self.clone(), base.url.clone());
        let packages = blocking(move || Ok(gather(&pipeline.feeds, &pipeline.cache, &hives, &url))).await?;
        let answer = match how {
            How::Autocomplete => search::autocomplete(&query, &packages),
            _ => search::search(&query, &packages),
        };
        tracing::info!(%error, hits = %answer["totalHits"], "upstream search failed; answered from the cache");
        self.search_answer(request, answer, CacheStatus::Stale)
    }

    /// A search answer made by nucache itself (no upstream URLs in it).
    fn search_answer(&self, request: &Parts, answer: Value, status: CacheStatus) -> Result<Reply, ProxyError> {
        let base = base::public_base(&self.config, request)?;
        let body = Bytes::from(answer.to_string());
        let content_id = hex::encode(&Sha512::digest(&body)[..12]);
        let rendered = Template::new(body, &content_id).render(&base.url);
        Ok(reply::document(
            &request.headers,
            &rendered,
            None,
            status,
            Duration::ZERO,
            base.vary,
        ))
    }

    /// The public registration hives, the SemVer 2 ones first: they
    /// describe every version; the others are fallbacks.
    fn registration_hives(&self) -> Vec<String> {
        let Some(primary) = self.feeds.primary().service.current() else {
            return Vec::new();
        };
        let mut hives: Vec<String> = primary
            .map
            .mounts
            .iter()
            .filter(|m| m.kind == MountKind::Registrations)
            .map(|m| m.local.clone())
            .collect();
        hives.sort_by_key(|local| !local.contains("semver2"));
        hives
    }
}

/// The cached packages of every upstream, as far as the patterns let it
/// serve them, each described by the cached registration documents of the
/// first upstream (priority order) that holds it, rendered for `base`
/// (blocking I/O).
fn gather(feeds: &Feeds, cache: &Cache, hives: &[String], base: &str) -> Vec<CachedPackage> {
    let mut by_id: BTreeMap<String, (usize, Vec<String>)> = BTreeMap::new();
    for (n, feed) in feeds.all().iter().enumerate() {
        for (id, version) in cache.packages_in(&feed.namespace) {
            if !feeds.may_serve(feed, &id) {
                continue;
            }
            let (_, versions) = by_id.entry(id).or_insert((n, Vec::new()));
            if !versions.contains(&version) {
                versions.push(version);
            }
        }
    }
    let namespaces: Vec<&Namespace> = feeds.all().iter().map(|feed| &feed.namespace).collect();
    by_id
        .into_iter()
        .map(|(lower_id, (n, versions))| describe(cache, namespaces[n], hives, base, lower_id, versions))
        .collect()
}

fn describe(
    cache: &Cache,
    namespace: &Namespace,
    hives: &[String],
    base: &str,
    lower_id: String,
    versions: Vec<String>,
) -> CachedPackage {
    let mut registration = None;
    let mut leaves: BTreeMap<String, Value> = BTreeMap::new();
    for hive in hives {
        let local = format!("{hive}{lower_id}/index.json");
        let Some(index) = rendered_json(cache, &namespace.key(&local), base) else {
            continue;
        };
        registration = Some(format!("{base}/v3/{local}"));
        for page in index.get("items").and_then(Value::as_array).into_iter().flatten() {
            let page = match page.get("items") {
                Some(_) => page.clone(),
                None => page
                    .get("@id")
                    .and_then(Value::as_str)
                    .and_then(|url| url.strip_prefix(&format!("{base}/v3/")))
                    .and_then(|local| rendered_json(cache, &namespace.key(local), base))
                    .unwrap_or(Value::Null),
            };
            for leaf in page.get("items").and_then(Value::as_array).into_iter().flatten() {
                let version = leaf
                    .pointer("/catalogEntry/version")
                    .and_then(Value::as_str)
                    .and_then(|v| NuGetVersion::parse(v).ok());
                if let Some(version) = version {
                    leaves.insert(version.lower_normalized(), leaf.clone());
                }
            }
        }
        break;
    }
    let versions = versions
        .into_iter()
        .filter_map(|text| {
            let leaf = leaves.get(&text);
            let entry = leaf.and_then(|l| l.get("catalogEntry"));
            let field = |name: &str| entry.and_then(|e| e.get(name));
            let full = field("version").and_then(Value::as_str).unwrap_or(&text);
            Some(CachedVersion {
                version: NuGetVersion::parse(full).ok()?,
                listed: field("listed").and_then(Value::as_bool).unwrap_or(true),
                id: field("id").and_then(Value::as_str).unwrap_or(&lower_id).to_string(),
                title: field("title").and_then(Value::as_str).unwrap_or("").to_string(),
                description: field("description").and_then(Value::as_str).unwrap_or("").to_string(),
                authors: strings(field("authors")),
                tags: strings(field("tags")),
                leaf: leaf
                    .and_then(|l| l.get("@id"))
                    .and_then(Value::as_str)
                    .map(str::to_string),
            })
        })
        .collect();
    CachedPackage {
        lower_id,
        registration,
        versions,
    }
}

fn rendered_json(cache: &Cache, key: &str, base: &str) -> Option<Value> {
    let doc = cache.document(key).ok()??;
    serde_json::from_slice(doc.body.render(base).identity()).ok()
}

/// A string or an array of strings (`authors` is either, `tags` too);
/// a comma-separated string is split.
fn strings(value: Option<&Value>) -> Vec<String> {
    match value {
        Some(Value::String(s)) => s
            .split(',')
            .map(|p| p.trim().to_string())
            .filter(|p| !p.is_empty())
            .collect(),
        Some(Value::Array(items)) => items.iter().filter_map(Value::as_str).map(str::to_string).collect(),
        _ => Vec::new(),
    }
}
