//! Configuration: built-in defaults < TOML file (`--config PATH` or
//! `NUCACHE_CONFIG`) < environment variables `NUCACHE_*`, where `__`
//! separates nesting levels (`NUCACHE_UPSTREAM__READ_TIMEOUT=3s`).
//! Every key is documented in `config.example.toml`.

mod bytesize;
mod env;
mod limits;
mod listen;
mod proxy_url;
mod secret;
mod wording;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::providers::{Format, Toml};
use figment::Figment;
use serde::{Deserialize, Serialize};

pub use bytesize::{ByteSize, MinFree};
pub use limits::LimitsConfig;
pub use proxy_url::ProxyUrl;
use secret::read_secret;
pub use secret::{digest_hex, matches_any_digest, same, Secret};
use wording::suggest;

/// Environment variable that names the configuration file.
pub const CONFIG_ENV: &str = "NUCACHE_CONFIG";
/// Environment variable the admin commands (`nucache stats`...) take the
/// admin key from; not a configuration key.
pub const ADMIN_KEY_ENV: &str = "NUCACHE_ADMIN_KEY";
const ENV_PREFIX: &str = "NUCACHE_";

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("configuration file {0} does not exist")]
    MissingFile(PathBuf),
    #[error("configuration file {0} is a directory, not a TOML file")]
    NotAFile(PathBuf),
    #[error("{0}")]
    Parse(String),
    #[error("{key}: {reason}")]
    Invalid { key: String, reason: String },
}

/// A configuration and what is worth telling the operator about it.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub config: Config,
    /// Logged once at start-up (and printed by `check-config`).
    pub warnings: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Address nucache listens on (`HOST:PORT` is resolved at load).
    #[serde(deserialize_with = "listen::deserialize")]
    pub listen: SocketAddr,
    /// Base URL clients use to reach nucache; derived from `Host` when unset.
    pub public_url: Option<String>,
    /// Honour `X-Forwarded-Host` / `X-Forwarded-Proto` (behind a reverse proxy only).
    pub trust_forwarded_headers: bool,
    /// What is logged (`RUST_LOG` syntax); `RUST_LOG`, when set, wins.
    /// Re-read on SIGHUP.
    pub log_filter: String,
    /// The upstream (`[upstream]`, named `default`); with one
    /// `[upstreams.NAME]` table instead, that table, copied here at load.
    pub upstream: UpstreamConfig,
    /// Named upstreams (`[upstreams.NAME]`), each with every key of
    /// `[upstream]` plus `priority` and `packages`.
    pub upstreams: BTreeMap<String, UpstreamConfig>,
    pub cache: CacheConfig,
    pub ttl: TtlConfig,
    pub server: ServerConfig,
    pub publish: PublishConfig,
    pub auth: AuthConfig,
    pub tls: TlsConfig,
    pub admin: AdminConfig,
    pub log: LogConfig,
    pub limits: LimitsConfig,
}

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

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct UpstreamConfig {
    pub service_index: String,
    /// Among several upstreams, a lower number is asked first (ties: by name).
    pub priority: u32,
    /// Package-id patterns this upstream serves (ids, or prefixes ending in
    /// `*`; NuGet's packageSourceMapping rules). Empty: `*`.
    pub packages: Vec<String>,
    #[serde(with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// Bounds the wait for the first byte and every gap between body chunks.
    #[serde(with = "humantime_serde")]
    pub read_timeout: Duration,
    /// Bounds a whole download (a package or a document), however steadily
    /// the upstream sends.
    #[serde(with = "humantime_serde")]
    pub download_timeout: Duration,
    /// Retries of an idempotent request after a 5xx or a connection error.
    pub retries: u32,
    pub max_redirects: u32,
    /// Largest metadata document accepted (after gzip decoding).
    pub max_document_size: ByteSize,
    /// Requests to this upstream in flight at once (`limits.rs`).
    pub max_concurrent_requests: u32,
    /// HTTP Basic credentials for a private upstream.
    pub username: Option<String>,
    pub password: Option<Secret>,
    pub password_file: Option<PathBuf>,
    /// A Bearer token for a private upstream (instead of Basic).
    pub token: Option<Secret>,
    pub token_file: Option<PathBuf>,
    /// Origins (`scheme://host[:port]`) that receive the credentials; by
    /// default only the service index's. Never sent across a redirect elsewhere.
    pub auth_origins: Vec<String>,
    /// Consecutive failed reads from one upstream origin after which that
    /// origin is considered down (reads from it fail fast, cached copies are
    /// served); 0 disables the breakers.
    pub breaker_threshold: u32,
    /// While an origin is down, how often it is probed in the background.
    #[serde(with = "humantime_serde")]
    pub breaker_cooldown: Duration,
    /// The HTTP proxy for this upstream (`http://[user:pass@]host:port`;
    /// CONNECT for https). Unset: `HTTPS_PROXY` / `HTTP_PROXY` / `ALL_PROXY`.
    /// `NO_PROXY` applies either way.
    pub proxy: Option<ProxyUrl>,
    /// PEM certificates of a private CA trusted for this upstream, beside
    /// the webpki and system roots.
    pub ca_file: Option<PathBuf>,
    /// The certificates of `ca_file`, read at load.
    #[serde(skip)]
    pub ca_certs: Vec<rustls_pki_types::CertificateDer<'static>>,
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

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 5000)),
            public_url: None,
            trust_forwarded_headers: false,
            log_filter: "info".to_string(),
            upstream: UpstreamConfig::default(),
            upstreams: BTreeMap::new(),
            cache: CacheConfig::default(),
            ttl: TtlConfig::default(),
            server: ServerConfig::default(),
            publish: PublishConfig::default(),
            auth: AuthConfig::default(),
            admin: AdminConfig::default(),
            log: LogConfig::default(),
            tls: TlsConfig::default(),
            limits: LimitsConfig::default(),
        }
    }
}

