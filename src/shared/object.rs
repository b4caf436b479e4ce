//! Reading an object: one GET, whose first bytes are the record (checked
//! against the key asked for and the object's length before any content
//! is handed out), then the content as a stream, each chunk within
//! `shared.timeout`. The content is checked against the record's SHA-512
//! by whoever reads it to the end (the stash's download, or
//! [`SharedStore::read_whole`] for a document) before its last byte goes
//! out; what fails that check is deleted and counted
//! ([`SharedStore::discard_corrupt`]).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures_util::stream::BoxStream;
use futures_util::{FutureExt, StreamExt};
use object_store::path::Path;
use sha2::{Digest, Sha512};

use super::format::{parse_header, HeaderProblem, Parsed};
use object_store::ObjectStoreExt as _;

use super::{Record, SharedError, SharedStore};
use crate::metrics::SharedRead;

/// An object being read, its record known.
pub(crate) struct SharedObject {
    pub record: Record,
    pub name: Path,
    store: Arc<SharedStore>,
    /// Content that came with the record.
    first: Option<Bytes>,
    stream: BoxStream<'static, object_store::Result<Bytes>>,
    gap: Duration,
}

impl SharedStore {
    /// Opens `name`, which must hold `key`'s content: the record is read
    /// and checked; the content follows through [`SharedObject`]. `None`:
    /// not there, or not usable (counted: miss, error, skipped, corrupt).
    pub async fn open(self: &Arc<Self>, name: &Path, key: &str) -> Option<SharedObject> {
        let got = self.call("reading an object", self.timeout, self.reads.get(name)).await;
        let result = match got {
            Ok(result) => result,
            Err(error) => {
                self.metrics.shared_read(match &error {
                    SharedError::Down => SharedRead::Skipped,
                    error if error.is_not_found() => SharedRead::Miss,
                    _ => SharedRead::Error,
                });
                if !matches!(error, SharedError::Down) && !error.is_not_found() {
                    tracing::debug!(object = %name, error = %crate::error::chain(&error), "shared store read failed; asking the upstream");
                }
                return None;
            }
        };
        let length = result.meta.size;
        let mut stream = result.into_stream();
        let (record, header_len, first) = match self.read_header(&mut stream, name).await {
            Ok(found) => found,
            Err(error) if error.is_corrupt() => {
                self.discard_corrupt(name, &error.to_string()).await;
                return None;
            }
            Err(SharedError::Newer { .. }) => {
                self.metrics.shared_read(SharedRead::Miss);
                return None;
            }
            Err(_) => {
                self.metrics.shared_read(SharedRead::Error);
                return None;
            }
        };
        let header_len = header_len as u64;
        let problem = match () {
            _ if record.key != key => Some(format!("it holds {:?}", record.key)),
            _ if header_len + record.size != length => Some(format!(
                "it is {length} bytes, its record says {} of content after {header_len}",
                record.size
            )),
            _ => None,
        };
        if let Some(reason) = problem {
            self.discard_corrupt(name, &reason).await;
            return None;
        }
        Some(SharedObject {
            record,
            name: name.clone(),
            store: self.clone(),
            first: Some(first).filter(|f| !f.is_empty()),
            stream,
            gap: self.timeout,
        })
    }

    /// Reads the record; its header's length and the content bytes read
    /// with it come back too.
    async fn read_header(
        &self,
        stream: &mut BoxStream<'static, object_store::Result<Bytes>>,
        name: &Path,
    ) -> Result<(Record, usize, Bytes), SharedError> {
        let mut start = BytesMut::new();
        loop {
            let corrupt = |reason: String| SharedError::Corrupt {
                name: name.to_string(),
                reason,
            };
            match parse_header(&start) {
                Ok(Parsed::Done(record, header_len, rest)) => return Ok((record, header_len, rest)),
                Ok(Parsed::Need) => {}
                Err(HeaderProblem::Format(format)) => {
                    return Err(SharedError::Newer {
                        name: name.to_string(),
                        format,
                    })
                }
                Err(problem) => return Err(corrupt(problem.to_string())),
            }
            match self.next_within(stream, self.timeout).await? {
                Some(chunk) => {
                    self.metrics.shared_bytes(false, chunk.len() as u64);
                    start.extend_from_slice(&chunk)
                }
                None => {
                    return Err(corrupt(format!(
                        "it ends after {} bytes, within its record",
                        start.len()
                    )))
                }
            }
        }
    }

