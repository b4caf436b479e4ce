//! A corporate network: the upstream is reached only through an HTTP proxy
//! (Debian's tinyproxy, with Basic credentials) and serves https with a
//! certificate of a private CA, trusted through `upstream.ca_file`.

mod common;

use std::time::Duration;

use base64::Engine as _;
use common::nucache::Nucache;
use common::process::{Launch, Process};
use common::tinyproxy::{self, Tinyproxy, PASSWORD, USER};
use common::tls::Ca;
use common::upstream::{Corpus, FakeOptions, FakeUpstream};
use http::StatusCode;

const NUPKG: &str = "/v3/flatcontainer/fake.core/1.0.0/fake.core.1.0.0.nupkg";

/// The fake upstream on https, its certificate from `ca`.
async fn https_upstream(ca: &Ca) -> FakeUpstream {
    let options = FakeOptions {
        tls: Some(ca.server_config()),
        ..FakeOptions::default()
    };
    FakeUpstream::start_with_options(Corpus::default_corpus(), options).await
}

/// `host:port` of the fake's api host, as a CONNECT line names it.
fn api_authority(upstream: &FakeUpstream) -> String {
    upstream.api().trim_start_matches("https://").to_string()
}

async fn restores(nucache: &Nucache, upstream: &FakeUpstream) {
    for path in ["/v3/index.json", "/v3/flatcontainer/fake.core/index.json"] {
        let reply = nucache.get(path).await;
        assert_eq!(reply.status, StatusCode::OK, "{path}: {}", reply.text());
    }
    let package = nucache.get(NUPKG).await;
    assert_eq!(package.status, StatusCode::OK, "{}", package.text());
    assert_eq!(Some(package.body.to_vec()), upstream.nupkg_bytes("fake.core", "1.0.0"));
}

#[tokio::test]
async fn a_private_ca_given_by_ca_file_is_trusted_and_without_it_the_upstream_is_not() {
    let ca = Ca::new("corp CA");
    let dir = tempfile::tempdir().expect("temp dir");
    let ca_pem = ca.write_pem(dir.path(), "corp-ca.pem");
    let upstream = https_upstream(&ca).await;
    let untrusting = Nucache::start(&upstream.index_url(), |_| {}).await;
    let refused = untrusting.get("/v3/index.json").await;
    assert_eq!(refused.status, StatusCode::BAD_GATEWAY, "{}", refused.text());
    assert!(refused.text().contains("certificate"), "{}", refused.text());
    let trusting = Nucache::start(&upstream.index_url(), |c| {
        c.upstream.ca_file = Some(ca_pem.clone());
        c.upstream.ca_certs = ca_certs(&ca_pem);
    })
    .await;
    restores(&trusting, &upstream).await;
}

/// What `Config::load` reads from `upstream.ca_file` (tests build the
/// configuration in code).
fn ca_certs(path: &std::path::Path) -> Vec<rustls::pki_types::CertificateDer<'static>> {
    use rustls::pki_types::pem::PemObject;
    rustls::pki_types::CertificateDer::pem_file_iter(path)
        .expect("CA file")
        .collect::<Result<Vec<_>, _>>()
        .expect("PEM")
}

#[tokio::test]
async fn a_plain_http_upstream_is_asked_through_the_proxy_in_absolute_form() {
    if !tinyproxy::available("a_plain_http_upstream_is_asked_through_the_proxy_in_absolute_form") {
        return;
    }
    let proxy = Tinyproxy::start().await;
    let upstream = FakeUpstream::start().await;
    let nucache = Nucache::start(&upstream.index_url(), |c| {
        c.upstream.proxy = Some(proxy.url_with_credentials(PASSWORD).as_str().into());
    })
    .await;
    restores(&nucache, &upstream).await;
    // The service index, the version list and the package.
    proxy.wait_for_requests(&format!("GET {}/", upstream.api()), 3).await;
    // tinyproxy takes the credentials off before forwarding.
    let seen_upstream = upstream
        .requests()
        .iter()
        .filter(|r| r.headers.contains_key("proxy-authorization"))
        .count();
    assert_eq!(seen_upstream, 0);
}

#[tokio::test]
async fn a_wrong_proxy_password_gives_502_naming_the_proxy() {
    if !tinyproxy::available("a_wrong_proxy_password_gives_502_naming_the_proxy") {
        return;
    }
    let proxy = Tinyproxy::start().await;
    let ca = Ca::new("corp CA");
    let upstream = https_upstream(&ca).await;
    let nucache = Nucache::start(&upstream.index_url(), |c| {
        c.upstream.proxy = Some(proxy.url_with_credentials("wrong").as_str().into());
        c.upstream.ca_certs = vec![ca.der()];
    })
    .await;
    let reply = nucache.get("/v3/index.json").await;
    assert_eq!(reply.status, StatusCode::BAD_GATEWAY, "{}", reply.text());
    assert!(
        reply.text().contains("through the HTTP proxy 127.0.0.1:"),
        "{}",
        reply.text()
    );
    eprintln!("wrong proxy password: {}", reply.text().trim());
    assert!(!reply.text().contains("wrong"), "the password echoed: {}", reply.text());
    assert!(upstream.requests().is_empty(), "reached the upstream past the proxy");
}

