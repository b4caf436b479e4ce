//! The service index rewrite (protocol doc §2 and §11): the upstream's
//! resources become mounts, every resource nucache serves is pointed at it,
//! human web-page templates keep pointing upstream, and everything else is
//! dropped so that no client is sent to the upstream.

use bytes::Bytes;
use serde_json::Value;
use sha2::{Digest, Sha512};

use super::json::{parse_json, rewrite_value, to_template};
use super::{MountKind, Mounts, RewriteError, Template, PLACEHOLDER};

/// Templates opened by a user's browser, never fetched by the client.
/// (`ReadmeUriTemplate` is not one: it points into the flat container.)
const HUMAN_PAGES: [&str; 4] = [
    "PackageDetailsUriTemplate",
    "ReportAbuseUriTemplate",
    "OwnerDetailsUriTemplate",
    "LicenseUriTemplate",
];

/// Resources nucache does not implement, dropped even when their URL falls
/// under a mount: Azure Artifacts and Artifactory list their V2 gallery at
/// the URL of `PackagePublish`, and kept it would send V2 clients to
/// nucache's push endpoint (protocol doc §11.18).
const NOT_SERVED: [&str; 2] = ["LegacyGallery", "SearchGalleryQueryService"];

/// The upstream service index as nucache serves it.
#[derive(Debug)]
pub struct ServiceMap {
    pub mounts: Mounts,
    plain_http: Template,
    https: Template,
}

impl ServiceMap {
    /// The rewritten index for clients on `https` or plain http. Over http the
    /// RepositorySignatures resource is left out: the client rejects a whole
    /// source whose signatures resource is not https (§8).
    /// Another upstream's map under the primary's local names (see
    /// `Mounts::aligned_to`); its own rendered index is then not served.
    pub fn align(&mut self, primary: &Mounts) {
        self.mounts = self.mounts.aligned_to(primary);
    }

    pub fn template(&self, https: bool) -> &Template {
        if https {
            &self.https
        } else {
            &self.plain_http
        }
    }
}

/// What a resource entry is to nucache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Serve(MountKind),
    HumanPage,
    NotServed,
    /// Kept (rewritten) only when its URL falls under a mount, e.g. the
    /// README and display-metadata templates; dropped otherwise.
    Other,
}

/// Builds the mounts and the rewritten index from the upstream's bytes.
/// `publish` lists the publish resources (nucache forwards them) or drops them.
pub fn build(upstream: &[u8], publish: bool) -> Result<ServiceMap, RewriteError> {
    let index = parse_json(upstream)?;
    check_shape(&index)?;
    let resources = index
        .get("resources")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let roles: Vec<Role> = resources.iter().map(|r| role_of(r, publish)).collect();
    let mounts = mount_all(&resources, &roles);
    let content_id = hex::encode(&Sha512::digest(upstream)[..12]);
    let render = |https: bool| -> Result<Template, RewriteError> {
        let kept = rewrite_resources(&resources, &roles, &mounts, https);
        let mut doc = index.clone();
        if let Some(map) = doc.as_object_mut() {
            for (key, value) in map.iter_mut() {
                if key != "resources" {
                    rewrite_value(value, &mounts);
                }
            }
            map.insert("resources".into(), Value::Array(kept));
        }
        let variant = if https { "s" } else { "p" };
        Ok(Template::new(to_template(&doc)?, &format!("{content_id}{variant}")))
    };
    Ok(ServiceMap {
        plain_http: render(false)?,
        https: render(true)?,
        mounts,
    })
}

fn check_shape(index: &Value) -> Result<(), RewriteError> {
    let version = index.get("version").and_then(Value::as_str).unwrap_or("");
    if !version.starts_with("3.") {
        return Err(RewriteError::NotAServiceIndex(format!(
            "version {version:?} is not 3.x"
        )));
    }
    if !index.get("resources").is_some_and(Value::is_array) {
        return Err(RewriteError::NotAServiceIndex("no resources array".into()));
    }
    Ok(())
}

/// `@type` may be a string or an array of strings.
fn types_of(resource: &Value) -> Vec<&str> {
    match resource.get("@type") {
        Some(Value::String(t)) => vec![t.as_str()],
        Some(Value::Array(ts)) => ts.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    }
}

