//! The admin API (`/admin/`) and the commands that call it: a purged
//! package is fetched again; a missing or wrong key purges nothing;
//! without admin keys the API does not exist; the online verify drops a
//! corrupted file.

mod common;

use std::process::{Command, Output};

use common::nucache::Nucache;
use common::process::BINARY;
use common::upstream::FakeUpstream;
use http::{Method, StatusCode};
use nucache::config::digest_hex;

const KEY: &str = "admin-s3cret";
const NUPKG: &str = "/v3/flatcontainer/fake.core/1.1.0/fake.core.1.1.0.nupkg";
const OTHER_NUPKG: &str = "/v3/flatcontainer/fake.core/1.0.0/fake.core.1.0.0.nupkg";
const VERSIONS: &str = "/v3/flatcontainer/fake.core/index.json";

async fn with_admin_key(upstream: &FakeUpstream) -> Nucache {
    Nucache::start(&upstream.index_url(), |c| c.admin.keys = vec![digest_hex(KEY)]).await
}

fn basic(user: &str, password: &str) -> String {
    use base64::Engine as _;
    let pair = format!("{user}:{password}");
    format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(pair))
}

#[tokio::test]
async fn a_purged_version_is_a_miss_next_time_and_other_versions_stay() {
    let upstream = FakeUpstream::start().await;
    let nucache = with_admin_key(&upstream).await;
    let first = nucache.get(NUPKG).await;
    nucache.until_hit(NUPKG).await;
    nucache.until_hit(OTHER_NUPKG).await;
    nucache.until_hit(VERSIONS).await;

    let purged = nucache
        .request(Method::POST, "/admin/purge/Fake.Core/1.1.0", &[("x-nuget-apikey", KEY)])
        .await;
    assert_eq!(purged.status, StatusCode::OK, "{}", purged.text());
    let answer = purged.json();
    assert_eq!(answer["package"], "fake.core 1.1.0");
    assert_eq!(
        answer["purged_objects"], 2,
        "the package and its version list: {answer}"
    );
    assert!(answer["purged_bytes"].as_u64() > Some(first.body.len() as u64));

    let again = nucache.get(NUPKG).await;
    assert_eq!((again.status, again.x_cache()), (StatusCode::OK, Some("MISS")));
    assert_eq!(again.body, first.body);
    assert_eq!(upstream.count("fake.core.1.1.0.nupkg"), 2, "fetched again");
    assert_eq!(nucache.get(VERSIONS).await.x_cache(), Some("MISS"));
    assert_eq!(
        nucache.get(OTHER_NUPKG).await.x_cache(),
        Some("HIT"),
        "another version stays"
    );

    // The Basic password works as well, and a whole id goes at once.
    let all = nucache
        .request(
            Method::POST,
            "/admin/purge/fake.core",
            &[("authorization", &basic("ops", KEY))],
        )
        .await;
    assert_eq!(all.status, StatusCode::OK, "{}", all.text());
    assert_eq!(nucache.get(OTHER_NUPKG).await.x_cache(), Some("MISS"));
}

#[tokio::test]
async fn a_missing_or_wrong_admin_key_is_refused_and_purges_nothing() {
    let upstream = FakeUpstream::start().await;
    let nucache = with_admin_key(&upstream).await;
    nucache.until_hit(NUPKG).await;
    let path = "/admin/purge/fake.core/1.1.0";
    let missing = nucache.request(Method::POST, path, &[]).await;
    assert_eq!(missing.status, StatusCode::UNAUTHORIZED, "{}", missing.text());
    let wrong = nucache
        .request(Method::POST, path, &[("x-nuget-apikey", "guess")])
        .await;
    assert_eq!(wrong.status, StatusCode::FORBIDDEN, "{}", wrong.text());
    let wrong_basic = nucache
        .request(Method::POST, path, &[("authorization", &basic("ops", "guess"))])
        .await;
    assert_eq!(wrong_basic.status, StatusCode::FORBIDDEN);
    let stats = nucache
        .request(Method::GET, "/admin/stats", &[("x-nuget-apikey", "guess")])
        .await;
    assert_eq!(stats.status, StatusCode::FORBIDDEN);
    for refused in [&missing, &wrong, &wrong_basic, &stats] {
        assert!(!refused.text().contains(KEY) && !refused.text().contains("guess"));
    }
    assert_eq!(nucache.get(NUPKG).await.x_cache(), Some("HIT"), "nothing purged");
    assert_eq!(upstream.count("fake.core.1.1.0.nupkg"), 1);
}

