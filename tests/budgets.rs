//! Budgets for the work a client can start (issue 19): upstream requests
//! per upstream, background refreshes, bytes of documents in flight,
//! HTTP/2 streams per connection, idle connections and import staging.
//! Past a budget a client waits in a fair queue or gets 503 with
//! `Retry-After`; the upstream's own count of requests in flight, and the
//! budget gauges of `/metrics`, show that no more is ever started.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::metrics::{scrape, scrape_until, Scrape};
use common::nucache::Nucache;
use common::tls::Ca;
use common::upstream::{Corpus, FakeUpstream, Fault};
use futures_util::{stream, StreamExt};
use http::StatusCode;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use nucache::config::ByteSize;
use nucache::Config;

/// Distinct documents a client asks for, and how many it asks at once.
const DOCUMENTS: usize = 5_000;
const AT_ONCE: usize = 200;
/// Requests in flight to the upstream, and background refreshes, in these tests.
const UPSTREAM_CAP: u32 = 8;
const REFRESH_CAP: u32 = 4;

fn versions_path(n: usize) -> String {
    format!("/v3/flatcontainer/many.{n}/index.json")
}

/// A corpus of `DOCUMENTS` packages of one version each (tiny package files).
fn many_packages() -> Corpus {
    let mut corpus = Corpus::empty();
    for n in 0..DOCUMENTS {
        corpus.add(&format!("Many.{n}"), "1.0.0", b"PK\x03\x04".to_vec(), true);
    }
    corpus
}

/// What one pass of requests got back.
#[derive(Default, Debug)]
struct Answers {
    ok: usize,
    busy_with_retry_after: usize,
    other: Vec<String>,
}

/// GETs every path, `AT_ONCE` at a time, through one pooled client.
async fn ask_all(nucache: &Nucache, paths: Vec<String>) -> Answers {
    let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
    let answers = Mutex::new(Answers::default());
    stream::iter(paths)
        .for_each_concurrent(AT_ONCE, |path| {
            let (client, answers) = (&client, &answers);
            async move {
                let uri: http::Uri = nucache.url(&path).parse().expect("uri");
                let answer = tokio::time::timeout(Duration::from_secs(60), client.get(uri)).await;
                let Ok(Ok(response)) = answer else {
                    answers
                        .lock()
                        .expect("answers")
                        .other
                        .push(format!("{path}: no answer"));
                    return;
                };
                let (status, retry_after) = (response.status(), response.headers().contains_key("retry-after"));
                let body = response.into_body().collect().await.map(|b| b.to_bytes());
                let mut answers = answers.lock().expect("answers");
                match (status, retry_after, body) {
                    (StatusCode::OK, _, Ok(body)) if body.starts_with(b"{") => answers.ok += 1,
                    (StatusCode::SERVICE_UNAVAILABLE, true, Ok(_)) => answers.busy_with_retry_after += 1,
                    (status, _, body) => answers.other.push(format!("{path}: {status} {body:?}")),
                }
            }
        })
        .await;
    answers.into_inner().expect("answers")
}

