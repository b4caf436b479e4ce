//! Expired-documents load (issue 19): one client asks for 5,000 distinct
//! version lists, 200 at a time, after every one was cached and has
//! expired (`ttl.versions` 1 ms) in front of an upstream that answers in
//! 5 ms. Within `ttl.max_stale` each is served stale and refreshed behind;
//! with `max_stale` 0 each client waits for the upstream. Each way it runs
//! against the release binary with the default budgets, then with the
//! budgets lifted, and prints per run: answers (200 / 503), the most
//! requests the upstream saw at once, the most each budget gauge showed
//! in `/metrics`, and nucache's peak RSS. Exits non-zero when a run with
//! the default budgets has an error or puts more requests in flight than
//! its cap.
//!
//! `cargo bench --bench expired_load`

#[path = "../tests/common/mod.rs"]
mod common;

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::process::{fetch, Launch, Process};
use common::upstream::{Corpus, FakeUpstream, Fault};
use futures_util::{stream, StreamExt};
use http_body_util::Empty;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

const DOCUMENTS: usize = 5_000;
const AT_ONCE: usize = 200;
/// The defaults of `upstream.max_concurrent_requests` and `limits.background_refreshes`.
const UPSTREAM_CAP: usize = 64;
const REFRESH_CAP: usize = 32;
/// The budgets whose gauges are sampled (document bytes are not: these
/// lists are a few dozen bytes, held for microseconds).
const BUDGETS: [&str; 2] = ["upstream_requests", "background_refreshes"];

fn main() {
    common::process::bench_main(run());
}

