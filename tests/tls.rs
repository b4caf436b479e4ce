//! HTTPS serving: a private CA and server certificates made here (rcgen);
//! nucache serves HTTP/2 and HTTP/1.1 by ALPN to the Rust client and to
//! curl, and swaps its certificate on SIGHUP without dropping connections.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::nucache::Nucache;
use common::process::{Launch, Process};
use common::tls::{tls_get, Ca, TlsConnection};
use common::upstream::FakeUpstream;
use http::{StatusCode, Version};

const H2: &[u8] = b"h2";
const HTTP1: &[u8] = b"http/1.1";

async fn https_nucache(upstream: &FakeUpstream, ca: &Ca, dir: &std::path::Path) -> Nucache {
    let server = ca.issue(dir, "server");
    Nucache::start(&upstream.index_url(), |c| {
        c.tls.cert = Some(server.cert_pem.clone());
        c.tls.key = Some(server.key_pem.clone());
    })
    .await
}

#[tokio::test]
async fn https_offers_http2_and_http1_by_alpn_and_documents_point_at_https() {
    let upstream = FakeUpstream::start().await;
    let certs = tempfile::tempdir().expect("temp dir");
    let ca = Ca::new("test CA");
    let nucache = https_nucache(&upstream, &ca, certs.path()).await;
    let port = nucache.addr.port();
    let base = format!("https://localhost:{port}/v3/");
    for (alpn, version) in [(&[H2, HTTP1][..], Version::HTTP_2), (&[HTTP1][..], Version::HTTP_11)] {
        let index = tls_get(&ca, port, alpn, "/v3/index.json")
            .await
            .expect("index over TLS");
        assert_eq!(
            (index.version, index.status),
            (version, StatusCode::OK),
            "{}",
            index.text()
        );
        let text = index.text();
        assert!(text.contains(&base), "resources not at {base}: {text}");
        assert!(!text.contains("\"http://localhost"), "a plain-http URL: {text}");
        // Over https, the repository signatures resource is kept (§8).
        assert!(text.contains("RepositorySignatures"), "{text}");
    }
    let nupkg = tls_get(
        &ca,
        port,
        &[H2],
        "/v3/flatcontainer/fake.core/1.0.0/fake.core.1.0.0.nupkg",
    )
    .await
    .expect("package over h2");
    assert_eq!(nupkg.status, StatusCode::OK);
    assert_eq!(Some(nupkg.body.to_vec()), upstream.nupkg_bytes("fake.core", "1.0.0"));
    // Plain http on the TLS port gets no answer (the handshake fails).
    let plain = common::nucache::try_send(
        http::Method::GET,
        &format!("http://127.0.0.1:{port}/health"),
        &[],
        bytes::Bytes::new(),
    )
    .await;
    assert!(plain.is_err(), "plain http answered on the https port: {plain:?}");
}

#[tokio::test]
async fn curl_restores_over_https_with_the_private_ca() {
    let upstream = FakeUpstream::start().await;
    let certs = tempfile::tempdir().expect("temp dir");
    let ca = Ca::new("test CA");
    let ca_pem = ca.write_pem(certs.path(), "ca.pem");
    let nucache = https_nucache(&upstream, &ca, certs.path()).await;
    let url = format!(
        "https://localhost:{}/v3/flatcontainer/fake.core/1.0.0/fake.core.1.0.0.nupkg",
        nucache.addr.port()
    );
    let out = certs.path().join("fake.core.1.0.0.nupkg");
    let curl = |extra: &[&str]| {
        let mut command = Command::new("curl");
        command
            .args(["-sS", "--max-time", "20", "--cacert"])
            .arg(&ca_pem)
            .args(extra)
            .args(["-o"])
            .arg(&out)
            .args(["-w", "%{http_version} %{http_code}"])
            .arg(&url);
        command
    };
    for (flag, expected) in [("--http2", "2 200"), ("--http1.1", "1.1 200")] {
        let mut command = curl(&[flag]);
        let output = tokio::task::spawn_blocking(move || command.output())
            .await
            .expect("join")
            .expect("curl runs (apt-get install curl)");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(
            String::from_utf8_lossy(&output.stdout),
            expected,
            "curl {flag}: {stderr}"
        );
        assert_eq!(
            std::fs::read(&out).ok(),
            upstream.nupkg_bytes("fake.core", "1.0.0"),
            "curl {flag} got other bytes"
        );
    }
    // Without the CA, curl refuses the certificate.
    let mut untrusted = Command::new("curl");
    untrusted.args(["-sS", "--max-time", "20", "-o", "/dev/null"]).arg(&url);
    let output = tokio::task::spawn_blocking(move || untrusted.output())
        .await
        .expect("join")
        .expect("curl runs");
    assert!(!output.status.success(), "curl trusted a certificate of an unknown CA");
}

