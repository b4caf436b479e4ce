//! Registration indexes, pages and leaves, inlined below 128 versions and
//! paged by 64 above, as nuget.org does.

use serde_json::{json, Map, Value};

use super::super::layout::Hive;
use super::super::model::{iso, Package};
use super::{package_hash, Docs};

/// nuget.org inlines every leaf in the registration index below this count.
const INLINE_LIMIT: usize = 128;
const PAGE_SIZE: usize = 64;

fn reg_context() -> Value {
    json!({
        "@vocab": "http://schema.nuget.org/schema#",
        "catalog": "http://schema.nuget.org/catalog#",
        "xsd": "http://www.w3.org/2001/XMLSchema#",
        "items": {"@id": "catalog:item", "@container": "@set"},
        "commitTimeStamp": {"@id": "catalog:commitTimeStamp", "@type": "xsd:dateTime"},
        "commitId": {"@id": "catalog:commitId"},
        "count": {"@id": "catalog:count"},
        "parent": {"@id": "catalog:parent", "@type": "@id"},
        "tags": {"@id": "tag", "@container": "@set"},
        "reasons": {"@container": "@set"},
        "packageTargetFrameworks": {"@id": "packageTargetFramework", "@container": "@set"},
        "dependencyGroups": {"@id": "dependencyGroup", "@container": "@set"},
        "dependencies": {"@id": "dependency", "@container": "@set"},
        "packageContent": {"@type": "@id"},
        "published": {"@type": "xsd:dateTime"},
        "registration": {"@type": "@id"}
    })
}