fn role_of(resource: &Value, publish: bool) -> Role {
    for full in types_of(resource) {
        let name = full.split('/').next().unwrap_or(full);
        let kind = match name {
            "PackageBaseAddress" => MountKind::PackageBase,
            "RegistrationsBaseUrl" => MountKind::Registrations,
            "SearchQueryService" => MountKind::Search,
            "SearchAutocompleteService" => MountKind::Autocomplete,
            "Catalog" => MountKind::Catalog,
            "VulnerabilityInfo" => MountKind::Vulnerabilities,
            "RepositorySignatures" => MountKind::RepositorySignatures,
            "PackagePublish" if publish => MountKind::Publish,
            "SymbolPackagePublish" if publish => MountKind::SymbolPublish,
            _ if HUMAN_PAGES.contains(&name) => return Role::HumanPage,
            _ if NOT_SERVED.contains(&name) => return Role::NotServed,
            _ => continue,
        };
        return Role::Serve(kind);
    }
    Role::Other
}

fn mount_all(resources: &[Value], roles: &[Role]) -> Mounts {
    let mut mounts = Mounts::default();
    for (resource, role) in resources.iter().zip(roles) {
        let (Role::Serve(kind), Some(id)) = (role, resource.get("@id").and_then(Value::as_str)) else {
            continue;
        };
        if !(id.starts_with("http://") || id.starts_with("https://")) {
            continue;
        }
        let prefix = mount_prefix(*kind, id);
        mounts.add(*kind, &prefix, last_segment(&prefix));
    }
    mounts
}

/// The upstream prefix a resource's `@id` stands for.
fn mount_prefix(kind: MountKind, id: &str) -> String {
    match kind {
        MountKind::PackageBase | MountKind::Registrations => with_slash(id),
        MountKind::Search | MountKind::Autocomplete => id.to_string(),
        // The client appends "/" and "/{id}/{version}" itself.
        MountKind::Publish | MountKind::SymbolPublish => id.trim_end_matches('/').to_string(),
        MountKind::Catalog | MountKind::Vulnerabilities => directory(id).to_string(),
        // One mount for all versions of the document and its certificates:
        // `.../repository-signatures/5.0.0/index.json` -> `.../repository-signatures/`.
        MountKind::RepositorySignatures => {
            let dir = directory(id);
            let version_dir = last_segment(dir);
            if !version_dir.is_empty() && version_dir.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
                directory(dir.trim_end_matches('/')).to_string()
            } else {
                dir.to_string()
            }
        }
    }
}

fn with_slash(url: &str) -> String {
    if url.ends_with('/') {
        url.to_string()
    } else {
        format!("{url}/")
    }
}

/// `https://h/a/b/index.json` -> `https://h/a/b/`.
fn directory(url: &str) -> &str {
    match url.rfind('/') {
        Some(i) if i > url.find("://").map_or(0, |s| s + 2) => &url[..=i],
        _ => url,
    }
}

/// The last non-empty path segment: names registration hives.
fn last_segment(url: &str) -> &str {
    url.trim_end_matches('/').rsplit('/').next().unwrap_or("")
}

fn rewrite_resources(resources: &[Value], roles: &[Role], mounts: &Mounts, https: bool) -> Vec<Value> {
    let mut kept = Vec::with_capacity(resources.len());
    for (resource, role) in resources.iter().zip(roles) {
        if *role == Role::HumanPage {
            kept.push(resource.clone());
            continue;
        }
        if *role == Role::NotServed {
            tracing::debug!(types = ?types_of(resource), "service index: dropping a resource nucache does not implement");
            continue;
        }
        if *role == Role::Serve(MountKind::RepositorySignatures) && !https {
            continue;
        }
        let mut copy = resource.clone();
        if let (Some(id), Role::Serve(MountKind::PackageBase | MountKind::Registrations)) = (copy.get_mut("@id"), role)
        {
            // Directory resources without the trailing slash still map onto their mount.
            if let Some(text) = id.as_str().filter(|t| !t.ends_with('/')) {
                *id = Value::String(format!("{text}/"));
            }
        }
        rewrite_value(&mut copy, mounts);
        let points_here = copy
            .get("@id")
            .and_then(Value::as_str)
            .is_some_and(|id| id.starts_with(PLACEHOLDER));
        if points_here {
            kept.push(copy);
        } else {
            tracing::debug!(types = ?types_of(resource), "service index: dropping a resource nucache does not serve");
        }
    }
    kept
}

/// Renders `map`'s index for a base URL (convenience for tests and tools).
pub fn render_for(map: &ServiceMap, base: &str) -> Bytes {
    map.template(base.starts_with("https://"))
        .render(base)
        .identity()
        .clone()
}

#[cfg(test)]
mod tests {
    use super::*;