#[tokio::test]
async fn without_admin_keys_there_is_no_admin_api() {
    let upstream = FakeUpstream::start().await;
    let nucache = Nucache::start(&upstream.index_url(), |_| {}).await;
    nucache.until_hit(NUPKG).await;
    for (method, path) in [
        (Method::GET, "/admin/stats"),
        (Method::POST, "/admin/purge/fake.core/1.1.0"),
        (Method::POST, "/admin/verify"),
    ] {
        let reply = nucache.request(method, path, &[("x-nuget-apikey", KEY)]).await;
        assert_eq!(reply.status, StatusCode::NOT_FOUND, "{path}");
    }
    assert_eq!(nucache.get(NUPKG).await.x_cache(), Some("HIT"), "nothing purged");
}

#[tokio::test]
async fn stats_and_the_online_verify_through_the_commands() {
    let upstream = FakeUpstream::start().await;
    let nucache = with_admin_key(&upstream).await;
    nucache.until_hit(NUPKG).await;

    let stats = run(&nucache, &["stats"], Some(KEY)).await;
    assert!(stats.status.success(), "{}", String::from_utf8_lossy(&stats.stderr));
    let answer: serde_json::Value = serde_json::from_slice(&stats.stdout).expect("stats print JSON");
    assert!(answer["cache"]["entries"].as_u64() >= Some(2), "{answer}");
    assert!(answer["requests"]["from_cache"].as_u64() >= Some(1), "{answer}");

    let intact = run(&nucache, &["verify", "--online"], Some(KEY)).await;
    assert_eq!(
        intact.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&intact.stderr)
    );

    // Flip one byte of the package's file on disk (size kept).
    let key = NUPKG.trim_start_matches("/v3/");
    let file = common::content_file(&nucache.dir, &nucache.upstream, key).expect("the package's content file");
    let mut bytes = std::fs::read(&file).expect("read");
    bytes[100] ^= 0xff;
    std::fs::write(&file, &bytes).expect("write");
    let corrupt = run(&nucache, &["verify", "--online"], Some(KEY)).await;
    let printed = String::from_utf8_lossy(&corrupt.stdout).into_owned();
    assert_eq!(corrupt.status.code(), Some(1), "{printed}");
    assert!(
        printed.contains("dropped fake.core 1.1.0 (fake.core.1.1.0.nupkg)"),
        "{printed}"
    );
    assert_eq!(nucache.get(NUPKG).await.x_cache(), Some("MISS"), "fetched again");

    let purge = run(&nucache, &["purge", "Fake.Core", "1.1.0"], Some(KEY)).await;
    assert!(purge.status.success());
    assert!(String::from_utf8_lossy(&purge.stdout).contains("purged fake.core 1.1.0"));
    let no_key = run(&nucache, &["stats"], None).await;
    assert_eq!(no_key.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&no_key.stderr).contains("NUCACHE_ADMIN_KEY"));
    let wrong_key = run(&nucache, &["purge", "fake.core"], Some("guess")).await;
    assert_eq!(wrong_key.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&wrong_key.stderr).contains("403"));
}

/// `nucache ARGS --url` against `nucache`, off the runtime's thread.
async fn run(nucache: &Nucache, args: &[&str], key: Option<&str>) -> Output {
    let mut command = Command::new(BINARY);
    command.args(args).args(["--url", &nucache.base()]);
    command.env_remove("NUCACHE_ADMIN_KEY").env_remove("NUCACHE_CONFIG");
    if let Some(key) = key {
        command.env("NUCACHE_ADMIN_KEY", key);
    }
    tokio::task::spawn_blocking(move || command.output().expect("nucache runs"))
        .await
        .expect("joined")
}