impl Default for UpstreamConfig {
    fn default() -> Self {
        UpstreamConfig {
            service_index: "https://api.nuget.org/v3/index.json".into(),
            priority: 0,
            packages: Vec::new(),
            connect_timeout: Duration::from_secs(5),
            read_timeout: Duration::from_secs(30),
            download_timeout: Duration::from_secs(30 * 60),
            retries: 3,
            max_redirects: 5,
            max_document_size: ByteSize::mib(64),
            max_concurrent_requests: limits::DEFAULT_UPSTREAM_REQUESTS,
            username: None,
            password: None,
            password_file: None,
            token: None,
            token_file: None,
            auth_origins: Vec::new(),
            breaker_threshold: 5,
            breaker_cooldown: Duration::from_secs(10),
            proxy: None,
            ca_file: None,
            ca_certs: Vec::new(),
        }
    }
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

impl Config {
    /// Loads defaults, then the file (`path`, else `$NUCACHE_CONFIG`), then
    /// the environment, and validates the result.
    pub fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
        Self::load_with_warnings(path).map(|loaded| loaded.config)
    }

    /// [`Config::load`], with the warnings start-up should log.
    pub fn load_with_warnings(path: Option<&Path>) -> Result<Loaded, ConfigError> {
        let from_env = std::env::var_os(CONFIG_ENV).map(PathBuf::from);
        let file = path.map(Path::to_path_buf).or(from_env);
        let config = Self::from_figment(Self::figment(file.as_deref())?)?;
        let mut warnings: Vec<String> = env::unknown_variables_warning().into_iter().collect();
        warnings.extend(config.warnings());
        Ok(Loaded { config, warnings })
    }