/// One run: how nucache is started, and the cap its upstream must keep.
struct Setting {
    label: &'static str,
    env: Vec<(&'static str, String)>,
    cap: Option<usize>,
}

#[derive(Default)]
struct Row {
    ok: usize,
    busy: usize,
    errors: Vec<String>,
    at_upstream: usize,
    /// The most `nucache_budget_in_use` showed, per budget.
    gauges: Vec<f64>,
    peak_rss_kib: u64,
    elapsed: Duration,
}

async fn run() -> bool {
    let mut corpus = Corpus::empty();
    for n in 0..DOCUMENTS {
        corpus.add(&format!("Many.{n}"), "1.0.0", b"PK\x03\x04".to_vec(), true);
    }
    let upstream = FakeUpstream::start_with(corpus).await;
    // 5,000 documents fsynced on a busy disk would time the disk, not nucache.
    let dir = tempfile::tempdir_in("/dev/shm")
        .or_else(|_| tempfile::tempdir())
        .expect("temp dir");
    let cache = dir.path().join("cache");
    let populated = measure(
        &upstream,
        &cache,
        &Setting {
            label: "populate",
            env: Vec::new(),
            cap: None,
        },
    )
    .await;
    if populated.ok != DOCUMENTS {
        println!(
            "FAIL: caching the {DOCUMENTS} lists: {} ok, {:?}",
            populated.ok,
            populated.errors.first()
        );
        return true;
    }
    upstream.set_fault_for("v3-flatcontainer", Fault::Delay(Duration::from_millis(5)));
    println!("expired documents: {DOCUMENTS} distinct version lists, {AT_ONCE} at a time, upstream answering in 5 ms");
    println!(
        "  {:<34} {:>6} {:>6} {:>7} {:>9} {:>9} {:>10} {:>8}",
        "run", "200", "503", "errors", "upstream", "requests", "refreshes", "RSS MiB"
    );
    let mut failed = false;
    for setting in settings() {
        let row = measure(&upstream, &cache, &setting).await;
        report(&setting, &row);
        if let Some(cap) = setting.cap {
            let over = row.at_upstream > cap;
            if over || !row.errors.is_empty() {
                println!(
                    "FAIL: {}: {} at the upstream (cap {cap}); errors {:?}",
                    setting.label,
                    row.at_upstream,
                    &row.errors[..row.errors.len().min(3)]
                );
                failed = true;
            }
        }
    }
    failed
}

fn settings() -> Vec<Setting> {
    let lifted = || {
        vec![
            ("NUCACHE_UPSTREAM__MAX_CONCURRENT_REQUESTS", "1000000".to_string()),
            ("NUCACHE_LIMITS__BACKGROUND_REFRESHES", "1000000".to_string()),
        ]
    };
    let stale = ("NUCACHE_TTL__MAX_STALE", "1d".to_string());
    let wait = ("NUCACHE_TTL__MAX_STALE", "0s".to_string());
    vec![
        Setting {
            label: "served stale, default budgets",
            env: vec![stale.clone()],
            cap: Some(REFRESH_CAP),
        },
        Setting {
            label: "served stale, budgets lifted",
            env: [vec![stale], lifted()].concat(),
            cap: None,
        },
        Setting {
            label: "clients wait, default budgets",
            env: vec![wait.clone()],
            cap: Some(UPSTREAM_CAP),
        },
        Setting {
            label: "clients wait, budgets lifted",
            env: [vec![wait], lifted()].concat(),
            cap: None,
        },
    ]
}

/// Starts nucache on `cache` with `setting`, asks for every list, stops it.
async fn measure(upstream: &FakeUpstream, cache: &Path, setting: &Setting) -> Row {
    let index = upstream.index_url();
    let mut env = vec![
        ("RUST_LOG", "warn".to_string()),
        ("NUCACHE_TTL__VERSIONS", "1ms".to_string()),
        ("NUCACHE_UPSTREAM__READ_TIMEOUT", "30s".to_string()),
    ];
    env.extend(setting.env.iter().cloned());
    let mut process = Launch {
        upstream_index: &index,
        cache_dir: cache,
        env,
        tmpfs_kib: None,
    }
    .spawn();
    process.ready().await;
    upstream.reset_max_in_flight();
    let started = Instant::now();
    let mut row = sampled(&process, ask_all(&process)).await;
    row.elapsed = started.elapsed();
    row.at_upstream = upstream.max_in_flight();
    row.peak_rss_kib = process.peak_rss_kib();
    process.terminate(Duration::from_secs(20));
    row
}

/// Every list, `AT_ONCE` at a time, through one pooled client.
async fn ask_all(process: &Process) -> Row {
    let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
    let row = Mutex::new(Row::default());
    stream::iter(0..DOCUMENTS)
        .for_each_concurrent(AT_ONCE, |n| {
            let (client, row) = (&client, &row);
            async move {
                let url = process.url(&format!("/v3/flatcontainer/many.{n}/index.json"));
                let outcome = fetch(client, &url).await.map(|(status, _)| status.as_u16());
                let mut row = row.lock().expect("row");
                match outcome {
                    Ok(200) => row.ok += 1,
                    Ok(503) => row.busy += 1,
                    Ok(status) => row.errors.push(format!("{url}: {status}")),
                    Err(error) => row.errors.push(format!("{url}: {error}")),
                }
            }
        })
        .await;
    row.into_inner().expect("row")
}

/// `work`'s row, with the most each budget gauge showed while it ran.
async fn sampled(process: &Process, work: impl std::future::Future<Output = Row>) -> Row {
    let done = AtomicBool::new(false);
    let most = Mutex::new(vec![0.0; BUDGETS.len()]);
    let sampler = async {
        let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
        while !done.load(Ordering::SeqCst) {
            if let Ok((_, body)) = fetch(&client, &process.url("/metrics")).await {
                let text = String::from_utf8_lossy(&body);
                let mut most = most.lock().expect("most");
                for (slot, budget) in BUDGETS.iter().enumerate() {
                    most[slot] = f64::max(most[slot], in_use(&text, budget));
                }
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    let work = async {
        let row = work.await;
        done.store(true, Ordering::SeqCst);
        row
    };
    let (mut row, ()) = tokio::join!(work, sampler);
    row.gauges = most.into_inner().expect("most");
    row
}

/// The sum of `nucache_budget_in_use` over the series of `budget`.
fn in_use(text: &str, budget: &str) -> f64 {
    let prefix = format!("nucache_budget_in_use{{budget=\"{budget}\"");
    text.lines()
        .filter(|line| line.starts_with(&prefix))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

fn report(setting: &Setting, row: &Row) {
    println!(
        "  {:<34} {:>6} {:>6} {:>7} {:>9} {:>9} {:>10} {:>8.1}   ({:.1} s)",
        setting.label,
        row.ok,
        row.busy,
        row.errors.len(),
        row.at_upstream,
        row.gauges[0],
        row.gauges[1],
        row.peak_rss_kib as f64 / 1024.0,
        row.elapsed.as_secs_f64()
    );
}
