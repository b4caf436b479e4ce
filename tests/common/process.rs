//! nucache as a real process (the built binary), for what an in-process
//! server cannot show: SIGKILL, SIGTERM, another mount namespace.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;

use super::nucache::{get, Reply};

/// A bench's `main`: runs `bench` (true: it failed) on two worker
/// threads, and exits 1 when it failed.
pub fn bench_main(bench: impl std::future::Future<Output = bool>) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let failed = runtime.block_on(bench);
    std::process::exit(if failed { 1 } else { 0 });
}

/// The pooled plain-http client the benches drive nucache with.
pub type HttpClient = Client<HttpConnector, Empty<Bytes>>;

/// GET `url` through `client`, answered within 60 s: its status and body.
pub async fn fetch(client: &HttpClient, url: &str) -> Result<(http::StatusCode, Bytes), String> {
    let uri: http::Uri = url.parse().map_err(|e| format!("{e}"))?;
    let response = tokio::time::timeout(Duration::from_secs(60), client.get(uri))
        .await
        .map_err(|_| "no answer in 60 s".to_string())?
        .map_err(|e| e.to_string())?;
    let status = response.status();
    let body = response.into_body().collect().await.map_err(|e| e.to_string())?;
    Ok((status, body.to_bytes()))
}

pub const BINARY: &str = env!("CARGO_BIN_EXE_nucache");

/// A running nucache process.
pub struct Process {
    child: Child,
    pub port: u16,
    pub log: PathBuf,
}

/// How to start it.
pub struct Launch<'a> {
    pub upstream_index: &'a str,
    pub cache_dir: &'a Path,
    /// Extra `NUCACHE_*` settings.
    pub env: Vec<(&'a str, String)>,
    /// Run inside `unshare -Urm` with a tmpfs of this many KiB mounted on
    /// the cache directory (disk-full and read-only tests).
    pub tmpfs_kib: Option<u64>,
}

impl<'a> Launch<'a> {
    /// nucache in front of `upstream_index`, its cache at `cache_dir`, with
    /// no extra settings.
    pub fn new(upstream_index: &'a str, cache_dir: &'a Path) -> Launch<'a> {
        Launch {
            upstream_index,
            cache_dir,
            env: Vec::new(),
            tmpfs_kib: None,
        }
    }
}

/// Whether this machine lets an unprivileged test make its own user and
/// mount namespaces with a tmpfs in them (`unshare -Urm`), which the
/// disk-full and read-only tests need. Where it does not, `test` is
/// skipped with a message saying why; with `CI=true` (CI runs as root and
/// has them) that is a failure instead.
pub fn namespaces_available(test: &str) -> bool {
    let probe = tempfile::tempdir().expect("temp dir");
    let mounted = Command::new("unshare")
        .args(["-Urm", "sh", "-c", "mount -t tmpfs -o size=64k tmpfs \"$1\"", "sh"])
        .arg(probe.path())
        .stdout(Stdio::null())
        .output();
    let why = match mounted {
        Ok(output) if output.status.success() => return true,
        Ok(output) => String::from_utf8_lossy(&output.stderr).trim().to_string(),
        Err(error) => format!("cannot run unshare: {error}"),
    };
    let message = format!("{test}: user and mount namespaces with a tmpfs are unavailable here ({why})");
    if std::env::var("CI").is_ok_and(|ci| ci == "true") {
        panic!("{message}; CI=true requires them");
    }
    eprintln!("SKIPPED {message}");
    false
}