    /// The layered sources, for tools and tests that add their own.
    pub fn figment(file: Option<&Path>) -> Result<Figment, ConfigError> {
        let mut figment = Figment::new();
        if let Some(file) = file {
            if file.is_dir() {
                return Err(ConfigError::NotAFile(file.to_path_buf()));
            }
            if !file.is_file() {
                return Err(ConfigError::MissingFile(file.to_path_buf()));
            }
            figment = figment.merge(Toml::file(file));
        }
        Ok(figment.merge(env::provider()))
    }

    pub fn from_figment(figment: Figment) -> Result<Config, ConfigError> {
        let config: Config = figment
            .extract()
            .map_err(|e| ConfigError::Parse(wording::describe(e)))?;
        let config = config.with_secret_files()?.with_ca_files()?;
        config.validate()?;
        Ok(config.normalized())
    }

    /// Reads `*_file` secrets into their keys (a file wins over nothing,
    /// and may not be combined with the value itself).
    fn with_secret_files(mut self) -> Result<Config, ConfigError> {
        self.publish.api_key = read_secret(
            ("publish.api_key", "publish.api_key_file"),
            self.publish.api_key.take(),
            self.publish.api_key_file.as_deref(),
        )?;
        self.upstream.read_secrets("upstream")?;
        for (name, upstream) in &mut self.upstreams {
            upstream.read_secrets(&format!("upstreams.{name}"))?;
        }
        Ok(self)
    }

    /// Reads each `ca_file` into its certificates.
    fn with_ca_files(mut self) -> Result<Config, ConfigError> {
        self.upstream.read_ca_file("upstream")?;
        for (name, upstream) in &mut self.upstreams {
            upstream.read_ca_file(&format!("upstreams.{name}"))?;
        }
        Ok(self)
    }

    /// The upstreams in priority order (a lower `priority` first, ties by
    /// name): the `[upstreams.NAME]` tables, or `[upstream]` as `default`.
    pub fn upstream_set(&self) -> Vec<(&str, &UpstreamConfig)> {
        if self.upstreams.is_empty() {
            return vec![("default", &self.upstream)];
        }
        let mut set: Vec<(&str, &UpstreamConfig)> = self.upstreams.iter().map(|(name, u)| (name.as_str(), u)).collect();
        set.sort_by_key(|(name, u)| (u.priority, *name));
        set
    }

