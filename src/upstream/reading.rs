//! Reading upstream bodies: chunk by chunk within the read timeout and
//! the download deadline, whole documents up to a cap (and within the
//! bytes of documents in flight), and the length checks that keep a
//! truncated body from ever counting as complete.

use std::time::Instant;

use bytes::{Bytes, BytesMut};
use futures_util::FutureExt;
use http::header::HeaderMap;
use http_body_util::BodyExt;
use hyper::body::Incoming;

use super::{error_chain, origin_of, Fetched, Upstream};
use crate::budget::Held;
use crate::error::UpstreamError;

impl Upstream {
    /// The next chunk of a body, `None` at its end; a gap longer than the
    /// read timeout is an error, and so is `deadline` (the end of
    /// `upstream.download_timeout`) passing: an upstream that drips a byte
    /// within every read timeout cannot hold a download forever.
    pub async fn next_chunk_before(
        &self,
        body: &mut Incoming,
        origin: &str,
        deadline: Option<Instant>,
    ) -> Result<Option<Bytes>, UpstreamError> {
        let read_timeout = self.config.read_timeout;
        let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
        let (wait, phase, seconds) = match left {
            Some(left) if left < read_timeout => (
                left,
                "the whole download (upstream.download_timeout)",
                self.config.download_timeout.as_secs_f64(),
            ),
            _ => (read_timeout, "reading the body", read_timeout.as_secs_f64()),
        };
        let timeout = || UpstreamError::Timeout {
            origin: origin.to_string(),
            phase,
            seconds,
        };
        let started = Instant::now();
        loop {
            let left = wait.saturating_sub(started.elapsed());
            let frame = tokio::time::timeout(left, body.frame()).await.map_err(|_| timeout())?;
            if let Some(chunk) = frame_data(frame, origin) {
                return chunk;
            }
        }
    }

    /// The first line of a short answer's body (an error message), from at
    /// most its first KiB, read within the read timeout; what could not be
    /// read is left out.
    pub async fn first_line(&self, fetched: &mut Fetched) -> String {
        const MAX_MESSAGE: usize = 1024;
        let origin = origin_of(&fetched.url).to_string();
        let mut read = BytesMut::new();
        while read.len() < MAX_MESSAGE {
            match self.next_chunk_before(&mut fetched.body, &origin, None).await {
                Ok(Some(chunk)) => read.extend_from_slice(&chunk),
                _ => break,
            }
        }
        let text = String::from_utf8_lossy(&read[..read.len().min(MAX_MESSAGE)]).into_owned();
        text.lines().next().unwrap_or_default().trim().to_string()
    }

    /// Reads a whole (document) body, refusing more than `cap` bytes.
    pub async fn read_to_end(&self, fetched: &mut Fetched, cap: u64) -> Result<Bytes, UpstreamError> {
        self.read_counted(fetched, cap, None).await
    }

    /// [`Upstream::read_to_end`], its bytes taken from `held`'s budget: a
    /// `Content-Length` all at once before reading (no flight holds part
    /// of the budget while it waits for the rest), else each chunk as it
    /// arrives. Waiting past the queue timeout is [`UpstreamError::Busy`].
    pub async fn read_counted(
        &self,
        fetched: &mut Fetched,
        cap: u64,
        mut held: Option<&mut Held>,
    ) -> Result<Bytes, UpstreamError> {
        let origin = origin_of(&fetched.url).to_string();
        let too_large = |origin: String| UpstreamError::Body {
            origin,
            reason: format!("document larger than {cap} bytes"),
        };
        let expected = content_length(&fetched.headers);
        if let Some(length) = expected {
            if length > cap {
                return Err(too_large(origin));
            }
            if let Some(held) = held.as_deref_mut() {
                held.grow(length).await.map_err(UpstreamError::Busy)?;
            }
        }
        let deadline = Instant::now() + self.config.download_timeout;
        let mut out = BytesMut::with_capacity(expected.unwrap_or(16 * 1024).min(cap) as usize);
        while let Some(chunk) = self
            .next_chunk_before(&mut fetched.body, &origin, Some(deadline))
            .await?
        {
            if (out.len() + chunk.len()) as u64 > cap {
                return Err(too_large(origin));
            }
            if let (None, Some(held)) = (expected, held.as_deref_mut()) {
                held.grow(chunk.len() as u64).await.map_err(UpstreamError::Busy)?;
            }
            out.extend_from_slice(&chunk);
        }
        check_length(expected, out.len() as u64, &origin)?;
        Ok(out.freeze())
    }
}

/// A chunk the body has ready now; `None` when it would have to wait.
pub(crate) fn chunk_now(body: &mut Incoming, origin: &str) -> Option<Result<Option<Bytes>, UpstreamError>> {
    loop {
        let frame = body.frame().now_or_never()?;
        if let Some(chunk) = frame_data(frame, origin) {
            return Some(chunk);
        }
    }
}

/// A body frame as data: `None` for frames without data (trailers).
fn frame_data(
    frame: Option<Result<hyper::body::Frame<Bytes>, hyper::Error>>,
    origin: &str,
) -> Option<Result<Option<Bytes>, UpstreamError>> {
    match frame {
        None => Some(Ok(None)),
        Some(Err(error)) => Some(Err(UpstreamError::Body {
            origin: origin.to_string(),
            reason: format!("body broken off: {}", error_chain(&error)),
        })),
        Some(Ok(frame)) => frame.into_data().ok().map(|data| Ok(Some(data))),
    }
}

/// A body must be exactly as long as its `Content-Length` said.
pub(crate) fn check_length(expected: Option<u64>, got: u64, origin: &str) -> Result<(), UpstreamError> {
    match expected {
        Some(expected) if expected != got => Err(UpstreamError::Body {
            origin: origin.to_string(),
            reason: format!("body has {got} bytes, Content-Length said {expected}"),
        }),
        _ => Ok(()),
    }
}

/// While a body arrives: it may not run past its `Content-Length`.
pub(crate) fn check_not_longer(expected: Option<u64>, received: u64, origin: &str) -> Result<(), UpstreamError> {
    match expected {
        Some(limit) if received > limit => check_length(expected, received, origin),
        _ => Ok(()),
    }
}

pub(crate) fn content_length(headers: &HeaderMap) -> Option<u64> {
    headers.get(http::header::CONTENT_LENGTH)?.to_str().ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn length_must_match() {
        assert!(check_length(Some(10), 10, "o").is_ok());
        assert!(check_length(None, 10, "o").is_ok());
        assert!(check_length(Some(10), 5, "o").is_err());
    }
}
