//! Upstream faults, one test each: what the client sees (a clear 502/504 in
//! time, or a stale copy) and that no poisoned entry is left behind. Plus
//! the circuit breaker and hostile clients.

mod common;

use std::time::{Duration, Instant};

use common::nucache::Nucache;
use common::poll;
use common::upstream::{FakeUpstream, Fault, Role};
use http::StatusCode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const NUPKG: &str = "/v3/flatcontainer/fake.core/1.1.0/fake.core.1.1.0.nupkg";
const VERSIONS: &str = "/v3/flatcontainer/fake.core/index.json";

/// nucache with a warm service index and a cached version list that is
/// always expired (TTL 0), so that every request for it goes to the upstream
/// (no stale-while-revalidate: `max_stale` 0, the client waits for the answer).
async fn warm(upstream: &FakeUpstream, tweak: impl FnOnce(&mut nucache::Config)) -> Nucache {
    let nucache = Nucache::start(&upstream.index_url(), |c| {
        c.ttl.versions = Duration::ZERO;
        c.ttl.max_stale = Duration::ZERO;
        tweak(c);
    })
    .await;
    assert_eq!(nucache.get(VERSIONS).await.status, StatusCode::OK);
    nucache
}

/// After a fault: the package was not cached, and is served right once the
/// upstream is well.
async fn assert_not_poisoned(nucache: &Nucache, upstream: &FakeUpstream) {
    upstream.clear_faults();
    let healed = nucache.get(NUPKG).await;
    assert_eq!(
        (healed.status, healed.x_cache()),
        (StatusCode::OK, Some("MISS")),
        "a broken download was cached"
    );
    assert_eq!(Some(healed.body.to_vec()), upstream.nupkg_bytes("Fake.Core", "1.1.0"));
}

/// The client must not take a broken body for a whole one.
fn assert_broken(reply: &common::nucache::Reply, upstream: &FakeUpstream) {
    let expected = upstream.nupkg_bytes("Fake.Core", "1.1.0").unwrap_or_default();
    let whole = reply.status == StatusCode::OK && reply.body_error.is_none() && reply.body == expected;
    assert!(!whole, "a broken download looked whole");
}

#[tokio::test]
async fn a_5xx_storm_gives_502_or_stale() {
    let upstream = FakeUpstream::start().await;
    let nucache = warm(&upstream, |_| {}).await;
    upstream.set_fault(Fault::Status(500));
    let stale = nucache.get(VERSIONS).await;
    assert_eq!((stale.status, stale.x_cache()), (StatusCode::OK, Some("STALE")));
    let fresh = nucache.get(NUPKG).await;
    assert_eq!(fresh.status, StatusCode::BAD_GATEWAY);
    assert!(fresh.text().contains("500"), "{}", fresh.text());
    assert_not_poisoned(&nucache, &upstream).await;
}

#[tokio::test]
async fn refused_connections_give_502_or_stale() {
    let upstream = FakeUpstream::start().await;
    let nucache = warm(&upstream, |_| {}).await;
    upstream.set_fault(Fault::Refuse);
    assert_eq!(nucache.get(VERSIONS).await.x_cache(), Some("STALE"));
    let reply = nucache.get(NUPKG).await;
    assert_eq!(reply.status, StatusCode::BAD_GATEWAY);
    assert!(reply.text().contains("cannot connect"), "{}", reply.text());
    assert_not_poisoned(&nucache, &upstream).await;
}

#[tokio::test]
async fn a_reset_connection_gives_502() {
    let upstream = FakeUpstream::start().await;
    let nucache = warm(&upstream, |_| {}).await;
    upstream.set_fault(Fault::Reset);
    assert_eq!(nucache.get(VERSIONS).await.x_cache(), Some("STALE"));
    assert_eq!(nucache.get(NUPKG).await.status, StatusCode::BAD_GATEWAY);
    assert_not_poisoned(&nucache, &upstream).await;
}

#[tokio::test]
async fn a_hang_before_the_first_byte_gives_504_within_the_timeout() {
    let upstream = FakeUpstream::start().await;
    let nucache = warm(&upstream, |c| c.upstream.read_timeout = Duration::from_millis(400)).await;
    upstream.set_fault(Fault::Hang);
    let started = Instant::now();
    assert_eq!(nucache.get(VERSIONS).await.x_cache(), Some("STALE"));
    let reply = nucache.get(NUPKG).await;
    assert_eq!(reply.status, StatusCode::GATEWAY_TIMEOUT, "{}", reply.text());
    assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());
    assert_not_poisoned(&nucache, &upstream).await;
}

