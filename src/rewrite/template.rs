//! Rewritten documents as templates: JSON text in which a NUL byte stands
//! for the public base URL. A NUL can never appear raw in JSON text (it is
//! always escaped inside strings), so rendering for a base URL is a plain
//! split-and-join: no JSON parsing on the hot path, and a body rendered for
//! one base URL is never confused with another's.

use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};

use bytes::Bytes;
use flate2::write::GzEncoder;
use flate2::Compression;
use sha2::{Digest, Sha256};

/// How many differently-based renderings of one document are kept; clients
/// normally reach nucache under one or two names.
const MAX_RENDERS: usize = 4;

/// A rewritten document, ready to render for any public base URL.
#[derive(Debug)]
pub struct Template {
    text: Bytes,
    /// Identifies this content in ETags (a prefix of its SHA-512, hex).
    content_id: String,
    renders: Mutex<Vec<Arc<Rendered>>>,
}

/// One rendering: the identity body, its gzip form (made once, on first
/// demand) and the ETag shared by both.
#[derive(Debug)]
pub struct Rendered {
    base: String,
    identity: Bytes,
    gzip: OnceLock<Bytes>,
    etag: String,
}

impl Template {
    pub fn new(text: Bytes, content_id: &str) -> Self {
        Template {
            text,
            content_id: content_id.chars().take(32).collect(),
            renders: Mutex::new(Vec::new()),
        }
    }

    pub fn text(&self) -> &Bytes {
        &self.text
    }

    /// Memory this template may occupy with its renderings (a bound for the
    /// hot cache's weigher).
    pub fn weight(&self) -> usize {
        self.text.len() * 3 + 256
    }

    /// The body for clients that reach nucache at `base` (`scheme://host[:port][/path]`,
    /// no trailing slash; validated by the caller to need no JSON escaping).
    pub fn render(&self, base: &str) -> Arc<Rendered> {
        if let Some(found) = self.cached_render(base) {
            return found;
        }
        let rendered = Arc::new(Rendered {
            base: base.to_string(),
            identity: fill(&self.text, base),
            gzip: OnceLock::new(),
            etag: etag(&self.content_id, base),
        });
        if let Ok(mut renders) = self.renders.lock() {
            if renders.len() >= MAX_RENDERS {
                renders.remove(0);
            }
            renders.push(rendered.clone());
        }
        rendered
    }

    fn cached_render(&self, base: &str) -> Option<Arc<Rendered>> {
        let renders = self.renders.lock().ok()?;
        renders.iter().find(|r| r.base == base).cloned()
    }
}

impl Rendered {
    pub fn identity(&self) -> &Bytes {
        &self.identity
    }

    /// The gzip-encoded body, compressed once and kept.
    pub fn gzip(&self) -> &Bytes {
        self.gzip.get_or_init(|| gzip(&self.identity))
    }

    pub fn etag(&self) -> &str {
        &self.etag
    }
}

/// Replaces every placeholder in `text` by `base`.
fn fill(text: &[u8], base: &str) -> Bytes {
    let holes = memchr::memchr_iter(0, text).count();
    if holes == 0 {
        return Bytes::copy_from_slice(text);
    }
    let mut out = Vec::with_capacity(text.len() + holes * base.len());
    for (i, piece) in text.split(|b| *b == 0).enumerate() {
        if i > 0 {
            out.extend_from_slice(base.as_bytes());
        }
        out.extend_from_slice(piece);
    }
    Bytes::from(out)
}

fn etag(content_id: &str, base: &str) -> String {
    let base_hash = Sha256::digest(base.as_bytes());
    format!("\"{content_id}-{}\"", hex::encode(&base_hash[..6]))
}

/// gzip at the default level: metadata compresses about 10:1 and is
/// compressed once per rendering, so speed matters less than size.
pub fn gzip(data: &[u8]) -> Bytes {
    let mut encoder = GzEncoder::new(Vec::with_capacity(data.len() / 4 + 64), Compression::default());
    // Writing into a Vec cannot fail.
    let _ = encoder.write_all(data);
    Bytes::from(encoder.finish().unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_each_base_separately() {
        let t = Template::new(Bytes::from_static(b"{\"@id\":\"\0/v3/x\",\"b\":\"\0/v3/y\"}"), "abcdef");
        let a = t.render("http://a:1");
        let b = t.render("https://b.example/nuget");
        assert_eq!(
            &a.identity()[..],
            &b"{\"@id\":\"http://a:1/v3/x\",\"b\":\"http://a:1/v3/y\"}"[..]
        );
        assert_eq!(
            &b.identity()[..],
            &b"{\"@id\":\"https://b.example/nuget/v3/x\",\"b\":\"https://b.example/nuget/v3/y\"}"[..]
        );
        assert_ne!(a.etag(), b.etag());
        assert!(Arc::ptr_eq(&a, &t.render("http://a:1")));
    }

    #[test]
    fn gzip_round_trips() {
        let t = Template::new(Bytes::from_static(b"{\"versions\":[\"1.0.0\"]}"), "00");
        let r = t.render("http://h");
        let mut out = Vec::new();
        let mut decoder = flate2::read::GzDecoder::new(&r.gzip()[..]);
        let read = std::io::Read::read_to_end(&mut decoder, &mut out);
        assert!(read.is_ok());
        assert_eq!(&out[..], &r.identity()[..]);
    }
}
