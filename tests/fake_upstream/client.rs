//! A small HTTP client for these tests: whole responses through hyper,
//! and raw HTTP/1.1 exchanges that show the bytes on the wire.

use std::convert::Infallible;
use std::io::Read as _;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt as _, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio::time::timeout;

use crate::common::upstream::FakeUpstream;

pub(crate) const LIMIT: Duration = Duration::from_secs(10);

pub(crate) type ReqBody = UnsyncBoxBody<Bytes, Infallible>;

pub(crate) struct Resp {
    pub(crate) status: StatusCode,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Bytes,
}

impl Resp {
    pub(crate) fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("response body is JSON")
    }

    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

pub(crate) fn client() -> Client<HttpConnector, ReqBody> {
    Client::builder(TokioExecutor::new()).build_http()
}

pub(crate) async fn send(method: Method, url: &str, headers: &[(&str, &str)], body: ReqBody) -> Result<Resp, String> {
    let mut req = Request::builder().method(method).uri(url);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let req = req.body(body).map_err(|e| e.to_string())?;
    let exchange = async {
        let resp = client().request(req).await.map_err(|e| format!("{e:?}"))?;
        let (parts, body) = resp.into_parts();
        let body = body.collect().await.map_err(|e| format!("{e:?}"))?.to_bytes();
        Ok(Resp {
            status: parts.status,
            headers: parts.headers,
            body,
        })
    };
    timeout(LIMIT, exchange).await.map_err(|_| "timed out".to_string())?
}

pub(crate) fn full(body: impl Into<Bytes>) -> ReqBody {
    Full::new(body.into()).boxed_unsync()
}

pub(crate) async fn get_with(url: &str, headers: &[(&str, &str)]) -> Resp {
    send(Method::GET, url, headers, full(Bytes::new()))
        .await
        .unwrap_or_else(|e| panic!("GET {url}: {e}"))
}

pub(crate) async fn get(url: &str) -> Resp {
    get_with(url, &[]).await
}

/// The versions of the leaves of a registration index's first (inlined)
/// page, in order.
pub(crate) fn leaf_versions(doc: &Value) -> Vec<String> {
    doc["items"][0]["items"]
        .as_array()
        .expect("an inlined page")
        .iter()
        .map(|leaf| leaf["catalogEntry"]["version"].as_str().unwrap_or_default().to_string())
        .collect()
}

pub(crate) fn gunzip(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(data)
        .read_to_end(&mut out)
        .expect("valid gzip");
    out
}

/// What a raw HTTP/1.1 exchange produced on the wire.
pub(crate) struct Wire {
    pub(crate) head: String,
    pub(crate) body: Vec<u8>,
    /// The error that ended reading, if it was not a clean EOF.
    pub(crate) error: Option<std::io::ErrorKind>,
}

impl Wire {
    /// The value of a response header (`name` in lowercase).
    pub(crate) fn header(&self, name: &str) -> Option<String> {
        self.head.lines().find_map(|line| {
            let (key, value) = line.split_once(':')?;
            (key.eq_ignore_ascii_case(name)).then(|| value.trim().to_string())
        })
    }

    pub(crate) fn content_length(&self) -> usize {
        self.header("content-length")
            .and_then(|v| v.parse().ok())
            .expect("Content-Length header")
    }

    /// The body of a complete chunked message, de-chunked.
    pub(crate) fn dechunked(&self) -> Vec<u8> {
        let mut data = &self.body[..];
        let mut out = Vec::new();
        loop {
            let eol = data.windows(2).position(|w| w == b"\r\n").expect("chunk-size line");
            let size = std::str::from_utf8(&data[..eol]).expect("ASCII chunk size");
            let size = usize::from_str_radix(size.trim(), 16).expect("hex chunk size");
            data = &data[eol + 2..];
            if size == 0 {
                assert_eq!(data, b"\r\n", "last-chunk, then the end");
                return out;
            }
            out.extend_from_slice(&data[..size]);
            assert_eq!(&data[size..size + 2], b"\r\n", "chunk data ends in CRLF");
            data = &data[size + 2..];
        }
    }
}

pub(crate) fn host_port(origin: &str) -> &str {
    origin.trim_start_matches("http://")
}

/// Sends `GET path` with `Connection: close` and reads until EOF or error.
pub(crate) async fn raw_get(origin: &str, path: &str) -> Wire {
    raw_request(origin, "GET", path).await
}

/// Sends `method path` with `Connection: close` and reads until EOF or error.
pub(crate) async fn raw_request(origin: &str, method: &str, path: &str) -> Wire {
    let mut stream = TcpStream::connect(host_port(origin)).await.expect("connect");
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
        host_port(origin)
    );
    stream.write_all(req.as_bytes()).await.expect("write request");
    let mut data = Vec::new();
    let mut buf = [0u8; 8192];
    let error = loop {
        match timeout(LIMIT, stream.read(&mut buf)).await.expect("raw read timed out") {
            Ok(0) => break None,
            Ok(n) => data.extend_from_slice(&buf[..n]),
            Err(e) => break Some(e.kind()),
        }
    };
    split_wire(data, error)
}

pub(crate) fn split_wire(data: Vec<u8>, error: Option<std::io::ErrorKind>) -> Wire {
    let at = data
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(data.len(), |i| i + 4);
    Wire {
        head: String::from_utf8_lossy(&data[..at]).into_owned(),
        body: data[at..].to_vec(),
        error,
    }
}

/// Waits (bounded) until the fake has recorded `n` requests matching `path`.
pub(crate) async fn wait_recorded(up: &FakeUpstream, path: &str, n: usize) {
    let deadline = Instant::now() + LIMIT;
    while up.count(path) < n {
        assert!(Instant::now() < deadline, "request to {path} never arrived");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

pub(crate) fn nupkg_path(id: &str, ver: &str) -> String {
    format!("/v3-flatcontainer/{id}/{ver}/{id}.{ver}.nupkg")
}
