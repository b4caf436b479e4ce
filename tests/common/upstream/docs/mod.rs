//! JSON documents, shaped like nuget.org's or a private feed's (see the
//! protocol notes, sections 2-5, 7-9 and 10.6): the URLs they share here,
//! each kind of document in its own module.

mod catalog;
mod registration;
mod search;
mod service_index;

use base64::Engine as _;
use serde_json::{json, Value};
use sha2::{Digest, Sha512};

use super::layout::{Hive, Layout};
use super::model::{iso, Package, Store, BASE_TIME, UNLISTED_PUBLISHED};

pub(crate) use search::Query;
pub(crate) use service_index::service_index;

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

/// The package's SHA-512, base64, as catalog entries state it.
fn package_hash(pkg: &Package) -> String {
    base64::engine::general_purpose::STANDARD.encode(Sha512::digest(&pkg.nupkg))
}
