//! Fault injection: each `Fault` does what it says, on the hosts it
//! should, and dropping the fake closes everything.

use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Method, StatusCode};
use serde_json::Value;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio::time::timeout;

use crate::client::{full, get, host_port, nupkg_path, raw_get, send, split_wire, wait_recorded, LIMIT};
use crate::common::upstream::{FakeUpstream, Fault};

#[tokio::test]
async fn fault_status_is_scoped_and_spares_www() {
    let up = FakeUpstream::start().await;
    up.set_fault_for("/v3-flatcontainer/", Fault::Status(503));
    let flat = get(&format!("{}/v3-flatcontainer/fake.core/index.json", up.api())).await;
    assert_eq!(flat.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(get(&up.index_url()).await.status, StatusCode::OK);
    up.set_fault(Fault::Status(500));
    assert_eq!(get(&up.index_url()).await.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(
        get(&format!("{}/query", up.search())).await.status,
        StatusCode::INTERNAL_SERVER_ERROR
    );
    assert_eq!(get(&format!("{}/profiles/x", up.www())).await.status, StatusCode::OK);
    up.clear_faults();
    assert_eq!(get(&up.index_url()).await.status, StatusCode::OK);
}

#[tokio::test]
async fn fault_refuse_closes_the_port_and_clearing_rebinds_it() {
    let up = FakeUpstream::start().await;
    assert_eq!(get(&up.index_url()).await.status, StatusCode::OK);
    up.set_fault(Fault::Refuse);
    for origin in [up.api(), up.search()] {
        let err = TcpStream::connect(host_port(&origin)).await.expect_err("refused");
        assert_eq!(err.kind(), std::io::ErrorKind::ConnectionRefused);
    }
    assert_eq!(get(&format!("{}/profiles/x", up.www())).await.status, StatusCode::OK);
    up.clear_faults();
    assert_eq!(get(&up.index_url()).await.status, StatusCode::OK);
}

#[tokio::test]
async fn fault_truncate_sends_half_the_announced_body() {
    let up = FakeUpstream::start().await;
    up.set_fault(Fault::Truncate);
    let wire = raw_get(&up.api(), &nupkg_path("fake.core", "1.0.0")).await;
    let len = up.nupkg_bytes("Fake.Core", "1.0.0").unwrap().len();
    assert!(wire.head.starts_with("HTTP/1.1 200"), "{}", wire.head);
    assert_eq!(wire.content_length(), len);
    assert_eq!(wire.body.len(), len / 2);
    let json = raw_get(&up.api(), "/v3/index.json").await;
    assert_eq!(json.body.len(), json.content_length() / 2, "JSON is truncated too");
}

#[tokio::test]
async fn fault_longer_body_sends_more_than_content_length() {
    let up = FakeUpstream::start().await;
    up.set_fault(Fault::LongerBody);
    let wire = raw_get(&up.api(), &nupkg_path("fake.core", "1.0.0")).await;
    let served = up.nupkg_bytes("Fake.Core", "1.0.0").unwrap();
    assert_eq!(wire.content_length(), served.len());
    assert!(wire.body.len() > served.len());
    assert_eq!(&wire.body[..served.len()], &served[..]);
}

#[tokio::test]
async fn fault_reset_aborts_the_connection() {
    let up = FakeUpstream::start().await;
    up.set_fault(Fault::Reset);
    let wire = raw_get(&up.api(), "/v3/index.json").await;
    assert!(wire.head.is_empty(), "{}", wire.head);
    assert_eq!(wire.error, Some(std::io::ErrorKind::ConnectionReset));
    assert_eq!(up.count("/v3/index.json"), 1, "recorded before the fault");
}

#[tokio::test]
async fn fault_corrupt_flips_nupkg_bytes_only() {
    let up = FakeUpstream::start().await;
    up.set_fault(Fault::Corrupt);
    let resp = get(&format!("{}{}", up.api(), nupkg_path("fake.dep", "1.0.1"))).await;
    let served = up.nupkg_bytes("Fake.Dep", "1.0.1").unwrap();
    assert_eq!(resp.body.len(), served.len());
    assert_ne!(resp.body, served);
    assert_eq!(get(&up.index_url()).await.json()["version"], "3.0.0");
}

#[tokio::test]
async fn fault_bad_json_serves_an_html_page() {
    let up = FakeUpstream::start().await;
    up.set_fault(Fault::BadJson);
    let resp = get(&format!(
        "{}/v3/registration5-gz-semver2/fake.core/index.json",
        up.api()
    ))
    .await;
    assert_eq!(resp.status, StatusCode::OK);
    assert!(resp.header("content-type").unwrap().starts_with("text/html"));
    assert_eq!(resp.header("content-encoding"), None);
    assert!(serde_json::from_slice::<Value>(&resp.body).is_err());
    let nupkg = get(&format!("{}{}", up.api(), nupkg_path("fake.dep", "1.0.0"))).await;
    assert_eq!(nupkg.header("content-type"), Some("application/octet-stream"));
}

#[tokio::test]
async fn fault_redirect_loop_points_at_itself() {
    let up = FakeUpstream::start().await;
    up.set_fault(Fault::RedirectLoop);
    let url = format!("{}/query?q=a", up.search());
    let resp = get(&url).await;
    assert_eq!(resp.status, StatusCode::FOUND);
    assert_eq!(resp.header("location"), Some(url.as_str()));
}

#[tokio::test]
async fn fault_delay_holds_the_response_head() {
    let up = FakeUpstream::start().await;
    up.set_fault(Fault::Delay(Duration::from_millis(300)));
    let started = Instant::now();
    assert_eq!(get(&up.index_url()).await.status, StatusCode::OK);
    assert!(started.elapsed() >= Duration::from_millis(300));
}

#[tokio::test]
async fn fault_hang_answers_once_the_fault_changes() {
    let up = FakeUpstream::start().await;
    up.set_fault(Fault::Hang);
    let url = up.index_url();
    let mut pending = tokio::spawn(async move { get(&url).await.status });
    wait_recorded(&up, "/v3/index.json", 1).await;
    let early = timeout(Duration::from_millis(200), &mut pending).await;
    assert!(early.is_err(), "a hung request was answered: {early:?}");
    up.clear_faults();
    assert_eq!(timeout(LIMIT, pending).await.unwrap().unwrap(), StatusCode::OK);
}

#[tokio::test]
async fn fault_stall_body_sends_half_then_closes_when_cleared() {
    let up = FakeUpstream::start().await;
    up.set_fault_for(".nupkg", Fault::StallBody);
    let mut stream = TcpStream::connect(host_port(&up.api())).await.unwrap();
    let req = format!("GET {} HTTP/1.1\r\nHost: x\r\n\r\n", nupkg_path("fake.core", "1.0.0"));
    stream.write_all(req.as_bytes()).await.unwrap();
    let len = up.nupkg_bytes("Fake.Core", "1.0.0").unwrap().len();
    let mut data = Vec::new();
    let mut buf = [0u8; 8192];
    while split_wire(data.clone(), None).body.len() < len / 2 {
        let n = timeout(LIMIT, stream.read(&mut buf)).await.unwrap().unwrap();
        assert!(n > 0, "closed before half the body");
        data.extend_from_slice(&buf[..n]);
    }
    let more = timeout(Duration::from_millis(200), stream.read(&mut buf)).await;
    assert!(more.is_err(), "expected a stall, got {more:?}");
    up.clear_faults();
    let n = timeout(LIMIT, stream.read(&mut buf)).await.unwrap().unwrap_or(0);
    assert_eq!(n, 0, "closed after the stall, no more body");
    assert_eq!(split_wire(data, None).body.len(), len / 2);
}

#[tokio::test]
async fn dropping_the_fake_closes_ports_and_connections() {
    let up = FakeUpstream::start().await;
    up.set_fault(Fault::Hang);
    let url = up.index_url();
    let pending = tokio::spawn(async move { send(Method::GET, &url, &[], full(Bytes::new())).await });
    wait_recorded(&up, "/v3/index.json", 1).await;
    let origins = up.origins();
    drop(up);
    let result = timeout(LIMIT / 4, pending)
        .await
        .expect("hung request ended by drop")
        .unwrap();
    assert!(result.is_err(), "{:?}", result.map(|r| r.status));
    for origin in origins {
        assert!(
            TcpStream::connect(host_port(&origin)).await.is_err(),
            "{origin} still open"
        );
    }
    // Every task the fake spawned (accept loops, connections) has ended.
    let metrics = tokio::runtime::Handle::current().metrics();
    let deadline = Instant::now() + LIMIT;
    while metrics.num_alive_tasks() > 0 {
        assert!(
            Instant::now() < deadline,
            "{} tasks still alive",
            metrics.num_alive_tasks()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}
