//! How the upstream client reaches an origin: directly, or through the
//! corporate HTTP proxy that `proxy` (or `HTTPS_PROXY` / `HTTP_PROXY` /
//! `ALL_PROXY`, less `NO_PROXY`) names. https destinations get a CONNECT
//! tunnel (hyper-util's `Tunnel`) with the proxy's Basic credentials, and
//! TLS to the origin runs inside it; plain-http destinations are asked of
//! the proxy in absolute form, the credentials in `Proxy-Authorization`.
//! Which proxy a URL takes is hyper-util's `Matcher` (curl's rules).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{HeaderValue, Uri};
use hyper::rt::{Read, ReadBufCursor, Write};
use hyper_util::client::legacy::connect::proxy::Tunnel;
use hyper_util::client::legacy::connect::{Connected, Connection, HttpConnector};
use hyper_util::client::proxy::matcher::Matcher;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tower_service::Service;

use super::BoxError;
use crate::config::UpstreamConfig;

/// Which proxy, if any, each destination goes through.
#[derive(Clone)]
pub(crate) struct Proxies(Arc<Matcher>);

impl Proxies {
    /// `upstream.proxy` for every scheme when set, else the environment;
    /// `NO_PROXY` / `no_proxy` exempts hosts either way.
    pub(crate) fn from_config(config: &UpstreamConfig) -> Proxies {
        let matcher = match &config.proxy {
            Some(proxy) => {
                let no_proxy = ["NO_PROXY", "no_proxy"]
                    .iter()
                    .find_map(|name| std::env::var(name).ok())
                    .unwrap_or_default();
                Matcher::builder()
                    .http(proxy.expose())
                    .https(proxy.expose())
                    .no(no_proxy)
                    .build()
            }
            None => Matcher::from_env(),
        };
        Proxies(Arc::new(matcher))
    }

    /// No proxy for any destination, whatever the environment says: for
    /// the peers of a fleet, which sit beside this node.
    pub(crate) fn none() -> Proxies {
        Proxies(Arc::new(Matcher::builder().build()))
    }

    /// The `Proxy-Authorization` a plain-http request to `url` carries (the
    /// proxy sees the request itself; https requests authenticate the tunnel).
    pub(crate) fn authorization_for(&self, url: &Uri) -> Option<HeaderValue> {
        if url.scheme_str() != Some("http") {
            return None;
        }
        let mut value = self.0.intercept(url)?.basic_auth()?.clone();
        value.set_sensitive(true);
        Some(value)
    }
}

/// A TCP connector that goes through the proxy where the matcher says so.
#[derive(Clone)]
pub(crate) struct ProxyConnector {
    direct: HttpConnector,
    proxies: Proxies,
}

impl ProxyConnector {
    pub(crate) fn new(direct: HttpConnector, proxies: Proxies) -> ProxyConnector {
        ProxyConnector { direct, proxies }
    }
}

impl Service<Uri> for ProxyConnector {
    type Response = Stream;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Stream, BoxError>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        // HttpConnector is always ready.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, destination: Uri) -> Self::Future {
        let mut direct = self.direct.clone();
        let intercept = self.proxies.0.intercept(&destination);
        Box::pin(async move {
            let Some(proxy) = intercept else {
                let io = direct.call(destination).await?;
                return Ok(Stream { io, proxied: false });
            };
            let via = |source: BoxError| ProxyError {
                proxy: proxy
                    .uri()
                    .authority()
                    .map(|a| a.host().to_string() + &port_of(a))
                    .unwrap_or_default(),
                source,
            };
            if destination.scheme_str() == Some("https") {
                let mut tunnel = Tunnel::new(proxy.uri().clone(), direct);
                if let Some(auth) = proxy.basic_auth() {
                    tunnel = tunnel.with_auth(auth.clone());
                }
                let io = tunnel.call(destination).await.map_err(|e| via(e.into()))?;
                Ok(Stream { io, proxied: false })
            } else {
                let io = direct.call(proxy.uri().clone()).await.map_err(|e| via(e.into()))?;
                Ok(Stream { io, proxied: true })
            }
        })
    }
}

/// Reaching the origin through the proxy failed (a refused CONNECT is
/// mostly wrong proxy credentials or a port the proxy does not allow).
#[derive(Debug, thiserror::Error)]
#[error("through the HTTP proxy {proxy}")]
pub(crate) struct ProxyError {
    /// `host[:port]` only: the URL's credentials stay out of every message.
    proxy: String,
    #[source]
    source: BoxError,
}

fn port_of(authority: &http::uri::Authority) -> String {
    authority.port().map(|p| format!(":{p}")).unwrap_or_default()
}

/// A connection to the origin, or to the proxy that forwards plain-http
/// requests (`proxied`: hyper then sends them in absolute form).
pub(crate) struct Stream {
    io: TokioIo<TcpStream>,
    proxied: bool,
}

impl Connection for Stream {
    fn connected(&self) -> Connected {
        self.io.connected().proxy(self.proxied)
    }
}

impl Read for Stream {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: ReadBufCursor<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl Write for Stream {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn proxied(proxy: &str) -> Proxies {
        let config = UpstreamConfig {
            proxy: Some(proxy.into()),
            ..UpstreamConfig::default()
        };
        Proxies::from_config(&config)
    }

    #[test]
    fn plain_http_requests_carry_the_proxy_credentials_https_ones_do_not() {
        let proxies = proxied("http://build:s3cret@127.0.0.1:3128");
        let http: Uri = "http://feed.corp/v3/index.json".parse().expect("uri");
        let https: Uri = "https://feed.corp/v3/index.json".parse().expect("uri");
        let value = proxies.authorization_for(&http).expect("credentials for plain http");
        // base64("build:s3cret")
        assert_eq!(value, "Basic YnVpbGQ6czNjcmV0");
        assert!(value.is_sensitive());
        assert_eq!(proxies.authorization_for(&https), None);
        assert_eq!(proxied("http://127.0.0.1:3128").authorization_for(&http), None);
    }
}
