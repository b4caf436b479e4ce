//! Building responses, for the pipeline, the operations surface and the
//! front door alike: headers every cached resource carries (ETag, X-Cache,
//! Age, Content-Length, Cache-Control; what its `Cache-Status` member says,
//! which the front door names), 304s, gzip negotiation, one-line error
//! bodies; `base`: the public base URL a request's answer is rendered for.

pub(crate) mod base;

use std::time::Duration;

use http::header::{
    HeaderMap, HeaderValue, ACCEPT_ENCODING, AGE, CACHE_CONTROL, CONTENT_ENCODING, CONTENT_LENGTH, CONTENT_TYPE, ETAG,
    IF_MODIFIED_SINCE, IF_NONE_MATCH, LAST_MODIFIED, VARY,
};
use http::{Response, StatusCode};

use crate::body::{empty, full, stream_body, Body};
use crate::cache::{blob_etag, now_ms, CacheStatus, HotBlob, HotDoc};
use crate::error::{ClientError, ProxyError, UpstreamError};
use crate::rewrite::Rendered;
use crate::stash::{Download, DownloadReader};
use crate::tiers::Member;

pub(crate) const X_CACHE: &str = "x-cache";
/// The header naming the upstreams an answer lacks.
pub(crate) const MISSING_UPSTREAMS: &str = "x-nucache-missing-upstreams";
const IMMUTABLE: &str = "public, max-age=31536000, immutable";

/// A response and how it relates to the cache.
pub(crate) struct Reply {
    pub response: Response<Body>,
    pub cache: Option<CacheStatus>,
    /// What this node's `Cache-Status` member says (a cached resource).
    pub member: Option<Member>,
}

impl Reply {
    pub fn plain(response: Response<Body>) -> Reply {
        Reply {
            response,
            cache: None,
            member: None,
        }
    }
}

/// A rendered metadata document, gzip-encoded when the client accepts it;
/// `vary` names the request headers its rendering depended on. `doc` is
/// the cached copy it was rendered from (none: made now), fresh for
/// `max_age` from when it was fetched.
pub(crate) fn document(
    request: &HeaderMap,
    rendered: &Rendered,
    doc: Option<&HotDoc>,
    status: CacheStatus,
    max_age: Duration,
    vary: &str,
) -> Reply {
    let mut headers = HeaderMap::new();
    set(&mut headers, CONTENT_TYPE, "application/json; charset=utf-8");
    set(&mut headers, ETAG, rendered.etag());
    set(&mut headers, VARY, vary);
    let cache_control = match status {
        // Past its TTL: clients should ask again soon.
        CacheStatus::Stale | CacheStatus::Updating => "public, max-age=0".to_string(),
        _ => format!("public, max-age={}", max_age.as_secs()),
    };
    set(&mut headers, CACHE_CONTROL, &cache_control);
    let last_modified = doc.and_then(|doc| doc.entry.last_modified.as_deref());
    if let Some(value) = last_modified {
        set(&mut headers, LAST_MODIFIED, value);
    }
    let age_ms = doc.map_or(0, |doc| now_ms().saturating_sub(doc.entry.fetched_at));
    set_age(&mut headers, doc.map_or(now_ms(), |doc| doc.entry.fetched_at));
    let member = Member {
        status,
        ttl: Some(seconds_left(max_age, age_ms)),
        stored: true,
        above: doc.and_then(|doc| doc.above.clone()),
    };
    if not_modified(request, rendered.etag(), last_modified) {
        return finish(StatusCode::NOT_MODIFIED, headers, empty(), status, member);
    }
    let body = if accepts_gzip(request) {
        set(&mut headers, CONTENT_ENCODING, "gzip");
        rendered.gzip().clone()
    } else {
        rendered.identity().clone()
    };
    set(&mut headers, CONTENT_LENGTH, &body.len().to_string());
    finish(StatusCode::OK, headers, full(body), status, member)
}

/// Whole seconds of `max_age` left after `age_ms` (negative past it),
/// rounded down: a copy with half a second left has none to promise.
fn seconds_left(max_age: Duration, age_ms: u64) -> i64 {
    let left_ms = i128::try_from(max_age.as_millis()).unwrap_or(i128::MAX) - i128::from(age_ms);
    i64::try_from(left_ms.div_euclid(1000)).unwrap_or(if left_ms < 0 { i64::MIN } else { i64::MAX })
}

/// Names in `X-Nucache-Missing-Upstreams` the upstreams (by name) an
/// answer lacks, when any does.
pub(crate) fn name_missing(reply: &mut Reply, missing: &[String]) {
    if missing.is_empty() {
        return;
    }
    if let Ok(value) = HeaderValue::from_str(&missing.join(",")) {
        reply.response.headers_mut().insert(MISSING_UPSTREAMS, value);
    }
}

