//! Load test: 256 concurrent clients, 20,480 mixed requests (package
//! downloads, version lists, registration indexes; hits and misses) against
//! the release nucache binary in front of the in-process fake upstream.
//! Every package body's SHA-512 is checked. Prints the request and error
//! counts, throughput, latency percentiles and nucache's peak RSS; exits
//! non-zero on any error.
//!
//! `cargo bench --bench load` (LOAD_CLIENTS / LOAD_REQUESTS override the sizes)

#[path = "../tests/common/mod.rs"]
mod common;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::process::{HttpClient, Launch, Rng};
use common::upstream::{Corpus, FakeUpstream};
use http_body_util::Empty;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use sha2::{Digest, Sha512};

const PACKAGES: usize = 400;
/// The first packages get most requests: a hot set, as on a build farm.
const HOT: usize = 40;

fn setting(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn package_bytes(n: usize) -> Vec<u8> {
    // 4 KiB to 256 KiB, deterministic.
    let size = 4096 + (n * 7919) % (252 * 1024);
    let mut rng = Rng::new(n as u64 + 17);
    (0..size).map(|_| rng.below(256) as u8).collect()
}

#[derive(Default)]
struct Tally {
    requests: usize,
    errors: Vec<String>,
    bytes: u64,
    latencies_us: Vec<u64>,
    packages_fetched: HashSet<usize>,
}

fn main() {
    common::process::bench_main(run());
}

async fn run() -> bool {
    let clients = setting("LOAD_CLIENTS", 256);
    let per_client = setting("LOAD_REQUESTS", 20_480) / clients;
    let mut corpus = Corpus::empty();
    let digests: Vec<Vec<u8>> = (0..PACKAGES)
        .map(|n| {
            let bytes = package_bytes(n);
            let digest = Sha512::digest(&bytes).to_vec();
            corpus.add(&format!("Load.{n}"), "1.0.0", bytes, true);
            digest
        })
        .collect();
    let upstream = FakeUpstream::start_with(corpus).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let cache = dir.path().join("cache");
    let index = upstream.index_url();
    let mut process = Launch {
        env: vec![("RUST_LOG", "warn".to_string())],
        ..Launch::new(&index, &cache)
    }
    .spawn();
    process.ready().await;
    let base = process.url("");
    let digests = Arc::new(digests);
    let tally = Arc::new(Mutex::new(Tally::default()));
    let started = Instant::now();
    let workers: Vec<_> = (0..clients)
        .map(|worker| {
            let (base, digests, tally) = (base.clone(), digests.clone(), tally.clone());
            tokio::spawn(async move { client(worker, per_client, &base, &digests, &tally).await })
        })
        .collect();
    for worker in workers {
        let _ = worker.await;
    }
    let elapsed = started.elapsed();
    let peak_rss = process.peak_rss_kib();
    let upstream_packages = upstream.count(".nupkg");
    let tally = tally.lock().map(|mut t| std::mem::take(&mut *t)).unwrap_or_default();
    report(&tally, elapsed, peak_rss, upstream_packages, clients);
    let single_flight = upstream_packages == tally.packages_fetched.len();
    if !single_flight {
        println!(
            "FAIL: the upstream served {upstream_packages} package downloads for {} distinct packages",
            tally.packages_fetched.len()
        );
    }
    !tally.errors.is_empty() || !single_flight
}

async fn client(worker: usize, requests: usize, base: &str, digests: &[Vec<u8>], tally: &Mutex<Tally>) {
    let http = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
    let mut rng = Rng::new(worker as u64 * 31 + 5);
    for _ in 0..requests {
        let n = if rng.below(10) < 8 {
            rng.below(HOT as u64)
        } else {
            rng.below(PACKAGES as u64)
        } as usize;
        let (path, kind) = match rng.below(20) {
            0..=14 => (
                format!("/v3/flatcontainer/load.{n}/1.0.0/load.{n}.1.0.0.nupkg"),
                "package",
            ),
            15..=17 => (format!("/v3/flatcontainer/load.{n}/index.json"), "versions"),
            _ => (
                format!("/v3/registration/registration5-gz-semver2/load.{n}/index.json"),
                "registration",
            ),
        };
        let started = Instant::now();
        let outcome = fetch(&http, &format!("{base}{path}")).await;
        let latency = started.elapsed().as_micros() as u64;
        let verdict = outcome.and_then(|body| check(kind, n, &body, digests).map(|_| body.len()));
        if let Ok(mut tally) = tally.lock() {
            tally.requests += 1;
            tally.latencies_us.push(latency);
            match verdict {
                Ok(bytes) => {
                    tally.bytes += bytes as u64;
                    if kind == "package" {
                        tally.packages_fetched.insert(n);
                    }
                }
                Err(error) => tally.errors.push(format!("{path}: {error}")),
            }
        }
    }
}

async fn fetch(http: &HttpClient, url: &str) -> Result<Bytes, String> {
    match common::process::fetch(http, url).await? {
        (http::StatusCode::OK, body) => Ok(body),
        (status, _) => Err(format!("status {status}")),
    }
}

fn check(kind: &str, n: usize, body: &[u8], digests: &[Vec<u8>]) -> Result<(), String> {
    match kind {
        "package" if Sha512::digest(body).as_slice() != digests[n].as_slice() => Err("SHA-512 mismatch".into()),
        "versions" if !String::from_utf8_lossy(body).contains("\"1.0.0\"") => Err("version list without 1.0.0".into()),
        "registration" if !String::from_utf8_lossy(body).contains("\"items\"") => {
            Err("registration without items".into())
        }
        _ => Ok(()),
    }
}

fn report(tally: &Tally, elapsed: Duration, peak_rss_kib: u64, upstream_packages: usize, clients: usize) {
    let mut latencies = tally.latencies_us.clone();
    latencies.sort_unstable();
    let percentile = |p: f64| {
        latencies
            .get(((latencies.len() as f64 * p) as usize).min(latencies.len().saturating_sub(1)))
            .copied()
            .unwrap_or(0)
    };
    println!("load test: {clients} concurrent clients against the release nucache");
    println!("  requests            {}", tally.requests);
    println!("  errors              {}", tally.errors.len());
    println!("  bodies checked      every package body's SHA-512, every document's shape");
    println!("  duration            {:.2} s", elapsed.as_secs_f64());
    println!(
        "  throughput          {:.0} req/s, {:.1} MiB/s",
        tally.requests as f64 / elapsed.as_secs_f64(),
        tally.bytes as f64 / 1048576.0 / elapsed.as_secs_f64()
    );
    println!(
        "  latency p50/p99/max {:.1} / {:.1} / {:.1} ms",
        percentile(0.5) as f64 / 1000.0,
        percentile(0.99) as f64 / 1000.0,
        latencies.last().copied().unwrap_or(0) as f64 / 1000.0
    );
    println!(
        "  distinct packages   {} (upstream package downloads: {upstream_packages})",
        tally.packages_fetched.len()
    );
    println!("  nucache peak RSS    {:.1} MiB", peak_rss_kib as f64 / 1024.0);
    for error in tally.errors.iter().take(10) {
        println!("  error: {error}");
    }
}
