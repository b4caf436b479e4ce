//! One download shared by every client that asked for it. Its bytes are
//! read from the temporary file while the disk takes them; when the disk
//! fails (full, read-only) mid-way or from the start, the rest is passed on
//! through a bounded window in memory, so no reader's response breaks.
//!
//! The last bytes are announced only once the pump has checked the whole
//! body (length, `Content-MD5`, `packageHash`), and each reader checks
//! what it read (from the file, which may rot under it, or from memory)
//! against the XXH3 of what the upstream sent before it hands them out: a
//! client that receives the whole file can count on it being right.

use std::collections::{HashMap, VecDeque};
use std::fs::File;
use std::io;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::{watch, Notify};
use xxhash_rust::xxh3::Xxh3;

use crate::body::allowance;
use crate::cache::{read_at, Origin};
use crate::error::{BodyError, Party};

/// Bytes kept in memory per download while its bytes cannot go to disk.
pub(crate) const WINDOW: usize = 2 * 1024 * 1024;
/// Largest chunk one read of the file hands out (within the read budget).
const READ_CHUNK: usize = 256 * 1024;

/// How a download ended.
#[derive(Debug, Clone, PartialEq, Eq)]
enum End {
    Open,
    Complete,
    Failed(BodyError),
}

/// What a reader that found the bytes it read back rotten calls, once.
pub(crate) type CorruptHook = Box<dyn FnOnce() + Send>;

pub(crate) struct Download {
    pub origin: Origin,
    /// The upstream's `Content-Length`, when it sent one.
    pub length: Option<u64>,
    state: Mutex<State>,
    /// Drops the committed entry (its file is the one readers read).
    corrupt: Mutex<Option<CorruptHook>>,
    /// Bumped whenever readers may read further (or the download ended).
    changed: watch::Sender<u64>,
    /// Readers consumed memory: the pump may trim its window.
    drained: Notify,
}

struct State {
    /// The temporary file, while bytes are on disk.
    file: Option<Arc<File>>,
    /// Bytes readable from the file.
    on_disk: u64,
    /// Bytes past `on_disk`, from `memory_start` on.
    memory: VecDeque<Bytes>,
    memory_start: u64,
    memory_len: usize,
    /// A chunk received but not yet announced (the last one may be wrong).
    held: Option<Bytes>,
    /// Bytes readers may read.
    announced: u64,
    end: End,
    /// XXH3-128 of the whole body, once complete.
    digest: Option<u128>,
    /// Each reader's offset (memory is trimmed only below all of them).
    readers: HashMap<u64, u64>,
    next_reader: u64,
}

impl State {
    fn memory_end(&self) -> u64 {
        self.memory_start + self.memory_len as u64
    }

    /// Every byte from 0 is still readable, so a new reader may join.
    fn joinable(&self) -> bool {
        self.memory_start <= self.on_disk
    }
}