    const UPSTREAM: &str = r#"{
      "version": "3.0.0",
      "resources": [
        {"@id": "https://search.up/query", "@type": "SearchQueryService", "comment": "q"},
        {"@id": "https://search.up/query", "@type": "SearchQueryService/3.0.0-beta"},
        {"@id": "https://search.up/", "@type": "SearchGalleryQueryService/3.0.0-rc"},
        {"@id": "https://api.up/v3/registration5-semver1/", "@type": "RegistrationsBaseUrl"},
        {"@id": "https://api.up/v3/registration5-gz-semver2/", "@type": "RegistrationsBaseUrl/Versioned", "clientVersion": "4.3.0-alpha"},
        {"@id": "https://api.up/v3-flatcontainer/", "@type": "PackageBaseAddress/3.0.0",
         "comment": "format https://api.up/v3-flatcontainer/{id-lower}/{version-lower}/{id-lower}.{version-lower}.nupkg"},
        {"@id": "https://www.up/api/v2/package", "@type": "PackagePublish/2.0.0"},
        {"@id": "https://www.up/api/v2", "@type": ["LegacyGallery", "LegacyGallery/2.0.0"]},
        {"@id": "https://www.up/packages/{id}/{version}?_src=template", "@type": "PackageDetailsUriTemplate/5.1.0"},
        {"@id": "https://api.up/v3-flatcontainer/{lower_id}/{lower_version}/readme", "@type": "ReadmeUriTemplate/6.13.0"},
        {"@id": "https://api.up/v3-index/repository-signatures/5.0.0/index.json", "@type": "RepositorySignatures/5.0.0"},
        {"@id": "https://api.up/v3/catalog0/index.json", "@type": "Catalog/3.0.0"}
      ],
      "@context": {"@vocab": "http://schema.nuget.org/services#"}
    }"#;

    fn rendered(publish: bool, base: &str) -> Value {
        let map = build(UPSTREAM.as_bytes(), publish).map_err(|e| e.to_string());
        let body = map.map(|m| render_for(&m, base)).unwrap_or_default();
        serde_json::from_slice(&body).unwrap_or(Value::Null)
    }

    fn ids_and_types(doc: &Value) -> Vec<(String, String)> {
        let resources = doc["resources"].as_array().cloned().unwrap_or_default();
        resources
            .iter()
            .map(|r| (r["@id"].as_str().unwrap_or("").to_string(), r["@type"].to_string()))
            .collect()
    }

    #[test]
    fn rewrites_served_resources_in_order_and_drops_the_rest() {
        let doc = rendered(false, "http://proxy:5000");
        let expected = [
            ("http://proxy:5000/v3/query", "\"SearchQueryService\""),
            ("http://proxy:5000/v3/query", "\"SearchQueryService/3.0.0-beta\""),
            (
                "http://proxy:5000/v3/registration/registration5-semver1/",
                "\"RegistrationsBaseUrl\"",
            ),
            (
                "http://proxy:5000/v3/registration/registration5-gz-semver2/",
                "\"RegistrationsBaseUrl/Versioned\"",
            ),
            ("http://proxy:5000/v3/flatcontainer/", "\"PackageBaseAddress/3.0.0\""),
            (
                "https://www.up/packages/{id}/{version}?_src=template",
                "\"PackageDetailsUriTemplate/5.1.0\"",
            ),
            (
                "http://proxy:5000/v3/flatcontainer/{lower_id}/{lower_version}/readme",
                "\"ReadmeUriTemplate/6.13.0\"",
            ),
            ("http://proxy:5000/v3/catalog/index.json", "\"Catalog/3.0.0\""),
        ];
        let got = ids_and_types(&doc);
        let want: Vec<(String, String)> = expected.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect();
        assert_eq!(got, want);
        assert_eq!(doc["resources"][3]["clientVersion"], "4.3.0-alpha");
        assert_eq!(
            doc["resources"][4]["comment"],
            "format http://proxy:5000/v3/flatcontainer/{id-lower}/{version-lower}/{id-lower}.{version-lower}.nupkg"
        );
    }

    #[test]
    fn https_keeps_repository_signatures_and_publish_when_enabled() {
        let doc = rendered(true, "https://proxy");
        let ids: Vec<String> = ids_and_types(&doc).into_iter().map(|(id, _)| id).collect();
        assert!(ids.contains(&"https://proxy/v3/repository-signatures/5.0.0/index.json".to_string()));
        assert!(ids.contains(&"https://proxy/v3/package".to_string()));
        let plain = rendered(true, "http://proxy");
        let plain_ids: Vec<String> = ids_and_types(&plain).into_iter().map(|(id, _)| id).collect();
        assert!(!plain_ids.iter().any(|id| id.contains("repository-signatures")));
    }

    /// The shape of an Azure Artifacts feed's index: its V2 endpoint is
    /// both where packages are pushed and the legacy gallery.
    const AZURE_ARTIFACTS: &str = r#"{
      "version": "3.0.0",
      "resources": [
        {"@id": "https://pkgs.up/org/_packaging/feed/nuget/v3/query2/", "@type": "SearchQueryService/3.0.0-beta"},
        {"@id": "https://pkgs.up/org/_packaging/feed/nuget/v3/registrations2/", "@type": "RegistrationsBaseUrl/3.0.0-beta"},
        {"@id": "https://pkgs.up/org/_packaging/feed/nuget/v3/flat2/", "@type": "PackageBaseAddress/3.0.0"},
        {"@id": "https://pkgs.up/org/_packaging/feed/nuget/v2/", "@type": "PackagePublish/2.0.0"},
        {"@id": "https://pkgs.up/org/_packaging/feed/nuget/v2/", "@type": "LegacyGallery/2.0.0"}
      ]
    }"#;

    /// The shape of an Artifactory feed's index: the same, without the
    /// trailing slash and with the bare `LegacyGallery` type too.
    const ARTIFACTORY: &str = r#"{
      "version": "3.0.0",
      "resources": [
        {"@id": "https://art.up/artifactory/api/nuget/v3/feed/query", "@type": "SearchQueryService/3.0.0-beta"},
        {"@id": "https://art.up/artifactory/api/nuget/v3/feed/registration-semver2/", "@type": "RegistrationsBaseUrl/Versioned"},
        {"@id": "https://art.up/artifactory/api/nuget/feed", "@type": "LegacyGallery"},
        {"@id": "https://art.up/artifactory/api/nuget/feed", "@type": "LegacyGallery/2.0.0"},
        {"@id": "https://art.up/artifactory/api/nuget/feed", "@type": "PackagePublish/2.0.0"}
      ]
    }"#;

    fn types_served(index: &[u8], base: &str) -> Vec<(String, String)> {
        let map = build(index, true).map_err(|e| e.to_string());
        let body = map.map(|m| render_for(&m, base)).unwrap_or_default();
        ids_and_types(&serde_json::from_slice(&body).unwrap_or(Value::Null))
    }

    #[test]
    fn legacy_gallery_is_dropped_even_at_the_publish_url() {
        for (feed, index) in [("Azure Artifacts", AZURE_ARTIFACTS), ("Artifactory", ARTIFACTORY)] {
            let served = types_served(index.as_bytes(), "https://proxy");
            assert!(
                !served.iter().any(|(_, ty)| ty.contains("LegacyGallery")),
                "{feed}: {served:?}"
            );
            let publish = served.iter().find(|(_, ty)| ty.contains("PackagePublish"));
            let at_nucache = publish.is_some_and(|(id, _)| id.trim_end_matches('/') == "https://proxy/v3/package");
            assert!(at_nucache, "{feed}: {served:?}");
        }
    }

    #[test]
    fn nuget_org_index_serves_no_v2_gallery_and_no_gallery_search() {
        let Some(index) = super::super::realdocs::read("nuget.index.json") else {
            return;
        };
        let served = types_served(&index, "https://proxy");
        assert!(served.len() > 20, "{served:?}");
        for dropped in ["LegacyGallery", "SearchGalleryQueryService"] {
            assert!(!served.iter().any(|(_, ty)| ty.contains(dropped)), "{served:?}");
        }
        assert!(
            served.iter().all(|(id, _)| id.starts_with("https://proxy/v3/")
                || id.starts_with("https://www.nuget.org/packages/")
                || id.starts_with("https://www.nuget.org/profiles/")),
            "{served:?}"
        );
    }

    #[test]
    fn a_service_index_that_starts_with_a_byte_order_mark_is_read() {
        let Some(index) = super::super::realdocs::read("nuget.index.json") else {
            return;
        };
        let with_bom = [&b"\xef\xbb\xbf"[..], &index].concat();
        let map = build(&with_bom, true).map_err(|e| e.to_string());
        let plain = build(&index, true).map_err(|e| e.to_string());
        let rendered = map.map(|m| render_for(&m, "https://proxy"));
        assert_eq!(rendered, plain.map(|m| render_for(&m, "https://proxy")));
        assert!(
            rendered.is_ok_and(|body| body.starts_with(b"{")),
            "served without the mark"
        );
    }

    #[test]
    fn refuses_what_is_not_a_v3_index() {
        assert!(build(br#"{"version":"2.0.0","resources":[]}"#, false).is_err());
        assert!(build(br#"{"version":"3.0.0"}"#, false).is_err());
        assert!(build(b"<html>", false).is_err());
    }
}
