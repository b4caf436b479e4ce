//! The service index: nuget.org's resources in its order, or a private
//! feed's.

use serde_json::{json, Value};

use super::super::layout::{Hive, Layout};

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
/// human pages; its V2 endpoint is both where packages are pushed and the
/// legacy gallery.
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
    add("LegacyGallery/2.0.0", l.publish_url(), "The feed's V2 endpoint.".into());
    t
}