impl Download {
    /// A download whose bytes go to `file` (or, without one, through memory).
    pub fn new(origin: Origin, length: Option<u64>, file: Option<Arc<File>>) -> Arc<Download> {
        Arc::new(Download {
            origin,
            length,
            state: Mutex::new(State {
                file,
                on_disk: 0,
                memory: VecDeque::new(),
                memory_start: 0,
                memory_len: 0,
                held: None,
                announced: 0,
                end: End::Open,
                digest: None,
                readers: HashMap::new(),
                next_reader: 0,
            }),
            corrupt: Mutex::new(None),
            changed: watch::Sender::new(0),
            drained: Notify::new(),
        })
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave the offsets torn in a
        // way that serves wrong bytes: readers check every range they read.
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn wake_readers(&self) {
        self.changed.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// A reader from the first byte, or `None` when the start of the body is
    /// no longer held anywhere (the caller then starts another download).
    pub fn reader(self: &Arc<Self>) -> Option<DownloadReader> {
        let mut state = self.state();
        if !state.joinable() {
            return None;
        }
        let id = state.next_reader;
        state.next_reader += 1;
        state.readers.insert(id, 0);
        Some(DownloadReader {
            download: self.clone(),
            id,
            offset: 0,
            read: Box::new(Xxh3::new()),
            checked: false,
            changes: self.changed.subscribe(),
        })
    }

    /// How many clients are reading it.
    pub fn readers(&self) -> usize {
        self.state().readers.len()
    }

    /// Why the download failed, and who failed, once it has.
    pub fn failure(&self) -> Option<BodyError> {
        match &self.state().end {
            End::Failed(reason) => Some(reason.clone()),
            _ => None,
        }
    }

    /// `n` bytes are in the file and may be read, all but the last byte of
    /// an announced length: the upstream may not have signalled the end
    /// yet, and a client that has every byte takes its response as whole.
    pub fn on_disk(&self, n: u64) {
        let readable = self.length.map_or(n, |length| n.min(length.saturating_sub(1)));
        {
            let mut state = self.state();
            state.on_disk = n;
            state.memory_start = state.memory_start.max(n);
            state.announced = state.announced.max(readable);
        }
        self.wake_readers();
    }

    /// What to call when a reader finds the committed bytes rotten.
    pub fn on_corrupt(&self, hook: CorruptHook) {
        if let Ok(mut corrupt) = self.corrupt.lock() {
            *corrupt = Some(hook);
        }
    }

    /// A reader read back bytes that differ from what the upstream sent:
    /// the committed entry is dropped (once, off the async workers).
    fn found_corrupt(&self) {
        let hook = self.corrupt.lock().ok().and_then(|mut hook| hook.take());
        if let Some(hook) = hook {
            tokio::task::spawn_blocking(hook);
        }
    }

    /// The disk failed: from now on bytes go through memory; the file keeps
    /// serving the `on_disk` bytes it has.
    pub fn spill_to_memory(&self) {
        let mut state = self.state();
        state.memory_start = state.on_disk;
    }

    /// Passes a chunk on through memory. The chunk before it is announced;
    /// this one is held until the next (or until the end is checked).
    pub fn push(&self, chunk: Bytes) {
        {
            let mut state = self.state();
            if let Some(previous) = state.held.replace(chunk) {
                state.announced = state.memory_end() + previous.len() as u64;
                state.memory_len += previous.len();
                state.memory.push_back(previous);
            }
        }
        self.wake_readers();
    }

    /// Waits until the memory window is within [`WINDOW`], trimming what
    /// every reader has read. A reader that reads nothing for `patience`
    /// while the window is full is cut off, so that one stuck client cannot
    /// stop the others. Returns whether new readers may still join.
    pub async fn make_room(&self, patience: Duration) -> bool {
        loop {
            let drained = self.drained.notified();
            if self.trim(false) {
                return self.state().joinable();
            }
            if tokio::time::timeout(patience, drained).await.is_err() {
                self.trim(true);
                return self.state().joinable();
            }
        }
    }

    /// Drops chunks below every reader's offset (with `force`, down to the
    /// window, cutting off readers below it); true once within the window.
    fn trim(&self, force: bool) -> bool {
        let mut state = self.state();
        while state.memory_len > WINDOW {
            let Some(front_len) = state.memory.front().map(|c| c.len() as u64) else {
                break;
            };
            let front_end = state.memory_start + front_len;
            let slowest = state.readers.values().copied().min().unwrap_or(u64::MAX);
            if slowest < front_end {
                if !force {
                    return false;
                }
                state.readers.retain(|_, offset| *offset >= front_end);
            }
            state.memory.pop_front();
            state.memory_start = front_end;
            state.memory_len -= front_len as usize;
        }
        true
    }

    /// The body is whole (`total` bytes, XXH3-128 `digest`) and checked:
    /// everything may be read.
    pub fn complete(&self, total: u64, digest: u128) {
        {
            let mut state = self.state();
            if let Some(last) = state.held.take() {
                state.memory_len += last.len();
                state.memory.push_back(last);
            }
            if state.memory.is_empty() {
                // Never spilled: the whole body is in the file.
                state.on_disk = total;
            }
            state.announced = total;
            state.end = End::Complete;
            state.digest = Some(digest);
        }
        self.wake_readers();
    }

    pub fn fail(&self, error: BodyError) {
        {
            let mut state = self.state();
            if state.end == End::Open {
                state.end = End::Failed(error);
            }
        }
        self.wake_readers();
    }
}

/// A client that read too slowly to keep up with a download others share
/// (its window of memory moved on): the client's doing.
fn too_slow() -> BodyError {
    BodyError::new(Party::Client, "client read too slowly to keep up with the download")
}

/// What a reader does next.
enum Step {
    Disk(Arc<File>, u64, usize),
    Memory(Bytes),
    Wait,
    Done,
    Fail(BodyError),
}

/// One client's way through a download.
pub(crate) struct DownloadReader {
    download: Arc<Download>,
    id: u64,
    offset: u64,
    /// XXH3 of every byte handed out so far.
    read: Box<Xxh3>,
    /// The whole body was found to match.
    checked: bool,
    changes: watch::Receiver<u64>,
}

impl DownloadReader {
    /// The next chunk, `None` at the (checked) end. The chunk that makes
    /// the body whole comes only once everything read matches.
    pub async fn next(&mut self) -> Option<io::Result<Bytes>> {
        loop {
            self.changes.borrow_and_update();
            let allowance = allowance(READ_CHUNK);
            let chunk = match self.step(allowance.len) {
                Step::Done => return self.check_whole().err().map(Err),
                Step::Fail(error) => return Some(Err(error.into())),
                Step::Memory(chunk) => chunk,
                Step::Disk(file, offset, len) => match read_file(file, offset, len).await {
                    Ok(chunk) => allowance.hold(chunk),
                    Err(error) => return Some(Err(error)),
                },
                Step::Wait => {
                    if self.changes.changed().await.is_err() {
                        return Some(Err(BodyError::new(Party::Nucache, "download abandoned").into()));
                    }
                    continue;
                }
            };
            self.read.update(&chunk);
            self.advance(chunk.len());
            if let Err(error) = self.check_whole() {
                return Some(Err(error));
            }
            return Some(Ok(chunk));
        }
    }

    /// Once every byte has been read: whether they match the body the
    /// upstream sent. A mismatch is rot under the file (it is the cached
    /// file now): the entry is dropped.
    fn check_whole(&mut self) -> io::Result<()> {
        let digest = {
            let state = self.download.state();
            match (state.end == End::Complete, state.digest) {
                (true, Some(digest)) if self.offset == state.announced => digest,
                _ => return Ok(()),
            }
        };
        if self.checked || self.read.digest128() == digest {
            self.checked = true;
            return Ok(());
        }
        tracing::error!(
            url = self.download.origin.url,
            size = self.offset,
            "a download read back from disk does not match what the upstream sent; dropped"
        );
        self.download.found_corrupt();
        Err(BodyError::new(
            Party::Nucache,
            "the downloaded file changed on disk (corrupted); transfer broken off",
        )
        .into())
    }

    /// What to do next; a file read takes at most `max` bytes.
    fn step(&self, max: usize) -> Step {
        let state = self.download.state();
        if let End::Failed(error) = &state.end {
            let reason = format!("the download failed: {}", error.reason);
            return Step::Fail(BodyError::new(error.party, reason));
        }
        if !state.readers.contains_key(&self.id) {
            return Step::Fail(too_slow());
        }
        if self.offset >= state.announced {
            return if state.end == End::Complete {
                Step::Done
            } else {
                Step::Wait
            };
        }
        if self.offset < state.on_disk {
            let Some(file) = state.file.clone() else {
                return Step::Fail(BodyError::new(Party::Nucache, "the download's file is missing"));
            };
            let len = (state.on_disk.min(state.announced) - self.offset).min(max as u64) as usize;
            return Step::Disk(file, self.offset, len);
        }
        match memory_slice(&state, self.offset) {
            Some(chunk) => Step::Memory(chunk),
            None => Step::Fail(too_slow()),
        }
    }

    fn advance(&mut self, len: usize) {
        self.offset += len as u64;
        if let Some(offset) = self.download.state().readers.get_mut(&self.id) {
            *offset = self.offset;
        }
        self.download.drained.notify_one();
    }
}

impl Drop for DownloadReader {
    fn drop(&mut self) {
        self.download.state().readers.remove(&self.id);
        self.download.drained.notify_one();
    }
}

/// The rest of the memory chunk that holds `offset`, up to what is announced.
fn memory_slice(state: &State, offset: u64) -> Option<Bytes> {
    if offset < state.memory_start {
        return None;
    }
    let mut start = state.memory_start;
    for chunk in &state.memory {
        let end = start + chunk.len() as u64;
        if offset < end {
            let from = (offset - start) as usize;
            let to = (end.min(state.announced) - start) as usize;
            return (from < to).then(|| chunk.slice(from..to));
        }
        start = end;
    }
    None
}

async fn read_file(file: Arc<File>, offset: u64, len: usize) -> io::Result<Bytes> {
    let data = tokio::task::spawn_blocking(move || read_at(&file, offset, len))
        .await
        .map_err(io::Error::other)??;
    if data.len() < len {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "download file is shorter than announced",
        ));
    }
    Ok(Bytes::from(data))
}

