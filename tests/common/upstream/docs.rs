//! JSON documents, shaped like nuget.org's or a private feed's (see the
//! protocol notes, sections 2-5, 7-9 and 10.6).

use std::collections::HashMap;

use base64::Engine as _;
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha512};

use super::layout::{Hive, Layout};
use super::model::{iso, Package, Store, BASE_TIME, UNLISTED_PUBLISHED};

/// nuget.org inlines every leaf in the registration index below this count.
const INLINE_LIMIT: usize = 128;
const PAGE_SIZE: usize = 64;
const CATALOG_STAMP: &str = "2020.01.01.00.00.00";

/// Builds documents from a store snapshot.
pub(crate) struct Docs<'a> {
    pub(crate) store: &'a Store,
    pub(crate) layout: &'a Layout,
    /// Registration catalog entries carry `packageHash`.
    pub(crate) registration_hashes: bool,
    /// `.nupkg` answers carry `Content-MD5`.
    pub(crate) content_md5: bool,
}

// ---------------------------------------------------------------------------
// service index

/// (`@type`, `@id`, comment)
type Resource = (String, String, String);

/// Search `@type` suffixes nuget.org lists, with their comment endings.
const SEARCH_ALIASES: [(&str, &str); 4] = [
    ("", ""),
    ("/3.0.0-rc", " used by RC clients"),
    ("/3.0.0-beta", " used by beta clients"),
    ("/3.5.0", " that supports package type filtering"),
];

pub(crate) fn service_index(l: &Layout) -> Value {
    let table = match l.private() {
        false => nuget_org_resources(l),
        true => private_feed_resources(l),
    };
    let resources: Vec<Value> = table
        .into_iter()
        .map(|(ty, id, comment)| {
            let mut r = json!({"@id": id, "@type": ty});
            if ty == "RegistrationsBaseUrl/Versioned" {
                r["clientVersion"] = json!("4.3.0-alpha");
            }
            r["comment"] = json!(comment);
            r
        })
        .collect();
    json!({
        "version": "3.0.0",
        "resources": resources,
        "@context": {
            "@vocab": "http://schema.nuget.org/services#",
            "comment": "http://www.w3.org/2000/01/rdf-schema#comment"
        }
    })
}

/// Query and autocomplete under every alias nuget.org lists.
fn search_resources(l: &Layout, service: &str) -> Vec<Resource> {
    let mut t = Vec::new();
    for (name, url, what) in [
        ("SearchQueryService", l.query_url(), "Query"),
        ("SearchAutocompleteService", l.autocomplete_url(), "Autocomplete"),
    ] {
        for (suffix, who) in SEARCH_ALIASES {
            let comment = format!("{what} endpoint of {service}{who}");
            t.push((format!("{name}{suffix}"), url.clone(), comment));
        }
    }
    t
}

fn package_base_comment(l: &Layout) -> String {
    let nupkg = format!(
        "{}{{id-lower}}/{{version-lower}}/{{id-lower}}.{{version-lower}}.nupkg",
        l.flat_base()
    );
    format!("Base URL of where NuGet packages are stored, in the format {nupkg}")
}

