//! The HTTP server: binds, accepts HTTP/1.1 keep-alive connections (at most
//! `server.max_connections` at once; more wait in the listen backlog), or
//! HTTPS ones with HTTP/2 or HTTP/1.1 by ALPN (`tls`; at most
//! `limits.http2_max_streams` streams per connection), hands each request
//! to the proxy, closes connections idle for `limits.idle_timeout`
//! (`idle`), and shuts down gracefully.

mod idle;
mod tls;

use idle::{Activity, Tracked};

use tls::Tls;
pub use tls::TlsError;

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::{http1, http2};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulConnection;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};

use crate::cache::{evict, scrub, Cache, Repair};
use crate::config::Config;
use crate::error::StorageError;
use crate::metrics::Metrics;
use crate::proxy::Proxy;
use crate::shared::SharedStore;
use crate::tiers::NodeId;

/// Largest request head accepted (request line and headers).
const MAX_HEAD: usize = 64 * 1024;
/// How long an HTTP/2 peer has to answer a keep-alive ping.
const H2_PING_TIMEOUT: Duration = Duration::from_secs(20);
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
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error("cannot use the shared store: {0}")]
    Shared(String),
    #[error("start-up task failed: {0}")]
    Task(String),
}

/// Applies reloadable settings to a running server.
#[derive(Clone)]
pub struct Reloader {
    proxy: Arc<Proxy>,
    tls: Option<Arc<Tls>>,
}

impl Reloader {
    /// Takes the key-file secrets of `fresh`; what was reloaded, for the log.
    pub fn reload_secrets(&self, fresh: &Config) -> Vec<&'static str> {
        self.proxy.reload_secrets(fresh)
    }

    /// Loads `tls.cert` / `tls.key` again for new connections (open ones
    /// keep theirs); `Ok(false)` when nucache serves plain http.
    pub fn reload_certificate(&self, fresh: &Config) -> Result<bool, TlsError> {
        match &self.tls {
            Some(tls) => tls.reload(&fresh.tls).map(|()| true),
            None => Ok(false),
        }
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
    tls: Option<Arc<Tls>>,
}

impl Server {
    /// Opens (and repairs) the cache and binds the listening socket.
    pub async fn bind(config: Config) -> Result<Server, StartError> {
        let config = Arc::new(config);
        let tls = Tls::from_config(&config.tls)?.map(Arc::new);
        let (cache_config, not_found_ttl) = (config.cache.clone(), config.ttl.not_found);
        let upstreams = config.upstream_urls();
        let configured_node = config.fleet.node.clone();
        let (cache, repair, node) = tokio::task::spawn_blocking(move || {
            let (cache, repair) = Cache::open(&cache_config, not_found_ttl)?;
            cache.migrate_legacy_keys(&upstreams)?;
            let node = NodeId::load_or_create(&cache_config.dir, configured_node.as_deref());
            Ok((cache, repair, node))
        })
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
        match crate::airgap::sweep_staging(&config.cache.dir).await {
            Ok(true) => tracing::info!("removed the staging directory of unfinished imports"),
            Ok(false) => {}
            Err(error) => tracing::warn!(%error, "could not remove the staging directory of unfinished imports"),
        }
        tracing::info!(node = node.id(), "node id (Via, Cache-Status)");
        let cache = Arc::new(cache);
        let metrics = Arc::new(Metrics::new());
        let shared = SharedStore::connect(&config.shared, metrics.clone())
            .map_err(|error| StartError::Shared(crate::error::chain(&error)))?;
        let proxy = Arc::new(Proxy::new(config.clone(), cache.clone(), metrics.clone(), node, shared));
        Ok(Server {
            listener,
            proxy,
            cache,
            config,
            repair,
            metrics,
            tls,
        })
    }

    /// What SIGHUP may change while this server runs.
    pub fn reloader(&self) -> Reloader {
        Reloader {
            proxy: self.proxy.clone(),
            tls: self.tls.clone(),
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
            tls,
            ..
        } = self;
        let flusher = tokio::spawn(flush_periodically(proxy.clone()));
        // Every upstream's service index, loaded without waiting for a
        // client: `/ready` turns 200 when they are.
        let loader = tokio::spawn(proxy.pipeline().clone().load_every_index());
        // The fleet's health checks: which peers own keys.
        let watcher = proxy
            .pipeline()
            .fleet()
            .map(|fleet| tokio::spawn(fleet.clone().watch()));
        let (interval, rate) = (config.cache.scrub_interval, config.cache.scrub_rate.bytes());
        let evictor = tokio::spawn(evict::run(cache.clone(), metrics));
        let scrubber = tokio::spawn(scrub::run(cache, interval, rate));
        // Each connection holds a permit while it lives, and watches `stop`.
        let (stop, stopping) = watch::channel(false);
        let permits = Arc::new(Semaphore::new(config.server.max_connections));
        let protocols = Arc::new(Protocols::new(&config));
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
            let connection = Connection {
                proxy: proxy.clone(),
                protocols: protocols.clone(),
                stopping: stopping.clone(),
                peer,
            };
            let tls = tls.clone();
            tokio::spawn(async move {
                match tls {
                    Some(tls) => connection.serve_tls(stream, &tls).await,
                    None => connection.serve_plain(stream).await,
                }
                drop(permit);
            });
        }
        drop(listener);
        tracing::info!("no longer accepting connections; draining");
        let _ = stop.send(true);
        let every = u32::try_from(config.server.max_connections).unwrap_or(u32::MAX);
        let drained = permits.acquire_many(every);
        if tokio::time::timeout(config.server.shutdown_timeout, drained)
            .await
            .is_err()
        {
            tracing::warn!(
                timeout_s = config.server.shutdown_timeout.as_secs(),
                "in-flight responses did not finish in time"
            );
        }
        flusher.abort();
        loader.abort();
        if let Some(watcher) = watcher {
            watcher.abort();
        }
        scrubber.abort();
        evictor.abort();
        let flushing = proxy.clone();
        let _ = tokio::task::spawn_blocking(move || flushing.flush()).await;
        tracing::info!("stopped");
    }
}

