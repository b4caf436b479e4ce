//! Registration indexes of several upstreams (one hive each) as one:
//! the leaves of every upstream, one per version (the highest-priority
//! upstream's), in NuGet version order, paged as nuget.org pages them
//! (§4.2: pages of 64 leaves, all inlined below 128 versions; from 128 on
//! the index lists pages without items, served as documents of their own).
//! The leaves are taken as they are: already rewritten to nucache URLs.

use std::cmp::Ordering;

use serde_json::{json, Value};

use crate::nuget::NuGetVersion;

/// Leaves per page, as nuget.org makes them.
pub const PAGE_SIZE: usize = 64;
/// From this many versions on, pages are not inlined (nuget.org's rule).
pub const INLINE_BELOW: usize = 128;

/// The leaves of the pages an index inlines.
pub fn inlined_leaves(index: &Value) -> Vec<Value> {
    pages(index).iter().flat_map(page_leaves).collect()
}

/// The `@id`s of the pages an index does not inline (to be fetched).
pub fn outlined_pages(index: &Value) -> Vec<String> {
    pages(index)
        .iter()
        .filter(|page| page.get("items").is_none())
        .filter_map(|page| page.get("@id").and_then(Value::as_str).map(str::to_string))
        .collect()
}

/// The leaves of one page (inlined in an index, or a page document).
pub fn page_leaves(page: &Value) -> Vec<Value> {
    page.get("items").and_then(Value::as_array).cloned().unwrap_or_default()
}

fn pages(index: &Value) -> &[Value] {
    index.get("items").and_then(Value::as_array).map_or(&[], Vec::as_slice)
}

fn leaf_version(leaf: &Value) -> Option<NuGetVersion> {
    let version = leaf.pointer("/catalogEntry/version").and_then(Value::as_str)?;
    NuGetVersion::parse(version).ok()
}

/// A merged registration: the index, and the page documents it points at
/// when it does not inline them (`(url, document)`).
#[derive(Debug)]
pub struct Merged {
    pub index: Value,
    pub pages: Vec<(String, Value)>,
}

/// The leaves of each upstream (`leaves_by_upstream`, priority order) as
/// one list: one leaf per version (the highest-priority upstream's), in
/// NuGet version order; leaves without a version are dropped.
pub fn merge_leaves(leaves_by_upstream: Vec<Vec<Value>>) -> Vec<(NuGetVersion, Value)> {
    let mut leaves: Vec<(NuGetVersion, Value)> = Vec::new();
    for leaf in leaves_by_upstream.into_iter().flatten() {
        let Some(version) = leaf_version(&leaf) else {
            continue;
        };
        if !leaves.iter().any(|(v, _)| v.precedence(&version) == Ordering::Equal) {
            leaves.push((version, leaf));
        }
    }
    leaves.sort_by(|(a, _), (b, _)| a.precedence(b));
    leaves
}

/// One page of `leaves`: its bounds (`lower/upper`, lower-cased) and its
/// lower and upper versions as written.
struct Bounds {
    path: String,
    lower: String,
    upper: String,
}

fn bounds(chunk: &[(NuGetVersion, Value)]) -> Bounds {
    let lower = chunk.first().map(|(v, _)| v.normalized()).unwrap_or_default();
    let upper = chunk.last().map(|(v, _)| v.normalized()).unwrap_or_default();
    Bounds {
        path: format!("{}/{}", lower.to_lowercase(), upper.to_lowercase()),
        lower,
        upper,
    }
}

/// Where the page of `bounds` is served when pages are not inlined.
fn page_url(index_url: &str, bounds: &Bounds) -> String {
    let base = index_url.strip_suffix("index.json").unwrap_or(index_url);
    format!("{base}page/{}.json", bounds.path)
}

/// The merged index at `index_url` (nucache's URL of it) over `leaves`
/// (from [`merge_leaves`]), paged as nuget.org pages. `first` is the
/// highest-priority upstream's index, whose `@type`, `commitId`,
/// `commitTimeStamp` and `@context` it keeps.
pub fn index(index_url: &str, first: &Value, leaves: &[(NuGetVersion, Value)]) -> Value {
    let inline = leaves.len() < INLINE_BELOW;
    let items: Vec<Value> = leaves
        .chunks(PAGE_SIZE)
        .map(|chunk| {
            let bounds = bounds(chunk);
            match inline {
                true => json!({
                    "@id": format!("{index_url}#page/{}", bounds.path),
                    "@type": "catalog:CatalogPage",
                    "count": chunk.len(),
                    "items": chunk.iter().map(|(_, leaf)| leaf.clone()).collect::<Vec<_>>(),
                    "lower": bounds.lower,
                    "upper": bounds.upper,
                    "parent": index_url,
                }),
                false => json!({
                    "@id": page_url(index_url, &bounds),
                    "@type": "catalog:CatalogPage",
                    "count": chunk.len(),
                    "lower": bounds.lower,
                    "upper": bounds.upper,
                }),
            }
        })
        .collect();
    let mut index = json!({
        "@id": index_url,
        "@type": first.get("@type").cloned().unwrap_or(json!(["catalog:CatalogRoot", "PackageRegistration"])),
        "count": items.len(),
        "items": items,
    });
    for kept in ["commitId", "commitTimeStamp", "@context"] {
        if let (Some(value), Some(out)) = (first.get(kept), index.as_object_mut()) {
            out.insert(kept.to_string(), value.clone());
        }
    }
    index
}

