//! The configuration's other tables: cache, TTLs, server, publish, auth,
//! TLS, admin and log settings, with their defaults.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{ByteSize, MinFree, Secret};

/// How log lines are written (the filter is `log_filter`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    pub format: LogFormat,
}

/// One line per event either way (one per request for the access log).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    /// `key=value` pairs (logfmt), coloured on a terminal.
    #[default]
    Text,
    /// One JSON object per line, the event's fields at the top level.
    Json,
}

/// The admin API under `/admin/` (stats, purge, online verify).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdminConfig {
    /// SHA-256 hex digests of the admin keys (`nucache hash-key`); none:
    /// `/admin/` answers 404.
    pub keys: Vec<String>,
}

/// HTTPS serving: both files set, or neither (plain http).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsConfig {
    /// PEM certificate chain, the server's certificate first. Re-read on SIGHUP.
    pub cert: Option<PathBuf>,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1) of that certificate.
    pub key: Option<PathBuf>,
}

impl TlsConfig {
    pub fn enabled(&self) -> bool {
        self.cert.is_some()
    }
}

/// Who decides whether a publish call may go upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PublishMode {
    /// Clients present keys listed (as SHA-256 digests) in `client_keys`;
    /// nucache sends its own `api_key` upstream.
    Keys,
    /// The client's own key goes upstream unchanged.
    Passthrough,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PublishConfig {
    /// List PackagePublish / SymbolPackagePublish and forward them.
    pub enabled: bool,
    pub mode: PublishMode,
    /// The key sent upstream as `X-NuGet-ApiKey` (mode `keys`).
    pub api_key: Option<Secret>,
    pub api_key_file: Option<PathBuf>,
    /// SHA-256 hex digests of the keys clients may publish with (`nucache hash-key`).
    pub client_keys: Vec<String>,
    /// Largest package accepted (413 beyond it).
    pub max_size: ByteSize,
    /// Bound of a whole publish call, upload included.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// Among several upstreams, the one pushes go to (default: the
    /// highest-priority one whose index lists PackagePublish).
    pub upstream: Option<String>,
}

/// Whether reads need credentials.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReadAccess {
    /// Anyone who can reach nucache may read.
    Open,
    /// Every request but `/health` needs HTTP Basic credentials or a read key.
    Required,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    pub read: ReadAccess,
    /// `name:sha256hex(password)` entries accepted as HTTP Basic credentials.
    pub users: Vec<String>,
    /// SHA-256 hex digests of keys accepted for reading, as the Basic
    /// password (any user name) or as `X-NuGet-ApiKey`.
    pub read_keys: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CacheConfig {
    pub dir: PathBuf,
    /// Memory for hot documents (half) and hot small packages (half).
    pub memory: ByteSize,
    /// After a failed write (disk full, read-only), how long responses pass
    /// through uncached before the disk is tried again.
    #[serde(with = "humantime_serde")]
    pub storage_retry: Duration,
    /// Check every blob against its recorded checksum while it is sent.
    pub verify_reads: bool,
    /// How often the background scrub re-hashes every cached blob (0: never).
    #[serde(with = "humantime_serde")]
    pub scrub_interval: Duration,
    /// Bytes per second the scrub may read.
    pub scrub_rate: ByteSize,
    /// Largest size of the cached objects; above it the least recently
    /// used are evicted down to 90% of it. Unset: no cap.
    pub max_size: Option<ByteSize>,
    /// Free space kept on the cache's file system (bytes or `"5%"`); below
    /// it the least recently used objects are evicted too.
    pub min_free: MinFree,
}