    /// The next chunk of a body, within `gap`; a failure is the breaker's.
    async fn next_within(
        &self,
        stream: &mut BoxStream<'static, object_store::Result<Bytes>>,
        gap: Duration,
    ) -> Result<Option<Bytes>, SharedError> {
        let error = match tokio::time::timeout(gap, stream.next()).await {
            Ok(Some(Ok(chunk))) => return Ok(Some(chunk)),
            Ok(None) => return Ok(None),
            Ok(Some(Err(source))) => SharedError::Store {
                what: "reading an object's body",
                source: Arc::new(source),
            },
            Err(_) => SharedError::Timeout {
                what: "reading an object's body",
                seconds: gap.as_secs_f64(),
            },
        };
        self.failed(&error);
        Err(error)
    }

    /// A whole object of at most `cap` bytes of content, checked against
    /// its SHA-512 (for documents); `None` when there is none to use.
    pub async fn read_whole(self: &Arc<Self>, name: &Path, key: &str, cap: u64) -> Option<(Record, Bytes)> {
        let mut object = self.open(name, key).await?;
        if object.record.size > cap {
            tracing::debug!(object = %name, "shared document larger than upstream.max_document_size; not used");
            return None;
        }
        let mut body = BytesMut::with_capacity(object.record.size as usize);
        loop {
            match object.next_chunk().await {
                Ok(Some(chunk)) if (body.len() + chunk.len()) as u64 <= object.record.size => {
                    body.extend_from_slice(&chunk)
                }
                Ok(Some(_)) => return object.corrupt("longer than its record says").await,
                Ok(None) => break,
                Err(_) => return None,
            }
        }
        let sha512 = hex::encode(Sha512::digest(&body));
        if body.len() as u64 != object.record.size || !sha512.eq_ignore_ascii_case(&object.record.sha512) {
            return object.corrupt("content does not match its record's SHA-512").await;
        }
        object.verified();
        Some((object.record, body.freeze()))
    }
}

impl SharedObject {
    /// The next chunk of content, `None` at the end.
    pub async fn next_chunk(&mut self) -> Result<Option<Bytes>, SharedError> {
        if let Some(first) = self.first.take() {
            return Ok(Some(first));
        }
        let chunk = self.store.next_within(&mut self.stream, self.gap).await;
        self.count(chunk)
    }

    /// A chunk of content ready now; `None` when it would have to wait.
    pub fn chunk_now(&mut self) -> Option<Result<Option<Bytes>, SharedError>> {
        if let Some(first) = self.first.take() {
            return Some(Ok(Some(first)));
        }
        let ready = self.stream.next().now_or_never()?;
        let chunk = match ready {
            Some(Ok(chunk)) => Ok(Some(chunk)),
            None => Ok(None),
            Some(Err(source)) => {
                let error = SharedError::Store {
                    what: "reading an object's body",
                    source: Arc::new(source),
                };
                self.store.failed(&error);
                Err(error)
            }
        };
        Some(self.count(chunk))
    }

    fn count(&self, chunk: Result<Option<Bytes>, SharedError>) -> Result<Option<Bytes>, SharedError> {
        match &chunk {
            Ok(Some(bytes)) => self.store.metrics.shared_bytes(false, bytes.len() as u64),
            Err(_) => self.store.metrics.shared_read(SharedRead::Error),
            Ok(None) => {}
        }
        chunk
    }

    /// Read to the end and found to match its record: a hit.
    pub fn verified(&self) {
        self.store.metrics.shared_read(SharedRead::Hit);
    }

    /// Failed its checks: deleted and counted. (The future owns what it
    /// needs: a body stream is `Send` but not `Sync`, so no future may
    /// hold a reference to the object across an await.)
    pub fn corrupt<T>(&self, reason: &str) -> impl Future<Output = Option<T>> + Send + 'static {
        let (store, name, reason) = (self.store.clone(), self.name.clone(), reason.to_string());
        async move {
            store.discard_corrupt(&name, &reason).await;
            None
        }
    }
}