#[cfg(test)]
mod tests {
    use super::*;
    use xxhash_rust::xxh3::xxh3_128;

    fn origin() -> Origin {
        Origin::default()
    }

    async fn read_all(mut reader: DownloadReader) -> (Vec<u8>, Option<String>) {
        let mut out = Vec::new();
        while let Some(chunk) = reader.next().await {
            match chunk {
                Ok(chunk) => out.extend_from_slice(&chunk),
                Err(error) => return (out, Some(error.to_string())),
            }
        }
        (out, None)
    }

    #[tokio::test]
    async fn memory_only_readers_get_every_byte_but_the_last_only_at_the_end() {
        let download = Download::new(origin(), None, None);
        let reader = download.reader().expect("joinable at the start");
        let whole = tokio::spawn(read_all(reader));
        download.push(Bytes::from_static(b"abc"));
        download.push(Bytes::from_static(b"def"));
        assert_eq!(download.state().announced, 3, "the newest chunk is held back");
        download.complete(6, xxh3_128(b"abcdef"));
        assert_eq!(whole.await.ok(), Some((b"abcdef".to_vec(), None)));
    }

    #[tokio::test]
    async fn a_failed_download_breaks_its_readers() {
        let download = Download::new(origin(), None, None);
        let reader = download.reader().expect("reader");
        download.push(Bytes::from_static(b"abc"));
        download.push(Bytes::from_static(b"def"));
        download.fail(BodyError::new(Party::Upstream, "checksum mismatch"));
        let (got, error) = read_all(reader).await;
        assert!(got.len() < 6);
        assert!(error.is_some_and(|e| e.contains("checksum mismatch")));
    }

