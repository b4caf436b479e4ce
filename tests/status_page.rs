//! The status page at `/`: HTML for a browser (opened in real headless
//! Chromium, which needs Debian's `chromium`: skipped without it, a failure
//! when CI=true), plain text otherwise; it needs read credentials when
//! reads do and shows no secret.

mod common;

use std::process::Command;

use common::nucache::Nucache;
use common::upstream::FakeUpstream;
use http::{Method, StatusCode};
use nucache::config::{digest_hex, ByteSize, ReadAccess, Secret};

const NUPKG: &str = "/v3/flatcontainer/fake.core/1.1.0/fake.core.1.1.0.nupkg";
const HTML: (&str, &str) = ("accept", "text/html,application/xhtml+xml");
const UPSTREAM_PASSWORD: &str = "upstream-pa55word";
const PUBLISH_KEY: &str = "nuget-org-api-key";

/// A package missed once, then hit until it comes from the cache.
async fn some_traffic(nucache: &Nucache) {
    assert_eq!(nucache.get(NUPKG).await.x_cache(), Some("MISS"));
    nucache.until_hit(NUPKG).await;
}

#[tokio::test]
async fn a_browser_gets_the_status_page_and_other_clients_the_text() {
    let upstream = FakeUpstream::start().await;
    let nucache = Nucache::start(&upstream.index_url(), |c| {
        c.upstream.username = Some("ci".into());
        c.upstream.password = Some(Secret::new(UPSTREAM_PASSWORD));
        c.publish.api_key = Some(Secret::new(PUBLISH_KEY));
        c.cache.max_size = Some(ByteSize(1 << 30));
    })
    .await;
    some_traffic(&nucache).await;
    let page = nucache.request(Method::GET, "/", &[HTML]).await;
    assert_eq!(page.status, StatusCode::OK);
    assert_eq!(page.header("content-type"), Some("text/html; charset=utf-8"));
    let html = page.text();
    for shown in [
        "Hit ratio",
        "Cache size",
        "of 1.0 GiB",
        "Free disk",
        "Entries",
        "fake.core 1.1.0",
        "http-equiv=\"refresh\"",
    ] {
        assert!(html.contains(shown), "{shown} missing from {html}");
    }
    // One miss and at least one hit of the package: a ratio above 0.
    assert!(!html.contains("no requests yet"), "{html}");
    for secret in [UPSTREAM_PASSWORD, PUBLISH_KEY, "ci:"] {
        assert!(!html.contains(secret), "{secret} shown");
    }
    let text = nucache.get("/").await;
    assert_eq!(text.header("content-type"), Some("text/plain; charset=utf-8"));
    assert!(text.text().starts_with("nucache "), "{}", text.text());
}

#[tokio::test]
async fn the_status_page_needs_read_credentials_when_reads_do() {
    let upstream = FakeUpstream::start().await;
    let nucache = Nucache::start(&upstream.index_url(), |c| {
        c.auth.read = ReadAccess::Required;
        c.auth.read_keys = vec![digest_hex("read-key")];
    })
    .await;
    let anonymous = nucache.request(Method::GET, "/", &[HTML]).await;
    assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED);
    assert!(!anonymous.text().contains("Hit ratio"));
    let allowed = nucache
        .request(Method::GET, "/", &[HTML, ("x-nuget-apikey", "read-key")])
        .await;
    assert_eq!(allowed.status, StatusCode::OK);
    assert!(allowed.text().contains("Hit ratio"));
}

fn chromium_available() -> bool {
    let found = Command::new("chromium")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "chromium is not installed, and CI=true: .ci/run installs it"
        );
        eprintln!("SKIPPED: chromium is not installed (apt-get install chromium); the status page was not rendered");
    }
    found
}

/// Headless Chromium on `url` with `args`, off the runtime's thread; stdout.
async fn chromium(url: String, args: Vec<String>) -> String {
    let profile = tempfile::tempdir().expect("profile dir");
    let profile_arg = format!("--user-data-dir={}", profile.path().display());
    let output = tokio::task::spawn_blocking(move || {
        Command::new("timeout")
            .args(["60", "chromium", "--headless", "--no-sandbox", "--disable-gpu"])
            .args(["--no-first-run", "--disable-dev-shm-usage", &profile_arg])
            .args(&args)
            .arg(&url)
            .output()
            .expect("chromium runs")
    })
    .await
    .expect("joined");
    assert!(
        output.status.success(),
        "chromium failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[tokio::test]
async fn headless_chromium_renders_the_hit_ratio_and_the_cache_size() {
    if !chromium_available() {
        return;
    }
    let upstream = FakeUpstream::start().await;
    let nucache = Nucache::start(&upstream.index_url(), |_| {}).await;
    some_traffic(&nucache).await;
    let dom = chromium(nucache.url("/"), vec!["--dump-dom".into()]).await;
    let ratio_row = dom
        .lines()
        .find(|line| line.contains("Hit ratio"))
        .unwrap_or_else(|| panic!("no hit ratio in the DOM: {dom}"));
    let size_row = dom
        .lines()
        .find(|line| line.contains("Cache size"))
        .unwrap_or_else(|| panic!("no cache size in the DOM: {dom}"));
    assert!(ratio_row.contains('%') && ratio_row.contains("requests"), "{ratio_row}");
    assert!(size_row.contains("KiB") || size_row.contains("MiB"), "{size_row}");
    println!("chromium --dump-dom: {}", ratio_row.trim());
    println!("chromium --dump-dom: {}", size_row.trim());

    let shots = tempfile::tempdir().expect("screenshot dir");
    let png = shots.path().join("status.png");
    let args = vec![
        format!("--screenshot={}", png.display()),
        "--window-size=1000,900".into(),
    ];
    chromium(nucache.url("/"), args).await;
    let image = std::fs::read(&png).expect("a screenshot was written");
    assert!(image.starts_with(b"\x89PNG"), "not a PNG");
    println!("chromium --screenshot: {} bytes of PNG", image.len());
    if let Ok(keep) = std::env::var("NUCACHE_STATUS_SCREENSHOT") {
        std::fs::copy(&png, keep).expect("screenshot kept");
    }
}
