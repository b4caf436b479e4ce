//! The client side of the admin API: `nucache stats`, `nucache purge` and
//! `nucache verify --online` call a running nucache over HTTP(S) with the
//! admin key from `NUCACHE_ADMIN_KEY`.

use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use crate::config::{Config, ADMIN_KEY_ENV};

/// An online verify of a large cache takes a while; a stuck server does not
/// hold the command forever.
const TIMEOUT: Duration = Duration::from_secs(6 * 3600);

/// Why an admin command failed.
#[derive(Debug, thiserror::Error)]
pub enum AdminClientError {
    #[error("{ADMIN_KEY_ENV} is not set: give the admin key whose digest is in admin.keys")]
    NoKey,
    #[error("{url}: {reason}")]
    Request { url: String, reason: String },
    #[error("{url} answered {status}: {body}")]
    Refused { url: String, status: u16, body: String },
}

/// The server's address: `--url`, else `http://` + `listen` (a wildcard
/// address becomes the loopback one).
pub fn base_url(config: &Config, url: Option<&str>) -> String {
    match url {
        Some(url) => url.trim_end_matches('/').to_string(),
        None => {
            let mut addr = config.listen;
            if addr.ip().is_unspecified() {
                addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
            }
            format!("http://{addr}")
        }
    }
}

/// A request body the admin calls send (a bundle file, or nothing).
pub(crate) type AdminBody = BoxBody<Bytes, std::io::Error>;

/// Calls `path` (below `/admin/`) with the key from the environment; the
/// JSON answer of a 200.
pub async fn call(base: &str, method: Method, path: &str) -> Result<serde_json::Value, AdminClientError> {
    call_with_body(base, method, path, no_body()).await
}

/// The body of a call that sends none.
pub(crate) fn no_body() -> AdminBody {
    Empty::new().map_err(|never| match never {}).boxed()
}

/// [`call`] with a request body.
pub(crate) async fn call_with_body(
    base: &str,
    method: Method,
    path: &str,
    body: AdminBody,
) -> Result<serde_json::Value, AdminClientError> {
    let key = std::env::var(ADMIN_KEY_ENV).map_err(|_| AdminClientError::NoKey)?;
    let url = format!("{base}/admin/{path}");
    let failed = |reason: String| AdminClientError::Request {
        url: url.clone(),
        reason,
    };
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(crate::upstream::tls_config(&[]))
        .https_or_http()
        .enable_http1()
        .build();
    let client = Client::builder(TokioExecutor::new()).build::<_, AdminBody>(https);
    let request = Request::builder()
        .method(method)
        .uri(&url)
        .header(crate::auth::API_KEY_HEADER, key)
        .body(body)
        .map_err(|e| failed(e.to_string()))?;
    let exchange = async {
        let response = client
            .request(request)
            .await
            .map_err(|e| failed(crate::error::chain(&e)))?;
        let status = response.status();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| failed(e.to_string()))?
            .to_bytes();
        Ok::<_, AdminClientError>((status, body))
    };
    let (status, body) = tokio::time::timeout(TIMEOUT, exchange)
        .await
        .map_err(|_| failed("no answer in time".to_string()))??;
    let text = String::from_utf8_lossy(&body).trim().to_string();
    if status != StatusCode::OK {
        return Err(AdminClientError::Refused {
            url,
            status: status.as_u16(),
            body: text,
        });
    }
    serde_json::from_str(&text).map_err(|e| failed(format!("not JSON ({e}): {text}")))
}