impl Launch<'_> {
    pub fn spawn(&self) -> Process {
        self.spawn_on(free_port())
    }

    /// Spawns it listening on `port` (nodes that must know each other's
    /// address before either starts).
    pub fn spawn_on(&self, port: u16) -> Process {
        let log = self.cache_dir.with_extension(format!("{port}.log"));
        let log_file = std::fs::File::create(&log).expect("log file");
        let mut command = match self.tmpfs_kib {
            None => Command::new(BINARY),
            Some(kib) => {
                let mut command = Command::new("unshare");
                let script = format!("mount -t tmpfs -o size={kib}k tmpfs \"$1\" && exec \"$2\"");
                command.args(["-Urm", "sh", "-c", &script, "sh"]);
                command.arg(self.cache_dir).arg(BINARY);
                command
            }
        };
        command
            .env("NUCACHE_LISTEN", format!("127.0.0.1:{port}"))
            .env("NUCACHE_UPSTREAM__SERVICE_INDEX", self.upstream_index)
            .env("NUCACHE_CACHE__DIR", self.cache_dir)
            .env("NUCACHE_UPSTREAM__CONNECT_TIMEOUT", "1s")
            .env("NUCACHE_UPSTREAM__READ_TIMEOUT", "2s")
            .env("NUCACHE_UPSTREAM__RETRIES", "1")
            .env("NUCACHE_UPSTREAM__BREAKER_THRESHOLD", "0")
            .env("NUCACHE_SERVER__SHUTDOWN_TIMEOUT", "5s")
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log_file);
        for (key, value) in &self.env {
            command.env(key, value);
        }
        let child = command.spawn().expect("nucache starts");
        Process { child, port, log }
    }
}

impl Process {
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The process's peak resident set so far (`VmHWM`), in KiB.
    pub fn peak_rss_kib(&self) -> u64 {
        std::fs::read_to_string(format!("/proc/{}/status", self.pid()))
            .unwrap_or_default()
            .lines()
            .find_map(|line| line.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    }

    /// Waits until `/health` answers (the cache has been opened and checked).
    pub async fn ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("nucache exited early ({status}): {}", self.log_text());
            }
            let connect = tokio::net::TcpStream::connect(("127.0.0.1", self.port)).await;
            if connect.is_ok() && get(&self.url("/health")).await.status.is_success() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("nucache did not become ready: {}", self.log_text());
    }

    pub async fn get(&self, path: &str) -> Reply {
        get(&self.url(path)).await
    }

    /// GETs `path` until it is served from the cache (see
    /// [`super::poll::until_hit`]); that answer.
    pub async fn until_hit(&self, path: &str) -> Reply {
        super::poll::until_hit(http::Method::GET, &self.url(path)).await.reply
    }

    /// SIGKILL: no chance to clean up.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, then the exit status (SIGKILL after `within`).
    pub fn terminate(&mut self, within: Duration) -> Option<ExitStatus> {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.kill();
        None
    }

    /// Sends SIGHUP (a reload request).
    pub fn hangup(&self) {
        let _ = Command::new("kill")
            .args(["-HUP", &self.child.id().to_string()])
            .status();
    }

    /// Whether the process has exited.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// Waits until the log holds `count` lines containing `text`.
    pub async fn wait_for_log(&self, text: &str, count: usize) -> String {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let log = self.log_text();
            if log.lines().filter(|l| l.contains(text)).count() >= count {
                return log;
            }
            if Instant::now() > deadline {
                panic!("no {count} log lines with {text:?} within 20 s: {log}");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The log once it holds `needle` (log lines are written by a thread
    /// of their own, a moment after the event); panics after 5 s.
    pub async fn log_with(&self, needle: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let log = self.log_text();
            if log.contains(needle) {
                return log;
            }
            assert!(Instant::now() < deadline, "the log never said {needle:?}: {log}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// A path inside the process's own view of the file system (its mount
    /// namespace), e.g. its tmpfs cache directory.
    pub fn inside(&self, path: &Path) -> PathBuf {
        let relative = path.strip_prefix("/").unwrap_or(path);
        PathBuf::from(format!("/proc/{}/root", self.pid())).join(relative)
    }

    /// Runs a shell command inside the process's namespaces; its output
    /// when it fails.
    pub fn exec_inside(&self, script: &str) -> Result<(), String> {
        let output = Command::new("nsenter")
            .args([
                "--target",
                &self.pid().to_string(),
                "--user",
                "--mount",
                "--preserve-credentials",
            ])
            .args(["sh", "-c", script])
            .output()
            .map_err(|e| e.to_string())?;
        if output.status.success() {
            Ok(())
        } else {
            Err(String::from_utf8_lossy(&output.stderr).into_owned())
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill();
    }
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// A tiny deterministic generator (xorshift), so test runs repeat.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n.max(1)
    }
}