/// A committed blob, with the headers made when it was loaded; `body`
/// makes its body (called only when one is sent).
pub(crate) fn cached_blob(
    request: &HeaderMap,
    hot: &HotBlob,
    body: impl FnOnce() -> Body,
    status: CacheStatus,
) -> Reply {
    let mut headers = HeaderMap::with_capacity(8);
    headers.insert(CONTENT_TYPE, hot.content_type.clone());
    headers.insert(ETAG, hot.etag.clone());
    headers.insert(CACHE_CONTROL, HeaderValue::from_static(IMMUTABLE));
    if let Some(value) = &hot.last_modified {
        headers.insert(LAST_MODIFIED, value.clone());
    }
    set_age(&mut headers, hot.entry.fetched_at);
    let member = Member {
        status,
        ttl: None,
        stored: true,
        above: None,
    };
    let last_modified = hot.entry.last_modified.as_deref();
    if hot
        .etag
        .to_str()
        .is_ok_and(|etag| not_modified(request, etag, last_modified))
    {
        return finish(StatusCode::NOT_MODIFIED, headers, empty(), status, member);
    }
    headers.insert(CONTENT_LENGTH, hot.content_length.clone());
    finish(StatusCode::OK, headers, body(), status, member)
}

/// A blob still downloading: the client follows it with `reader`.
pub(crate) fn streaming_blob(key: &str, download: &Download, reader: DownloadReader) -> Reply {
    let mut headers = blob_headers(key, &download.origin.content_type);
    if let Some(value) = &download.origin.last_modified {
        set(&mut headers, LAST_MODIFIED, value);
    }
    if let Some(length) = download.length {
        set(&mut headers, CONTENT_LENGTH, &length.to_string());
    }
    headers.insert(AGE, HeaderValue::from(download.origin.above.age_ms / 1000));
    // Whether it will be kept is known only once its last byte is checked.
    let member = Member {
        status: CacheStatus::Miss,
        ttl: None,
        stored: false,
        above: download.origin.above.cache_status.clone(),
    };
    let chunks = futures_util::stream::unfold(Some(reader), |state| async move {
        let mut reader = state?;
        match reader.next().await? {
            Ok(chunk) => Some((Ok(chunk), Some(reader))),
            // After an error the stream ends; hyper then aborts the response.
            Err(error) => Some((Err(error), None)),
        }
    });
    finish(StatusCode::OK, headers, stream_body(chunks), CacheStatus::Miss, member)
}

fn blob_headers(key: &str, content_type: &str) -> HeaderMap {
    let mut headers = HeaderMap::new();
    set(&mut headers, CONTENT_TYPE, content_type);
    set(&mut headers, ETAG, &blob_etag(key));
    set(&mut headers, CACHE_CONTROL, IMMUTABLE);
    headers
}

fn finish(status: StatusCode, headers: HeaderMap, body: Body, cache: CacheStatus, member: Member) -> Reply {
    let mut response = Response::new(body);
    *response.status_mut() = status;
    *response.headers_mut() = headers;
    response
        .headers_mut()
        .insert(X_CACHE, HeaderValue::from_static(cache.as_str()));
    Reply {
        response,
        cache: Some(cache),
        member: Some(member),
    }
}

/// A short text answer.
pub(crate) fn text(status: StatusCode, body: &str) -> Response<Body> {
    let mut response = Response::new(full(format!("{body}\n")));
    *response.status_mut() = status;
    set(response.headers_mut(), CONTENT_TYPE, "text/plain; charset=utf-8");
    set(response.headers_mut(), CONTENT_LENGTH, &(body.len() + 1).to_string());
    response
}

pub(crate) fn json(status: StatusCode, body: String) -> Response<Body> {
    let length = body.len().to_string();
    let mut response = Response::new(full(body));
    *response.status_mut() = status;
    set(response.headers_mut(), CONTENT_TYPE, "application/json; charset=utf-8");
    set(response.headers_mut(), CONTENT_LENGTH, &length);
    set(response.headers_mut(), CACHE_CONTROL, "no-store");
    response
}

/// `/metrics`: Prometheus text, never cached by anyone on the way.
pub(crate) fn metrics(text: String) -> Response<Body> {
    let length = text.len().to_string();
    let mut response = Response::new(full(text));
    set(response.headers_mut(), CONTENT_TYPE, crate::metrics::CONTENT_TYPE);
    set(response.headers_mut(), CONTENT_LENGTH, &length);
    set(response.headers_mut(), CACHE_CONTROL, "no-store");
    response
}

/// The error as a status and a one-line reason; a loop refused further up
/// the chain keeps the words of the node that refused it.
pub(crate) fn error(error: &ProxyError) -> Response<Body> {
    let reason = match error {
        ProxyError::Upstream(UpstreamError::Loop { message, .. }) => message.clone(),
        other => other.to_string(),
    };
    let mut response = text(error.status(), &reason);
    match error {
        ProxyError::Client(ClientError::MethodNotAllowed { allow, .. }) => {
            set(response.headers_mut(), http::header::ALLOW, allow);
        }
        ProxyError::Busy(busy) => {
            let seconds = busy.retry_after.as_secs().max(1).to_string();
            set(response.headers_mut(), http::header::RETRY_AFTER, &seconds);
        }
        ProxyError::Client(ClientError::Unauthorized(_)) => {
            set(
                response.headers_mut(),
                http::header::WWW_AUTHENTICATE,
                "Basic realm=\"nucache\"",
            );
        }
        _ => {}
    }
    response
}

