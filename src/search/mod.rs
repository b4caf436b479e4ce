//! The offline search engine: search and autocomplete answered from the
//! packages nucache holds, honouring `q`, `skip`, `take`, `prerelease` and
//! `semVerLevel`, so that `nuget search` and IDE browsing work while every
//! upstream's search fails (inside an air gap, say). Pure code over
//! [`CachedPackage`]s: the pipeline gathers them from the cache
//! (`pipeline/search.rs`). [`Query`] is also how the pipeline reads the
//! ids a search names, to keep them from upstreams the patterns do not
//! give them to.

use serde_json::{json, Value};

use crate::nuget::NuGetVersion;

/// nuget.org's bound on `take`.
const MAX_TAKE: usize = 1000;
const DEFAULT_TAKE: usize = 20;

/// One cached version and what the metadata says of it.
#[derive(Debug, Clone)]
pub(crate) struct CachedVersion {
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
pub(crate) struct CachedPackage {
    pub lower_id: String,
    pub registration: Option<String>,
    pub versions: Vec<CachedVersion>,
}

/// The parameters of a search or autocomplete request.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Query {
    pub q: String,
    pub id: Option<String>,
    pub skip: usize,
    pub take: usize,
    pub prerelease: bool,
    pub semver2: bool,
    /// The ids `q` names exactly (`packageid:X`, any case), lower-cased.
    pub package_ids: Vec<String>,
}

impl Query {
    /// Reads a query string as `application/x-www-form-urlencoded`
    /// (percent-decoding, `+` for space); parameter names in any case.
    pub fn parse(query: Option<&str>) -> Query {
        let mut parsed = Query {
            take: DEFAULT_TAKE,
            ..Query::default()
        };
        for (name, value) in url::form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
            let value = value.into_owned();
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
        parsed.package_ids = exact_ids(&parsed.q);
        parsed
    }

    /// The `take` the client asked for, if it did.
    pub fn asked_take(query: Option<&str>) -> Option<usize> {
        url::form_urlencoded::parse(query.unwrap_or("").as_bytes())
            .find(|(name, _)| name.eq_ignore_ascii_case("take"))
            .and_then(|(_, value)| value.parse().ok())
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

/// The ids a search query names with `packageid:` (NuGet's exact-id
/// field), lower-cased; quotes around a value are dropped.
fn exact_ids(q: &str) -> Vec<String> {
    q.split_whitespace()
        .filter_map(|term| {
            let (field, value) = term.split_once(':')?;
            let value = value.trim_matches('"');
            (field.eq_ignore_ascii_case("packageid") && !value.is_empty()).then(|| crate::nuget::lower_invariant(value))
        })
        .collect()
}

/// The admitted versions of `package`, ascending, with the latest last.
fn admitted<'p>(query: &Query, package: &'p CachedPackage) -> Vec<&'p CachedVersion> {
    let mut versions: Vec<&CachedVersion> = package.versions.iter().filter(|v| query.admits(v)).collect();
    versions.sort_by(|a, b| a.version.precedence(&b.version));
    versions
}

/// The `SearchQueryService` answer.
pub(crate) fn search(query: &Query, packages: &[CachedPackage]) -> Value {
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
pub(crate) fn autocomplete(query: &Query, packages: &[CachedPackage]) -> Value {
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
        assert_eq!(Query::parse(Some("ID=Acme%2ECore")).id.as_deref(), Some("Acme.Core"));
        assert_eq!(Query::asked_take(Some("Take=5")), Some(5));
    }

    #[test]
    fn exact_ids_are_read_from_q_in_any_spelling() {
        let ids = |q: &str| Query::parse(Some(q)).package_ids;
        assert_eq!(ids("q=packageid:Acme.Core"), ["acme.core"]);
        assert_eq!(ids("Q=PackageId%3AAcme%2ECore+json"), ["acme.core"]);
        assert_eq!(ids("q=packageId:%22Acme.Core%22 packageid:b"), ["acme.core", "b"]);
        assert!(
            ids("q=id:acme.core").is_empty(),
            "id: is a fuzzy field, not an exact id"
        );
    }
}