    #[tokio::test]
    async fn the_window_waits_for_readers_and_cuts_off_one_that_is_stuck() {
        let download = Download::new(origin(), None, None);
        let mut stuck = download.reader().expect("reader");
        let chunk = Bytes::from(vec![1u8; WINDOW / 2]);
        for _ in 0..4 {
            download.push(chunk.clone());
        }
        // Over the window, and the only reader reads nothing: after the
        // patience runs out it is cut off and the window is trimmed.
        let joinable = download.make_room(Duration::from_millis(50)).await;
        assert!(!joinable, "the start of the body is gone");
        assert!(download.state().memory_len <= WINDOW);
        assert!(download.reader().is_none());
        let cut = stuck.next().await;
        assert!(cut.is_some_and(|r| r.is_err_and(|e| e.to_string().contains("too slowly"))));
    }

    #[tokio::test]
    async fn a_reader_that_keeps_up_is_never_cut_off() {
        let download = Download::new(origin(), None, None);
        let reader = download.reader().expect("reader");
        let whole = tokio::spawn(read_all(reader));
        let chunk = Bytes::from(vec![7u8; 256 * 1024]);
        let mut sent = Xxh3::new();
        for _ in 0..40 {
            download.push(chunk.clone());
            sent.update(&chunk);
            download.make_room(Duration::from_secs(5)).await;
        }
        download.complete(40 * 256 * 1024, sent.digest128());
        let (got, error) = whole.await.unwrap_or_default();
        assert_eq!((got.len(), error), (40 * 256 * 1024, None));
    }

    #[tokio::test]
    async fn bytes_on_disk_then_in_memory_read_as_one_body() {
        let mut file = tempfile::tempfile().expect("temp file");
        std::io::Write::write_all(&mut file, b"0123").expect("write");
        let download = Download::new(origin(), None, Some(Arc::new(file)));
        download.on_disk(4);
        download.spill_to_memory();
        let reader = download.reader().expect("reader");
        download.push(Bytes::from_static(b"4567"));
        download.push(Bytes::from_static(b"89"));
        download.complete(10, xxh3_128(b"0123456789"));
        assert_eq!(read_all(reader).await, (b"0123456789".to_vec(), None));
    }

    fn file_with(bytes: &[u8]) -> Arc<File> {
        let mut file = tempfile::tempfile().expect("temp file");
        std::io::Write::write_all(&mut file, bytes).expect("write");
        Arc::new(file)
    }

    #[tokio::test]
    async fn with_a_length_the_last_byte_waits_for_the_end_to_be_checked() {
        let download = Download::new(origin(), Some(10), Some(file_with(b"0123456789")));
        // Every byte on disk, but the upstream has not said it is done.
        download.on_disk(10);
        assert_eq!(download.state().announced, 9, "a client with every byte is done");
        download.complete(10, xxh3_128(b"0123456789"));
        let reader = download.reader().expect("reader");
        assert_eq!(read_all(reader).await, (b"0123456789".to_vec(), None));
    }

    #[tokio::test]
    async fn bytes_that_rot_on_disk_before_they_are_read_break_the_transfer_off() {
        let file = file_with(b"0123456789");
        let download = Download::new(origin(), Some(10), Some(file.clone()));
        let dropped = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = dropped.clone();
        download.on_corrupt(Box::new(move || flag.store(true, std::sync::atomic::Ordering::SeqCst)));
        download.on_disk(10);
        download.complete(10, xxh3_128(b"0123456789"));
        std::os::unix::fs::FileExt::write_all_at(&*file, b"X", 4).expect("rot");

        let (got, error) = read_all(download.reader().expect("reader")).await;
        assert!(got.len() < 10, "never the whole file: {got:?}");
        assert!(error.is_some_and(|e| e.contains("corrupted")));
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while !dropped.load(std::sync::atomic::Ordering::SeqCst) {
            assert!(std::time::Instant::now() < deadline, "the entry was never dropped");
            tokio::task::yield_now().await;
        }
    }
}