    fn validate_upstreams(&self) -> Result<(), ConfigError> {
        if !self.upstreams.is_empty() && self.upstream != UpstreamConfig::default() {
            return invalid(
                "upstream",
                "use either [upstream] (one upstream) or [upstreams.NAME] tables, not both",
            );
        }
        let mut seen: Vec<&str> = Vec::new();
        for (name, upstream) in &self.upstreams {
            let prefix = format!("upstreams.{name}");
            let name_ok = !name.is_empty()
                && name
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'-' | b'_'));
            if !name_ok {
                return invalid(
                    &prefix,
                    "upstream names are lower-case letters, digits, '-' and '_' (what an environment variable can name)",
                );
            }
            upstream.validate(&prefix)?;
            if seen.contains(&upstream.service_index.as_str()) {
                return invalid(
                    &format!("{prefix}.service_index"),
                    "another upstream has the same service index",
                );
            }
            seen.push(&upstream.service_index);
        }
        if self.upstreams.is_empty() {
            self.upstream.validate("upstream")?;
        }
        if let Some(wanted) = &self.publish.upstream {
            let names: Vec<&str> = self.upstream_set().iter().map(|(name, _)| *name).collect();
            if !names.contains(&wanted.as_str()) {
                let reason = format!("{wanted:?} is not a configured upstream ({})", names.join(", "));
                return invalid("publish.upstream", &reason);
            }
        }
        Ok(())
    }

    fn validate(&self) -> Result<(), ConfigError> {
        self.validate_upstreams()?;
        self.limits.validate(self)?;
        if let Some(url) = &self.public_url {
            check_url("public_url", url)?;
            if url.contains('?') || url.contains('#') {
                return invalid("public_url", "must not have a query or fragment");
            }
        }
        if self.server.header_read_timeout.is_zero() {
            return invalid("server.header_read_timeout", "must be longer than 0s");
        }
        if self.server.max_connections == 0 {
            return invalid("server.max_connections", "must be at least 1");
        }
        if self.cache.max_size.is_some_and(|cap| cap.bytes() == 0) {
            return invalid("cache.max_size", "must be more than 0 (leave it unset for no cap)");
        }
        if self.cache.dir.as_os_str().is_empty() {
            return invalid("cache.dir", "must not be empty");
        }
        if self.tls.cert.is_some() != self.tls.key.is_some() {
            return invalid("tls.cert", "tls.cert and tls.key go together");
        }
        if let Err(error) = tracing_subscriber::EnvFilter::try_new(&self.log_filter) {
            let reason = format!(
                "{:?} is not a filter ({error}); e.g. \"info\", \"warn,nucache=debug\"",
                self.log_filter
            );
            return invalid("log_filter", &reason);
        }
        self.validate_credentials()
    }

    fn validate_credentials(&self) -> Result<(), ConfigError> {
        for (key, digests) in [
            ("publish.client_keys", &self.publish.client_keys),
            ("auth.read_keys", &self.auth.read_keys),
            ("admin.keys", &self.admin.keys),
        ] {
            if let Some(bad) = digests.iter().find(|d| !is_sha256_hex(d)) {
                let reason = format!("{bad:?} is not a SHA-256 hex digest (make one with `nucache hash-key`)");
                return invalid(key, &reason);
            }
        }
        for user in &self.auth.users {
            match user.split_once(':') {
                Some((name, digest)) if !name.is_empty() && is_sha256_hex(digest) => {}
                _ => return invalid("auth.users", "entries are \"name:sha256hex(password)\""),
            }
        }
        if self.auth.read == ReadAccess::Required && self.auth.users.is_empty() && self.auth.read_keys.is_empty() {
            return invalid("auth.read", "\"required\" needs auth.users or auth.read_keys");
        }
        Ok(())
    }

    fn normalized(mut self) -> Config {
        self.public_url = self.public_url.map(|u| u.trim_end_matches('/').to_string());
        let lower = |digests: &mut Vec<String>| digests.iter_mut().for_each(|d| *d = d.to_ascii_lowercase());
        lower(&mut self.publish.client_keys);
        lower(&mut self.auth.read_keys);
        lower(&mut self.admin.keys);
        self.upstream.auth_origins = self
            .upstream
            .auth_origins
            .iter()
            .map(|o| o.trim_end_matches('/').to_string())
            .collect();
        let trim = |u: &mut UpstreamConfig| {
            u.auth_origins = u
                .auth_origins
                .iter()
                .map(|o| o.trim_end_matches('/').to_string())
                .collect();
        };
        trim(&mut self.upstream);
        self.upstreams.values_mut().for_each(trim);
        // One named upstream is the upstream in use.
        if let Some(only) = self.upstreams.values().next().filter(|_| self.upstreams.len() == 1) {
            self.upstream = only.clone();
        }
        self
    }

    /// The configuration as one line of JSON, secrets left out (for the log).
    pub fn effective(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// The configuration as a TOML file, secrets left out (`check-config`).
    pub fn effective_toml(&self) -> String {
        toml::to_string_pretty(self).unwrap_or_else(|e| format!("# cannot show the configuration: {e}\n"))
    }

    /// What is legal but probably not meant; logged at start-up.
    pub fn warnings(&self) -> Vec<String> {
        let mut warnings = Vec::new();
        for (name, upstream) in self.upstream_set() {
            let key = match self.upstreams.is_empty() {
                true => "upstream.service_index".to_string(),
                false => format!("upstreams.{name}.service_index"),
            };
            if let Some(fix) = service_index_fix(&upstream.service_index) {
                warnings.push(format!(
                    "{key} {} does not end in index.json, as a NuGet V3 service index does: did you mean {fix}?",
                    upstream.service_index
                ));
            }
        }
        let publish = &self.publish;
        if publish.enabled && publish.mode == PublishMode::Keys {
            if publish.client_keys.is_empty() {
                warnings.push("publish.client_keys is empty: pushes through nucache are refused".to_string());
            } else if publish.api_key.is_none() {
                warnings.push("publish.api_key is not set: pushes reach the upstream without a key".to_string());
            }
        }
        warnings
    }

    /// The path of `public_url` (`/nuget` for `https://host/nuget`), or
    /// `""`: requests under it are served as if it were not there.
    pub fn public_path_prefix(&self) -> &str {
        let Some(url) = &self.public_url else {
            return "";
        };
        let after_scheme = url.split_once("://").map_or(url.as_str(), |(_, rest)| rest);
        after_scheme.find('/').map_or("", |slash| &after_scheme[slash..])
    }

    /// The base URL to print for users: `public_url`, or the address
    /// nucache listens on (`listening`: the bound one, when the port was 0).
    pub fn advertised_base(&self, listening: SocketAddr) -> String {
        let scheme = self.served_scheme();
        match &self.public_url {
            Some(url) => url.clone(),
            None if listening.ip().is_unspecified() => {
                format!("{scheme}://{}:{}", hostname(), listening.port())
            }
            None => format!("{scheme}://{listening}"),
        }
    }

    /// The scheme nucache itself serves: `https` with `tls.cert`.
    pub fn served_scheme(&self) -> &'static str {
        if self.tls.enabled() {
            "https"
        } else {
            "http"
        }
    }

    /// The `nuget.config` a user pastes to restore through nucache.
    pub fn nuget_config_snippet(&self, listening: SocketAddr) -> String {
        let base = self.advertised_base(listening);
        let insecure = if base.starts_with("http://") {
            " allowInsecureConnections=\"true\""
        } else {
            ""
        };
        format!(
            "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<configuration>\n  <packageSources>\n    <clear />\n    \
             <add key=\"nucache\" value=\"{base}/v3/index.json\" protocolVersion=\"3\"{insecure} />\n  \
             </packageSources>\n</configuration>\n"
        )
    }
}

