//! Listeners, connections and the request pipeline: record, fault, auth,
//! route, validators, framing.

use std::convert::Infallible;
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{ready, Context, Poll, Waker};
use std::time::Duration;

use bytes::Bytes;
use futures_util::FutureExt as _;
use http::header::{CONTENT_LENGTH, ETAG, IF_NONE_MATCH, LAST_MODIFIED, LOCATION};
use http::request::Parts;
use http::{HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt as _, Empty, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::runtime::Handle;
use tokio::sync::{watch, Notify};

use super::model::http_date;
use super::routes::{self, Kind, Reply, Req};
use super::{lock, Fault, Recorded, Role, Shared};

pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync>;
pub(crate) type Body = UnsyncBoxBody<Bytes, BoxError>;

/// Extra bytes sent after a `.nupkg` body under [`Fault::LongerBody`].
const EXTRA_BYTES: &[u8] = b"<these bytes are beyond Content-Length>";

/// Lifecycle signals for the server tasks.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Ctl {
    pub(crate) shutdown: bool,
    /// Per role; bumping one drops every open connection of that role.
    pub(crate) epochs: [u64; Role::COUNT],
}

// ---------------------------------------------------------------------------
// listeners

/// A listening socket that can be closed and re-opened on the same port
/// synchronously (for [`Fault::Refuse`]).
pub(crate) struct Listener {
    addr: SocketAddr,
    state: Mutex<ListenState>,
}

struct ListenState {
    socket: Option<TcpListener>,
    /// The accept loop's waker, to wake it when the socket is re-opened.
    waker: Option<Waker>,
}

impl Listener {
    /// Binds 127.0.0.1:0. Must run inside the runtime.
    pub(crate) fn bind_any() -> io::Result<Listener> {
        let socket = open(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))?;
        Ok(Listener {
            addr: socket.local_addr()?,
            state: Mutex::new(ListenState {
                socket: Some(socket),
                waker: None,
            }),
        })
    }

    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Closes the socket now: connecting fails with ECONNREFUSED afterwards.
    pub(crate) fn close(&self) {
        let socket = lock(&self.state).socket.take();
        drop(socket);
    }

    /// Re-binds the same port if closed.
    pub(crate) fn reopen(&self, handle: &Handle) -> io::Result<()> {
        let mut state = lock(&self.state);
        if state.socket.is_none() {
            let _guard = handle.enter();
            state.socket = Some(open(self.addr)?);
            if let Some(waker) = &state.waker {
                waker.wake_by_ref();
            }
        }
        Ok(())
    }

    fn poll_accept(&self, cx: &mut Context<'_>) -> Poll<io::Result<TcpStream>> {
        let mut state = lock(&self.state);
        state.waker = Some(cx.waker().clone());
        match &state.socket {
            Some(socket) => socket.poll_accept(cx).map_ok(|(stream, _)| stream),
            None => Poll::Pending,
        }
    }
}

fn open(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = TcpSocket::new_v4()?;
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(1024)
}

pub(crate) async fn accept_loop(shared: Arc<Shared>, role: Role) {
    let mut ctl = shared.ctl.subscribe();
    loop {
        let accepted = tokio::select! {
            _ = ctl.wait_for(|c| c.shutdown) => return,
            res = std::future::poll_fn(|cx| shared.listener(role).poll_accept(cx)) => res,
        };
        match accepted {
            Ok(stream) => spawn_connection(&shared, role, stream),
            Err(_) => tokio::task::yield_now().await,
        }
    }
}