/// (`@type`, `@id`, comment) in nuget.org's order.
fn nuget_org_resources(l: &Layout) -> Vec<Resource> {
    let (api, search, www) = (&l.api, &l.search, &l.www);
    let mut t = search_resources(l, "NuGet Search service (primary)");
    let mut add = |ty: &str, id: String, comment: String| t.push((ty.to_string(), id, comment));
    let gallery = "Azure Website based Search Service used by Gallery (primary)";
    add(
        "SearchGalleryQueryService/3.0.0-rc",
        format!("{search}/"),
        gallery.into(),
    );
    let reg = "Base URL of Azure storage where NuGet package registration info is stored";
    let semver1 = l.hive_base(Hive::Semver1);
    for (suffix, who) in [
        ("", ""),
        ("/3.0.0-beta", " used by Beta clients"),
        ("/3.0.0-rc", " used by RC clients"),
    ] {
        add(
            &format!("RegistrationsBaseUrl{suffix}"),
            semver1.clone(),
            format!("{reg}{who}"),
        );
    }
    let gz = format!("{reg} in GZIP format. This base URL");
    let comment = format!("{gz} does not include SemVer 2.0.0 packages.");
    add("RegistrationsBaseUrl/3.4.0", l.hive_base(Hive::GzSemver1), comment);
    for ty in ["RegistrationsBaseUrl/3.6.0", "RegistrationsBaseUrl/Versioned"] {
        let comment = format!("{gz} includes SemVer 2.0.0 packages.");
        add(ty, l.hive_base(Hive::GzSemver2), comment);
    }
    add("PackageBaseAddress/3.0.0", l.flat_base(), package_base_comment(l));
    add(
        "PackagePublish/2.0.0",
        l.publish_url(),
        "The gallery publish endpoint.".into(),
    );
    let comment = "The gallery symbol publish endpoint.".into();
    add(
        "SymbolPackagePublish/4.9.0",
        format!("{api}/api/v2/symbolpackage"),
        comment,
    );
    for ty in ["LegacyGallery", "LegacyGallery/2.0.0"] {
        add(
            ty,
            format!("{www}/api/v2"),
            "Legacy gallery using the V2 protocol.".into(),
        );
    }
    let template = "URI template used by NuGet Client to construct";
    for (ty, who) in [("3.0.0-beta", " used by Beta clients"), ("3.0.0-rc", "")] {
        let comment = format!("{template} Report Abuse URL for packages{who}");
        let id = format!("{www}/packages/{{id}}/{{version}}/ReportAbuse");
        add(&format!("ReportAbuseUriTemplate/{ty}"), id, comment);
    }
    let id = format!("{www}/packages/{{id}}/{{version}}?_src=template");
    add(
        "PackageDetailsUriTemplate/5.1.0",
        id,
        format!("{template} details URL for packages"),
    );
    let id = format!("{www}/profiles/{{owner}}?_src=template");
    add(
        "OwnerDetailsUriTemplate/6.11.0",
        id,
        format!("{template} owner URL for packages"),
    );
    let id = format!("{}{{lower_id}}/{{lower_version}}/readme", l.flat_base());
    let comment = format!("{template} a URL for downloading a package's README.");
    add("ReadmeUriTemplate/6.13.0", id, comment);
    let id = format!("{semver1}{{id-lower}}/index.json");
    let comment = format!("{template} display metadata for Packages using ID");
    add("PackageDisplayMetadataUriTemplate/3.0.0-rc", id, comment);
    let id = format!("{semver1}{{id-lower}}/{{version-lower}}.json");
    let comment = format!("{template} display metadata for Packages using ID, Version");
    add("PackageVersionDisplayMetadataUriTemplate/3.0.0-rc", id, comment);
    for v in ["4.7.0", "5.0.0"] {
        let id = format!("{api}/v3-index/repository-signatures/{v}/index.json");
        let comment = "The endpoint for discovering information about this package source's repository signatures.";
        add(&format!("RepositorySignatures/{v}"), id, comment.into());
    }
    let comment = "Index of the NuGet package catalog.".into();
    add("Catalog/3.0.0", format!("{api}/v3/catalog0/index.json"), comment);
    let comment = "The endpoint for discovering information about vulnerabilities of packages in this package source.";
    add(
        "VulnerabilityInfo/6.7.0",
        format!("{api}/v3/vulnerabilities/index.json"),
        comment.into(),
    );
    t
}