impl UpstreamConfig {
    /// Reads `password_file` / `token_file`; `prefix`: `upstream` or
    /// `upstreams.NAME`, for the error's key.
    fn read_secrets(&mut self, prefix: &str) -> Result<(), ConfigError> {
        let (password, password_file) = (format!("{prefix}.password"), format!("{prefix}.password_file"));
        self.password = read_secret(
            (&password, &password_file),
            self.password.take(),
            self.password_file.as_deref(),
        )?;
        let (token, token_file) = (format!("{prefix}.token"), format!("{prefix}.token_file"));
        self.token = read_secret((&token, &token_file), self.token.take(), self.token_file.as_deref())?;
        Ok(())
    }

    fn read_ca_file(&mut self, prefix: &str) -> Result<(), ConfigError> {
        if let Some(file) = &self.ca_file {
            self.ca_certs = read_ca_file(&format!("{prefix}.ca_file"), file)?;
        }
        Ok(())
    }

    /// Every per-upstream check; errors name `{prefix}.KEY`.
    fn validate(&self, prefix: &str) -> Result<(), ConfigError> {
        let key = |name: &str| format!("{prefix}.{name}");
        check_url(&key("service_index"), &self.service_index)?;
        for (name, value) in [
            ("connect_timeout", self.connect_timeout),
            ("read_timeout", self.read_timeout),
            ("download_timeout", self.download_timeout),
        ] {
            if value.is_zero() {
                return invalid(&key(name), "must be longer than 0s");
            }
        }
        if self.max_redirects > 20 {
            return invalid(&key("max_redirects"), "must be at most 20");
        }
        if self.retries > 10 {
            return invalid(&key("retries"), "must be at most 10");
        }
        if self.username.is_some() != self.password.is_some() {
            let reason = format!("{} and {} go together", key("username"), key("password"));
            return invalid(&key("username"), &reason);
        }
        if self.password.is_some() && self.token.is_some() {
            return invalid(&key("token"), "use either a token or a username and password");
        }
        for origin in &self.auth_origins {
            check_url(&key("auth_origins"), origin)?;
        }
        if let Some(problem) = self.proxy.as_ref().and_then(ProxyUrl::problem) {
            return invalid(&key("proxy"), &problem);
        }
        if let Err(error) = crate::merge::mapping::check_patterns(&self.packages) {
            return invalid(&key("packages"), &error.to_string());
        }
        Ok(())
    }
}

