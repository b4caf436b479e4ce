//! The log's way to stderr: each line is appended to a shared buffer (a
//! short memcpy under a lock) and a thread of its own writes the buffer out
//! every few milliseconds. Requests never wait on stderr, and, unlike a
//! channel whose reader wakes for every line, a busy server pays no thread
//! wake-up per request: the profile of a warm 2 KiB hit showed ~20% of the
//! CPU in those wake-ups with tracing-appender's non-blocking writer.

use std::io::{self, Write};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

use tracing_subscriber::fmt::MakeWriter;

/// How often waiting lines are written out.
const EVERY: Duration = Duration::from_millis(20);
/// Beyond this much waiting, the buffer is written out at once; beyond
/// twice as much, a logging thread writes its line itself (nothing is lost).
const HIGH_WATER: usize = 1024 * 1024;

struct Shared {
    pending: Mutex<Pending>,
    wake: Condvar,
}

#[derive(Default)]
struct Pending {
    bytes: Vec<u8>,
    stopping: bool,
}

impl Shared {
    fn pending(&self) -> MutexGuard<'_, Pending> {
        self.pending.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Hands out writers for `tracing_subscriber::fmt`.
#[derive(Clone)]
pub(crate) struct BatchedStderr {
    shared: Arc<Shared>,
}

/// Stops the writing thread and writes what is left when dropped.
pub struct FlushGuard {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl BatchedStderr {
    /// The writer, and the guard that flushes it at exit.
    pub(crate) fn start() -> (BatchedStderr, FlushGuard) {
        let shared = Arc::new(Shared {
            pending: Mutex::new(Pending::default()),
            wake: Condvar::new(),
        });
        let writing = shared.clone();
        let thread = std::thread::Builder::new()
            .name("nucache-log".into())
            .spawn(move || write_out(&writing))
            .ok();
        let guard = FlushGuard {
            shared: shared.clone(),
            thread,
        };
        (BatchedStderr { shared }, guard)
    }
}

/// Writes the buffer out every [`EVERY`] (sooner when it fills) until stopped.
fn write_out(shared: &Shared) {
    let mut out = Vec::new();
    loop {
        let stopping = {
            let pending = shared.pending();
            let (mut pending, _) = shared
                .wake
                .wait_timeout_while(pending, EVERY, |p| !p.stopping && p.bytes.len() < HIGH_WATER)
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            std::mem::swap(&mut out, &mut pending.bytes);
            pending.stopping
        };
        if !out.is_empty() {
            let _ = io::stderr().write_all(&out);
            out.clear();
        }
        if stopping {
            return;
        }
    }
}

impl Drop for FlushGuard {
    fn drop(&mut self) {
        self.shared.pending().stopping = true;
        self.shared.wake.notify_one();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// One line's writer.
pub(crate) struct LineWriter<'a> {
    shared: &'a Shared,
}

impl Write for LineWriter<'_> {
    fn write(&mut self, line: &[u8]) -> io::Result<usize> {
        let mut pending = self.shared.pending();
        if pending.stopping || pending.bytes.len() >= 2 * HIGH_WATER {
            // The writing thread is gone or far behind: write it ourselves.
            drop(pending);
            return io::stderr().write(line);
        }
        pending.bytes.extend_from_slice(line);
        if pending.bytes.len() >= HIGH_WATER {
            self.shared.wake.notify_one();
        }
        Ok(line.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for BatchedStderr {
    type Writer = LineWriter<'a>;

    fn make_writer(&'a self) -> Self::Writer {
        LineWriter { shared: &self.shared }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_kept_until_written_and_the_guard_writes_the_rest() {
        let (writer, guard) = BatchedStderr::start();
        let mut line = writer.make_writer();
        assert_eq!(line.write(b"one line\n").ok(), Some(9));
        drop(guard);
        assert!(writer.shared.pending().bytes.is_empty(), "written out at stop");
        // After the stop, lines go straight to stderr rather than being lost.
        assert_eq!(writer.make_writer().write(b"late line\n").ok(), Some(10));
    }
}