impl Docs<'_> {
    pub(super) fn catalog_entry(&self, hive: Hive, pkg: &Package) -> Value {
        let leaf = self.catalog_leaf_url(hive, pkg);
        let mut e = Map::new();
        e.insert("@id".into(), json!(leaf));
        e.insert("@type".into(), json!("PackageDetails"));
        e.insert("authors".into(), json!("nucache tests"));
        if !pkg.groups.is_empty() {
            e.insert("dependencyGroups".into(), self.dependency_groups(hive, pkg, &leaf));
        }
        e.insert("description".into(), json!(pkg.description()));
        e.insert("iconUrl".into(), json!(self.flat_url(pkg, "icon")));
        e.insert("id".into(), json!(pkg.id));
        e.insert("language".into(), json!(""));
        e.insert("licenseExpression".into(), json!(""));
        e.insert("licenseUrl".into(), json!(self.license_url(pkg)));
        e.insert("listed".into(), json!(pkg.listed));
        e.insert("minClientVersion".into(), json!(""));
        e.insert("packageContent".into(), json!(self.content_url(pkg)));
        let project = format!("https://github.com/example/{}", pkg.lower_id());
        e.insert("projectUrl".into(), json!(project));
        e.insert("published".into(), json!(Self::published(pkg)));
        e.insert("requireLicenseAcceptance".into(), json!(false));
        e.insert("summary".into(), json!(""));
        e.insert("tags".into(), json!(["fake", "nucache"]));
        e.insert("title".into(), json!(pkg.id));
        e.insert("version".into(), json!(pkg.version.full()));
        if self.registration_hashes {
            e.insert("packageHash".into(), json!(package_hash(pkg)));
            e.insert("packageHashAlgorithm".into(), json!("SHA512"));
        }
        if pkg.vulnerable {
            let v = json!([{
                "@id": format!("{leaf}#vulnerability/GitHub/1"),
                "advisoryUrl": "https://github.com/advisories/GHSA-xxxx",
                "severity": "2"
            }]);
            e.insert("vulnerabilities".into(), v);
        }
        Value::Object(e)
    }

    fn dependency_groups(&self, hive: Hive, pkg: &Package, leaf: &str) -> Value {
        let groups: Vec<Value> = pkg
            .groups
            .iter()
            .map(|g| {
                let tfm = &g.target_framework;
                let gid = match tfm.is_empty() {
                    true => format!("{leaf}#dependencygroup"),
                    false => format!("{leaf}#dependencygroup/{}", tfm.to_lowercase()),
                };
                let deps: Vec<Value> = g
                    .deps
                    .iter()
                    .map(|(id, range)| {
                        let lid = id.to_lowercase();
                        json!({"@id": format!("{gid}/{lid}"), "@type": "PackageDependency",
                            "id": id, "range": range,
                            "registration": self.reg_index_url(hive, &lid)})
                    })
                    .collect();
                let mut obj = json!({"@id": gid, "@type": "PackageDependencyGroup",
                    "dependencies": deps});
                if !tfm.is_empty() {
                    obj["targetFramework"] = json!(tfm);
                }
                obj
            })
            .collect();
        Value::Array(groups)
    }

    fn reg_item(&self, hive: Hive, pkg: &Package) -> Value {
        json!({
            "@id": self.reg_leaf_url(hive, pkg),
            "@type": "Package",
            "commitId": self.store.commit_id(),
            "commitTimeStamp": iso(self.store.mtime()),
            "catalogEntry": self.catalog_entry(hive, pkg),
            "packageContent": self.content_url(pkg),
            "registration": self.reg_index_url(hive, &pkg.lower_id()),
        })
    }

    /// A page object; `page_url` is None for inlined pages.
    fn page(&self, hive: Hive, lower_id: &str, chunk: &[&Package], page_url: Option<String>) -> Value {
        let index_url = self.reg_index_url(hive, lower_id);
        let lower = chunk.first().map(|p| p.version.normalized()).unwrap_or_default();
        let upper = chunk.last().map(|p| p.version.normalized()).unwrap_or_default();
        let at_id = page_url.unwrap_or_else(|| format!("{index_url}#page/{lower}/{upper}"));
        let mut page = Map::new();
        page.insert("@id".into(), json!(at_id));
        page.insert("@type".into(), json!("catalog:CatalogPage"));
        page.insert("commitId".into(), json!(self.store.commit_id()));
        page.insert("commitTimeStamp".into(), json!(iso(self.store.mtime())));
        page.insert("count".into(), json!(chunk.len()));
        let items: Vec<Value> = chunk.iter().map(|p| self.reg_item(hive, p)).collect();
        page.insert("items".into(), Value::Array(items));
        page.insert("parent".into(), json!(index_url));
        page.insert("lower".into(), json!(lower));
        page.insert("upper".into(), json!(upper));
        Value::Object(page)
    }

    fn page_url(&self, hive: Hive, lower_id: &str, chunk: &[&Package]) -> String {
        let lower = chunk.first().map(|p| p.lower_ver()).unwrap_or_default();
        let upper = chunk.last().map(|p| p.lower_ver()).unwrap_or_default();
        format!("{}{lower_id}/page/{lower}/{upper}.json", self.layout.hive_base(hive))
    }

    /// A non-inlined page stub in the index: no items, no parent.
    fn page_stub(&self, hive: Hive, lower_id: &str, chunk: &[&Package]) -> Value {
        let mut page = self.page(hive, lower_id, chunk, Some(self.page_url(hive, lower_id, chunk)));
        if let Value::Object(map) = &mut page {
            map.remove("items");
            map.remove("parent");
        }
        page
    }

    pub(crate) fn reg_index(&self, hive: Hive, lower_id: &str) -> Option<Value> {
        let versions = self.store.versions(lower_id, hive.semver2());
        if versions.is_empty() {
            return None;
        }
        let inline = versions.len() < INLINE_LIMIT;
        let pages: Vec<Value> = versions
            .chunks(PAGE_SIZE)
            .map(|c| match inline {
                true => self.page(hive, lower_id, c, None),
                false => self.page_stub(hive, lower_id, c),
            })
            .collect();
        Some(json!({
            "@id": self.reg_index_url(hive, lower_id),
            "@type": ["catalog:CatalogRoot", "PackageRegistration", "catalog:Permalink"],
            "commitId": self.store.commit_id(),
            "commitTimeStamp": iso(self.store.mtime()),
            "count": pages.len(),
            "items": pages,
            "@context": reg_context(),
        }))
    }

    /// Page document for `/page/{lower}/{upper}.json` (lowercase bounds).
    pub(crate) fn reg_page(&self, hive: Hive, lower_id: &str, lower: &str, upper: &str) -> Option<Value> {
        let versions = self.store.versions(lower_id, hive.semver2());
        let chunk = versions.chunks(PAGE_SIZE).find(|c| {
            c.first().map(|p| p.lower_ver()).as_deref() == Some(lower)
                && c.last().map(|p| p.lower_ver()).as_deref() == Some(upper)
        })?;
        let mut page = self.page(hive, lower_id, chunk, Some(self.page_url(hive, lower_id, chunk)));
        page["@context"] = reg_context();
        Some(page)
    }

    pub(crate) fn reg_leaf(&self, hive: Hive, lower_id: &str, lower_ver: &str) -> Option<Value> {
        let pkg = self.store.get(lower_id, lower_ver)?;
        if pkg.version.is_semver2() && !hive.semver2() {
            return None;
        }
        Some(json!({
            "@id": self.reg_leaf_url(hive, pkg),
            "@type": ["Package", "http://schema.nuget.org/catalog#Permalink"],
            "catalogEntry": self.catalog_leaf_url(hive, pkg),
            "listed": pkg.listed,
            "packageContent": self.content_url(pkg),
            "published": Self::published(pkg),
            "registration": self.reg_index_url(hive, lower_id),
            "@context": {
                "@vocab": "http://schema.nuget.org/schema#",
                "xsd": "http://www.w3.org/2001/XMLSchema#",
                "catalogEntry": {"@type": "@id"},
                "registration": {"@type": "@id"},
                "packageContent": {"@type": "@id"},
                "published": {"@type": "xsd:dateTime"}
            }
        }))
    }
}
