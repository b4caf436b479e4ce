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
use serde_json::Value;

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

/// Web pages a user's browser opens: they keep pointing upstream, by design.
const HUMAN_PAGES: [&str; 4] = [
    "PackageDetailsUriTemplate",
    "ReportAbuseUriTemplate",
    "OwnerDetailsUriTemplate",
    "LicenseUriTemplate",
];

fn is_human_page(resource: &Value) -> bool {
    let name = resource["@type"].as_str().and_then(|t| t.split('/').next());
    name.is_some_and(|name| HUMAN_PAGES.contains(&name))
}

/// The `@id` of the first resource of type `ty`.
fn resource(index: &Value, ty: &str) -> String {
    let resources = index["resources"].as_array().cloned().unwrap_or_default();
    let found = resources.iter().find(|r| r["@type"] == ty);
    found.and_then(|r| r["@id"].as_str()).expect(ty).to_string()
}

/// Every URL in `doc` on this machine (the upstream's hosts, nucache's
/// own address, nginx's), except human pages on the upstream's www host,
/// is under `public`; `doc` has some. (Third parties' URLs, such as JSON-LD
/// vocabularies and `projectUrl`s, are left alone.)
fn assert_every_url_under(doc: &Value, public: &str, upstream: &FakeUpstream, what: &str) {
    let urls = common::urls_in(doc);
    let nucaches: Vec<&String> = urls
        .iter()
        .filter(|url| url.starts_with("http://127.0.0.1:") && !url.starts_with(&upstream.www()))
        .collect();
    assert!(!nucaches.is_empty(), "{what}: no URL to check");
    let stray: Vec<&&String> = nucaches.iter().filter(|url| !url.starts_with(public)).collect();
    assert!(stray.is_empty(), "{what}: URLs outside {public}: {stray:?}");
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
    let under = format!("{public}/v3/");

    // Every resource of the index: at nucache under the prefix, or a human
    // page (by its type, not by where it points) on the upstream's www host.
    let index = get(&format!("{public}/v3/index.json")).await;
    assert_eq!(index.status, StatusCode::OK, "{}", index.text());
    let index = index.json();
    let resources = index["resources"].as_array().cloned().unwrap_or_default();
    assert!(resources.len() > 20, "{} resources", resources.len());
    for r in &resources {
        let id = r["@id"].as_str().unwrap_or_default();
        let home = if is_human_page(r) {
            upstream.www()
        } else {
            under.clone()
        };
        assert!(id.starts_with(&home), "{} at {id}, not under {home}", r["@type"]);
    }
    assert_every_url_under(&index, &under, &upstream, "the service index");

    // URLs inside documents, read through the prefix, point under it too.
    let registration = resource(&index, "RegistrationsBaseUrl/3.6.0");
    let registration = get(&format!("{registration}fake.core/index.json")).await;
    assert_eq!(registration.status, StatusCode::OK, "{}", registration.text());
    assert_every_url_under(&registration.json(), &under, &upstream, "a registration index");
    let search = get(&format!("{}?q=fake", resource(&index, "SearchQueryService/3.0.0-beta"))).await;
    assert_eq!(search.status, StatusCode::OK, "{}", search.text());
    assert_every_url_under(&search.json(), &under, &upstream, "a search answer");

    // The package where the registration says it is.
    let content = common::urls_in(&registration.json())
        .into_iter()
        .find(|url| url.ends_with("/fake.core.1.1.0.nupkg"))
        .expect("packageContent of 1.1.0");
    let package = get(&content).await;
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