fn spawn_connection(shared: &Arc<Shared>, role: Role, stream: TcpStream) {
    let _ = stream.set_nodelay(true);
    let mut ctl = shared.ctl.subscribe();
    let epoch = ctl.borrow().epochs[role.index()];
    let conn = Arc::new(Conn::new(stream));
    let (svc_shared, svc_conn) = (shared.clone(), conn.clone());
    let svc = service_fn(move |req| handle(svc_shared.clone(), role, svc_conn.clone(), req));
    let tls = shared.tls.clone();
    tokio::spawn(async move {
        let serve = async {
            match tls {
                None => {
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(ConnIo(conn.clone())), svc)
                        .await;
                }
                Some(acceptor) => {
                    if let Ok(stream) = acceptor.accept(ConnIo(conn.clone())).await {
                        let _ = http1::Builder::new().serve_connection(TokioIo::new(stream), svc).await;
                    }
                }
            }
        };
        tokio::select! {
            _ = serve => {}
            _ = conn.aborted.notified() => {}
            _ = ctl.wait_for(|c| c.shutdown || c.epochs[role.index()] != epoch) => {}
        }
    });
}

// ---------------------------------------------------------------------------
// connections

/// One accepted connection, shared by its IO adapter, its handlers and the
/// bodies they produce. Dropping the last reference closes the socket.
struct Conn {
    stream: TcpStream,
    /// Drops the connection at once (the serving task stops polling it).
    aborted: Notify,
    /// Counts completed flushes of the IO adapter: hyper flushes the
    /// transport only once its own buffer is empty.
    flushes: watch::Sender<u64>,
}

impl Conn {
    fn new(stream: TcpStream) -> Conn {
        Conn {
            stream,
            aborted: Notify::new(),
            flushes: watch::Sender::new(0),
        }
    }

    fn close(&self) {
        self.aborted.notify_one();
    }

    /// Closes with RST: `SO_LINGER` 0, then drop.
    fn reset(&self) {
        #[allow(deprecated)] // zero linger is the non-blocking case
        let _ = self.stream.set_linger(Some(Duration::ZERO));
        self.close();
    }

    fn flush_mark(&self) -> u64 {
        *self.flushes.borrow()
    }

    /// Waits until the transport was flushed after `mark` was taken.
    async fn flushed_since(&self, mark: u64) {
        let mut rx = self.flushes.subscribe();
        let _ = rx.wait_for(|n| *n > mark).await;
    }

