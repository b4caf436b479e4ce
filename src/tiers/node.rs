//! This nucache's id, fleet or not: `fleet.node` (its URL as its peers
//! reach it) when set, else an id made once (`nucache-` and 12 random hex
//! digits) and kept in the cache directory's `node-id` file, so that it
//! survives restarts. A cache directory moved to another machine takes its
//! id along; two nucaches given copies of one cache directory would share
//! an id (and refuse each other's requests as loops): give each its own
//! `node-id` then.

use std::io::Write as _;
use std::path::Path;

use http::{HeaderValue, Version};

use super::cache_status::item_name;
use super::via;

/// The file in the cache directory that keeps a generated id.
pub(crate) const ID_FILE: &str = "node-id";
/// Longest id read back from the file.
const MAX_ID: usize = 100;

/// The one owner of this node's id and of the names it goes by in headers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct NodeId {
    id: String,
    /// `received-by` in `Via`: the id, or a URL's `host[:port]` (a Via
    /// entry names a host or a pseudonym, not a URL).
    via_name: String,
    /// This node's member name in `Cache-Status` (a token, else a string).
    cache_name: String,
    /// Its `Via` entry for answers over HTTP/1.1 and HTTP/2, made once.
    via_http1: Option<HeaderValue>,
    via_http2: Option<HeaderValue>,
}

impl NodeId {
    /// `configured` (`fleet.node`) when set; else the id kept in `dir`,
    /// made and written there the first time. Never fails: an id that
    /// cannot be kept (a read-only directory) is used for this run and the
    /// log says so (blocking I/O).
    pub fn load_or_create(dir: &Path, configured: Option<&str>) -> NodeId {
        if let Some(url) = configured {
            return NodeId::named(url.trim_end_matches('/'));
        }
        let file = dir.join(ID_FILE);
        match std::fs::read_to_string(&file) {
            Ok(text) if is_usable(text.trim()) => return NodeId::named(text.trim()),
            Ok(_) => tracing::warn!(file = %file.display(), "the node id file is not a usable id; making a new one"),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
            Err(error) => {
                tracing::warn!(file = %file.display(), %error, "cannot read the node id file; making a new id")
            }
        }
        let node = NodeId::named(&generate());
        if let Err(error) = keep(dir, &node.id) {
            tracing::warn!(file = %file.display(), %error, id = node.id, "cannot keep the node id; it is used for this run only");
        }
        node
    }

    /// A node called `id` (tests, and `fleet.node`).
    pub fn named(id: &str) -> NodeId {
        let mut node = NodeId {
            id: id.to_string(),
            via_name: via_name_of(id),
            cache_name: item_name(id),
            via_http1: None,
            via_http2: None,
        };
        node.via_http1 = HeaderValue::from_str(&via::entry(&node, Version::HTTP_11)).ok();
        node.via_http2 = HeaderValue::from_str(&via::entry(&node, Version::HTTP_2)).ok();
        node
    }

    /// This node's `Via` entry for a message received as `version`.
    pub fn via_entry(&self, version: Version) -> Option<HeaderValue> {
        match version {
            Version::HTTP_11 => self.via_http1.clone(),
            Version::HTTP_2 => self.via_http2.clone(),
            other => HeaderValue::from_str(&via::entry(self, other)).ok(),
        }
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    pub fn via_name(&self) -> &str {
        &self.via_name
    }

    pub fn cache_name(&self) -> &str {
        &self.cache_name
    }
}

/// An id someone may also have written by hand: letters, digits, `.`,
/// `_`, `-`, up to 100 of them (a Via pseudonym and a Cache-Status token).
fn is_usable(id: &str) -> bool {
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
    !id.is_empty() && id.len() <= MAX_ID && id.chars().all(allowed) && id.starts_with(|c: char| c.is_ascii_alphabetic())
}

/// `nucache-` and 12 hex digits from the system's random source.
fn generate() -> String {
    let mut bytes = [0u8; 6];
    if getrandom::getrandom(&mut bytes).is_err() {
        // No random source: the time and the process still tell nodes apart.
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let mixed = (nanos as u64) ^ (u64::from(std::process::id()) << 32);
        bytes.copy_from_slice(&mixed.to_le_bytes()[..6]);
    }
    format!("nucache-{}", hex::encode(bytes))
}

/// Writes `id` to the id file, whole or not at all (temporary file, fsync,
/// rename).
fn keep(dir: &Path, id: &str) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let mut temp = tempfile::NamedTempFile::new_in(dir)?;
    writeln!(temp, "{id}")?;
    temp.as_file().sync_all()?;
    temp.persist(dir.join(ID_FILE)).map_err(|e| e.error)?;
    Ok(())
}

/// The `host[:port]` of a URL id; any other id as it is.
fn via_name_of(id: &str) -> String {
    match id.split_once("://") {
        Some((_, rest)) => {
            let authority = rest.split(['/', '?', '#']).next().unwrap_or(rest);
            authority
                .rsplit_once('@')
                .map_or(authority, |(_, host)| host)
                .to_string()
        }
        None => id.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_generated_id_is_kept_and_read_back() {
        let dir = tempfile::tempdir().expect("temp dir");
        let first = NodeId::load_or_create(dir.path(), None);
        assert!(first.id().starts_with("nucache-"), "{}", first.id());
        assert_eq!(first.id().len(), "nucache-".len() + 12);
        assert!(is_usable(first.id()));
        let again = NodeId::load_or_create(dir.path(), None);
        assert_eq!(again, first, "the id survives a restart");
        let other = tempfile::tempdir().expect("temp dir");
        assert_ne!(
            NodeId::load_or_create(other.path(), None),
            first,
            "another cache, another id"
        );
    }

    #[test]
    fn a_hand_written_id_is_kept_and_a_broken_one_replaced() {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(dir.path().join(ID_FILE), "edge-paris-1\n").expect("write");
        assert_eq!(NodeId::load_or_create(dir.path(), None).id(), "edge-paris-1");
        std::fs::write(dir.path().join(ID_FILE), "not an id, 1.1 evil").expect("write");
        let replaced = NodeId::load_or_create(dir.path(), None);
        assert!(replaced.id().starts_with("nucache-"));
        let kept = std::fs::read_to_string(dir.path().join(ID_FILE)).expect("read");
        assert_eq!(kept.trim(), replaced.id());
    }

    #[test]
    fn fleet_node_names_the_node_and_nothing_is_written() {
        let dir = tempfile::tempdir().expect("temp dir");
        let node = NodeId::load_or_create(dir.path(), Some("http://10.0.0.5:5000/"));
        assert_eq!(node.id(), "http://10.0.0.5:5000");
        assert_eq!(node.via_name(), "10.0.0.5:5000");
        assert_eq!(node.cache_name(), "http://10.0.0.5:5000");
        assert!(!dir.path().join(ID_FILE).exists());
        let v6 = NodeId::named("http://[::1]:5000");
        assert_eq!(v6.via_name(), "[::1]:5000");
        assert_eq!(v6.cache_name(), "\"http://[::1]:5000\"");
    }

    #[test]
    fn an_unwritable_directory_still_gives_an_id() {
        let dir = tempfile::tempdir().expect("temp dir");
        let file_in_the_way = dir.path().join("cache");
        std::fs::write(&file_in_the_way, b"x").expect("write");
        let node = NodeId::load_or_create(&file_in_the_way, None);
        assert!(node.id().starts_with("nucache-"));
    }
}