#[tokio::test]
async fn a_connect_that_hangs_gives_504_within_the_connect_timeout() {
    // A listener that never accepts, with its backlog full: further SYNs are dropped.
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket.bind("127.0.0.1:0".parse().expect("addr")).expect("bind");
    let listener = socket.listen(0).expect("listen");
    let addr = listener.local_addr().expect("addr");
    let mut fillers = Vec::new();
    for _ in 0..4 {
        if let Ok(Ok(stream)) = tokio::time::timeout(Duration::from_millis(200), TcpStream::connect(addr)).await {
            fillers.push(stream);
        }
    }
    // The premise, checked: a connect to it now hangs.
    let probe = tokio::time::timeout(Duration::from_millis(500), TcpStream::connect(addr)).await;
    assert!(
        probe.is_err(),
        "connects to the full listener do not hang here: {probe:?}"
    );
    let index = format!("http://{addr}/v3/index.json");
    // Only the connect timeout can answer quickly: the read timeout is long.
    let nucache = Nucache::start(&index, |c| {
        c.upstream.connect_timeout = Duration::from_millis(300);
        c.upstream.read_timeout = Duration::from_secs(30);
    })
    .await;
    let started = Instant::now();
    let reply = nucache.get("/v3/index.json").await;
    let elapsed = started.elapsed();
    assert!(
        matches!(reply.status, StatusCode::GATEWAY_TIMEOUT | StatusCode::BAD_GATEWAY),
        "{} {}",
        reply.status,
        reply.text()
    );
    assert!(reply.text().contains("connect"), "{}", reply.text());
    // Two attempts (retries = 1) of 0.3 s and a backoff, plus slack.
    assert!(elapsed < Duration::from_secs(3), "{elapsed:?}");
    drop(fillers);
}

#[tokio::test]
async fn a_body_that_stalls_midway_is_cut_off_and_not_cached() {
    let upstream = FakeUpstream::start().await;
    let nucache = warm(&upstream, |c| c.upstream.read_timeout = Duration::from_millis(400)).await;
    upstream.set_fault_for(".nupkg", Fault::StallBody);
    let started = Instant::now();
    let reply = nucache.get(NUPKG).await;
    assert_broken(&reply, &upstream);
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_not_poisoned(&nucache, &upstream).await;
}

#[tokio::test]
async fn a_body_shorter_than_its_content_length_is_not_cached() {
    let upstream = FakeUpstream::start().await;
    let nucache = warm(&upstream, |_| {}).await;
    upstream.set_fault_for(".nupkg", Fault::Truncate);
    assert_broken(&nucache.get(NUPKG).await, &upstream);
    // A truncated document is an error too, and is not stored.
    let document = "/v3/flatcontainer/fake.dep/index.json";
    upstream.set_fault_for("fake.dep/index.json", Fault::Truncate);
    assert_eq!(nucache.get(document).await.status, StatusCode::BAD_GATEWAY);
    assert_not_poisoned(&nucache, &upstream).await;
    assert_eq!(nucache.get(document).await.x_cache(), Some("MISS"));
}

#[tokio::test]
async fn a_body_longer_than_its_content_length_never_leaves_a_longer_file() {
    /// What the fake sends beyond `Content-Length` (its `EXTRA_BYTES`).
    const BEYOND: &[u8] = b"<these bytes are beyond Content-Length>";
    let upstream = FakeUpstream::start().await;
    let nucache = warm(&upstream, |_| {}).await;
    let expected = upstream.nupkg_bytes("Fake.Core", "1.1.0").unwrap_or_default();
    upstream.set_fault_for(".nupkg", Fault::LongerBody);
    let reply = nucache.get(NUPKG).await;
    // hyper stops reading at Content-Length; the extra bytes never reach
    // the client, and what it got is exactly the package, or broke off.
    if reply.status == StatusCode::OK && reply.body_error.is_none() {
        assert_eq!(reply.body.to_vec(), expected);
    }
    // No file in the cache holds more than was announced.
    let files = common::files_under(&nucache.dir.join("content"));
    assert!(!files.is_empty(), "the cache holds nothing at all: wrong directory?");
    for file in &files {
        let data = std::fs::read(file).unwrap_or_default();
        assert!(
            !data.windows(BEYOND.len()).any(|w| w == BEYOND),
            "{} holds the bytes beyond Content-Length",
            file.display()
        );
        let content = common::stored_content(&data);
        let longer = content.len() > expected.len() && content.starts_with(&expected);
        assert!(!longer, "{} is longer than announced", file.display());
    }
    // Whatever the cache kept is exactly the announced package: the next
    // request (a HIT, or a MISS with nothing kept) has the right bytes.
    upstream.clear_faults();
    let again = nucache.get(NUPKG).await;
    assert!(matches!(again.x_cache(), Some("HIT" | "MISS")), "{:?}", again.x_cache());
    assert_eq!(
        again.header("content-length"),
        Some(expected.len().to_string().as_str())
    );
    assert_eq!(again.body.to_vec(), expected);
}