/// How long metadata is served without asking the upstream again.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TtlConfig {
    #[serde(with = "humantime_serde")]
    pub service_index: Duration,
    /// Flat-container version lists (`{id}/index.json`).
    #[serde(with = "humantime_serde")]
    pub versions: Duration,
    #[serde(with = "humantime_serde")]
    pub registration: Duration,
    #[serde(with = "humantime_serde")]
    pub search: Duration,
    /// Catalog, vulnerability and repository-signature documents.
    #[serde(with = "humantime_serde")]
    pub documents: Duration,
    /// How long an upstream 404 is remembered.
    #[serde(with = "humantime_serde")]
    pub not_found: Duration,
    /// How long past its TTL a document is still served at once while it is
    /// refreshed in the background; beyond it, clients wait for the upstream.
    #[serde(with = "humantime_serde")]
    pub max_stale: Duration,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    pub max_connections: usize,
    /// Time a client has to send its request headers.
    #[serde(with = "humantime_serde")]
    pub header_read_timeout: Duration,
    /// On SIGTERM, how long in-flight responses may take to finish.
    #[serde(with = "humantime_serde")]
    pub shutdown_timeout: Duration,
}

impl Default for PublishConfig {
    fn default() -> Self {
        PublishConfig {
            enabled: true,
            mode: PublishMode::Keys,
            api_key: None,
            api_key_file: None,
            client_keys: Vec::new(),
            max_size: ByteSize::mib(250),
            timeout: Duration::from_secs(600),
            upstream: None,
        }
    }
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            read: ReadAccess::Open,
            users: Vec::new(),
            read_keys: Vec::new(),
        }
    }
}

impl Default for CacheConfig {
    fn default() -> Self {
        CacheConfig {
            dir: default_cache_dir().0,
            memory: ByteSize::mib(256),
            storage_retry: Duration::from_secs(15),
            verify_reads: true,
            scrub_interval: Duration::from_secs(24 * 3600),
            scrub_rate: ByteSize::mib(32),
            max_size: None,
            min_free: MinFree::Percent(5.0),
        }
    }
}

impl Default for TtlConfig {
    fn default() -> Self {
        let minutes = |m: u64| Duration::from_secs(60 * m);
        TtlConfig {
            service_index: minutes(10),
            versions: minutes(5),
            registration: minutes(10),
            search: minutes(1),
            documents: minutes(10),
            not_found: minutes(1),
            max_stale: minutes(24 * 60),
        }
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            max_connections: 4096,
            header_read_timeout: Duration::from_secs(30),
            shutdown_timeout: Duration::from_secs(20),
        }
    }
}

/// `$CACHE_DIRECTORY` when systemd set it (`CacheDirectory=`; the first
/// of a `:`-separated list), else the per-user cache directory
/// (`$XDG_CACHE_HOME/nucache`, `~/.cache/nucache`); and how it was found
/// (for error messages).
fn default_cache_dir() -> (PathBuf, &'static str) {
    if let Some(first) = std::env::var_os("CACHE_DIRECTORY")
        .and_then(|dirs| dirs.to_str().and_then(|d| d.split(':').next()).map(PathBuf::from))
        .filter(|dir| dir.is_absolute())
    {
        return (first, "$CACHE_DIRECTORY, set by systemd's CacheDirectory=");
    }
    let xdg = std::env::var_os("XDG_CACHE_HOME").is_some_and(|d| Path::new(&d).is_absolute());
    match dirs::cache_dir() {
        Some(dir) if xdg => (dir.join("nucache"), "$XDG_CACHE_HOME/nucache"),
        Some(dir) => (dir.join("nucache"), "~/.cache/nucache of the user running nucache"),
        None => (PathBuf::from("nucache"), "./nucache: no home directory was found"),
    }
}

impl CacheConfig {
    /// `cache.dir PATH`, saying where the path came from when it is the
    /// default (an operator may not know which user's home it is).
    pub fn describe_dir(&self) -> String {
        let (default, origin) = default_cache_dir();
        if self.dir == default {
            format!(
                "cache.dir {} (the default, {origin}; set cache.dir or NUCACHE_CACHE__DIR)",
                self.dir.display()
            )
        } else {
            format!("cache.dir {}", self.dir.display())
        }
    }
}