    /// Writes straight to the socket, bypassing hyper's framing.
    async fn write_raw(&self, mut data: &[u8]) -> io::Result<()> {
        while !data.is_empty() {
            self.stream.writable().await?;
            match self.stream.try_write(data) {
                Ok(n) => data = &data[n..],
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

/// The transport hyper serves: the shared stream, plus flush counting.
struct ConnIo(Arc<Conn>);

impl AsyncRead for ConnIo {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let stream = &self.0.stream;
        loop {
            ready!(stream.poll_read_ready(cx))?;
            match stream.try_read(buf.initialize_unfilled()) {
                Ok(n) => {
                    buf.advance(n);
                    return Poll::Ready(Ok(()));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }
}

impl AsyncWrite for ConnIo {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let stream = &self.0.stream;
        loop {
            ready!(stream.poll_write_ready(cx))?;
            match stream.try_write(buf) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                res => return Poll::Ready(res),
            }
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let stream = &self.0.stream;
        loop {
            ready!(stream.poll_write_ready(cx))?;
            match stream.try_write_vectored(bufs) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                res => return Poll::Ready(res),
            }
        }
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.0.flushes.send_modify(|n| *n = n.wrapping_add(1));
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // The socket closes when the connection is dropped.
        Poll::Ready(Ok(()))
    }
}

// ---------------------------------------------------------------------------
// request pipeline

/// A panic anywhere in the pipeline becomes a 500.
async fn handle(
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

// ---------------------------------------------------------------------------
// framing

/// What happens once the body (or the part of it that is sent) is out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Tail {
    End,
    Close,
    StallThenClose,
    ExtraThenClose,
}

/// A body sent in chunks, then a [`Tail`].
struct Plan {
    data: Bytes,
    pos: usize,
    /// Bytes to send through hyper before the tail.
    end: usize,
    chunk: usize,
    delay: Duration,
    tail: Tail,
    /// Flush count when the last piece was handed to hyper.
    mark: u64,
    cx: Ctx,
}

/// None = send the body as is.
fn plan_for(cx: &Ctx, reply: &Reply, fault: Fault) -> Option<Plan> {
    let len = reply.body.len();
    let nupkg = reply.kind == Kind::Nupkg;
    let (end, tail) = match fault {
        Fault::Truncate => (len / 2, Tail::Close),
        Fault::StallBody => (len / 2, Tail::StallThenClose),
        Fault::LongerBody if nupkg => (len.saturating_sub(1), Tail::ExtraThenClose),
        _ => (len, Tail::End),
    };
    let chunking = if nupkg { cx.shared.chunking() } else { None };
    if len == 0 || (tail == Tail::End && chunking.is_none()) {
        return None;
    }
    let (chunk, delay) = chunking.unwrap_or((len, Duration::ZERO));
    Some(Plan {
        data: reply.body.clone(),
        pos: 0,
        end,
        chunk,
        delay,
        tail,
        mark: cx.conn.flush_mark(),
        cx: cx.clone(),
    })
}

impl Plan {
    async fn next(mut self) -> Option<(Result<Frame<Bytes>, BoxError>, Option<Plan>)> {
        if self.pos < self.end {
            if self.pos > 0 && !self.delay.is_zero() {
                tokio::time::sleep(self.delay).await;
            }
            let n = self.chunk.min(self.end - self.pos);
            let piece = self.data.slice(self.pos..self.pos + n);
            self.pos += n;
            self.mark = self.cx.conn.flush_mark();
            return Some((Ok(Frame::data(piece)), Some(self)));
        }
        if self.tail == Tail::End {
            return None;
        }
        // Everything handed to hyper must be on the wire before we act.
        self.cx.conn.flushed_since(self.mark).await;
        match self.tail {
            Tail::StallThenClose => {
                fault_change(&self.cx, Fault::StallBody).await;
            }
            Tail::ExtraThenClose => {
                let mut rest = self.data.slice(self.end..).to_vec();
                rest.extend_from_slice(EXTRA_BYTES);
                let _ = self.cx.conn.write_raw(&rest).await;
            }
            Tail::End | Tail::Close => {}
        }
        self.cx.conn.close();
        Some((Err("fault injection: connection closed".into()), None))
    }
}

/// How a response delimits its body.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Framing {
    /// An answer to HEAD: `Content-Length` of the body GET would get, no body.
    Head,
    /// Explicit `Content-Length`, then the body.
    Length,
    /// `Transfer-Encoding: chunked`, no `Content-Length`: the body is a
    /// stream without a size hint, which hyper can only send chunked.
    Chunked,
}

impl Framing {
    fn of(shared: &Shared, method: &Method) -> Framing {
        match (method == Method::HEAD, shared.chunked) {
            (true, _) => Framing::Head,
            (false, true) => Framing::Chunked,
            (false, false) => Framing::Length,
        }
    }
}

/// The final response: headers, framing, body.
fn build(reply: Reply, framing: Framing, plan: Option<Plan>) -> Response<Body> {
    let no_body = matches!(reply.status.as_u16(), 100..=199 | 204 | 304);
    let mut response = Response::new(empty());
    *response.status_mut() = reply.status;
    *response.headers_mut() = reply.headers;
    if !no_body && framing != Framing::Chunked {
        response
            .headers_mut()
            .insert(CONTENT_LENGTH, HeaderValue::from(reply.body.len()));
    }
    *response.body_mut() = match (no_body || framing == Framing::Head, plan) {
        (true, _) => empty(),
        (false, Some(plan)) => {
            let stream = futures_util::stream::unfold(Some(plan), |p| async move { p?.next().await });
            StreamBody::new(stream).boxed_unsync()
        }
        (false, None) if framing == Framing::Chunked => {
            let frame = (!reply.body.is_empty()).then(|| Ok(Frame::data(reply.body)));
            StreamBody::new(futures_util::stream::iter(frame)).boxed_unsync()
        }
        (false, None) => Full::new(reply.body).map_err(|never| match never {}).boxed_unsync(),
    };
    response
}

fn empty() -> Body {
    Empty::new().map_err(|never| match never {}).boxed_unsync()
}
