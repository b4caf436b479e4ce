//! Debian's `tinyproxy` as the corporate HTTP proxy of a test: started on
//! 127.0.0.1 with a temporary configuration (Basic credentials required),
//! stopped when dropped. Its log says which requests went through it.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::poll;

pub const USER: &str = "nucache";
pub const PASSWORD: &str = "Pr0xy-s3cret";

pub struct Tinyproxy {
    child: Child,
    pub port: u16,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

/// Whether tinyproxy is installed; where it is not, `test` is skipped with
/// a message, except with `CI=true` (`.ci/run` installs it), where that fails.
pub fn available(test: &str) -> bool {
    let found = Command::new("tinyproxy")
        .arg("-v")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if found {
        return true;
    }
    let message = format!("{test}: tinyproxy is not installed (apt-get install tinyproxy)");
    super::skipped(&message, ("CI", "true"))
}

impl Tinyproxy {
    /// Starts tinyproxy in the foreground and waits until it accepts.
    pub async fn start() -> Tinyproxy {
        let dir = tempfile::tempdir().expect("temp dir");
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("a free port");
        let log = dir.path().join("tinyproxy.log");
        let config = dir.path().join("tinyproxy.conf");
        // No ConnectPort line: CONNECT may reach any port (the fakes' are random).
        let text = format!(
            "Port {port}\nListen 127.0.0.1\nTimeout 30\nMaxClients 32\nLogLevel Info\n\
             LogFile \"{}\"\nPidFile \"{}\"\nBasicAuth {USER} {PASSWORD}\n",
            log.display(),
            dir.path().join("tinyproxy.pid").display()
        );
        std::fs::write(&config, text).expect("tinyproxy.conf");
        let child = Command::new("tinyproxy")
            .arg("-d")
            .arg("-c")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("tinyproxy starts");
        let mut proxy = Tinyproxy {
            child,
            port,
            log,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_err() {
            if let Ok(Some(status)) = proxy.child.try_wait() {
                panic!("tinyproxy exited ({status}): {}", proxy.log_text());
            }
            assert!(
                Instant::now() < deadline,
                "tinyproxy did not listen: {}",
                proxy.log_text()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        proxy
    }

    /// `http://user:password@127.0.0.1:PORT`
    pub fn url_with_credentials(&self, password: &str) -> String {
        format!("http://{USER}:{password}@127.0.0.1:{}", self.port)
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Requests tinyproxy logged whose request line contains `needle`
    /// (`CONNECT 127.0.0.1:PORT`, `GET http://...`). It logs a request line
    /// as soon as it has read it, before it connects anywhere, so a request
    /// that has been answered through it is in the log, if the log has been
    /// written out yet: see [`Tinyproxy::wait_for_requests`].
    pub fn requests_with(&self, needle: &str) -> usize {
        self.log_text()
            .lines()
            .filter(|line| line.contains("Request (file descriptor") && line.contains(needle))
            .count()
    }

    /// Polls the log until it holds at least `count` requests with `needle`
    /// (see [`Tinyproxy::requests_with`]); how many. Panics, with the log,
    /// after `poll::DEADLINE`.
    pub async fn wait_for_requests(&self, needle: &str, count: usize) -> usize {
        let deadline = Instant::now() + poll::DEADLINE;
        loop {
            let seen = self.requests_with(needle);
            if seen >= count {
                return seen;
            }
            assert!(
                Instant::now() < deadline,
                "tinyproxy logged {seen} requests with {needle:?}, not {count}: {}",
                self.log_text()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Tinyproxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