/// An Azure Artifacts-like feed: everything on the api host under the
/// prefix; no catalog, repository signatures, vulnerability info or
/// human pages.
fn private_feed_resources(l: &Layout) -> Vec<Resource> {
    let mut t = search_resources(l, "the feed's search service");
    let mut add = |ty: &str, id: String, comment: String| t.push((ty.to_string(), id, comment));
    let reg = "Base URL of the feed's package registration info";
    for suffix in ["", "/3.0.0-beta", "/3.0.0-rc"] {
        let comment = format!("{reg}. It does not include SemVer 2.0.0 packages.");
        add(
            &format!("RegistrationsBaseUrl{suffix}"),
            l.hive_base(Hive::Private),
            comment,
        );
    }
    for ty in ["RegistrationsBaseUrl/3.6.0", "RegistrationsBaseUrl/Versioned"] {
        let comment = format!("{reg}. It includes SemVer 2.0.0 packages.");
        add(ty, l.hive_base(Hive::PrivateSemver2), comment);
    }
    add("PackageBaseAddress/3.0.0", l.flat_base(), package_base_comment(l));
    add(
        "PackagePublish/2.0.0",
        l.publish_url(),
        "The feed's publish endpoint.".into(),
    );
    t
}

// ---------------------------------------------------------------------------
// URLs

impl Docs<'_> {
    fn reg_index_url(&self, hive: Hive, lower_id: &str) -> String {
        format!("{}{lower_id}/index.json", self.layout.hive_base(hive))
    }

    fn reg_leaf_url(&self, hive: Hive, pkg: &Package) -> String {
        format!(
            "{}{}/{}.json",
            self.layout.hive_base(hive),
            pkg.lower_id(),
            pkg.lower_ver()
        )
    }

    fn flat_url(&self, pkg: &Package, file: &str) -> String {
        format!(
            "{}{}/{}/{file}",
            self.layout.flat_base(),
            pkg.lower_id(),
            pkg.lower_ver()
        )
    }

    fn content_url(&self, pkg: &Package) -> String {
        self.flat_url(pkg, &format!("{}.{}.nupkg", pkg.lower_id(), pkg.lower_ver()))
    }

    /// The catalog leaf; a private feed has no catalog, so its catalog
    /// entries are the registration leaves (as BaGet does).
    fn catalog_leaf_url(&self, hive: Hive, pkg: &Package) -> String {
        if self.layout.private() {
            return self.reg_leaf_url(hive, pkg);
        }
        format!(
            "{}/v3/catalog0/data/{CATALOG_STAMP}/{}.{}.json",
            self.layout.feed(),
            pkg.lower_id(),
            pkg.lower_ver()
        )
    }

    fn license_url(&self, pkg: &Package) -> String {
        format!(
            "{}/packages/{}/{}/license",
            self.layout.www,
            pkg.id,
            pkg.version.normalized()
        )
    }

    fn published(pkg: &Package) -> String {
        match pkg.listed {
            true => iso(pkg.published),
            false => UNLISTED_PUBLISHED.to_string(),
        }
    }
}

// ---------------------------------------------------------------------------
// flat container

impl Docs<'_> {
    pub(crate) fn flat_versions(&self, lower_id: &str) -> Option<Value> {
        let versions: Vec<String> = self
            .store
            .versions(lower_id, true)
            .iter()
            .map(|p| p.lower_ver())
            .collect();
        (!versions.is_empty()).then(|| json!({ "versions": versions }))
    }
}

// ---------------------------------------------------------------------------
// registration

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
    fn catalog_entry(&self, hive: Hive, pkg: &Package) -> Value {
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

// ---------------------------------------------------------------------------
// catalog, signatures, vulnerabilities

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

pub(crate) fn repository_signatures() -> Value {
    json!({"allRepositorySigned": false, "signingCertificates": []})
}

pub(crate) fn vulnerability_index(l: &Layout) -> Value {
    let updated = iso(BASE_TIME);
    let api = l.feed();
    json!([
        {"@name": "base", "@id": format!("{api}/v3/vulnerabilities/base.json"),
         "@updated": updated, "comment": "The base data for vulnerability update periodically"},
        {"@name": "update", "@id": format!("{api}/v3/vulnerabilities/update.json"),
         "@updated": updated,
         "comment": "The patch data for the vulnerability. Contains all the vulnerabilities since base was updated."}
    ])
}

// ---------------------------------------------------------------------------
// search

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

/// The package's SHA-512, base64, as catalog entries state it.
fn package_hash(pkg: &Package) -> String {
    base64::engine::general_purpose::STANDARD.encode(Sha512::digest(&pkg.nupkg))
}
