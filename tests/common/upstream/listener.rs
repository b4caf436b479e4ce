//! The fake's listening sockets (closed and re-opened on the same port for
//! `Fault::Refuse`), its accept loops, and one task per connection.

use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::runtime::Handle;

use super::connection::{Conn, ConnIo};
use super::pipeline::handle;
use super::{lock, Role, Shared};

/// Lifecycle signals for the server tasks.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Ctl {
    pub(crate) shutdown: bool,
    /// Per role; bumping one drops every open connection of that role.
    pub(crate) epochs: [u64; Role::COUNT],
}

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
