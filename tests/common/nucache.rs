//! Runs nucache in-process for a test, and a small HTTP client to talk to it.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use bytes::BytesMut;
use http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use nucache::{Config, Server};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// Every test request is bounded by this.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(20);

/// A running nucache.
pub struct Nucache {
    pub addr: SocketAddr,
    pub dir: PathBuf,
    /// The primary upstream's service index URL (whose cache namespace
    /// `common::content_file` looks in).
    pub upstream: String,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
    _temp: Option<tempfile::TempDir>,
}

/// Settings for tests: short timeouts, one retry, an isolated cache.
pub fn test_config(upstream_index: &str, dir: &Path) -> Config {
    let mut config = Config {
        listen: "127.0.0.1:0".parse().expect("address"),
        ..Config::default()
    };
    config.upstream.service_index = upstream_index.to_string();
    config.upstream.connect_timeout = Duration::from_secs(1);
    config.upstream.read_timeout = Duration::from_secs(2);
    config.upstream.retries = 1;
    // Outage tests count upstream requests; the breaker gets its own tests.
    config.upstream.breaker_threshold = 0;
    config.cache.dir = dir.to_path_buf();
    config.server.shutdown_timeout = Duration::from_secs(2);
    config
}

impl Nucache {
    /// nucache in front of `upstream_index`, with a fresh cache directory.
    pub async fn start(upstream_index: &str, tweak: impl FnOnce(&mut Config)) -> Nucache {
        let temp = tempfile::tempdir().expect("temp dir");
        let mut nucache = Self::start_in(upstream_index, temp.path(), tweak).await;
        nucache._temp = Some(temp);
        nucache
    }

    /// nucache on an existing cache directory (restarts).
    pub async fn start_in(upstream_index: &str, dir: &Path, tweak: impl FnOnce(&mut Config)) -> Nucache {
        let mut config = test_config(upstream_index, dir);
        tweak(&mut config);
        Self::start_with(config).await
    }

    pub async fn start_with(config: Config) -> Nucache {
        let dir = config.cache.dir.clone();
        let upstream = config.primary_upstream().1.service_index.clone();
        let server = bind_retrying(config).await;
        let addr = server.local_addr().expect("local address");
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(server.run(async {
            let _ = stopped.await;
        }));
        Nucache {
            addr,
            dir,
            upstream,
            stop: Some(stop),
            task: Some(task),
            _temp: None,
        }
    }

    /// Stops nucache and waits until it has let go of its cache.
    pub async fn stop(mut self) -> Option<tempfile::TempDir> {
        self.shutdown().await;
        self._temp.take()
    }

    async fn shutdown(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = tokio::time::timeout(Duration::from_secs(10), task).await;
        }
    }

    pub fn base(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base())
    }

    pub async fn get(&self, path: &str) -> Reply {
        self.request(Method::GET, path, &[]).await
    }

    /// Polls `/ready` until it answers 200: every upstream's service index
    /// is loaded (nucache loads them at start-up, with no client request).
    pub async fn until_ready(&self) {
        let url = self.url("/ready");
        super::poll::until_true("nucache is ready", async || get(&url).await.status == StatusCode::OK).await;
    }

    /// GETs `path` until it is served from the cache (see
    /// [`super::poll::until_hit`]); that answer.
    pub async fn until_hit(&self, path: &str) -> Reply {
        super::poll::until_hit(Method::GET, &self.url(path)).await.reply
    }

    pub async fn request(&self, method: Method, path: &str, headers: &[(&str, &str)]) -> Reply {
        send(method, &self.url(path), headers, Bytes::new()).await
    }

    pub async fn request_with_body(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Vec<u8>,
    ) -> Reply {
        send(method, &self.url(path), headers, Bytes::from(body)).await
    }
}

impl Drop for Nucache {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// The cache directory may still be locked by a nucache that just stopped.
async fn bind_retrying(config: Config) -> Server {
    let mut last = None;
    for _ in 0..50 {
        match Server::bind(config.clone()).await {
            Ok(server) => return server,
            Err(error) => {
                last = Some(error.to_string());
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    panic!("nucache did not start: {last:?}");
}

/// A whole response.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
    /// Set when the body broke off before its end.
    pub body_error: Option<String>,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    pub fn x_cache(&self) -> Option<&str> {
        self.header("x-cache")
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }
}

/// One request with its own client (no pooled connection survives a test).
pub async fn send(method: Method, url: &str, headers: &[(&str, &str)], body: Bytes) -> Reply {
    try_send(method, url, headers, body)
        .await
        .unwrap_or_else(|e| panic!("request to {url} failed: {e}"))
}

/// [`send`], where the connection may be closed before any answer (a
/// response aborted before its head went out).
pub async fn try_send(method: Method, url: &str, headers: &[(&str, &str)], body: Bytes) -> Result<Reply, String> {
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let mut request = Request::builder().method(method).uri(url);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let request = request.body(Full::new(body)).expect("request");
    let response = tokio::time::timeout(REQUEST_TIMEOUT, client.request(request))
        .await
        .unwrap_or_else(|_| panic!("no answer from {url} within {REQUEST_TIMEOUT:?}"))
        .map_err(|e| e.to_string())?;
    let (parts, mut body) = response.into_parts();
    // Frame by frame, so that a body that breaks off keeps what arrived.
    let mut data = BytesMut::new();
    let mut body_error = None;
    loop {
        match tokio::time::timeout(REQUEST_TIMEOUT, body.frame()).await {
            Ok(Some(Ok(frame))) => {
                if let Some(chunk) = frame.data_ref() {
                    data.extend_from_slice(chunk);
                }
            }
            Ok(Some(Err(error))) => {
                body_error = Some(error.to_string());
                break;
            }
            Ok(None) => break,
            Err(_) => {
                body_error = Some("body timed out".to_string());
                break;
            }
        }
    }
    Ok(Reply {
        status: parts.status,
        headers: parts.headers,
        body: data.freeze(),
        body_error,
    })
}

/// A GET with no extras.
pub async fn get(url: &str) -> Reply {
    send(Method::GET, url, &[], Bytes::new()).await
}