#[tokio::test]
async fn corrupted_bytes_are_caught_by_content_md5() {
    let upstream = FakeUpstream::start().await;
    let nucache = warm(&upstream, |_| {}).await;
    upstream.set_fault(Fault::Corrupt);
    assert_broken(&nucache.get(NUPKG).await, &upstream);
    assert_not_poisoned(&nucache, &upstream).await;
}

#[tokio::test]
async fn corrupted_bytes_are_caught_by_the_registration_package_hash() {
    let upstream = FakeUpstream::start().await;
    upstream.set_content_md5(false);
    upstream.set_registration_hashes(true);
    let nucache = warm(&upstream, |_| {}).await;
    // The registration states the package hash; nucache remembers it.
    let registration = nucache
        .get("/v3/registration/registration5-gz-semver2/fake.core/index.json")
        .await;
    assert!(registration.text().contains("packageHash"));
    upstream.set_fault(Fault::Corrupt);
    assert_broken(&nucache.get(NUPKG).await, &upstream);
    assert_not_poisoned(&nucache, &upstream).await;
}

#[tokio::test]
async fn a_non_json_error_page_with_200_gives_502_or_stale() {
    let upstream = FakeUpstream::start().await;
    let nucache = warm(&upstream, |_| {}).await;
    upstream.set_fault(Fault::BadJson);
    let stale = nucache.get(VERSIONS).await;
    assert_eq!((stale.status, stale.x_cache()), (StatusCode::OK, Some("STALE")));
    assert!(stale.json()["versions"].is_array());
    let never = nucache.get("/v3/flatcontainer/fake.dep/index.json").await;
    assert_eq!(never.status, StatusCode::BAD_GATEWAY);
    upstream.clear_faults();
    assert_eq!(
        nucache.get("/v3/flatcontainer/fake.dep/index.json").await.x_cache(),
        Some("MISS")
    );
}

#[tokio::test]
async fn a_redirect_loop_gives_502_quickly() {
    let upstream = FakeUpstream::start().await;
    let nucache = warm(&upstream, |_| {}).await;
    upstream.set_fault(Fault::RedirectLoop);
    let started = Instant::now();
    let reply = nucache.get(NUPKG).await;
    assert_eq!(reply.status, StatusCode::BAD_GATEWAY);
    assert!(reply.text().contains("redirects"));
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_not_poisoned(&nucache, &upstream).await;
}

#[tokio::test]
async fn the_breaker_opens_answers_fast_and_closes_when_the_upstream_is_back() {
    let upstream = FakeUpstream::start().await;
    let nucache = warm(&upstream, |c| {
        c.upstream.breaker_threshold = 3;
        c.upstream.breaker_cooldown = Duration::from_millis(300);
        c.upstream.retries = 0;
    })
    .await;
    upstream.set_fault(Fault::Status(503));
    for _ in 0..3 {
        nucache.get("/v3/flatcontainer/fake.dep/index.json").await;
    }
    let health = nucache.get("/health").await.json();
    assert_eq!(health["upstream"]["state"], "open", "{health}");
    assert_eq!(health["status"], "degraded");
    // Open: no request reaches the upstream; cached copies are served.
    upstream.reset_log();
    let stale = nucache.get(VERSIONS).await;
    assert_eq!(stale.x_cache(), Some("STALE"));
    let refused = nucache.get("/v3/flatcontainer/fake.dep/index.json").await;
    assert_eq!(refused.status, StatusCode::BAD_GATEWAY);
    assert!(refused.text().contains("considered down"), "{}", refused.text());
    let reached: Vec<String> = upstream.requests().into_iter().map(|r| r.path).collect();
    assert!(
        reached.iter().all(|p| p.ends_with("/v3/index.json")),
        "only probes may reach a down upstream: {reached:?}"
    );
    // Back up: the background probe closes the breaker.
    upstream.clear_faults();
    poll::until_true("the breaker closes", async || {
        nucache.get("/health").await.json()["upstream"]["state"] == "closed"
    })
    .await;
    assert_eq!(
        nucache.get("/v3/flatcontainer/fake.dep/index.json").await.status,
        StatusCode::OK
    );
}

