//! Search and autocomplete when the upstream's search fails: answered from
//! the packages in the cache (their cached `.nupkg` versions, described by
//! the cached registration documents), honouring `q`, `skip`, `take`,
//! `prerelease` and `semVerLevel`, so that `nuget search` and IDE browsing
//! work inside an air gap. Served `X-Cache: STALE`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::request::Parts;
use serde_json::{json, Value};
use sha2::{Digest, Sha512};

use super::base::Base;
use super::{respond, Proxy, Reply};
use crate::cache::{Cache, CacheStatus};
use crate::error::{ProxyError, UpstreamError};
use crate::nuget::NuGetVersion;
use crate::rewrite::{MountKind, Mounts, Template};
use crate::route::Target;
use crate::stash::blocking;

impl Proxy {
    /// The answer to a search whose upstream failed with `error`.
    pub(super) async fn offline_search(
        self: &Arc<Self>,
        parts: &Parts,
        target: &Target,
        base: &Base,
        error: UpstreamError,
    ) -> Result<Reply, ProxyError> {
        let (snapshot, _) = self.service_map(self.feeds.primary(), false).await?;
        let autocomplete = snapshot
            .map
            .mounts
            .get(target.mount)
            .is_some_and(|m| m.kind == MountKind::Autocomplete);
        let query = Query::parse(parts.uri.query());
        let (cache, map, url) = (self.cache.clone(), snapshot.map.clone(), base.url.clone());
        let packages = blocking(move || Ok(gather(&cache, &map.mounts, &url))).await?;
        let answer = match autocomplete {
            true => self::autocomplete(&query, &packages),
            false => search(&query, &packages),
        };
        tracing::info!(%error, hits = %answer["totalHits"], "upstream search failed; answered from the cache");
        let body = Bytes::from(answer.to_string());
        let content_id = hex::encode(&Sha512::digest(&body)[..12]);
        let rendered = Template::new(body, &content_id).render(&base.url);
        Ok(respond::document(
            &parts.headers,
            &rendered,
            None,
            CacheStatus::Stale,
            Duration::ZERO,
            base.vary,
        ))
    }
}

/// nuget.org's bound on `take`.
const MAX_TAKE: usize = 1000;
const DEFAULT_TAKE: usize = 20;

/// One cached version and what the metadata says of it.
#[derive(Debug, Clone)]
pub(super) struct CachedVersion {
    pub version: NuGetVersion,
    pub listed: bool,
    pub id: String,
    pub title: String,
    pub description: String,
    pub authors: Vec<String>,
    pub tags: Vec<String>,
    /// The registration leaf URL, when the metadata has one.
    pub leaf: Option<String>,
}

/// A cached package id and its cached versions.
#[derive(Debug, Clone)]
pub(super) struct CachedPackage {
    pub lower_id: String,
    pub registration: Option<String>,
    pub versions: Vec<CachedVersion>,
}

/// The parameters of a search or autocomplete request.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(super) struct Query {
    pub q: String,
    pub id: Option<String>,
    pub skip: usize,
    pub take: usize,
    pub prerelease: bool,
    pub semver2: bool,
}

impl Query {
    pub fn parse(query: Option<&str>) -> Query {
        let mut parsed = Query {
            take: DEFAULT_TAKE,
            ..Query::default()
        };
        for pair in query.unwrap_or("").split('&') {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            let value = decode(value);
            match name.to_ascii_lowercase().as_str() {
                "q" => parsed.q = value,
                "id" => parsed.id = Some(value),
                "skip" => parsed.skip = value.parse().unwrap_or(0),
                "take" => parsed.take = value.parse().unwrap_or(DEFAULT_TAKE).min(MAX_TAKE),
                "prerelease" => parsed.prerelease = value.eq_ignore_ascii_case("true"),
                "semverlevel" => parsed.semver2 = value.starts_with('2'),
                _ => {}
            }
        }
        parsed
    }

    fn admits(&self, version: &CachedVersion) -> bool {
        version.listed
            && (self.prerelease || !version.version.is_prerelease())
            && (self.semver2 || !version.version.is_semver2())
    }

    /// Every term of `q` (`field:value` or plain) is in the id, or for a
    /// plain term also in the title, description, tags or authors.
    fn matches(&self, package: &CachedPackage, latest: &CachedVersion) -> bool {
        self.q.split_whitespace().all(|term| {
            let term = term.to_lowercase();
            let (field, value) = match term.split_once(':') {
                Some((field, value)) => (field.to_string(), value.trim_matches('"').to_string()),
                None => (String::new(), term.clone()),
            };
            let in_id = package.lower_id.contains(&value);
            match field.as_str() {
                "id" | "packageid" => in_id,
                _ => {
                    in_id
                        || latest.title.to_lowercase().contains(&value)
                        || latest.description.to_lowercase().contains(&value)
                        || latest.tags.iter().any(|t| t.to_lowercase().contains(&value))
                        || latest.authors.iter().any(|a| a.to_lowercase().contains(&value))
                }
            }
        })
    }
}