fn invalid(key: &str, reason: &str) -> Result<(), ConfigError> {
    Err(ConfigError::Invalid {
        key: key.to_string(),
        reason: reason.to_string(),
    })
}

fn check_url(key: &str, url: &str) -> Result<(), ConfigError> {
    let parsed: http::Uri = url.parse().map_err(|e| ConfigError::Invalid {
        key: key.to_string(),
        reason: format!("{url:?} is not a URL: {e}"),
    })?;
    match (parsed.scheme_str(), parsed.authority()) {
        (Some("http" | "https"), Some(_)) => Ok(()),
        _ => invalid(key, &format!("{url:?} must be an absolute http:// or https:// URL")),
    }
}

/// The likely service index URL when `url` is not one (`.../v3/` ->
/// `.../v3/index.json`, `https://api.nuget.org` -> `.../v3/index.json`).
fn service_index_fix(url: &str) -> Option<String> {
    let path = url.split(['?', '#']).next().unwrap_or(url);
    if path.ends_with("index.json") {
        return None;
    }
    let base = path.trim_end_matches('/');
    let has_path = base.splitn(4, '/').nth(3).is_some_and(|p| !p.is_empty());
    Some(if has_path {
        format!("{base}/index.json")
    } else {
        format!("{base}/v3/index.json")
    })
}

/// The PEM certificates of a CA file; at least one.
fn read_ca_file(key: &str, file: &Path) -> Result<Vec<rustls_pki_types::CertificateDer<'static>>, ConfigError> {
    use rustls_pki_types::pem::PemObject;
    let fail = |reason: String| ConfigError::Invalid {
        key: key.to_string(),
        reason: format!("{}: {reason}", file.display()),
    };
    let certs = rustls_pki_types::CertificateDer::pem_file_iter(file)
        .map_err(|e| fail(e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| fail(format!("not PEM certificates: {e}")))?;
    if certs.is_empty() {
        return Err(fail("holds no PEM CERTIFICATE block".to_string()));
    }
    Ok(certs)
}