/// Sends raw bytes on a new connection and returns what comes back before
/// the server closes it or `wait` passes.
async fn raw_exchange(addr: std::net::SocketAddr, request: &[u8], wait: Duration) -> (String, bool) {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    let _ = stream.write_all(request).await;
    let mut answer = Vec::new();
    let mut buffer = [0u8; 4096];
    let deadline = Instant::now() + wait;
    let mut closed = false;
    while Instant::now() < deadline {
        match tokio::time::timeout(deadline - Instant::now(), stream.read(&mut buffer)).await {
            Ok(Ok(0)) | Ok(Err(_)) => {
                closed = true;
                break;
            }
            Ok(Ok(n)) => answer.extend_from_slice(&buffer[..n]),
            Err(_) => break,
        }
    }
    (String::from_utf8_lossy(&answer).into_owned(), closed)
}

#[tokio::test]
async fn oversized_headers_get_431() {
    let upstream = FakeUpstream::start().await;
    let nucache = Nucache::start(&upstream.index_url(), |_| {}).await;
    let huge = "x".repeat(100 * 1024);
    let request = format!("GET /v3/index.json HTTP/1.1\r\nHost: a\r\nX-Big: {huge}\r\n\r\n");
    let (answer, _) = raw_exchange(nucache.addr, request.as_bytes(), Duration::from_secs(5)).await;
    assert!(
        answer.starts_with("HTTP/1.1 431"),
        "{}",
        &answer[..answer.len().min(100)]
    );
}

#[tokio::test]
async fn slow_header_senders_are_timed_out() {
    let upstream = FakeUpstream::start().await;
    let nucache = Nucache::start(&upstream.index_url(), |c| {
        c.server.header_read_timeout = Duration::from_millis(500)
    })
    .await;
    let started = Instant::now();
    let (_, closed) = raw_exchange(
        nucache.addr,
        b"GET /v3/index.json HTTP/1.1\r\nHo",
        Duration::from_secs(5),
    )
    .await;
    assert!(closed, "the connection stayed open");
    assert!(started.elapsed() < Duration::from_secs(3), "{:?}", started.elapsed());
}

#[tokio::test]
async fn the_connection_limit_holds_further_clients_back() {
    let upstream = FakeUpstream::start().await;
    let nucache = Nucache::start(&upstream.index_url(), |c| c.server.max_connections = 2).await;
    let request = b"GET /health HTTP/1.1\r\nHost: a\r\n\r\n";
    // Two keep-alive connections take both places.
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut stream = TcpStream::connect(nucache.addr).await.expect("connect");
        stream.write_all(request).await.expect("write");
        let mut buffer = [0u8; 1024];
        let n = stream.read(&mut buffer).await.expect("read");
        assert!(String::from_utf8_lossy(&buffer[..n]).starts_with("HTTP/1.1 200"));
        held.push(stream);
    }
    let (waiting, _) = raw_exchange(nucache.addr, request, Duration::from_millis(400)).await;
    assert!(waiting.is_empty(), "a third connection was served: {waiting}");
    drop(held.pop());
    let (served, _) = raw_exchange(nucache.addr, request, Duration::from_secs(3)).await;
    assert!(served.starts_with("HTTP/1.1 200"), "{served}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_reader_does_not_hold_up_the_download_for_others() {
    // Far more than the socket buffers between nucache and a client hold.
    const SIZE: usize = 24 * 1024 * 1024;
    let upstream = FakeUpstream::start().await;
    let package: Vec<u8> = (0..SIZE)
        .map(|i| (i as u32).wrapping_mul(2_654_435_761).to_le_bytes()[3])
        .collect();
    upstream.add_package("Big.Slow", "1.0.0", package.clone());
    let path = "/v3/flatcontainer/big.slow/1.0.0/big.slow.1.0.0.nupkg";
    let nucache = Nucache::start(&upstream.index_url(), |_| {}).await;
    assert_eq!(nucache.get("/v3/index.json").await.status, StatusCode::OK);
    // The first client starts the download, reads the response head, and
    // then reads nothing: its socket fills up and stays full.
    let mut slow = TcpStream::connect(nucache.addr).await.expect("connect");
    let request = format!("GET {path} HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n");
    slow.write_all(request.as_bytes()).await.expect("write");
    let mut received = Vec::new();
    let mut buffer = [0u8; 1024];
    while !received.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = tokio::time::timeout(Duration::from_secs(10), slow.read(&mut buffer))
            .await
            .expect("the slow client got no response head")
            .expect("read");
        assert!(n > 0, "closed before the head");
        received.extend_from_slice(&buffer[..n]);
    }
    assert!(String::from_utf8_lossy(&received).starts_with("HTTP/1.1 200"));
    // Everyone else gets the whole package meanwhile, from one download.
    let others = futures_util::future::join_all((0..3).map(|_| nucache.get(path)));
    let others = tokio::time::timeout(Duration::from_secs(15), others)
        .await
        .expect("a stalled reader held up the others");
    for reply in &others {
        assert_eq!(reply.status, StatusCode::OK);
        assert!(reply.body_error.is_none(), "{:?}", reply.body_error);
        assert!(reply.body == package, "{} bytes, not the package", reply.body.len());
    }
    assert_eq!(upstream.count("big.slow.1.0.0.nupkg"), 1);
    // The slow client still gets the whole package when it reads again.
    let mut rest = Vec::new();
    tokio::time::timeout(Duration::from_secs(15), slow.read_to_end(&mut rest))
        .await
        .expect("the slow client's body never ended")
        .expect("read");
    received.extend_from_slice(&rest);
    let head = received.windows(4).position(|w| w == b"\r\n\r\n").map_or(0, |i| i + 4);
    assert!(
        received[head..] == package[..],
        "the slow client got {} bytes",
        received.len() - head
    );
}

