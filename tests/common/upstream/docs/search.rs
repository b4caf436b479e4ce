//! Search and autocomplete: listed versions only, filtered by
//! `prerelease` and `semVerLevel`, paged by `skip` and `take`.

use std::collections::HashMap;

use serde_json::{json, Value};

use super::super::layout::Hive;
use super::super::model::Package;
use super::Docs;

/// Query parameters: first value of each name, percent-decoded.
pub(crate) type Query = HashMap<String, String>;

struct SearchOpts {
    prerelease: bool,
    semver2: bool,
    skip: usize,
    take: usize,
}

impl SearchOpts {
    fn from(q: &Query) -> SearchOpts {
        let num = |k: &str, d: usize| q.get(k).and_then(|v| v.parse().ok()).unwrap_or(d);
        SearchOpts {
            prerelease: q.get("prerelease").is_some_and(|v| v.eq_ignore_ascii_case("true")),
            semver2: q.get("semVerLevel").is_some_and(|v| v.starts_with('2')),
            skip: num("skip", 0),
            take: num("take", 20),
        }
    }
}

impl Docs<'_> {
    /// Listed versions visible to a search with these options.
    fn visible(&self, lower_id: &str, opts: &SearchOpts) -> Vec<&Package> {
        self.store
            .versions(lower_id, opts.semver2)
            .into_iter()
            .filter(|p| p.listed && (opts.prerelease || !p.version.is_prerelease()))
            .collect()
    }

    fn matches(lower_id: &str, latest: &Package, q: &str) -> bool {
        q.to_lowercase()
            .split_whitespace()
            .all(|term| match term.split_once(':') {
                Some(("packageid", v)) => lower_id == v,
                Some(("id", v)) => lower_id.contains(v),
                Some((_, v)) => Self::haystack(lower_id, latest).contains(v),
                None => Self::haystack(lower_id, latest).contains(term),
            })
    }

    fn haystack(lower_id: &str, latest: &Package) -> String {
        format!("{lower_id} {} fake nucache", latest.description().to_lowercase())
    }

    pub(crate) fn search(&self, q: &Query) -> Value {
        let opts = SearchOpts::from(q);
        let text = q.get("q").map(String::as_str).unwrap_or("");
        let hive = self.layout.search_hive(opts.semver2);
        let mut hits: Vec<(&String, Vec<&Package>)> = self
            .store
            .ids()
            .map(|lid| (lid, self.visible(lid, &opts)))
            .filter(|(lid, vs)| vs.last().is_some_and(|latest| Self::matches(lid, latest, text)))
            .collect();
        let exact = text.trim().to_lowercase();
        hits.sort_by_key(|(lid, _)| (**lid != exact, (*lid).clone()));
        let data: Vec<Value> = hits
            .iter()
            .skip(opts.skip)
            .take(opts.take)
            .map(|(lid, vs)| self.search_hit(hive, lid, vs))
            .collect();
        json!({
            "@context": {"@vocab": "http://schema.nuget.org/schema#",
                         "@base": self.layout.hive_base(hive)},
            "totalHits": hits.len(),
            "data": data
        })
    }

    fn search_hit(&self, hive: Hive, lower_id: &str, versions: &[&Package]) -> Value {
        let Some(latest) = versions.last() else {
            return Value::Null;
        };
        let reg = self.reg_index_url(hive, lower_id);
        let list: Vec<Value> = versions
            .iter()
            .map(|p| {
                json!({"version": p.version.full(), "downloads": 42,
                "@id": self.reg_leaf_url(hive, p)})
            })
            .collect();
        json!({
            "@id": reg, "@type": "Package", "registration": reg,
            "id": latest.id, "version": latest.version.full(),
            "description": latest.description(), "summary": "", "title": latest.id,
            "iconUrl": self.flat_url(latest, "icon"),
            "licenseUrl": self.license_url(latest),
            "projectUrl": format!("https://github.com/example/{lower_id}"),
            "tags": ["fake", "nucache"], "authors": ["nucache tests"], "owners": ["nucache"],
            "totalDownloads": 42 * versions.len(), "verified": false,
            "packageTypes": [{"name": "Dependency"}],
            "versions": list,
            "vulnerabilities": []
        })
    }

    pub(crate) fn autocomplete(&self, q: &Query) -> Value {
        let opts = SearchOpts::from(q);
        let data: Vec<String> = match q.get("id") {
            Some(id) => self
                .visible(&id.to_lowercase(), &opts)
                .iter()
                .map(|p| p.version.full())
                .collect(),
            None => self.autocomplete_ids(q.get("q").map(String::as_str).unwrap_or(""), &opts),
        };
        let total = data.len();
        let page: Vec<String> = data.into_iter().skip(opts.skip).take(opts.take).collect();
        json!({"@context": {"@vocab": "http://schema.nuget.org/schema#"},
               "totalHits": total, "data": page})
    }

    fn autocomplete_ids(&self, q: &str, opts: &SearchOpts) -> Vec<String> {
        let q = q.to_lowercase();
        let mut ids: Vec<String> = self
            .store
            .ids()
            .filter(|lid| lid.contains(&q))
            .filter_map(|lid| self.visible(lid, opts).last().map(|p| p.id.clone()))
            .collect();
        ids.sort_by_key(|id| (!id.to_lowercase().starts_with(&q), id.to_lowercase()));
        ids
    }
}