fn is_sha256_hex(text: &str) -> bool {
    text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit())
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use figment::providers::Serialized;

    fn with(pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let mut figment = Figment::new();
        for (key, value) in pairs {
            figment = figment.merge(Serialized::global(key, value));
        }
        Config::from_figment(figment)
    }

    #[test]
    fn defaults_are_valid() {
        let c = with(&[]).map_err(|e| e.to_string());
        assert_eq!(
            c.as_ref().map(|c| c.listen.to_string()),
            Ok("127.0.0.1:5000".to_string())
        );
        assert_eq!(
            c.map(|c| c.upstream.service_index),
            Ok("https://api.nuget.org/v3/index.json".to_string())
        );
    }

    #[test]
    fn errors_name_the_key() {
        let err = |pairs: &[(&str, &str)]| with(pairs).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(err(&[("upstream", "")]).contains("upstream"));
        let timeout = Figment::new().merge(Toml::string("[upstream]\nread_timeout = \"3 parsecs\""));
        let message = Config::from_figment(timeout)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(message.contains("upstream.read_timeout"), "{message}");
        let unknown = Figment::new().merge(Toml::string("lisen = \"127.0.0.1:1\""));
        let message = Config::from_figment(unknown)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(message.contains("lisen"), "{message}");
        let bad_url = Figment::new().merge(Toml::string("[upstream]\nservice_index = \"ftp://x/\""));
        let message = Config::from_figment(bad_url)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(message.contains("upstream.service_index"), "{message}");
    }

    #[test]
    fn toml_and_durations() {
        let toml = "listen = \"127.0.0.1:6000\"\npublic_url = \"https://nuget.corp/\"\n[upstream]\nread_timeout = \"500ms\"\n[ttl]\nversions = \"2m\"\n[cache]\nmemory = \"32MiB\"";
        let c = Config::from_figment(Figment::new().merge(Toml::string(toml))).map_err(|e| e.to_string());
        let c = c.map(|c| {
            (
                c.listen.port(),
                c.public_url,
                c.upstream.read_timeout,
                c.ttl.versions,
                c.cache.memory,
            )
        });
        assert_eq!(
            c,
            Ok((
                6000,
                Some("https://nuget.corp".to_string()),
                Duration::from_millis(500),
                Duration::from_secs(120),
                ByteSize::mib(32)
            ))
        );
    }

    #[test]
    fn a_service_index_without_index_json_gets_a_fix() {
        assert_eq!(service_index_fix("https://api.nuget.org/v3/index.json"), None);
        assert_eq!(
            service_index_fix("https://api.nuget.org/v3/").as_deref(),
            Some("https://api.nuget.org/v3/index.json")
        );
        assert_eq!(
            service_index_fix("https://api.nuget.org").as_deref(),
            Some("https://api.nuget.org/v3/index.json")
        );
        assert_eq!(
            service_index_fix("https://pkgs.dev.azure.com/o/_packaging/f/nuget/v3").as_deref(),
            Some("https://pkgs.dev.azure.com/o/_packaging/f/nuget/v3/index.json")
        );
    }

    #[test]
    fn with_tls_the_snippet_is_https_without_insecure_connections() {
        let mut c = Config::default();
        c.tls.cert = Some("cert.pem".into());
        c.tls.key = Some("key.pem".into());
        let snippet = c.nuget_config_snippet(c.listen);
        assert!(
            snippet.contains("value=\"https://127.0.0.1:5000/v3/index.json\""),
            "{snippet}"
        );
        assert!(!snippet.contains("allowInsecureConnections"), "{snippet}");
    }

    #[test]
    fn a_bad_proxy_or_ca_file_is_refused_naming_the_key() {
        let message = |pairs: &[(&str, &str)]| with(pairs).err().map(|e| e.to_string()).unwrap_or_default();
        let proxy = message(&[("upstream.proxy", "https://user:hidden@proxy:3128")]);
        assert!(proxy.starts_with("upstream.proxy: "), "{proxy}");
        assert!(!proxy.contains("hidden"), "{proxy}");
        let missing = message(&[("upstream.ca_file", "/nonexistent/ca.pem")]);
        assert!(
            missing.starts_with("upstream.ca_file: /nonexistent/ca.pem"),
            "{missing}"
        );
        let dir = tempfile::tempdir().expect("temp dir");
        let not_pem = dir.path().join("ca.pem");
        std::fs::write(&not_pem, "hello").expect("write");
        let empty = message(&[("upstream.ca_file", &not_pem.display().to_string())]);
        assert!(empty.contains("no PEM CERTIFICATE"), "{empty}");
    }

    fn from_toml(text: &str) -> Result<Config, String> {
        Config::from_figment(Figment::new().merge(Toml::string(text))).map_err(|e| e.to_string())
    }

    #[test]
    fn the_old_upstream_table_is_one_upstream_named_default() {
        let c = from_toml("[upstream]\nservice_index = \"https://feed.corp/v3/index.json\"");
        let set = c.as_ref().map(|c| {
            c.upstream_set()
                .iter()
                .map(|(name, u)| (name.to_string(), u.service_index.clone()))
                .collect::<Vec<_>>()
        });
        assert_eq!(
            set,
            Ok(vec![(
                "default".to_string(),
                "https://feed.corp/v3/index.json".to_string()
            )])
        );
    }

    #[test]
    fn one_named_upstream_is_the_upstream_in_use() {
        let toml = "[upstreams.acme]\nservice_index = \"https://acme.corp/v3/index.json\"\npriority = 1\n\
                    packages = [\"Acme.*\"]\nread_timeout = \"3s\"\n[publish]\nupstream = \"acme\"";
        let c = from_toml(toml);
        let used = c.as_ref().map(|c| {
            (
                c.upstream.service_index.clone(),
                c.upstream.read_timeout,
                c.upstream.packages.clone(),
                c.upstream_set().first().map(|(n, _)| n.to_string()),
            )
        });
        assert_eq!(
            used,
            Ok((
                "https://acme.corp/v3/index.json".to_string(),
                Duration::from_secs(3),
                vec!["Acme.*".to_string()],
                Some("acme".to_string())
            ))
        );
    }

    #[test]
    fn named_upstream_errors_name_their_key() {
        let error = |toml: &str| from_toml(toml).err().unwrap_or_default();
        let acme = "[upstreams.acme]\nservice_index = \"https://acme.corp/v3/index.json\"\n";
        assert!(error(&format!("{acme}packages = [\"Ac*me\"]")).starts_with("upstreams.acme.packages: "));
        assert!(error(&format!("{acme}read_timeout = \"0s\"")).starts_with("upstreams.acme.read_timeout: "));
        assert!(error(&format!("{acme}username = \"u\"")).starts_with("upstreams.acme.username: "));
        assert!(error(&format!("{acme}proxy = \"socks5://p:1080\"")).starts_with("upstreams.acme.proxy: "));
        assert!(error("[upstreams.Acme]\n").starts_with("upstreams.Acme: "));
        assert!(error(&format!("{acme}[upstream]\nretries = 2")).starts_with("upstream: use either"));
        let wrong_publish = error(&format!("{acme}[publish]\nupstream = \"nugetorg\""));
        assert!(wrong_publish.starts_with("publish.upstream: \"nugetorg\" is not a configured upstream (acme)"));
        let same = error(&format!(
            "{acme}[upstreams.other]\nservice_index = \"https://acme.corp/v3/index.json\""
        ));
        assert!(
            same.starts_with("upstreams.other.service_index: another upstream"),
            "{same}"
        );
    }

    #[test]
    fn several_upstreams_load_in_priority_order() {
        let toml = "[upstreams.nugetorg]\npriority = 10\n\
                    [upstreams.acme]\nservice_index = \"https://acme.corp/v3/index.json\"\npriority = 1\n\
                    packages = [\"Acme.*\"]";
        let names = from_toml(toml).map(|c| {
            c.upstream_set()
                .iter()
                .map(|(name, u)| (name.to_string(), u.packages.clone()))
                .collect::<Vec<_>>()
        });
        assert_eq!(
            names,
            Ok(vec![
                ("acme".to_string(), vec!["Acme.*".to_string()]),
                ("nugetorg".to_string(), Vec::new())
            ])
        );
    }

    #[test]
    fn tls_cert_and_key_go_together() {
        let message = with(&[("tls.cert", "/etc/nucache/cert.pem")])
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(message.starts_with("tls.cert: "), "{message}");
    }

    #[test]
    fn snippet_points_at_the_service_index() {
        let c = Config::default();
        assert!(c
            .nuget_config_snippet(c.listen)
            .contains("value=\"http://127.0.0.1:5000/v3/index.json\""));
    }
}
