//! The fake's documents have nuget.org's shapes: the service index, the
//! flat container, the registration hives and their pages, search.

use http::StatusCode;
use serde_json::Value;

use crate::client::{get, gunzip, leaf_versions, nupkg_path};
use crate::common::upstream::{fake_nupkg, Corpus, FakeOptions, FakeUpstream};

#[tokio::test]
async fn service_index_has_nuget_org_shape() {
    let up = FakeUpstream::start().await;
    let resp = get(&up.index_url()).await;
    assert_eq!(resp.status, StatusCode::OK);
    let doc = resp.json();
    assert_eq!(doc["version"], "3.0.0");
    assert_eq!(doc["@context"]["@vocab"], "http://schema.nuget.org/services#");
    let (api, search, www) = (up.api(), up.search(), up.www());
    let expected: Vec<(String, String)> = [
        ("SearchQueryService", format!("{search}/query")),
        ("SearchQueryService/3.0.0-rc", format!("{search}/query")),
        ("SearchQueryService/3.0.0-beta", format!("{search}/query")),
        ("SearchQueryService/3.5.0", format!("{search}/query")),
        ("SearchAutocompleteService", format!("{search}/autocomplete")),
        ("SearchAutocompleteService/3.0.0-rc", format!("{search}/autocomplete")),
        ("SearchAutocompleteService/3.0.0-beta", format!("{search}/autocomplete")),
        ("SearchAutocompleteService/3.5.0", format!("{search}/autocomplete")),
        ("SearchGalleryQueryService/3.0.0-rc", format!("{search}/")),
        ("RegistrationsBaseUrl", format!("{api}/v3/registration5-semver1/")),
        (
            "RegistrationsBaseUrl/3.0.0-beta",
            format!("{api}/v3/registration5-semver1/"),
        ),
        (
            "RegistrationsBaseUrl/3.0.0-rc",
            format!("{api}/v3/registration5-semver1/"),
        ),
        (
            "RegistrationsBaseUrl/3.4.0",
            format!("{api}/v3/registration5-gz-semver1/"),
        ),
        (
            "RegistrationsBaseUrl/3.6.0",
            format!("{api}/v3/registration5-gz-semver2/"),
        ),
        (
            "RegistrationsBaseUrl/Versioned",
            format!("{api}/v3/registration5-gz-semver2/"),
        ),
        ("PackageBaseAddress/3.0.0", format!("{api}/v3-flatcontainer/")),
        ("PackagePublish/2.0.0", format!("{api}/api/v2/package")),
        ("SymbolPackagePublish/4.9.0", format!("{api}/api/v2/symbolpackage")),
        ("LegacyGallery", format!("{www}/api/v2")),
        ("LegacyGallery/2.0.0", format!("{www}/api/v2")),
        (
            "ReportAbuseUriTemplate/3.0.0-beta",
            format!("{www}/packages/{{id}}/{{version}}/ReportAbuse"),
        ),
        (
            "ReportAbuseUriTemplate/3.0.0-rc",
            format!("{www}/packages/{{id}}/{{version}}/ReportAbuse"),
        ),
        (
            "PackageDetailsUriTemplate/5.1.0",
            format!("{www}/packages/{{id}}/{{version}}?_src=template"),
        ),
        (
            "OwnerDetailsUriTemplate/6.11.0",
            format!("{www}/profiles/{{owner}}?_src=template"),
        ),
        (
            "ReadmeUriTemplate/6.13.0",
            format!("{api}/v3-flatcontainer/{{lower_id}}/{{lower_version}}/readme"),
        ),
        (
            "PackageDisplayMetadataUriTemplate/3.0.0-rc",
            format!("{api}/v3/registration5-semver1/{{id-lower}}/index.json"),
        ),
        (
            "PackageVersionDisplayMetadataUriTemplate/3.0.0-rc",
            format!("{api}/v3/registration5-semver1/{{id-lower}}/{{version-lower}}.json"),
        ),
        (
            "RepositorySignatures/4.7.0",
            format!("{api}/v3-index/repository-signatures/4.7.0/index.json"),
        ),
        (
            "RepositorySignatures/5.0.0",
            format!("{api}/v3-index/repository-signatures/5.0.0/index.json"),
        ),
        ("Catalog/3.0.0", format!("{api}/v3/catalog0/index.json")),
        (
            "VulnerabilityInfo/6.7.0",
            format!("{api}/v3/vulnerabilities/index.json"),
        ),
    ]
    .into_iter()
    .map(|(t, id)| (t.to_string(), id))
    .collect();
    let resources = doc["resources"].as_array().expect("resources array");
    let actual: Vec<(String, String)> = resources
        .iter()
        .map(|r| {
            (
                r["@type"].as_str().unwrap().to_string(),
                r["@id"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(actual, expected);
    for r in resources {
        assert!(r["comment"].as_str().is_some_and(|c| !c.is_empty()), "no comment: {r}");
        let versioned = r["@type"] == "RegistrationsBaseUrl/Versioned";
        assert_eq!(r.get("clientVersion").is_some(), versioned, "{r}");
    }
    let versioned = resources
        .iter()
        .find(|r| r["@type"] == "RegistrationsBaseUrl/Versioned")
        .unwrap();
    assert_eq!(versioned["clientVersion"], "4.3.0-alpha");
    let flat = resources
        .iter()
        .find(|r| r["@type"] == "PackageBaseAddress/3.0.0")
        .unwrap();
    let example = format!("{api}/v3-flatcontainer/{{id-lower}}/{{version-lower}}/{{id-lower}}.{{version-lower}}.nupkg");
    assert!(flat["comment"].as_str().unwrap().contains(&example));
}

#[tokio::test]
async fn byte_order_mark_starts_every_json_document_and_only_those() {
    let options = FakeOptions {
        byte_order_mark: true,
        ..FakeOptions::default()
    };
    let up = FakeUpstream::start_with_options(Corpus::default_corpus(), options).await;
    const BOM: &[u8] = b"\xef\xbb\xbf";
    let index = get(&up.index_url()).await;
    assert!(index.body.starts_with(BOM), "the service index");
    let doc: Value = serde_json::from_slice(&index.body[BOM.len()..]).expect("JSON after the mark");
    assert!(doc["resources"].is_array());
    let gz = get(&format!(
        "{}/v3/registration5-gz-semver2/fake.core/index.json",
        up.api()
    ))
    .await;
    assert_eq!(gz.header("content-encoding"), Some("gzip"));
    let plain = gunzip(&gz.body);
    assert!(plain.starts_with(BOM), "inside the gzip stream");
    serde_json::from_slice::<Value>(&plain[BOM.len()..]).expect("JSON after the mark");
    let nupkg = get(&format!("{}{}", up.api(), nupkg_path("fake.core", "1.0.0"))).await;
    assert_eq!(Some(nupkg.body.to_vec()), up.nupkg_bytes("fake.core", "1.0.0"));
}

#[tokio::test]
async fn flat_container_serves_versions_packages_and_nuspecs() {
    let up = FakeUpstream::start().await;
    let api = up.api();
    let core = get(&format!("{api}/v3-flatcontainer/fake.core/index.json"))
        .await
        .json();
    assert_eq!(
        core["versions"],
        serde_json::json!(["1.0.0", "1.1.0", "1.2.0-beta", "1.3.0", "2.0.0-rc.1", "3.0.0"])
    );
    let dep = get(&format!("{api}/v3-flatcontainer/fake.dep/index.json")).await.json();
    assert_eq!(dep["versions"], serde_json::json!(["1.0.0", "1.0.0.5", "1.0.1"]));

    let resp = get(&format!("{api}{}", nupkg_path("fake.core", "3.0.0"))).await;
    assert_eq!(resp.status, StatusCode::OK);
    assert_eq!(resp.header("content-type"), Some("application/octet-stream"));
    let served = up.nupkg_bytes("Fake.Core", "3.0.0+build.7").expect("known package");
    assert_eq!(resp.body, served);
    assert_eq!(resp.header("content-length"), Some(served.len().to_string().as_str()));
    assert!(served.len() >= 20 * 1024 && served.len() < 25 * 1024);
    assert_eq!(served, fake_nupkg("Fake.Core", "3.0.0+build.7"), "deterministic bytes");

    let nuspec = get(&format!("{api}/v3-flatcontainer/fake.core/1.1.0/fake.core.nuspec")).await;
    let xml = String::from_utf8(nuspec.body.to_vec()).unwrap();
    assert!(
        xml.contains("<id>Fake.Core</id>") && xml.contains("<version>1.1.0</version>"),
        "{xml}"
    );
    assert!(xml.contains("<dependency id=\"Fake.Dep\""), "{xml}");

    let mixed = get(&format!("{api}/v3-flatcontainer/fake.mixedcase/index.json")).await;
    assert_eq!(mixed.status, StatusCode::OK);
    for path in [
        "/v3-flatcontainer/Fake.MixedCASE/index.json",
        "/v3-flatcontainer/Fake.Core/1.0.0/Fake.Core.1.0.0.nupkg",
        "/v3-flatcontainer/fake.core/9.9.9/fake.core.9.9.9.nupkg",
        "/v3-flatcontainer/no.such.package/index.json",
        "/v3/no-such-document.json",
    ] {
        assert_eq!(
            get(&format!("{api}{path}")).await.status,
            StatusCode::NOT_FOUND,
            "{path}"
        );
    }
}

#[tokio::test]
async fn gz_hives_are_gzip_and_semver1_hives_hide_semver2() {
    let up = FakeUpstream::start().await;
    let api = up.api();

    let gz2 = get(&format!("{api}/v3/registration5-gz-semver2/fake.core/index.json")).await;
    assert_eq!(gz2.status, StatusCode::OK);
    assert_eq!(gz2.header("content-encoding"), Some("gzip"));
    assert_eq!(&gz2.body[..2], &[0x1f, 0x8b], "gzip magic");
    let doc: Value = serde_json::from_slice(&gunzip(&gz2.body)).unwrap();
    let all = ["1.0.0", "1.1.0", "1.2.0-beta", "1.3.0", "2.0.0-rc.1", "3.0.0+build.7"];
    assert_eq!(leaf_versions(&doc), all);

    let gz1 = get(&format!("{api}/v3/registration5-gz-semver1/fake.core/index.json")).await;
    assert_eq!(gz1.header("content-encoding"), Some("gzip"));
    let doc: Value = serde_json::from_slice(&gunzip(&gz1.body)).unwrap();
    assert_eq!(leaf_versions(&doc), all[..4]);

    let plain = get(&format!("{api}/v3/registration5-semver1/fake.core/index.json")).await;
    assert_eq!(plain.header("content-encoding"), None);
    let doc = plain.json();
    assert_eq!(leaf_versions(&doc), all[..4]);
    let leaves = doc["items"][0]["items"].as_array().unwrap();
    let entry = |v: &str| &leaves.iter().find(|l| l["catalogEntry"]["version"] == v).unwrap()["catalogEntry"];
    let dep = &entry("1.1.0")["dependencyGroups"][0];
    assert_eq!(dep["targetFramework"], "netstandard2.0");
    assert_eq!(dep["dependencies"][0]["range"], "[1.0.0, )");
    let hive = format!("{api}/v3/registration5-semver1/");
    assert_eq!(
        dep["dependencies"][0]["registration"],
        format!("{hive}fake.dep/index.json")
    );
    assert_eq!(entry("1.0.0")["vulnerabilities"][0]["severity"], "2");
    assert_eq!(entry("1.3.0")["listed"], false);
    assert_eq!(entry("1.3.0")["published"], "1900-01-01T00:00:00+00:00");
    assert_eq!(entry("1.0.0")["projectUrl"], "https://github.com/example/fake.core");
    let leaf = get(&format!("{hive}fake.core/1.0.0.json")).await.json();
    assert!(leaf["catalogEntry"].is_string());
    assert_eq!(leaf["registration"], format!("{hive}fake.core/index.json"));

    let missing = get(&format!("{hive}fake.core/3.0.0.json")).await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND, "semver2 leaf in a semver1 hive");
    up.add_package("Fake.OnlyNew", "1.0.0-alpha.1", vec![1, 2, 3]);
    let only_new = get(&format!("{hive}fake.onlynew/index.json")).await;
    assert_eq!(only_new.status, StatusCode::NOT_FOUND);
    let gz = get(&format!("{api}/v3/registration5-gz-semver2/fake.onlynew/index.json")).await;
    assert_eq!(gz.status, StatusCode::OK);
}

#[tokio::test]
async fn registration_pages_at_128_versions() {
    let up = FakeUpstream::start().await;
    let url = format!("{}/v3/registration5-semver1/fake.many/index.json", up.api());
    let index = get(&url).await.json();
    assert_eq!(index["count"], 4);
    let pages = index["items"].as_array().unwrap();
    let counts: Vec<u64> = pages.iter().map(|p| p["count"].as_u64().unwrap()).collect();
    assert_eq!(counts, [64, 64, 64, 8]);
    assert_eq!(pages[0]["lower"], "1.0.0");
    assert_eq!(pages[3]["upper"], "1.199.0");
    for page in pages {
        assert!(page.get("items").is_none() && page.get("parent").is_none(), "{page}");
        let page_url = page["@id"].as_str().unwrap();
        let doc = get(page_url).await.json();
        assert_eq!(doc["@id"], page_url);
        assert_eq!(doc["parent"], url);
        assert_eq!(
            doc["items"].as_array().unwrap().len() as u64,
            page["count"].as_u64().unwrap()
        );
    }

    let mut corpus = Corpus::empty();
    for minor in 0..127 {
        corpus.add("Edge.127", &format!("1.{minor}.0"), vec![0], true);
        corpus.add("Edge.128", &format!("1.{minor}.0"), vec![0], true);
    }
    corpus.add("Edge.128", "2.0.0", vec![0], true);
    let edge = FakeUpstream::start_with(corpus).await;
    let hive = format!("{}/v3/registration5-semver1", edge.api());
    let inlined = get(&format!("{hive}/edge.127/index.json")).await.json();
    assert_eq!(inlined["count"], 2);
    for page in inlined["items"].as_array().unwrap() {
        assert!(page["@id"].as_str().unwrap().contains("/index.json#page/"));
        assert_eq!(page["parent"], format!("{hive}/edge.127/index.json"));
        assert!(page["items"].is_array());
    }
    let paged = get(&format!("{hive}/edge.128/index.json")).await.json();
    assert_eq!(paged["count"], 2);
    assert!(paged["items"][0].get("items").is_none());
}

#[tokio::test]
async fn search_and_autocomplete_show_listed_versions_only() {
    let up = FakeUpstream::start().await;
    let search = up.search();
    let doc = get(&format!("{search}/query?q=fake&take=10")).await.json();
    assert_eq!(doc["totalHits"], 4);
    assert_eq!(
        doc["@context"]["@base"],
        format!("{}/v3/registration5-semver1/", up.api())
    );
    let core = doc["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["id"] == "Fake.Core")
        .unwrap();
    assert_eq!(core["version"], "1.1.0", "no prerelease, no semver2, no unlisted");

    let doc = get(&format!(
        "{search}/query?q=packageid:fake.core&prerelease=true&semVerLevel=2.0.0"
    ))
    .await
    .json();
    assert_eq!(doc["totalHits"], 1);
    assert_eq!(
        doc["@context"]["@base"],
        format!("{}/v3/registration5-gz-semver2/", up.api())
    );
    assert_eq!(doc["data"][0]["version"], "3.0.0+build.7");
    let listed: Vec<&str> = doc["data"][0]["versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["version"].as_str().unwrap())
        .collect();
    assert_eq!(listed, ["1.0.0", "1.1.0", "1.2.0-beta", "2.0.0-rc.1", "3.0.0+build.7"]);

    let ids = get(&format!("{search}/autocomplete?q=fake.m")).await.json();
    assert_eq!(ids["data"], serde_json::json!(["Fake.Many", "Fake.MixedCASE"]));
    let vers = get(&format!("{search}/autocomplete?id=Fake.Core&prerelease=true"))
        .await
        .json();
    assert_eq!(vers["data"], serde_json::json!(["1.0.0", "1.1.0", "1.2.0-beta"]));
}
