//! One accepted connection: shared by hyper's IO adapter, the handlers and
//! the bodies they produce, so that a fault can close or reset it, write
//! past hyper's framing, or wait until what hyper was given is on the wire.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::{watch, Notify};

/// One accepted connection, shared by its IO adapter, its handlers and the
/// bodies they produce. Dropping the last reference closes the socket.
pub(super) struct Conn {
    stream: TcpStream,
    /// Drops the connection at once (the serving task stops polling it).
    pub(super) aborted: Notify,
    /// Counts completed flushes of the IO adapter: hyper flushes the
    /// transport only once its own buffer is empty.
    flushes: watch::Sender<u64>,
}

impl Conn {
    pub(super) fn new(stream: TcpStream) -> Conn {
        Conn {
            stream,
            aborted: Notify::new(),
            flushes: watch::Sender::new(0),
        }
    }

    pub(super) fn close(&self) {
        self.aborted.notify_one();
    }

    /// Closes with RST: `SO_LINGER` 0, then drop.
    pub(super) fn reset(&self) {
        #[allow(deprecated)] // zero linger is the non-blocking case
        let _ = self.stream.set_linger(Some(Duration::ZERO));
        self.close();
    }

    pub(super) fn flush_mark(&self) -> u64 {
        *self.flushes.borrow()
    }

    /// Waits until the transport was flushed after `mark` was taken.
    pub(super) async fn flushed_since(&self, mark: u64) {
        let mut rx = self.flushes.subscribe();
        let _ = rx.wait_for(|n| *n > mark).await;
    }

    /// Writes straight to the socket, bypassing hyper's framing.
    pub(super) async fn write_raw(&self, mut data: &[u8]) -> io::Result<()> {
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
pub(super) struct ConnIo(pub(super) Arc<Conn>);

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
