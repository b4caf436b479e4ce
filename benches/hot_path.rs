//! The per-request work on a warm hit, and the one-time work on a miss:
//! classifying a path, rendering a cached template for a base URL (what
//! every warm metadata hit does), rewriting an upstream document (once per
//! miss), normalizing versions.
//!
//! `cargo bench --bench hot_path`

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use nucache::nuget::NuGetVersion;
use std::path::Path;

use nucache::rewrite::{build_service_map, rewrite_document, rewrite_with_hashes, MountKind, Mounts, Template};
use nucache::route::{classify, resolve, Route};

/// A registration index shaped like nuget.org's, with `leaves` leaves.
fn registration_index(leaves: usize) -> Vec<u8> {
    let api = "https://api.nuget.org";
    let items: Vec<serde_json::Value> = (0..leaves)
        .map(|i| {
            serde_json::json!({
                "@id": format!("{api}/v3/registration5-gz-semver2/bench.pkg/1.{i}.0.json"),
                "@type": "Package",
                "catalogEntry": {
                    "@id": format!("{api}/v3/catalog0/data/2020.01.01/bench.pkg.1.{i}.0.json"),
                    "id": "Bench.Pkg", "version": format!("1.{i}.0"),
                    "description": "A package used by the benchmark, with a description of typical length.",
                    "projectUrl": "https://github.com/example/bench",
                    "packageContent": format!("{api}/v3-flatcontainer/bench.pkg/1.{i}.0/bench.pkg.1.{i}.0.nupkg"),
                    "dependencyGroups": [{"dependencies": [{"id": "Dep", "range": "[1.0.0, )",
                        "registration": format!("{api}/v3/registration5-gz-semver2/dep/index.json")}]}]
                },
                "packageContent": format!("{api}/v3-flatcontainer/bench.pkg/1.{i}.0/bench.pkg.1.{i}.0.nupkg"),
                "registration": format!("{api}/v3/registration5-gz-semver2/bench.pkg/index.json")
            })
        })
        .collect();
    let doc = serde_json::json!({"@id": format!("{api}/v3/registration5-gz-semver2/bench.pkg/index.json"),
        "count": 1, "items": [{"@id": "page", "count": leaves, "items": items}]});
    serde_json::to_vec(&doc).unwrap_or_default()
}

fn mounts() -> Mounts {
    let mut mounts = Mounts::default();
    mounts.add(MountKind::PackageBase, "https://api.nuget.org/v3-flatcontainer/", "");
    mounts.add(
        MountKind::Registrations,
        "https://api.nuget.org/v3/registration5-gz-semver2/",
        "registration5-gz-semver2",
    );
    mounts.add(MountKind::Catalog, "https://api.nuget.org/v3/catalog0/", "");
    mounts.add(MountKind::Search, "https://azuresearch-usnc.nuget.org/query", "");
    mounts
}

/// Real nuget.org documents, read from `../shared/realdocs` at bench time
/// (never copied into the repository).
const REALDOCS: &str = "../shared/realdocs";
const REAL_PAGES: [&str; 3] = ["nlog.page3.json", "nlog.page2.json", "nunit.registration.json"];

/// Rewrites real registration pages with the mounts of nuget.org's real
/// service index; skipped with a message when the captures are absent.
fn real_pages(c: &mut Criterion) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join(REALDOCS);
    let Some(map) = std::fs::read(dir.join("nuget.index.json"))
        .ok()
        .and_then(|index| build_service_map(&index, true).ok())
    else {
        eprintln!("skipping the real-page benches: no {REALDOCS}/nuget.index.json");
        return;
    };
    let mut group = c.benchmark_group("real pages");
    for name in REAL_PAGES {
        let Ok(page) = std::fs::read(dir.join(name)) else {
            eprintln!("skipping {name}: not in {REALDOCS}");
            continue;
        };
        group.throughput(Throughput::Bytes(page.len() as u64));
        // What a miss does: rewrite, and read the package hashes in the same pass.
        group.bench_function(format!("rewrite {name} ({} KiB, miss)", page.len() / 1024), |b| {
            b.iter(|| rewrite_with_hashes(black_box(&page), &map.mounts))
        });
    }
    group.finish();
}

fn benches(c: &mut Criterion) {
    let mounts = mounts();
    let upstream = registration_index(64);
    let template = rewrite_document(&upstream, &mounts).unwrap_or_default();

    let mut group = c.benchmark_group("metadata");
    group.throughput(Throughput::Bytes(upstream.len() as u64));
    group.bench_function("rewrite 64-leaf registration index (miss)", |b| {
        b.iter(|| rewrite_document(black_box(&upstream), &mounts))
    });
    group.bench_function("render for a new base URL", |b| {
        b.iter(|| Template::new(template.clone(), "0123456789abcdef").render(black_box("http://nucache:5000")))
    });
    let warm = Template::new(template.clone(), "0123456789abcdef");
    warm.render("http://nucache:5000").gzip();
    group.bench_function("warm hit: cached rendering, gzip", |b| {
        b.iter(|| warm.render(black_box("http://nucache:5000")).gzip().len())
    });
    group.finish();

    c.bench_function("classify + resolve a .nupkg path", |b| {
        b.iter(|| {
            match classify(black_box(
                "/v3/flatcontainer/Newtonsoft.Json/13.0.3/newtonsoft.json.13.0.3.nupkg",
            )) {
                Ok(Route::Mounted(path)) => resolve(&path, None, &mounts).ok(),
                _ => None,
            }
        })
    });
    c.bench_function("normalize a version", |b| {
        b.iter(|| NuGetVersion::parse(black_box("01.002.0003-RC.1+build.5")).map(|v| v.lower_normalized()))
    });
}

criterion_group!(hot_path, benches, real_pages);
criterion_main!(hot_path);
