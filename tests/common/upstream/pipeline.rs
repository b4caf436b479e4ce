//! The request pipeline: record, faults before routing, basic auth, route,
//! then the body faults and validators of the answer.

use std::convert::Infallible;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use bytes::Bytes;
use futures_util::FutureExt as _;
use http::header::{ETAG, IF_NONE_MATCH, LAST_MODIFIED, LOCATION};
use http::request::Parts;
use http::{HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::BodyExt as _;
use hyper::body::Incoming;
use sha2::{Digest, Sha256};

use super::connection::Conn;
use super::framing::{build, Body, Framing, Plan, Release, Tail};
use super::model::http_date;
use super::routes::{self, Kind, Reply, Req};
use super::{Fault, Recorded, Role, Shared};

/// A panic anywhere in the pipeline becomes a 500.
pub(super) async fn handle(
    shared: Arc<Shared>,
    role: Role,
    conn: Arc<Conn>,
    req: Request<Incoming>,
) -> Result<Response<Body>, Infallible> {
    let (framing, in_flight) = (Framing::of(&shared, req.method()), shared.in_flight.enter());
    let served = AssertUnwindSafe(serve(shared, role, conn, req)).catch_unwind().await;
    let response = served.unwrap_or_else(|_| {
        let reply = Reply::error(StatusCode::INTERNAL_SERVER_ERROR, "fake upstream handler panicked");
        build(reply, framing, None)
    });
    Ok(response.map(|body| super::in_flight::counted(body, in_flight)))
}

/// Everything about the request a response needs.
#[derive(Clone)]
struct Ctx {
    shared: Arc<Shared>,
    conn: Arc<Conn>,
    role: Role,
    method: Method,
    /// Path with query.
    path: String,
}

async fn serve(shared: Arc<Shared>, role: Role, conn: Arc<Conn>, req: Request<Incoming>) -> Response<Body> {
    let (parts, body) = req.into_parts();
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str()).to_string();
    let framing = Framing::of(&shared, &parts.method);
    let seq = shared.record(Recorded {
        host: role,
        method: parts.method.to_string(),
        path: path.clone(),
        headers: parts.headers.clone(),
        body_len: 0,
    });
    let Ok((body_len, body_sha256)) = drain(body).await else {
        let reply = Reply::error(StatusCode::BAD_REQUEST, "could not read the request body");
        return build(reply, framing, None);
    };
    shared.set_body_len(seq, body_len);
    let cx = Ctx {
        shared,
        conn,
        role,
        method: parts.method.clone(),
        path,
    };
    let fault = match pre_faults(&cx).await {
        Ok(fault) => fault,
        Err(response) => return response,
    };
    if role.guarded() && !cx.shared.basic_ok(&parts.headers) {
        return build(unauthorized(), framing, None);
    }
    let req = Req {
        role,
        method: &parts.method,
        path: parts.uri.path(),
        query: routes::parse_query(parts.uri.query()),
        headers: &parts.headers,
        body_len,
        body_sha256,
    };
    let reply = routes::route(&cx.shared, &req);
    respond(&cx, &parts, reply, fault)
}

/// Counts and hashes the request body without keeping it.
async fn drain(mut body: Incoming) -> Result<(usize, [u8; 32]), hyper::Error> {
    let mut hasher = Sha256::new();
    let mut len = 0;
    while let Some(frame) = body.frame().await {
        if let Some(data) = frame?.data_ref() {
            len += data.len();
            hasher.update(data);
        }
    }
    Ok((len, hasher.finalize().into()))
}

fn unauthorized() -> Reply {
    let mut reply = Reply::error(StatusCode::UNAUTHORIZED, "authentication required");
    reply.headers.insert(
        http::header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Basic realm=\"fake\""),
    );
    reply
}

/// Faults that act before routing. Ok(fault) = go on with that fault for
/// the body; Err(response) = answer this instead.
async fn pre_faults(cx: &Ctx) -> Result<Fault, Response<Body>> {
    let mut fault = cx.shared.fault_for(cx.role, &cx.path);
    loop {
        match fault {
            Fault::Hang => fault = fault_change(cx, Fault::Hang).await,
            Fault::Refuse | Fault::Reset => {
                cx.conn.reset();
                return std::future::pending().await;
            }
            Fault::Delay(delay) => {
                tokio::time::sleep(delay).await;
                return Ok(fault);
            }
            Fault::Status(code) => {
                let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
                let reply = Reply::error(status, &format!("fault injection: status {code}"));
                return Err(build(reply, Framing::of(&cx.shared, &cx.method), None));
            }
            Fault::RedirectLoop => return Err(redirect(cx)),
            _ => return Ok(fault),
        }
    }
}

