//! The HTTP server: binds, accepts HTTP/1.1 keep-alive connections (at most
//! `server.max_connections` at once; more wait in the listen backlog),
//! hands each request to the proxy, and shuts down gracefully.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use crate::cache::{evict, scrub, Cache, Repair};
use crate::config::Config;
use crate::error::StorageError;
use crate::metrics::Metrics;
use crate::proxy::Proxy;

/// Largest request head accepted (request line and headers).
const MAX_HEAD: usize = 64 * 1024;
/// How often batched last-access times are written to the index.
const FLUSH_EVERY: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// `dir` says which directory, and where a default one came from.
    #[error("{dir}: cannot open the cache: {source}")]
    Cache {
        dir: String,
        #[source]
        source: StorageError,
    },
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("start-up task failed: {0}")]
    Task(String),
}

/// Applies reloadable settings to a running server.
#[derive(Clone)]
pub struct Reloader {
    proxy: Arc<Proxy>,
}

impl Reloader {
    /// Takes the key-file secrets of `fresh`; what was reloaded, for the log.
    pub fn reload_secrets(&self, fresh: &Config) -> Vec<&'static str> {
        self.proxy.reload_secrets(fresh)
    }
}

/// A bound, ready nucache.
pub struct Server {
    listener: TcpListener,
    proxy: Arc<Proxy>,
    cache: Arc<Cache>,
    config: Arc<Config>,
    repair: Repair,
    metrics: Arc<Metrics>,
}

impl Server {
    /// Opens (and repairs) the cache and binds the listening socket.
    pub async fn bind(config: Config) -> Result<Server, StartError> {
        let config = Arc::new(config);
        let (cache_config, not_found_ttl) = (config.cache.clone(), config.ttl.not_found);
        let (cache, repair) = tokio::task::spawn_blocking(move || Cache::open(&cache_config, not_found_ttl))
            .await
            .map_err(|e| StartError::Task(e.to_string()))?
            .map_err(|source| StartError::Cache {
                dir: config.cache.describe_dir(),
                source,
            })?;
        let listener = TcpListener::bind(config.listen)
            .await
            .map_err(|source| StartError::Bind {
                addr: config.listen,
                source,
            })?;
        let cache = Arc::new(cache);
        let metrics = Arc::new(Metrics::new());
        let proxy = Arc::new(Proxy::new(config.clone(), cache.clone(), metrics.clone()));
        Ok(Server {
            listener,
            proxy,
            cache,
            config,
            repair,
            metrics,
        })
    }

    /// What SIGHUP may change while this server runs.
    pub fn reloader(&self) -> Reloader {
        Reloader {
            proxy: self.proxy.clone(),
        }
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// What the start-up check of the cache repaired.
    pub fn repair(&self) -> &Repair {
        &self.repair
    }

    /// Serves until `shutdown` resolves, then stops accepting, lets
    /// in-flight responses finish (bounded by `server.shutdown_timeout`)
    /// and flushes the cache index.
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        let Server {
            listener,
            proxy,
            config,
            cache,
            metrics,
            ..
        } = self;
        let flusher = tokio::spawn(flush_periodically(proxy.clone()));
        let (interval, rate) = (config.cache.scrub_interval, config.cache.scrub_rate.bytes());
        let evictor = tokio::spawn(evict::run(cache.clone(), metrics));
        let scrubber = tokio::spawn(scrub::run(cache, interval, rate));
        let graceful = GracefulShutdown::new();
        let permits = Arc::new(Semaphore::new(config.server.max_connections));
        let mut http = http1::Builder::new();
        http.timer(TokioTimer::new())
            .header_read_timeout(config.server.header_read_timeout)
            .keep_alive(true)
            // The head limit answers 431; the buffer limit alone lets a
            // large head through when it arrives in one read.
            .max_header_size(MAX_HEAD)
            .max_buf_size(MAX_HEAD);
        tokio::pin!(shutdown);
        loop {
            let permit = tokio::select! {
                permit = permits.clone().acquire_owned() => match permit {
                    Ok(permit) => permit,
                    Err(_) => break,
                },
                _ = &mut shutdown => break,
            };
            let (stream, peer) = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok(accepted) => accepted,
                    Err(error) => {
                        // Out of file descriptors and the like: pause rather than spin.
                        tracing::warn!(%error, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
                _ = &mut shutdown => break,
            };
            let _ = stream.set_nodelay(true);
            let handler = proxy.clone();
            let service = service_fn(move |request| {
                let handler = handler.clone();
                async move { Ok::<_, Infallible>(handler.handle(request, peer).await) }
            });
            let connection = graceful.watch(http.serve_connection(TokioIo::new(stream), service));
            tokio::spawn(async move {
                if let Err(error) = connection.await {
                    tracing::debug!(%peer, %error, "connection ended with an error");
                }
                drop(permit);
            });
        }
        drop(listener);
        tracing::info!("no longer accepting connections; draining");
        if tokio::time::timeout(config.server.shutdown_timeout, graceful.shutdown())
            .await
            .is_err()
        {
            tracing::warn!(
                timeout_s = config.server.shutdown_timeout.as_secs(),
                "in-flight responses did not finish in time"
            );
        }
        flusher.abort();
        scrubber.abort();
        evictor.abort();
        let flushing = proxy.clone();
        let _ = tokio::task::spawn_blocking(move || flushing.flush()).await;
        tracing::info!("stopped");
    }
}

async fn flush_periodically(proxy: Arc<Proxy>) {
    let mut ticks = tokio::time::interval(FLUSH_EVERY);
    ticks.tick().await;
    loop {
        ticks.tick().await;
        let flushing = proxy.clone();
        let _ = tokio::task::spawn_blocking(move || flushing.flush()).await;
    }
}