/// The most each budget's `in_use` gauge showed while `work` ran.
async fn sampling<T>(nucache: &Nucache, work: impl std::future::Future<Output = T>) -> (T, Vec<(String, f64)>) {
    let done = AtomicBool::new(false);
    let sampler = async {
        let mut most: Vec<(String, f64)> = Vec::new();
        while !done.load(Ordering::SeqCst) {
            let scraped = scrape(nucache).await;
            for budget in ["upstream_requests", "background_refreshes", "document_bytes"] {
                let now = scraped.sum("nucache_budget_in_use", &[("budget", budget)]);
                match most.iter_mut().find(|(name, _)| name == budget) {
                    Some((_, value)) => *value = value.max(now),
                    None => most.push((budget.to_string(), now)),
                }
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        most
    };
    let work = async {
        let out = work.await;
        done.store(true, Ordering::SeqCst);
        out
    };
    tokio::join!(work, sampler)
}

fn budget(scraped: &Scrape, series: &str, budget: &str) -> f64 {
    scraped.sum(&format!("nucache_budget_{series}"), &[("budget", budget)])
}

fn most_of(most: &[(String, f64)], budget: &str) -> f64 {
    most.iter().find(|(name, _)| name == budget).map_or(-1.0, |(_, v)| *v)
}

/// The upstream had between 1 and `cap` requests in flight at once, and
/// the gauge of `budget` (sampled: it may miss the peak) never showed more.
fn held_to(upstream: &FakeUpstream, most: &[(String, f64)], budget: &str, cap: u32) {
    let at_upstream = upstream.max_in_flight();
    assert!(
        (1..=cap as usize).contains(&at_upstream),
        "{at_upstream} requests in flight at the upstream; {budget} is capped at {cap}"
    );
    let gauge = most_of(most, budget);
    assert!((0.0..=f64::from(cap)).contains(&gauge), "{most:?}");
}

/// A nucache whose version lists expire at once, on `dir`, where every
/// one of `DOCUMENTS` was cached, in front of a slow upstream.
async fn farm(upstream: &FakeUpstream, dir: &std::path::Path, max_stale: Duration) -> Nucache {
    let nucache = Nucache::start_in(&upstream.index_url(), dir, |c| {
        c.ttl.versions = Duration::from_millis(1);
        c.ttl.max_stale = max_stale;
        c.upstream.max_concurrent_requests = UPSTREAM_CAP;
        c.upstream.read_timeout = Duration::from_secs(10);
        c.limits.background_refreshes = REFRESH_CAP;
        c.limits.queue_timeout = Duration::from_secs(1);
    })
    .await;
    // Slow enough that requests started together overlap at the upstream.
    upstream.set_fault_for("v3-flatcontainer", Fault::Delay(Duration::from_millis(5)));
    upstream.reset_max_in_flight();
    nucache
}

/// Caches every version list (default budgets; a long queue: each store
/// waits for the disk) in `dir`.
async fn cache_every_list(upstream: &FakeUpstream, dir: &std::path::Path) {
    let nucache = Nucache::start_in(&upstream.index_url(), dir, |c| {
        c.limits.queue_timeout = Duration::from_secs(120);
    })
    .await;
    let cached = ask_all(&nucache, (0..DOCUMENTS).map(versions_path).collect()).await;
    assert_eq!(cached.ok, DOCUMENTS, "caching every list: {cached:?}");
    nucache.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_thousand_expired_documents_keep_the_upstream_at_its_caps_served_stale_or_waited_for() {
    let upstream = FakeUpstream::start_with(many_packages()).await;
    // The test is about concurrency: 5,000 fsyncs and unlinks on a busy
    // disk would take most of its time, so the cache is on tmpfs when
    // there is one.
    let dir = tempfile::tempdir_in("/dev/shm")
        .or_else(|_| tempfile::tempdir())
        .expect("temp dir");
    cache_every_list(&upstream, dir.path()).await;
    let paths = || (0..DOCUMENTS).map(versions_path).collect::<Vec<_>>();

    // Within max_stale: served at once, refreshed behind, at most REFRESH_CAP at a time.
    let nucache = farm(&upstream, dir.path(), Duration::from_secs(24 * 3600)).await;
    let (answers, most) = sampling(&nucache, ask_all(&nucache, paths())).await;
    assert_eq!(answers.ok, DOCUMENTS, "every stale copy served at once: {answers:?}");
    held_to(&upstream, &most, "background_refreshes", REFRESH_CAP);
    let scraped = scrape(&nucache).await;
    assert!(
        budget(&scraped, "refusals_total", "background_refreshes") > 0.0,
        "refreshes past the budget are skipped and counted"
    );
    assert_eq!(
        budget(&scraped, "limit", "background_refreshes"),
        f64::from(REFRESH_CAP)
    );
    nucache.stop().await;

    // Past max_stale: clients wait, the upstream sees at most UPSTREAM_CAP.
    let nucache = farm(&upstream, dir.path(), Duration::ZERO).await;
    let (answers, most) = sampling(&nucache, ask_all(&nucache, paths())).await;
    // Past the queue a client gets its cached copy (STALE), or a 503.
    assert!(
        answers.other.is_empty(),
        "{:?}",
        &answers.other[..answers.other.len().min(5)]
    );
    assert_eq!(answers.ok + answers.busy_with_retry_after, DOCUMENTS);
    held_to(&upstream, &most, "upstream_requests", UPSTREAM_CAP);
    let scraped = scrape(&nucache).await;
    assert!(
        budget(&scraped, "waits_total", "upstream_requests") > 0.0,
        "nobody queued"
    );
    let bytes_limit = budget(&scraped, "limit", "document_bytes");
    assert!(most_of(&most, "document_bytes") <= bytes_limit, "{most:?}");
}

/// Version lists of about 27 KB (2,500 versions of `Big.{name}`).
fn big_lists(names: &[&str]) -> Corpus {
    let mut corpus = Corpus::empty();
    for name in names {
        for patch in 0..2_500 {
            corpus.add(&format!("Big.{name}"), &format!("1.0.{patch}"), Vec::new(), true);
        }
    }
    corpus.add("Small", "1.0.0", Vec::new(), true);
    corpus
}

#[tokio::test]
async fn a_document_larger_than_the_byte_budgets_remainder_waits_then_gets_503() {
    let upstream = FakeUpstream::start_with(big_lists(&["A", "B", "C"])).await;
    let limit = 64 * 1024;
    let nucache = Arc::new(
        Nucache::start(&upstream.index_url(), |c| {
            c.upstream.max_document_size = ByteSize(32 * 1024);
            c.upstream.read_timeout = Duration::from_secs(10);
            c.limits.document_bytes = ByteSize(limit);
            c.limits.queue_timeout = Duration::from_millis(500);
        })
        .await,
    );
    assert_eq!(nucache.get("/v3/index.json").await.status, StatusCode::OK);
    // A and B send half their body, then stall: each holds its whole length.
    for name in ["big.a", "big.b"] {
        upstream.set_fault_for(&format!("{name}/index.json"), Fault::StallBody);
    }
    let stalled: Vec<_> = ["big.a", "big.b"]
        .map(|name| {
            let nucache = nucache.clone();
            tokio::spawn(async move { nucache.get(&format!("/v3/flatcontainer/{name}/index.json")).await })
        })
        .into();
    scrape_until(&nucache, "A and B hold most of the budget", |s| {
        budget(s, "in_use", "document_bytes") > 50_000.0
    })
    .await;
    let small = nucache.get("/v3/flatcontainer/small/index.json").await;
    assert_eq!(small.status, StatusCode::OK, "what fits is served: {}", small.text());
    let started = Instant::now();
    let refused = nucache.get("/v3/flatcontainer/big.c/index.json").await;
    assert_eq!(
        refused.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "C was served past the budget"
    );
    assert!(
        started.elapsed() >= Duration::from_millis(500),
        "C did not wait in the queue"
    );
    assert_eq!(refused.header("retry-after"), Some("5"));
    assert!(refused.text().contains("limits.document_bytes"), "{}", refused.text());
    let scraped = scrape(&nucache).await;
    assert!(budget(&scraped, "in_use", "document_bytes") <= limit as f64);
    assert_eq!(budget(&scraped, "refusals_total", "document_bytes"), 1.0);

    upstream.clear_faults();
    for request in stalled {
        let broken = request.await.expect("task");
        assert_ne!(
            broken.status,
            StatusCode::OK,
            "a stalled body that broke off is not served"
        );
    }
    let served = nucache.get("/v3/flatcontainer/big.c/index.json").await;
    assert_eq!(
        served.status,
        StatusCode::OK,
        "once the budget is back: {}",
        served.text()
    );
    assert!(served.text().contains("\"1.0.2499\""));
}

/// nucache over https (HTTP/2 by ALPN) with `tweak`.
async fn https_nucache(
    upstream: &FakeUpstream,
    ca: &Ca,
    dir: &std::path::Path,
    tweak: impl FnOnce(&mut Config),
) -> Nucache {
    let server = ca.issue(dir, "server");
    Nucache::start(&upstream.index_url(), |c| {
        c.tls.cert = Some(server.cert_pem.clone());
        c.tls.key = Some(server.key_pem.clone());
        tweak(c);
    })
    .await
}

type H2Sender = hyper::client::conn::http2::SendRequest<Empty<Bytes>>;

/// One HTTP/2 connection: its sender, and the task that ends when the
/// connection closes.
async fn h2_connection(ca: &Ca, port: u16) -> (H2Sender, tokio::task::JoinHandle<Result<(), hyper::Error>>) {
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    let name = rustls::pki_types::ServerName::try_from("localhost").expect("name");
    let tls = ca.connector(&[b"h2"]).connect(name, tcp).await.expect("handshake");
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (sender, connection) = hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
        .await
        .expect("h2 handshake");
    (sender, tokio::spawn(connection))
}

async fn h2_get(sender: &mut H2Sender, port: u16, path: &str) -> StatusCode {
    let request = http::Request::get(format!("https://localhost:{port}{path}"))
        .version(http::Version::HTTP_2)
        .body(Empty::new())
        .expect("request");
    let response = tokio::time::timeout(Duration::from_secs(20), sender.send_request(request))
        .await
        .expect("answer in time")
        .expect("answer");
    let status = response.status();
    let _ = response.into_body().collect().await;
    status
}

#[tokio::test]
async fn an_http2_client_opening_more_streams_than_the_limit_is_held_to_it() {
    let upstream = FakeUpstream::start_with(many_packages()).await;
    let (ca, certs) = (Ca::new("test CA"), tempfile::tempdir().expect("temp dir"));
    let nucache = https_nucache(&upstream, &ca, certs.path(), |c| c.limits.http2_max_streams = 4).await;
    let port = nucache.addr.port();
    let (sender, _connection) = h2_connection(&ca, port).await;
    assert_eq!(
        h2_get(&mut sender.clone(), port, "/v3/index.json").await,
        StatusCode::OK
    );
    upstream.set_fault_for("v3-flatcontainer", Fault::Delay(Duration::from_millis(300)));
    upstream.reset_max_in_flight();
    let statuses = futures_util::future::join_all((0..20).map(|n| {
        let mut sender = sender.clone();
        async move { h2_get(&mut sender, port, &versions_path(n)).await }
    }))
    .await;
    assert!(statuses.iter().all(|s| *s == StatusCode::OK), "{statuses:?}");
    let at_upstream = upstream.max_in_flight();
    assert!(
        (1..=4).contains(&at_upstream),
        "20 streams on one connection put {at_upstream} requests in flight; the limit is 4"
    );
}

#[tokio::test]
async fn an_idle_http2_connection_is_closed_after_the_idle_timeout() {
    let upstream = FakeUpstream::start().await;
    let (ca, certs) = (Ca::new("test CA"), tempfile::tempdir().expect("temp dir"));
    let idle = Duration::from_millis(300);
    let nucache = https_nucache(&upstream, &ca, certs.path(), |c| c.limits.idle_timeout = idle).await;
    let port = nucache.addr.port();
    let (mut sender, connection) = h2_connection(&ca, port).await;
    // The server's idle time starts after it sent the answer, which is
    // after this moment (the client sees the answer later still).
    let asked = Instant::now();
    assert_eq!(h2_get(&mut sender, port, "/health").await, StatusCode::OK);
    // The sender stays alive: only the server can end the connection.
    let closed = tokio::time::timeout(Duration::from_secs(10), connection).await;
    assert!(closed.is_ok(), "the idle connection was still open after 10 s");
    assert!(asked.elapsed() >= idle, "closed before the idle timeout");
    drop(sender);
}

#[tokio::test]
async fn an_idle_http1_keep_alive_connection_is_closed_after_the_idle_timeout() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let upstream = FakeUpstream::start().await;
    let idle = Duration::from_millis(300);
    // header_read_timeout (30 s) would close it too, but only much later.
    let nucache = Nucache::start(&upstream.index_url(), |c| c.limits.idle_timeout = idle).await;
    let mut tcp = tokio::net::TcpStream::connect(nucache.addr).await.expect("connect");
    tcp.write_all(b"GET /health HTTP/1.1\r\nHost: nucache\r\n\r\n")
        .await
        .expect("send");
    let mut seen = Vec::new();
    let mut buffer = [0u8; 4096];
    let closed = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match tcp.read(&mut buffer).await {
                Ok(0) | Err(_) => return,
                Ok(n) => seen.extend_from_slice(&buffer[..n]),
            }
        }
    })
    .await;
    assert!(
        String::from_utf8_lossy(&seen).starts_with("HTTP/1.1 200"),
        "no answer first"
    );
    assert!(
        closed.is_ok(),
        "the idle keep-alive connection was still open after 10 s"
    );
}

