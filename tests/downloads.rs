//! The download deadline: an upstream that sends steadily but too slowly
//! (a byte within every read timeout) cannot hold a download, and every
//! client waiting on it, forever.

mod common;

use std::time::{Duration, Instant};

use common::nucache::Nucache;
use common::upstream::FakeUpstream;
use http::StatusCode;

const NUPKG: &str = "/v3/flatcontainer/fake.core/1.1.0/fake.core.1.1.0.nupkg";

#[tokio::test]
async fn a_download_that_drips_is_cut_off_at_the_download_timeout() {
    let upstream = FakeUpstream::start().await;
    let nucache = Nucache::start(&upstream.index_url(), |c| {
        c.upstream.read_timeout = Duration::from_secs(2);
        c.upstream.download_timeout = Duration::from_secs(1);
    })
    .await;
    nucache.get("/v3/index.json").await;
    // 20 KiB at 16 bytes per 20 ms would take 25 s; each gap is well
    // within the read timeout.
    upstream.set_body_chunking(16, Duration::from_millis(20));
    let started = Instant::now();
    let reply = nucache.get(NUPKG).await;
    let took = started.elapsed();
    assert!(
        reply.body_error.is_some() || reply.status != StatusCode::OK,
        "the download looked whole"
    );
    assert!(took < Duration::from_secs(5), "cut off after {took:?}");

    // Nothing was cached; with a normal upstream the package comes whole.
    upstream.set_body_chunking(usize::MAX, Duration::ZERO);
    let healed = nucache.get(NUPKG).await;
    assert_eq!((healed.status, healed.x_cache()), (StatusCode::OK, Some("MISS")));
    assert_eq!(Some(healed.body.to_vec()), upstream.nupkg_bytes("Fake.Core", "1.1.0"));
}
