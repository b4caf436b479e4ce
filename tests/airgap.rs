//! The air gap through the library: `warm` fills a running nucache from an
//! input file (dependencies included), `export` writes a bundle of its
//! cache (deterministic, incremental with `--since`), `import` loads it into
//! an empty cache directory, and a nucache there serves the packages with
//! the same bytes and the metadata past its TTL with no upstream at all.

mod common;

use std::path::Path;
use std::time::Duration;

use common::airgap::{export_options, exported, import, warm_options, Exported, ADMIN_KEY};
use common::nucache::{test_config, Nucache};
use common::upstream::{FakeUpstream, Fault};
use http::StatusCode;
use nucache::airgap::{export, warm};
use nucache::config::digest_hex;

fn manifest_without_created(bundle: &Path) -> String {
    let text = std::fs::read_to_string(bundle.join("manifest.json")).expect("manifest");
    text.lines()
        .filter(|l| !l.contains("\"created\""))
        .collect::<Vec<_>>()
        .join("\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn warm_export_import_then_serve_with_no_upstream() {
    let upstream = FakeUpstream::start().await;
    let a = Nucache::start(&upstream.index_url(), |c| c.admin.keys = vec![digest_hex(ADMIN_KEY)]).await;
    let feed = a.url("/v3/index.json");
    let work = tempfile::tempdir().expect("tempdir");
    let list = work.path().join("wanted.txt");
    std::fs::write(
        &list,
        "# CI tools\nFake.Core [1.1.0]\nFake.Many@1.5.*\nNope.Nothing 1.0\n",
    )
    .expect("list");
    let config = nucache::Config::default();

    let summary = warm(warm_options(&feed, vec![list.clone()]), &config)
        .await
        .expect("warm");
    assert_eq!((summary.wanted, summary.dependencies), (3, 1), "{summary}");
    assert_eq!((summary.fetched, summary.cached), (3, 0), "{summary}");
    assert_eq!(summary.failed.len(), 1, "{summary}");
    assert!(summary.failed[0].starts_with("Nope.Nothing [1.0.0, ) ("), "{summary}");
    let again = warm(warm_options(&feed, vec![list]), &config)
        .await
        .expect("warm again");
    assert_eq!((again.fetched, again.cached), (0, 3), "{again}");

    let bundle = work.path().join("bundle");
    let exported = export(export_options(&bundle, &feed, None), &config)
        .await
        .expect("export");
    assert_eq!(exported.packages, 3, "{exported}");
    for file in [
        "packages/fake.core/1.1.0/fake.core.1.1.0.nupkg",
        "packages/fake.core/1.1.0/fake.core.1.1.0.nupkg.sha512",
        "packages/fake.core/1.1.0/fake.core.nuspec",
        "packages/fake.many/1.5.0/fake.many.1.5.0.nupkg",
        "packages/fake.dep/1.0.0/fake.dep.1.0.0.nupkg",
        "metadata/index.json",
        "metadata/flatcontainer/fake.core/index.json",
        "metadata/vulnerabilities/index.json",
        "metadata/sources.json",
    ] {
        assert!(bundle.join(file).is_file(), "{file} is missing from the bundle");
    }
    let nupkg = std::fs::read(bundle.join("packages/fake.core/1.1.0/fake.core.1.1.0.nupkg")).expect("read");
    assert_eq!(Some(nupkg), upstream.nupkg_bytes("Fake.Core", "1.1.0"));
    let versions = std::fs::read_to_string(bundle.join("metadata/flatcontainer/fake.core/index.json")).expect("read");
    assert!(
        !versions.contains(&a.base()),
        "the bundle names the upstream, not nucache A"
    );

    let refused = export(export_options(&bundle, &feed, None), &config).await;
    assert!(
        refused.is_err_and(|e| e.contains("not empty")),
        "a second export over the first"
    );
    let second = work.path().join("bundle-again");
    export(export_options(&second, &feed, None), &config)
        .await
        .expect("export again");
    assert_eq!(
        manifest_without_created(&bundle),
        manifest_without_created(&second),
        "deterministic"
    );
    let increment = work.path().join("increment");
    let since = export(export_options(&increment, &feed, Some(bundle.clone())), &config)
        .await
        .expect("since");
    assert_eq!((since.packages, since.skipped, since.documents), (0, 3, 0), "{since}");

    let only_list = work.path().join("only.txt");
    std::fs::write(&only_list, "fake.dep [1.0.0]\n").expect("only");
    let mut only = export_options(&work.path().join("only"), &feed, None);
    only.only = vec![only_list];
    let subset = export(only, &config).await.expect("export --only");
    assert_eq!(subset.packages, 1, "{subset}");
    assert!(work
        .path()
        .join("only/packages/fake.dep/1.0.0/fake.dep.1.0.0.nupkg")
        .is_file());
    assert!(!work.path().join("only/packages/fake.core").exists());

    upstream.set_fault(Fault::Refuse);
    drop(a.stop().await);
    let cache_b = work.path().join("cache-b");
    let imported = import(&bundle, &cache_b, &upstream.index_url()).await.expect("import");
    assert_eq!(imported.packages, 3, "{imported}");
    // Its upstream unreachable, every document long past its TTL.
    let mut config_b = test_config(&upstream.index_url(), &cache_b);
    config_b.ttl.versions = Duration::ZERO;
    config_b.ttl.registration = Duration::ZERO;
    config_b.ttl.max_stale = Duration::ZERO;
    let b = Nucache::start_with(config_b).await;
    let package = b.get("/v3/flatcontainer/fake.core/1.1.0/fake.core.1.1.0.nupkg").await;
    assert_eq!((package.status, package.x_cache()), (StatusCode::OK, Some("HIT")));
    assert_eq!(Some(package.body.to_vec()), upstream.nupkg_bytes("Fake.Core", "1.1.0"));
    let list = b.get("/v3/flatcontainer/fake.core/index.json").await;
    assert_eq!(
        (list.status, list.x_cache()),
        (StatusCode::OK, Some("STALE")),
        "{}",
        list.text()
    );
    assert!(list.text().contains("1.1.0"));
    let registration = b
        .get("/v3/registration/registration5-gz-semver2/fake.core/index.json")
        .await;
    assert_eq!(registration.status, StatusCode::OK, "{}", registration.text());
    assert!(registration.text().contains(&b.base()), "rewritten to nucache B");
    assert_eq!(
        b.get("/v3/flatcontainer/fake.core/1.0.0/fake.core.1.0.0.nupkg")
            .await
            .status,
        StatusCode::BAD_GATEWAY
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bundle_with_a_corrupt_file_imports_nothing() {
    let Exported {
        upstream, work, bundle, ..
    } = exported("Fake.Dep 1.0.1\n").await;
    let victim = "packages/fake.dep/1.0.1/fake.dep.nuspec";
    let mut bytes = std::fs::read(bundle.join(victim)).expect("read");
    bytes[10] ^= 0x20;
    std::fs::write(bundle.join(victim), bytes).expect("corrupt");
    let cache = work.path().join("cache");
    let refused = import(&bundle, &cache, &upstream.index_url()).await;
    assert!(
        refused
            .as_ref()
            .is_err_and(|e| e.contains(victim) && e.contains("nothing imported")),
        "{refused:?}"
    );
    assert!(!cache.exists(), "nothing was written");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_the_cache_has_no_place_for_imports_nothing() {
    let Exported {
        upstream, work, bundle, ..
    } = exported("Fake.Dep 1.0.1\n").await;
    // A well-formed entry (right size and hash) that is no cache document.
    let stray = "metadata/nowhere/x.json";
    std::fs::create_dir_all(bundle.join("metadata/nowhere")).expect("mkdir");
    std::fs::write(bundle.join(stray), b"{}").expect("write");
    let path = bundle.join("manifest.json");
    let mut manifest: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).expect("read")).expect("json");
    let sha512 = {
        use sha2::Digest;
        hex::encode(sha2::Sha512::digest(b"{}"))
    };
    manifest["files"]
        .as_array_mut()
        .expect("files")
        .push(serde_json::json!({"path": stray, "size": 2, "sha512": sha512}));
    std::fs::write(&path, serde_json::to_vec(&manifest).expect("json")).expect("write");
    let cache = work.path().join("cache");
    let refused = import(&bundle, &cache, &upstream.index_url()).await;
    assert!(
        refused
            .as_ref()
            .is_err_and(|e| e.contains(stray) && e.contains("nothing imported")),
        "{refused:?}"
    );
    assert!(!cache.exists(), "nothing was written");
}

/// A nucache in front of `upstream` (made unreachable), with an admin key:
/// the far side of the gap, running.
async fn running_far_side(work: &Path, upstream: &FakeUpstream) -> Nucache {
    upstream.set_fault(Fault::Refuse);
    let mut config = test_config(&upstream.index_url(), &work.join("cache-far"));
    config.admin.keys = vec![digest_hex(ADMIN_KEY)];
    Nucache::start_with(config).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn import_url_uploads_a_bundle_into_a_running_nucache() {
    let Exported {
        upstream, work, bundle, ..
    } = exported("Fake.Core [1.1.0]\n").await;
    let b = running_far_side(work.path(), &upstream).await;
    let path = "/v3/flatcontainer/fake.core/1.1.0/fake.core.1.1.0.nupkg";
    assert_eq!(b.get(path).await.status, StatusCode::BAD_GATEWAY, "not there before");
    // The same value for every test of this binary that sets it.
    std::env::set_var("NUCACHE_ADMIN_KEY", ADMIN_KEY);

    let imported = nucache::airgap::import_through_server(&bundle, &b.base())
        .await
        .expect("import --url");
    assert_eq!(imported.packages, 2, "Fake.Core and its dependency: {imported}");
    let package = b.get(path).await;
    assert_eq!((package.status, package.x_cache()), (StatusCode::OK, Some("HIT")));
    assert_eq!(Some(package.body.to_vec()), upstream.nupkg_bytes("Fake.Core", "1.1.0"));
    let list = b.get("/v3/flatcontainer/fake.core/index.json").await;
    assert_eq!(list.status, StatusCode::OK, "{}", list.text());
    assert!(list.text().contains("1.1.0"));
    assert!(
        !work
            .path()
            .join("cache-far/import")
            .read_dir()
            .is_ok_and(|mut d| d.next().is_some()),
        "the staging directory is gone"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bundle_changed_on_its_way_to_a_running_nucache_imports_nothing() {
    let Exported {
        upstream, work, bundle, ..
    } = exported("Fake.Dep 1.0.1\n").await;
    let b = running_far_side(work.path(), &upstream).await;
    let key = [("x-nuget-apikey", ADMIN_KEY)];
    // Every file as the command would send it, one of them changed.
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(bundle.join("manifest.json")).expect("read")).expect("json");
    let victim = "packages/fake.dep/1.0.1/fake.dep.1.0.1.nupkg";
    let mut paths: Vec<String> = manifest["files"]
        .as_array()
        .expect("files")
        .iter()
        .map(|f| f["path"].as_str().expect("path").to_string())
        .collect();
    paths.push("manifest.json".into());
    for path in &paths {
        let mut body = std::fs::read(bundle.join(path)).expect("read");
        if path == victim {
            body[40] ^= 0x01;
        }
        let sent = b
            .request_with_body(http::Method::PUT, &format!("/admin/import/tamper1/{path}"), &key, body)
            .await;
        assert_eq!(sent.status, StatusCode::OK, "{path}: {}", sent.text());
    }
    let refused = b.request(http::Method::POST, "/admin/import/tamper1", &key).await;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST, "{}", refused.text());
    assert!(refused.text().contains(victim), "{}", refused.text());
    let package = b.get("/v3/flatcontainer/fake.dep/1.0.1/fake.dep.1.0.1.nuspec").await;
    assert_eq!(
        package.status,
        StatusCode::BAD_GATEWAY,
        "nothing imported, not even the good files"
    );
    let escape = b
        .request_with_body(
            http::Method::PUT,
            "/admin/import/x/../../etc/passwd",
            &key,
            b"no".to_vec(),
        )
        .await;
    assert!(escape.status.is_client_error(), "{}", escape.status);
    let unkeyed = b.request(http::Method::POST, "/admin/import/tamper1", &[]).await;
    assert_eq!(unkeyed.status, StatusCode::UNAUTHORIZED);
}