/// How connections speak HTTP: built once from the configuration.
struct Protocols {
    http1: http1::Builder,
    http2: http2::Builder<TokioExecutor>,
    /// Bounds the TLS handshake as `header_read_timeout` bounds a request head.
    handshake_timeout: Duration,
    /// A connection with no request in flight this long is closed.
    idle_timeout: Duration,
}

impl Protocols {
    fn new(config: &Config) -> Protocols {
        let mut http1 = http1::Builder::new();
        http1
            .timer(TokioTimer::new())
            .header_read_timeout(config.server.header_read_timeout)
            .keep_alive(true)
            // The head limit answers 431; the buffer limit alone lets a
            // large head through when it arrives in one read.
            .max_header_size(MAX_HEAD)
            .max_buf_size(MAX_HEAD);
        let mut http2 = http2::Builder::new(TokioExecutor::new());
        http2
            .timer(TokioTimer::new())
            .max_header_list_size(MAX_HEAD as u32)
            .max_concurrent_streams(config.limits.http2_max_streams)
            // A peer that stops answering pings is gone: its streams end.
            .keep_alive_interval(config.limits.idle_timeout)
            .keep_alive_timeout(H2_PING_TIMEOUT);
        Protocols {
            http1,
            http2,
            handshake_timeout: config.server.header_read_timeout,
            idle_timeout: config.limits.idle_timeout,
        }
    }
}

/// One accepted connection, served until it closes or shutdown drains it.
struct Connection {
    proxy: Arc<Proxy>,
    protocols: Arc<Protocols>,
    /// Turns true when the server stops: the connection shuts down gracefully.
    stopping: watch::Receiver<bool>,
    peer: SocketAddr,
}

impl Connection {
    async fn serve_plain(self, stream: TcpStream) {
        self.serve(TokioIo::new(stream), false).await;
    }

    /// The handshake, then HTTP/2 when the client chose it by ALPN
    /// (no sniffing of the first bytes needed), else HTTP/1.1.
    async fn serve_tls(self, stream: TcpStream, tls: &Tls) {
        let peer = self.peer;
        let handshake = tokio::time::timeout(self.protocols.handshake_timeout, tls.acceptor().accept(stream));
        let stream = match handshake.await {
            Ok(Ok(stream)) => stream,
            Ok(Err(error)) => return tracing::debug!(%peer, %error, "TLS handshake failed"),
            Err(_) => return tracing::debug!(%peer, "TLS handshake timed out"),
        };
        let h2 = tls::negotiated_h2(stream.get_ref().1.alpn_protocol());
        self.serve(TokioIo::new(stream), h2).await;
    }

    async fn serve<I>(self, io: TokioIo<I>, h2: bool)
    where
        I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let Connection {
            proxy,
            protocols,
            stopping,
            peer,
        } = self;
        let activity = Activity::new();
        let requests = activity.clone();
        let service = service_fn(move |request| {
            let (handler, in_flight) = (proxy.clone(), requests.begin());
            async move {
                let response = handler.handle(request, peer).await;
                Ok::<_, Infallible>(response.map(|body| Tracked::new(body, in_flight)))
            }
        });
        let idle = (activity, protocols.idle_timeout);
        let result = if h2 {
            drive(protocols.http2.serve_connection(io, service), stopping, idle).await
        } else {
            drive(protocols.http1.serve_connection(io, service), stopping, idle).await
        };
        if let Err(error) = result {
            tracing::debug!(%peer, %error, "connection ended with an error");
        }
    }
}

/// Serves `conn` until it ends, shutting it down gracefully when the server
/// stops or once it has had no request in flight for the idle timeout.
async fn drive<C: GracefulConnection>(
    conn: C,
    mut stopping: watch::Receiver<bool>,
    (activity, idle_timeout): (Activity, Duration),
) -> Result<(), C::Error> {
    tokio::pin!(conn);
    tokio::select! {
        result = conn.as_mut() => return result,
        _ = stopping.wait_for(|stop| *stop) => {}
        _ = activity.idle_for(idle_timeout) => {}
    }
    conn.as_mut().graceful_shutdown();
    conn.await
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