#[tokio::test]
async fn a_failing_search_host_opens_its_own_breaker_and_downloads_go_on() {
    let upstream = FakeUpstream::start().await;
    let nucache = Nucache::start(&upstream.index_url(), |c| {
        c.upstream.breaker_threshold = 3;
        c.upstream.breaker_cooldown = Duration::from_millis(200);
        c.upstream.retries = 0;
    })
    .await;
    assert_eq!(nucache.get("/v3/index.json").await.status, StatusCode::OK);
    upstream.set_fault_for("/query", Fault::Status(503));
    // A failing search is answered from the cache (offline search), and
    // each failure counts against the search host's breaker.
    for n in 0..3 {
        let reply = nucache.get(&format!("/v3/query?q=n{n}")).await;
        assert_eq!(
            (reply.status, reply.x_cache()),
            (StatusCode::OK, Some("STALE")),
            "{}",
            reply.text()
        );
    }
    upstream.reset_log();
    let refused = nucache.get("/v3/query?q=again").await;
    assert_eq!(refused.x_cache(), Some("STALE"), "{}", refused.text());
    assert_eq!(
        upstream.count("/query"),
        0,
        "the open breaker keeps the search host unasked"
    );
    // The api host is fine: package downloads go on.
    let package = nucache.get(NUPKG).await;
    assert_eq!(
        (package.status, package.x_cache()),
        (StatusCode::OK, Some("MISS")),
        "{}",
        package.text()
    );
    assert_eq!(Some(package.body.to_vec()), upstream.nupkg_bytes("Fake.Core", "1.1.0"));
    let health = nucache.get("/health").await.json();
    assert_eq!(health["upstream"]["state"], "open", "{health}");
    assert_eq!(health["status"], "degraded", "{health}");
    let origins = health["upstream"]["origins"].as_array().cloned().unwrap_or_default();
    let state_of = |origin: String| {
        origins
            .iter()
            .find(|o| o["origin"] == origin.as_str())
            .map(|o| o["state"].clone())
    };
    assert_eq!(state_of(upstream.search()), Some("open".into()), "{health}");
    assert_eq!(state_of(upstream.api()), Some("closed".into()), "{health}");
    // The search breaker's probe asks the search host, without a body.
    upstream.clear_faults();
    poll::until_true("the search breaker closes", async || {
        nucache.get("/health").await.json()["upstream"]["state"] == "closed"
    })
    .await;
    let searches: Vec<_> = upstream
        .requests()
        .into_iter()
        .filter(|r| r.host == Role::Search)
        .collect();
    assert!(!searches.is_empty(), "no probe reached the search host");
    for probe in &searches {
        assert_eq!((probe.method.as_str(), probe.path.as_str()), ("HEAD", "/query?q=n2"));
    }
    let answered = nucache.get("/v3/query?q=back").await;
    assert_eq!(answered.status, StatusCode::OK);
}
