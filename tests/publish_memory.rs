//! A 100 MiB push streams through nucache with bounded memory. Alone in its
//! own test binary, so that the process's peak RSS belongs to this push.
//! `cargo test --test publish_memory -- --nocapture` prints the figures.

mod common;

use std::time::Instant;

use bytes::Bytes;
use common::nucache::Nucache;
use common::upstream::FakeUpstream;
use futures_util::stream;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use nucache::config::{digest_hex, ByteSize, Secret};
use sha2::{Digest, Sha256};

const MIB: usize = 1024 * 1024;
const CHUNK: usize = 64 * 1024;

/// VmHWM (peak resident set) of this process, in bytes.
fn peak_rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

/// `total` bytes of a deterministic pattern, generated chunk by chunk and
/// sent chunked (no Content-Length), as nuget.exe sends pushes.
async fn push_streamed(url: &str, total: usize) -> (StatusCode, String) {
    let chunks = (0..total.div_ceil(CHUNK)).map(move |i| {
        let len = CHUNK.min(total - i * CHUNK);
        Ok::<_, std::convert::Infallible>(Frame::data(Bytes::from(vec![(i % 251) as u8; len])))
    });
    let body = StreamBody::new(stream::iter(chunks));
    let request = Request::builder()
        .method(Method::PUT)
        .uri(url)
        .header("content-type", "multipart/form-data; boundary=x")
        .header("x-nuget-apikey", "client-key")
        .body(body)
        .expect("request");
    let client = Client::builder(TokioExecutor::new()).build_http();
    let response = client.request(request).await.expect("push answered");
    let status = response.status();
    let text = response
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    (status, String::from_utf8_lossy(&text).into_owned())
}

fn expected_sha256(total: usize) -> String {
    let mut hasher = Sha256::new();
    for i in 0..total.div_ceil(CHUNK) {
        hasher.update(vec![(i % 251) as u8; CHUNK.min(total - i * CHUNK)]);
    }
    hex::encode(hasher.finalize())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_100_mib_push_streams_with_bounded_memory() {
    let upstream = FakeUpstream::start().await;
    let nucache = Nucache::start(&upstream.index_url(), |c| {
        c.publish.api_key = Some(Secret::new("upstream-key"));
        c.publish.client_keys = vec![digest_hex("client-key")];
    })
    .await;
    let url = nucache.url("/v3/package/");
    // Warm up allocators and connections with a small push.
    push_streamed(&url, MIB).await;
    let before = peak_rss();
    let started = Instant::now();
    let total = 100 * MIB;
    let (status, text) = push_streamed(&url, total).await;
    let elapsed = started.elapsed();
    let after = peak_rss();
    assert_eq!(status, StatusCode::CREATED, "{text}");
    assert_eq!(upstream.last_push_len(), Some(total));
    assert_eq!(
        upstream.last_push_sha256(),
        Some(expected_sha256(total)),
        "the bytes arrived changed"
    );
    let grown = after.saturating_sub(before);
    println!(
        "100 MiB push through nucache: {:.1} s, peak RSS {:.1} MiB -> {:.1} MiB (+{:.1} MiB) for client, nucache and upstream together",
        elapsed.as_secs_f64(),
        before as f64 / MIB as f64,
        after as f64 / MIB as f64,
        grown as f64 / MIB as f64
    );
    assert!(
        grown < 32 * MIB as u64,
        "memory grew by {} MiB during a 100 MiB push",
        grown / MIB as u64
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chunked_push_over_the_limit_is_cut_off_with_413() {
    let upstream = FakeUpstream::start().await;
    let nucache = Nucache::start(&upstream.index_url(), |c| {
        c.publish.api_key = Some(Secret::new("upstream-key"));
        c.publish.client_keys = vec![digest_hex("client-key")];
        c.publish.max_size = ByteSize::mib(1);
    })
    .await;
    let (status, text) = push_streamed(&nucache.url("/v3/package/"), 5 * MIB).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{text}");
    assert_eq!(
        upstream.last_push_len(),
        None,
        "the upstream completed an oversized push"
    );
}