const ADMIN_KEY: &str = "budgets-admin-key";

#[tokio::test]
async fn an_import_upload_over_the_staging_limit_is_refused_and_leaves_no_staging_directory() {
    let upstream = FakeUpstream::start().await;
    let nucache = Nucache::start(&upstream.index_url(), |c| {
        c.admin.keys = vec![nucache::config::digest_hex(ADMIN_KEY)];
        c.limits.import_staging = ByteSize(1000);
    })
    .await;
    let key = [("x-nuget-apikey", ADMIN_KEY)];
    let put = |upload: &'static str, file: &'static str, len: usize| {
        let path = format!("/admin/import/{upload}/{file}");
        let nucache = &nucache;
        async move {
            nucache
                .request_with_body(http::Method::PUT, &path, &key, vec![b'x'; len])
                .await
        }
    };
    let first = put("whole", "manifest.json", 600).await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.text());
    assert!(nucache.dir.join("import/whole/manifest.json").is_file());
    // The limit is per upload: 600 + 600 bytes is over it.
    let second = put("whole", "packages/a.nupkg", 600).await;
    assert_eq!(second.status, StatusCode::PAYLOAD_TOO_LARGE, "{}", second.text());
    assert!(
        !nucache.dir.join("import/whole").exists(),
        "the refused upload was left staged"
    );
    let one_file = put("big", "manifest.json", 5000).await;
    assert_eq!(one_file.status, StatusCode::PAYLOAD_TOO_LARGE, "{}", one_file.text());
    assert!(!nucache.dir.join("import/big").exists());
    // Another upload is not charged for the refused ones.
    assert_eq!(put("other", "manifest.json", 900).await.status, StatusCode::OK);

    // An upload that breaks off is discarded too.
    use tokio::io::AsyncWriteExt;
    let mut tcp = tokio::net::TcpStream::connect(nucache.addr).await.expect("connect");
    let head = format!(
        "PUT /admin/import/broken/manifest.json HTTP/1.1\r\nHost: nucache\r\nX-NuGet-ApiKey: {ADMIN_KEY}\r\nContent-Length: 900\r\n\r\n"
    );
    tcp.write_all(head.as_bytes()).await.expect("send head");
    tcp.write_all(&[b'x'; 100]).await.expect("send some");
    let staged = nucache.dir.join("import/broken/manifest.json");
    eventually("the first bytes are staged", || staged.is_file()).await;
    drop(tcp);
    eventually("the broken upload is discarded", || {
        !nucache.dir.join("import/broken").exists()
    })
    .await;
}

/// Polls `check` every 20 ms for up to 10 s.
async fn eventually(what: &str, check: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !check() {
        assert!(Instant::now() < deadline, "never happened: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_staging_directory_left_by_an_earlier_run_is_gone_after_start_up() {
    let upstream = FakeUpstream::start().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let left = dir.path().join("import/abandoned/packages");
    std::fs::create_dir_all(&left).expect("staging dir");
    std::fs::write(left.join("a.nupkg"), vec![0u8; 4096]).expect("staged file");
    let nucache = Nucache::start_in(&upstream.index_url(), dir.path(), |_| {}).await;
    assert!(
        !dir.path().join("import").exists(),
        "the staging directory survived start-up"
    );
    assert_eq!(nucache.get("/health").await.status, StatusCode::OK);
}
