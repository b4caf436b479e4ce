//! Waiting for something to happen, with a deadline, instead of sleeping
//! for a guessed time.

use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Method, StatusCode};

use super::nucache::{send, Reply};

/// How long a test waits for what takes well under a second when all is well.
pub const DEADLINE: Duration = Duration::from_secs(10);
/// How often a condition is checked again.
const INTERVAL: Duration = Duration::from_millis(20);

/// Calls `check` until it gives `Some`, for up to `DEADLINE`; panics saying
/// that `what` never happened.
pub async fn until<T>(what: &str, mut check: impl AsyncFnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + DEADLINE;
    loop {
        if let Some(found) = check().await {
            return found;
        }
        assert!(Instant::now() < deadline, "never happened within {DEADLINE:?}: {what}");
        tokio::time::sleep(INTERVAL).await;
    }
}

/// [`until`] for a condition that holds or not.
pub async fn until_true(what: &str, mut check: impl AsyncFnMut() -> bool) {
    until(what, async || check().await.then_some(())).await
}

/// What [`until_hit`] saw.
#[derive(Debug)]
pub struct Cached {
    /// The first answer served from the cache.
    pub reply: Reply,
    /// How many answers before it were misses.
    pub misses: u32,
}

/// Asks for `url` (`GET` or `HEAD`) until nucache serves it from the cache
/// (`X-Cache: HIT`), for up to `DEADLINE`: a download is committed only
/// after its last byte went to the client, so the request right after a
/// miss may be another miss. Every answer must be a 200 MISS or HIT.
pub async fn until_hit(method: Method, url: &str) -> Cached {
    let deadline = Instant::now() + DEADLINE;
    let mut misses = 0;
    loop {
        let reply = send(method.clone(), url, &[], Bytes::new()).await;
        match (reply.status, reply.x_cache()) {
            (StatusCode::OK, Some("HIT")) => return Cached { reply, misses },
            (StatusCode::OK, Some("MISS")) => misses += 1,
            (status, cache) => panic!("{method} {url}: {status} {cache:?}: {}", reply.text()),
        }
        assert!(
            Instant::now() < deadline,
            "{method} {url} was not served from the cache within {DEADLINE:?}"
        );
        tokio::time::sleep(INTERVAL).await;
    }
}