fn launch<'a>(upstream: &'a str, cache: &'a std::path::Path, env: Vec<(&'a str, String)>) -> Process {
    Launch {
        upstream_index: upstream,
        cache_dir: cache,
        env,
        tmpfs_kib: None,
    }
    .spawn()
}

async fn restores_process(process: &Process, upstream: &FakeUpstream) {
    for path in ["/v3/index.json", "/v3/flatcontainer/fake.core/index.json", NUPKG] {
        let reply = process.get(path).await;
        assert_eq!(reply.status, StatusCode::OK, "{path}: {}", reply.text());
    }
    let package = process.get(NUPKG).await;
    assert_eq!(Some(package.body.to_vec()), upstream.nupkg_bytes("fake.core", "1.0.0"));
}

#[tokio::test]
async fn restores_through_tinyproxy_to_a_private_ca_upstream_and_the_credentials_never_reach_the_log() {
    if !tinyproxy::available("restores_through_tinyproxy_to_a_private_ca_upstream") {
        return;
    }
    let proxy = Tinyproxy::start().await;
    let ca = Ca::new("corp CA");
    let dir = tempfile::tempdir().expect("temp dir");
    let ca_pem = ca.write_pem(dir.path(), "corp-ca.pem");
    let upstream = https_upstream(&ca).await;
    let index = upstream.index_url();
    let cache = dir.path().join("cache");
    let mut process = launch(
        &index,
        &cache,
        vec![
            ("NUCACHE_UPSTREAM__PROXY", proxy.url_with_credentials(PASSWORD)),
            ("NUCACHE_UPSTREAM__CA_FILE", ca_pem.display().to_string()),
            // Everything any crate logs, to show the credentials are in none of it.
            ("RUST_LOG", "debug".to_string()),
        ],
    );
    process.ready().await;
    restores_process(&process, &upstream).await;
    proxy
        .wait_for_requests(&format!("CONNECT {}", api_authority(&upstream)), 1)
        .await;
    let log = process.log_with(&format!("{USER}:***@127.0.0.1:{}", proxy.port)).await;
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{PASSWORD}"));
    assert!(!log.contains(PASSWORD), "the proxy password is in the log");
    assert!(!log.contains(&basic), "the proxy credentials (base64) are in the log");
    let _ = process.terminate(Duration::from_secs(10));
}

#[tokio::test]
async fn https_proxy_from_the_environment_is_honoured_and_no_proxy_bypasses_it() {
    if !tinyproxy::available("https_proxy_from_the_environment_is_honoured_and_no_proxy_bypasses_it") {
        return;
    }
    let proxy = Tinyproxy::start().await;
    let ca = Ca::new("corp CA");
    let dir = tempfile::tempdir().expect("temp dir");
    let ca_pem = ca.write_pem(dir.path(), "corp-ca.pem");
    let upstream = https_upstream(&ca).await;
    let index = upstream.index_url();
    let authority = api_authority(&upstream);
    let env = |no_proxy: Option<&str>| {
        let mut env = vec![
            ("HTTPS_PROXY", proxy.url_with_credentials(PASSWORD)),
            ("NUCACHE_UPSTREAM__CA_FILE", ca_pem.display().to_string()),
            ("NO_PROXY", no_proxy.unwrap_or("").to_string()),
        ];
        env.push(("no_proxy", no_proxy.unwrap_or("").to_string()));
        env
    };

    let first_cache = dir.path().join("proxied");
    let mut proxied = launch(&index, &first_cache, env(None));
    proxied.ready().await;
    restores_process(&proxied, &upstream).await;
    let through = proxy.wait_for_requests(&format!("CONNECT {authority}"), 1).await;
    let _ = proxied.terminate(Duration::from_secs(10));

    let requests_before = upstream.requests().len();
    let second_cache = dir.path().join("bypassed");
    let mut bypassing = launch(&index, &second_cache, env(Some("127.0.0.1")));
    bypassing.ready().await;
    restores_process(&bypassing, &upstream).await;
    assert!(
        upstream.requests().len() > requests_before,
        "the upstream was not asked"
    );
    // Had the upstream been asked through tinyproxy, the CONNECT would have
    // been logged before it was: one read of the log is enough here.
    assert_eq!(
        proxy.requests_with(&format!("CONNECT {authority}")),
        through,
        "NO_PROXY=127.0.0.1 still went through the proxy: {}",
        proxy.log_text()
    );
    let _ = bypassing.terminate(Duration::from_secs(10));
}
