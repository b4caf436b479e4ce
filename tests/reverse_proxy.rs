//! nucache behind nginx under a path prefix, with the example
//! configuration from `examples/nginx-prefix.conf` (the README shows it):
//! the service index, its URLs and a package download all go through
//! `/nuget/`. Needs nginx (`apt-get install nginx-light`): skipped without
//! it, a failure when CI=true.

mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::nucache::{get, Nucache};
use common::upstream::FakeUpstream;
use http::StatusCode;

const EXAMPLE: &str = include_str!("../examples/nginx-prefix.conf");

/// nginx with the example server block, in the foreground, all its files
/// in `dir`; stopped when dropped.
struct Nginx(Child);

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn nginx_available() -> bool {
    let found = Command::new("nginx")
        .arg("-v")
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "nginx is not installed, and CI=true: .ci/run installs nginx-light"
        );
        eprintln!(
            "SKIPPED: nginx is not installed (apt-get install nginx-light); the reverse-proxy example was not run"
        );
    }
    found
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

async fn start_nginx(dir: &Path, listen: u16, nucache: u16) -> Nginx {
    let server = EXAMPLE
        .replace("listen 127.0.0.1:8080;", &format!("listen 127.0.0.1:{listen};"))
        .replace(
            "proxy_pass http://127.0.0.1:5000;",
            &format!("proxy_pass http://127.0.0.1:{nucache};"),
        );
    assert!(
        server.contains(&format!(":{nucache};")),
        "the example's proxy_pass moved"
    );
    let d = dir.display();
    // One process, no user switch: the test's temporary files stay its own.
    let conf = format!(
        "master_process off;\nworker_processes 1;\npid {d}/nginx.pid;\nerror_log {d}/error.log;\n\
         events {{}}\nhttp {{\n  access_log {d}/access.log;\n  client_body_temp_path {d}/body;\n  \
         proxy_temp_path {d}/proxy;\n  fastcgi_temp_path {d}/fastcgi;\n  uwsgi_temp_path {d}/uwsgi;\n  \
         scgi_temp_path {d}/scgi;\n{server}\n}}\n"
    );
    let path = dir.join("nginx.conf");
    std::fs::write(&path, conf).expect("nginx.conf");
    let child = Command::new("nginx")
        .arg("-p")
        .arg(dir)
        .arg("-c")
        .arg(&path)
        .args(["-g", "daemon off;"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("nginx starts");
    let mut nginx = Nginx(child);
    let deadline = Instant::now() + Duration::from_secs(10);
    while tokio::net::TcpStream::connect(("127.0.0.1", listen)).await.is_err() {
        if let Ok(Some(status)) = nginx.0.try_wait() {
            let log = std::fs::read_to_string(dir.join("error.log")).unwrap_or_default();
            panic!("nginx exited ({status}): {log}");
        }
        assert!(Instant::now() < deadline, "nginx did not listen within 10 s");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    nginx
}

#[tokio::test]
async fn nucache_serves_under_the_public_url_prefix_behind_nginx() {
    if !nginx_available() {
        return;
    }
    let upstream = FakeUpstream::start().await;
    let listen = free_port();
    let public = format!("http://127.0.0.1:{listen}/nuget");
    let public_url = public.clone();
    let nucache = Nucache::start(&upstream.index_url(), move |c| c.public_url = Some(public_url)).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let _nginx = start_nginx(dir.path(), listen, nucache.addr.port()).await;

    let index = get(&format!("{public}/v3/index.json")).await;
    assert_eq!(index.status, StatusCode::OK, "{}", index.text());
    let resources = index.json()["resources"].as_array().cloned().unwrap_or_default();
    let ids: Vec<String> = resources
        .iter()
        .filter_map(|r| r["@id"].as_str().map(str::to_string))
        // Human web-page templates keep pointing upstream, by design.
        .filter(|id| !upstream.origins().iter().any(|origin| id.starts_with(origin.as_str())))
        .collect();
    assert!(!ids.is_empty());
    assert!(ids.iter().all(|id| id.starts_with(&format!("{public}/v3/"))), "{ids:?}");
    let flat = resources
        .iter()
        .find(|r| r["@type"] == "PackageBaseAddress/3.0.0")
        .and_then(|r| r["@id"].as_str())
        .expect("PackageBaseAddress")
        .trim_end_matches('/')
        .to_string();

    let versions = get(&format!("{flat}/fake.core/index.json")).await;
    assert_eq!(versions.status, StatusCode::OK);
    let package = get(&format!("{flat}/fake.core/1.1.0/fake.core.1.1.0.nupkg")).await;
    assert_eq!(package.status, StatusCode::OK);
    assert_eq!(
        package.body.to_vec(),
        upstream.nupkg_bytes("fake.core", "1.1.0").expect("bytes")
    );

    // Direct access, without the prefix, still works.
    assert_eq!(nucache.get("/v3/index.json").await.status, StatusCode::OK);
    assert_eq!(
        nucache.get("/nuget/v3/flatcontainer/fake.core/index.json").await.status,
        StatusCode::OK
    );
}
