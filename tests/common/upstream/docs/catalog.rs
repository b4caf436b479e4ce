//! The catalog: its index, its one page and its leaves.

use serde_json::{json, Value};

use super::super::layout::Hive;
use super::super::model::iso;
use super::{package_hash, Docs};

impl Docs<'_> {
    pub(crate) fn catalog_index(&self) -> Value {
        let api = self.layout.feed();
        let stamp = iso(self.store.mtime());
        json!({
            "@id": format!("{api}/v3/catalog0/index.json"),
            "@type": ["CatalogRoot", "AppendOnlyCatalog", "Permalink"],
            "commitId": self.store.commit_id(),
            "commitTimeStamp": stamp,
            "count": 1,
            "items": [{
                "@id": format!("{api}/v3/catalog0/page0.json"),
                "@type": "CatalogPage",
                "commitId": self.store.commit_id(),
                "commitTimeStamp": stamp,
                "count": self.store.all().count()
            }],
            "@context": {"@vocab": "http://schema.nuget.org/catalog#",
                         "nuget": "http://schema.nuget.org/schema#"}
        })
    }

    pub(crate) fn catalog_page(&self) -> Value {
        let api = self.layout.feed();
        let items: Vec<Value> = self
            .store
            .all()
            .map(|p| {
                json!({"@id": self.catalog_leaf_url(Hive::GzSemver2, p),
                    "@type": "nuget:PackageDetails", "commitId": self.store.commit_id(), "commitTimeStamp": iso(p.published),
                    "nuget:id": p.id, "nuget:version": p.version.full()})
            })
            .collect();
        json!({
            "@id": format!("{api}/v3/catalog0/page0.json"),
            "@type": "CatalogPage",
            "commitId": self.store.commit_id(),
            "commitTimeStamp": iso(self.store.mtime()),
            "count": items.len(),
            "parent": format!("{api}/v3/catalog0/index.json"),
            "items": items,
            "@context": {"@vocab": "http://schema.nuget.org/catalog#",
                         "nuget": "http://schema.nuget.org/schema#"}
        })
    }

    /// Catalog leaf for `{lower_id}.{lower_ver}` (the file name without `.json`).
    pub(crate) fn catalog_leaf(&self, name: &str) -> Option<Value> {
        let pkg = self.store.ids().find_map(|lid| {
            let ver = name.strip_prefix(lid.as_str())?.strip_prefix('.')?;
            self.store.get(lid, ver)
        })?;
        let mut entry = self.catalog_entry(Hive::GzSemver2, pkg);
        let hash = package_hash(pkg);
        entry["@type"] = json!(["PackageDetails", "catalog:Permalink"]);
        entry["catalog:commitId"] = json!(self.store.commit_id());
        entry["catalog:commitTimeStamp"] = json!(iso(pkg.published));
        entry["isPrerelease"] = json!(pkg.version.is_prerelease());
        entry["packageHash"] = json!(hash);
        entry["packageHashAlgorithm"] = json!("SHA512");
        entry["packageSize"] = json!(pkg.nupkg.len());
        Some(entry)
    }
}