/// Polls `/health` over TLS until it answers (or the process exits).
async fn ready_over_tls(process: &mut Process, ca: &Ca) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(status) = process.exited() {
            panic!("nucache exited ({status}): {}", process.log_text());
        }
        if let Ok(reply) = tls_get(ca, process.port, &[HTTP1], "/health").await {
            if reply.status == StatusCode::OK {
                return;
            }
        }
        assert!(Instant::now() < deadline, "no TLS answer: {}", process.log_text());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Puts `from` in place of `to` in one rename, as a certificate renewal would.
fn replace(from: &std::path::Path, to: &std::path::Path) {
    std::fs::rename(from, to).expect("rename into place");
}

#[tokio::test]
async fn sighup_swaps_the_certificate_for_new_connections_and_open_ones_finish() {
    let upstream = FakeUpstream::start().await;
    // A slow package: 1 KiB every 50 ms, about a second, in flight across the reload.
    upstream.set_body_chunking(1024, Duration::from_millis(50));
    let dir = tempfile::tempdir().expect("temp dir");
    let ca = Ca::new("test CA");
    let first = ca.issue(dir.path(), "first");
    let second = ca.issue(dir.path(), "second");
    let (cert, key) = (dir.path().join("server.crt"), dir.path().join("server.key"));
    replace(&first.cert_pem, &cert);
    replace(&first.key_pem, &key);
    let cache = dir.path().join("cache");
    let mut process = Launch {
        env: vec![
            ("NUCACHE_TLS__CERT", cert.display().to_string()),
            ("NUCACHE_TLS__KEY", key.display().to_string()),
        ],
        ..Launch::new(&upstream.index_url(), &cache)
    }
    .spawn();
    ready_over_tls(&mut process, &ca).await;

    let mut kept = TlsConnection::open(&ca, process.port, &[HTTP1]).await.expect("connect");
    assert_eq!(kept.server_cert, first.der, "the first certificate at start");
    assert_eq!(kept.get("/health").await.map(|r| r.status), Ok(StatusCode::OK));
    let mut downloading = TlsConnection::open(&ca, process.port, &[H2]).await.expect("connect");
    let path = "/v3/flatcontainer/fake.core/1.0.0/fake.core.1.0.0.nupkg";
    let download = tokio::spawn(async move { downloading.get(path).await });
    let deadline = Instant::now() + Duration::from_secs(10);
    while upstream.count("fake.core.1.0.0.nupkg") == 0 {
        assert!(Instant::now() < deadline, "the download never reached the upstream");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    replace(&second.cert_pem, &cert);
    replace(&second.key_pem, &key);
    process.hangup();
    let log = process.wait_for_log("SIGHUP: configuration reloaded", 1).await;
    assert!(log.contains("TLS certificate (new connections)"), "{log}");
    assert!(!log.contains("need_restart=tls"), "{log}");

    let fresh = TlsConnection::open(&ca, process.port, &[HTTP1])
        .await
        .expect("connect after SIGHUP");
    assert_eq!(
        fresh.server_cert, second.der,
        "a new connection gets the new certificate"
    );
    let again = kept.get("/health").await.expect("the open connection still answers");
    assert_eq!((again.status, again.server_cert), (StatusCode::OK, first.der.clone()));
    let downloaded = download.await.expect("join").expect("the download in flight finishes");
    assert_eq!(downloaded.status, StatusCode::OK);
    assert_eq!(
        Some(downloaded.body.to_vec()),
        upstream.nupkg_bytes("fake.core", "1.0.0")
    );
    assert!(process.exited().is_none(), "SIGHUP stopped nucache");

    // A broken pair on the next SIGHUP keeps the running certificate.
    std::fs::write(&key, "not a key").expect("write");
    process.hangup();
    let log = process.wait_for_log("SIGHUP: TLS certificate unchanged", 1).await;
    assert!(log.contains("tls.key"), "the error names the key: {log}");
    let still = TlsConnection::open(&ca, process.port, &[HTTP1]).await.expect("connect");
    assert_eq!(still.server_cert, second.der);
}

#[tokio::test]
async fn a_key_that_is_not_the_certificates_stops_start_up_naming_it() {
    let dir = tempfile::tempdir().expect("temp dir");
    let ca = Ca::new("test CA");
    let one = ca.issue(dir.path(), "one");
    let other = ca.issue(dir.path(), "other");
    let mut config = common::nucache::test_config("http://127.0.0.1:9/v3/index.json", dir.path());
    config.tls.cert = Some(one.cert_pem.clone());
    config.tls.key = Some(other.key_pem.clone());
    let error = nucache::Server::bind(config).await.err().map(|e| e.to_string());
    let error = error.unwrap_or_default();
    assert!(error.contains("tls.key") && error.contains("tls.cert"), "{error}");
    let mut config = common::nucache::test_config("http://127.0.0.1:9/v3/index.json", dir.path());
    config.tls.cert = Some(dir.path().join("missing.crt"));
    config.tls.key = Some(one.key_pem.clone());
    let error = nucache::Server::bind(config).await.err().map(|e| e.to_string());
    assert!(error.unwrap_or_default().starts_with("tls.cert "), "names tls.cert");
}