fn set(headers: &mut HeaderMap, name: impl http::header::IntoHeaderName, value: &str) {
    if let Ok(value) = HeaderValue::from_str(value) {
        headers.insert(name, value);
    }
}

/// Whether the client's copy is current (RFC 9110 §13.2.2): `If-None-Match`
/// when it sent one, else `If-Modified-Since` equal to `last_modified` (an
/// exact match, as nginx's default: clients send back the value they got).
fn not_modified(request: &HeaderMap, etag: &str, last_modified: Option<&str>) -> bool {
    if request.contains_key(IF_NONE_MATCH) {
        return matches_etag(request, etag);
    }
    let since = request.get(IF_MODIFIED_SINCE).and_then(|v| v.to_str().ok());
    matches!((since, last_modified), (Some(since), Some(modified)) if since.trim() == modified)
}

/// `If-None-Match` lists `etag` (weak comparison) or is `*`.
fn matches_etag(request: &HeaderMap, etag: &str) -> bool {
    request
        .get_all(IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|tag| tag.trim().trim_start_matches("W/"))
        .any(|tag| tag == "*" || tag == etag)
}

/// `Accept-Encoding` allows gzip (a `q=0` refuses it).
pub(crate) fn accepts_gzip(request: &HeaderMap) -> bool {
    request
        .get_all(ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|coding| {
            let mut parts = coding.split(';').map(str::trim);
            let name = parts.next().unwrap_or("");
            let quality = parts
                .find_map(|p| p.strip_prefix("q="))
                .and_then(|q| q.trim().parse::<f32>().ok())
                .unwrap_or(1.0);
            (name.eq_ignore_ascii_case("gzip") || name == "*") && quality > 0.0
        })
}

/// `Age`: seconds since the copy was fetched (moved back by the tier
/// above's age). A copy of unknown time (`fetched_at` 0: the shared store's
/// copy of a document, kept as already expired) says none rather than
/// decades; its `Cache-Status` still calls it stale.
fn set_age(headers: &mut HeaderMap, fetched_at: u64) {
    if fetched_at > 0 {
        headers.insert(AGE, HeaderValue::from(now_ms().saturating_sub(fetched_at) / 1000));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (name, value) in pairs {
            h.append(*name, HeaderValue::from_static(value));
        }
        h
    }

    #[test]
    fn gzip_negotiation() {
        assert!(accepts_gzip(&headers(&[("accept-encoding", "gzip, deflate")])));
        assert!(accepts_gzip(&headers(&[("accept-encoding", "br;q=1.0, GZIP;q=0.5")])));
        assert!(!accepts_gzip(&headers(&[("accept-encoding", "gzip;q=0")])));
        assert!(!accepts_gzip(&headers(&[("accept-encoding", "identity")])));
        assert!(!accepts_gzip(&headers(&[])));
    }

    #[test]
    fn freshness_left_rounds_down() {
        let minute = Duration::from_secs(60);
        assert_eq!(seconds_left(minute, 0), 60);
        assert_eq!(seconds_left(minute, 59_500), 0);
        assert_eq!(seconds_left(minute, 60_000), 0);
        assert_eq!(seconds_left(minute, 60_001), -1);
        assert_eq!(seconds_left(Duration::ZERO, 0), 0);
    }

    #[test]
    fn if_modified_since_counts_only_without_if_none_match() {
        let date = "Wed, 21 Oct 2015 07:28:00 GMT";
        let since = headers(&[("if-modified-since", "Wed, 21 Oct 2015 07:28:00 GMT")]);
        assert!(not_modified(&since, "\"b\"", Some(date)));
        assert!(!not_modified(&since, "\"b\"", Some("Thu, 22 Oct 2015 07:28:00 GMT")));
        assert!(!not_modified(&since, "\"b\"", None), "nothing to compare with");
        let both = headers(&[
            ("if-none-match", "\"c\""),
            ("if-modified-since", "Wed, 21 Oct 2015 07:28:00 GMT"),
        ]);
        assert!(!not_modified(&both, "\"b\"", Some(date)), "If-None-Match decides");
        assert!(not_modified(&headers(&[("if-none-match", "\"b\"")]), "\"b\"", None));
    }

    #[test]
    fn etag_matching() {
        assert!(matches_etag(&headers(&[("if-none-match", "\"a\", \"b\"")]), "\"b\""));
        assert!(matches_etag(&headers(&[("if-none-match", "W/\"b\"")]), "\"b\""));
        assert!(matches_etag(&headers(&[("if-none-match", "*")]), "\"b\""));
        assert!(!matches_etag(&headers(&[("if-none-match", "\"c\"")]), "\"b\""));
    }
}
