//! nucache started as an operator starts it: the real binary, with the
//! environment a deployment gives it.

mod common;

use common::process::Launch;
use common::upstream::FakeUpstream;

/// Kubernetes injects `NUCACHE_PORT`, `NUCACHE_SERVICE_HOST`... into every
/// pod of a namespace with a Service named `nucache`: they must not stop
/// start-up, and a variable that matches no key is named once.
#[tokio::test]
async fn kubernetes_service_link_variables_do_not_stop_start_up() {
    let upstream = FakeUpstream::start().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let cache = dir.path().join("cache");
    let index = upstream.index_url();
    let env = [
        ("NUCACHE_PORT", "tcp://10.0.0.7:5000"),
        ("NUCACHE_PORT_5000_TCP", "tcp://10.0.0.7:5000"),
        ("NUCACHE_PORT_5000_TCP_ADDR", "10.0.0.7"),
        ("NUCACHE_SERVICE_HOST", "10.0.0.7"),
        ("NUCACHE_SERVICE_PORT", "5000"),
        ("NUCACHE_MISTAKE", "1"),
    ];
    let mut process = Launch {
        upstream_index: &index,
        cache_dir: &cache,
        env: env.iter().map(|(k, v)| (*k, v.to_string())).collect(),
        tmpfs_kib: None,
    }
    .spawn();
    process.ready().await;
    let served = process.get("/v3/index.json").await;
    assert!(served.status.is_success(), "{}", served.status);
    let log = process.log_text();
    let warnings: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("match no configuration key"))
        .collect();
    assert_eq!(warnings.len(), 1, "{log}");
    assert!(warnings[0].contains("NUCACHE_MISTAKE"), "{log}");
    assert!(
        !warnings[0].contains("NUCACHE_PORT") && !warnings[0].contains("SERVICE"),
        "{log}"
    );
}