/// Waits until the fault for this request is no longer `current`.
async fn fault_change(cx: &Ctx, current: Fault) -> Fault {
    let mut rx = cx.shared.fault_tx.subscribe();
    loop {
        let now = cx.shared.fault_for(cx.role, &cx.path);
        if now != current {
            return now;
        }
        if rx.changed().await.is_err() {
            // Unreachable while `cx` holds the shared state; never answer.
            return std::future::pending().await;
        }
    }
}

fn redirect(cx: &Ctx) -> Response<Body> {
    let mut reply = Reply::new(StatusCode::FOUND, "text/plain", "");
    let location = format!("{}{}", cx.shared.origin(cx.role), cx.path);
    if let Ok(value) = HeaderValue::from_str(&location) {
        reply.headers.insert(LOCATION, value);
    }
    build(reply, Framing::of(&cx.shared, &cx.method), None)
}

/// Applies body faults and validators, then frames the response.
fn respond(cx: &Ctx, parts: &Parts, mut reply: Reply, fault: Fault) -> Response<Body> {
    if fault == Fault::BadJson && reply.kind == Kind::Json {
        let html = "<!DOCTYPE html><html><head><title>Service Unavailable</title></head>\
                    <body><h1>Something went wrong</h1></body></html>\n";
        reply = Reply::new(StatusCode::OK, "text/html; charset=utf-8", html);
    }
    let read = parts.method == Method::GET || parts.method == Method::HEAD;
    if let (StatusCode::OK, Some(modified), true) = (reply.status, reply.last_modified, read) {
        let etag = format!("\"{}\"", &hex::encode(Sha256::digest(&reply.body))[..32]);
        if if_none_match(parts, &etag) {
            // A 304 carries the validators only.
            reply.status = StatusCode::NOT_MODIFIED;
            reply.headers.clear();
            reply.body = Bytes::new();
        }
        insert(&mut reply, ETAG, &etag);
        insert(&mut reply, LAST_MODIFIED, &http_date(modified));
    }
    if fault == Fault::Corrupt && reply.kind == Kind::Nupkg {
        reply.body = corrupt(&reply.body);
    }
    for (name, value) in cx.shared.extra_headers(&cx.path) {
        reply.headers.insert(name, value);
    }
    let plan = plan_for(cx, &reply, fault);
    build(reply, Framing::of(&cx.shared, &parts.method), plan)
}

fn insert(reply: &mut Reply, name: http::HeaderName, value: &str) {
    if let Ok(value) = HeaderValue::from_str(value) {
        reply.headers.insert(name, value);
    }
}

fn if_none_match(parts: &Parts, etag: &str) -> bool {
    parts
        .headers
        .get_all(IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim())
        .any(|t| t == "*" || t == etag || t.strip_prefix("W/") == Some(etag))
}

/// Flips every 997th byte from a third of the way in (same length).
fn corrupt(body: &Bytes) -> Bytes {
    let mut bytes = body.to_vec();
    let start = bytes.len() / 3;
    for b in bytes.iter_mut().skip(start).step_by(997) {
        *b ^= 0xFF;
    }
    Bytes::from(bytes)
}

/// None = send the body as is.
fn plan_for(cx: &Ctx, reply: &Reply, fault: Fault) -> Option<Plan> {
    let len = reply.body.len();
    let nupkg = reply.kind == Kind::Nupkg;
    let (end, tail) = match fault {
        Fault::Truncate => (len / 2, Tail::Close),
        Fault::StallBody => (len / 2, Tail::StallThenClose(until_changed(cx, Fault::StallBody))),
        Fault::LongerBody if nupkg => (len.saturating_sub(1), Tail::ExtraThenClose),
        _ => (len, Tail::End),
    };
    let chunking = if nupkg { cx.shared.chunking() } else { None };
    if len == 0 || (matches!(tail, Tail::End) && chunking.is_none()) {
        return None;
    }
    Some(Plan::new(reply.body.clone(), end, tail, chunking, cx.conn.clone()))
}

/// Resolves once the fault for this request is no longer `current`.
fn until_changed(cx: &Ctx, current: Fault) -> Release {
    let cx = cx.clone();
    Box::pin(async move {
        fault_change(&cx, current).await;
    })
}