/// `+` and `%XX` decoded; undecodable input is kept as it is.
fn decode(value: &str) -> String {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let byte = bytes
                    .get(i + 1..i + 3)
                    .and_then(|hex| std::str::from_utf8(hex).ok())
                    .and_then(|hex| u8::from_str_radix(hex, 16).ok());
                match byte {
                    Some(byte) => {
                        out.push(byte);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The admitted versions of `package`, ascending, with the latest last.
fn admitted<'p>(query: &Query, package: &'p CachedPackage) -> Vec<&'p CachedVersion> {
    let mut versions: Vec<&CachedVersion> = package.versions.iter().filter(|v| query.admits(v)).collect();
    versions.sort_by(|a, b| a.version.precedence(&b.version));
    versions
}

/// The `SearchQueryService` answer.
pub(super) fn search(query: &Query, packages: &[CachedPackage]) -> Value {
    let hits: Vec<(&CachedPackage, Vec<&CachedVersion>)> = packages
        .iter()
        .filter_map(|p| {
            let versions = admitted(query, p);
            let latest = versions.last()?;
            query.matches(p, latest).then_some((p, versions))
        })
        .collect();
    let data: Vec<Value> = hits
        .iter()
        .skip(query.skip)
        .take(query.take)
        .filter_map(|(package, versions)| {
            let latest = versions.last()?;
            Some(json!({
                "@id": package.registration,
                "@type": "Package",
                "registration": package.registration,
                "id": latest.id,
                "version": latest.version.full(),
                "description": latest.description,
                "summary": "",
                "title": latest.title,
                "tags": latest.tags,
                "authors": latest.authors,
                "totalDownloads": 0,
                "verified": false,
                "packageTypes": [{"name": "Dependency"}],
                "vulnerabilities": [],
                "versions": versions.iter().map(|v| json!({
                    "version": v.version.full(),
                    "downloads": 0,
                    "@id": v.leaf,
                })).collect::<Vec<_>>(),
            }))
        })
        .collect();
    json!({"totalHits": hits.len(), "data": data})
}

/// The `SearchAutocompleteService` answer: ids by `q`, or `id`'s versions.
pub(super) fn autocomplete(query: &Query, packages: &[CachedPackage]) -> Value {
    if let Some(id) = &query.id {
        let wanted = crate::nuget::lower_invariant(id);
        let versions: Vec<String> = packages
            .iter()
            .filter(|p| p.lower_id == wanted)
            .flat_map(|p| admitted(query, p))
            .map(|v| v.version.full())
            .collect();
        return json!({"totalHits": versions.len(), "data": versions});
    }
    let q = query.q.trim().to_lowercase();
    let ids: Vec<String> = packages
        .iter()
        .filter(|p| p.lower_id.contains(&q))
        .filter_map(|p| admitted(query, p).last().map(|v| v.id.clone()))
        .collect();
    let data: Vec<&String> = ids.iter().skip(query.skip).take(query.take).collect();
    json!({"totalHits": ids.len(), "data": data})
}

/// The cached packages, described by their cached registration documents
/// rendered for `base` (blocking I/O).
pub(super) fn gather(cache: &Cache, mounts: &Mounts, base: &str) -> Vec<CachedPackage> {
    let mut by_id: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (id, version) in cache.packages() {
        by_id.entry(id).or_default().push(version);
    }
    // The semver2 hive describes every version; the others are fallbacks.
    let mut hives: Vec<&str> = mounts
        .iter()
        .filter(|m| m.kind == MountKind::Registrations)
        .map(|m| m.local.as_str())
        .collect();
    hives.sort_by_key(|local| !local.contains("semver2"));
    by_id
        .into_iter()
        .map(|(lower_id, versions)| describe(cache, &hives, base, lower_id, versions))
        .collect()
}

fn describe(cache: &Cache, hives: &[&str], base: &str, lower_id: String, versions: Vec<String>) -> CachedPackage {
    let mut registration = None;
    let mut leaves: BTreeMap<String, Value> = BTreeMap::new();
    for hive in hives {
        let key = format!("{hive}{lower_id}/index.json");
        let Some(index) = rendered_json(cache, &key, base) else {
            continue;
        };
        registration = Some(format!("{base}/v3/{key}"));
        for page in index.get("items").and_then(Value::as_array).into_iter().flatten() {
            let page = match page.get("items") {
                Some(_) => page.clone(),
                None => page
                    .get("@id")
                    .and_then(Value::as_str)
                    .and_then(|url| url.strip_prefix(&format!("{base}/v3/")))
                    .and_then(|key| rendered_json(cache, key, base))
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

#[cfg(test)]
mod tests {
    use super::*;

    fn version(id: &str, text: &str, listed: bool, description: &str) -> CachedVersion {
        CachedVersion {
            version: NuGetVersion::parse(text).expect("version"),
            listed,
            id: id.into(),
            title: String::new(),
            description: description.into(),
            authors: vec!["Nucache".into()],
            tags: vec!["sample".into()],
            leaf: Some(format!("http://n/v3/registration/h/{}/{text}.json", id.to_lowercase())),
        }
    }

    fn corpus() -> Vec<CachedPackage> {
        let package = |id: &str, versions: Vec<CachedVersion>| CachedPackage {
            lower_id: id.to_lowercase(),
            registration: Some(format!("http://n/v3/registration/h/{}/index.json", id.to_lowercase())),
            versions,
        };
        vec![
            package(
                "Nucache.Sample.Core",
                vec![
                    version("Nucache.Sample.Core", "1.0.0", true, "core"),
                    version("Nucache.Sample.Core", "1.2.0", true, "core"),
                    version("Nucache.Sample.Core", "1.3.0", false, "core"),
                    version("Nucache.Sample.Core", "2.0.0-beta1", true, "core"),
                ],
            ),
            package(
                "Nucache.Sample.Pre",
                vec![version("Nucache.Sample.Pre", "2.0.0-beta.1", true, "pre")],
            ),
            package(
                "Other.Thing",
                vec![version("Other.Thing", "1.0.0", true, "has nucache inside")],
            ),
        ]
    }

    fn hits(query: &str) -> Vec<String> {
        let answer = search(&Query::parse(Some(query)), &corpus());
        answer["data"]
            .as_array()
            .map(|data| {
                data.iter()
                    .map(|d| {
                        format!(
                            "{} {}",
                            d["id"].as_str().unwrap_or(""),
                            d["version"].as_str().unwrap_or("")
                        )
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    #[test]
    fn listed_stable_versions_by_default_the_latest_first() {
        assert_eq!(hits("q=nucache"), ["Nucache.Sample.Core 1.2.0", "Other.Thing 1.0.0"]);
        assert_eq!(hits("q=id:nucache"), ["Nucache.Sample.Core 1.2.0"]);
        assert_eq!(hits("q=SAMPLE+core"), ["Nucache.Sample.Core 1.2.0"]);
        assert_eq!(hits("q=nope"), Vec::<String>::new());
    }

    #[test]
    fn prerelease_and_semver_level_widen_the_answer() {
        assert_eq!(hits("q=id:sample&prerelease=true"), ["Nucache.Sample.Core 2.0.0-beta1"]);
        assert_eq!(
            hits("q=id:sample&prerelease=true&semVerLevel=2.0.0"),
            ["Nucache.Sample.Core 2.0.0-beta1", "Nucache.Sample.Pre 2.0.0-beta.1"]
        );
    }

    #[test]
    fn skip_and_take_page_the_hits() {
        let answer = search(&Query::parse(Some("q=&skip=1&take=1")), &corpus());
        assert_eq!(answer["totalHits"], 2);
        assert_eq!(answer["data"][0]["id"], "Other.Thing");
        let versions = search(&Query::parse(Some("q=core")), &corpus());
        assert_eq!(versions["data"][0]["versions"].as_array().map(Vec::len), Some(2));
    }

    #[test]
    fn autocomplete_ids_and_versions() {
        let ids = autocomplete(
            &Query::parse(Some("q=nucache.s&prerelease=true&semVerLevel=2.0.0")),
            &corpus(),
        );
        assert_eq!(ids["data"], json!(["Nucache.Sample.Core", "Nucache.Sample.Pre"]));
        let versions = autocomplete(&Query::parse(Some("id=NUCACHE.SAMPLE.CORE")), &corpus());
        assert_eq!(versions["data"], json!(["1.0.0", "1.2.0"]));
    }

    #[test]
    fn query_values_are_decoded() {
        assert_eq!(Query::parse(Some("q=a%20b+c&take=5000")).q, "a b c");
        assert_eq!(Query::parse(Some("take=5000")).take, MAX_TAKE);
        assert_eq!(Query::parse(Some("q=100%")).q, "100%");
    }
}