/// The page document at `wanted` of the merged index at `index_url`, built
/// alone (no other page is); `None` when the index has no such page (or
/// inlines its pages).
pub fn page(index_url: &str, leaves: &[(NuGetVersion, Value)], wanted: &str) -> Option<Value> {
    if leaves.len() < INLINE_BELOW {
        return None;
    }
    let chunk = leaves
        .chunks(PAGE_SIZE)
        .find(|chunk| page_url(index_url, &bounds(chunk)) == wanted)?;
    let bounds = bounds(chunk);
    Some(json!({
        "@id": wanted,
        "@type": "catalog:CatalogPage",
        "count": chunk.len(),
        "items": chunk.iter().map(|(_, leaf)| leaf.clone()).collect::<Vec<_>>(),
        "parent": index_url,
        "lower": bounds.lower,
        "upper": bounds.upper,
    }))
}

/// The whole merge: the index and every page document (tests and tools;
/// the pipeline builds one document at a time).
pub fn merge(index_url: &str, first: &Value, leaves_by_upstream: Vec<Vec<Value>>) -> Merged {
    let leaves = merge_leaves(leaves_by_upstream);
    let index = index(index_url, first, &leaves);
    let pages = match leaves.len() < INLINE_BELOW {
        true => Vec::new(),
        false => leaves
            .chunks(PAGE_SIZE)
            .filter_map(|chunk| {
                let url = page_url(index_url, &bounds(chunk));
                page(index_url, &leaves, &url).map(|page| (url, page))
            })
            .collect(),
    };
    Merged { index, pages }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::merge::tests::realdoc;

    const INDEX: &str = "https://nucache.test/v3/registration/gz-semver2/nlog/index.json";

    /// NLog's real index and its three real pages.
    fn nlog() -> Option<(Value, Vec<Value>)> {
        let index = realdoc("nlog.registration.json")?;
        let leaves = (1..=3)
            .map(|n| realdoc(&format!("nlog.page{n}.json")).map(|page| page_leaves(&page)))
            .collect::<Option<Vec<_>>>()?;
        Some((index, leaves.concat()))
    }

    fn versions_of(leaves: &[Value]) -> Vec<String> {
        leaves
            .iter()
            .filter_map(|l| l.pointer("/catalogEntry/version").and_then(Value::as_str))
            .map(str::to_string)
            .collect()
    }

    #[test]
    fn a_paged_index_says_which_pages_to_fetch() {
        let Some((index, leaves)) = nlog() else { return };
        assert_eq!(outlined_pages(&index).len(), 3);
        assert!(inlined_leaves(&index).is_empty());
        assert_eq!(leaves.len(), 64 + 64 + 28);
    }

    #[test]
    fn merging_with_a_private_feed_adds_its_versions_pages_beyond_128_and_keeps_nuget_order() {
        let Some((index, public)) = nlog() else { return };
        // A private feed with one version of its own and one nuget.org has too.
        let mut own = public[0].clone();
        own["catalogEntry"]["version"] = json!("5.0.0-acme.1");
        own["@id"] = json!("https://nucache.test/v3/registration/acme/nlog/5.0.0-acme.1.json");
        let mut shadow = public[10].clone();
        shadow["@id"] = json!("https://nucache.test/v3/registration/acme/nlog/shadow.json");
        let private = vec![shadow.clone(), own];
        let merged = merge(INDEX, &index, vec![private, public.clone()]);
        let all: Vec<Value> = merged.pages.iter().flat_map(|(_, page)| page_leaves(page)).collect();
        assert_eq!(all.len(), public.len() + 1, "one new version, one duplicate");
        let versions = versions_of(&all);
        let mut sorted = versions.clone();
        sorted.sort_by(|a, b| match (NuGetVersion::parse(a), NuGetVersion::parse(b)) {
            (Ok(a), Ok(b)) => a.precedence(&b),
            _ => Ordering::Equal,
        });
        assert_eq!(versions, sorted);
        assert!(versions.contains(&"5.0.0-acme.1".to_string()));
        // The duplicate version is the higher-priority (private) leaf.
        let version_10 = shadow["catalogEntry"]["version"].as_str().unwrap_or_default();
        let chosen = all.iter().find(|l| l["catalogEntry"]["version"] == version_10);
        assert_eq!(chosen.map(|l| l["@id"].clone()), Some(shadow["@id"].clone()));
        // 157 versions: three pages of at most 64, not inlined, each a document.
        assert_eq!(merged.index["count"], 3);
        let listed: Vec<&Value> = merged.index["items"]
            .as_array()
            .map(|i| i.iter().collect())
            .unwrap_or_default();
        assert!(listed.iter().all(|p| p.get("items").is_none()));
        assert_eq!(
            listed.iter().filter_map(|p| p["count"].as_u64()).collect::<Vec<_>>(),
            [64, 64, 29]
        );
        for (url, page) in &merged.pages {
            assert!(url.starts_with("https://nucache.test/v3/registration/gz-semver2/nlog/page/"));
            assert_eq!(page["parent"], INDEX);
            assert_eq!(&page["@id"], url);
        }
        assert_eq!(merged.index["@context"], index["@context"]);
    }

    #[test]
    fn below_128_versions_every_page_is_inlined() {
        let Some(nunit) = realdoc("nunit.registration.json") else {
            return;
        };
        let public = inlined_leaves(&nunit);
        let mut own = public[0].clone();
        own["catalogEntry"]["version"] = json!("4.0.0-acme");
        let merged = merge(INDEX, &nunit, vec![vec![own], public.clone()]);
        assert!(merged.pages.is_empty());
        assert_eq!(merged.index["count"], 1);
        let page = &merged.index["items"][0];
        assert_eq!(page["count"], public.len() + 1);
        assert_eq!(page["upper"], "4.0.0-acme");
        assert_eq!(page["parent"], INDEX);
        assert!(page["@id"]
            .as_str()
            .is_some_and(|id| id.starts_with(&format!("{INDEX}#page/"))));
    }
}
