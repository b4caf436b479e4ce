//! Configuration: built-in defaults < TOML file (`--config PATH` or
//! `NUCACHE_CONFIG`) < environment variables `NUCACHE_*`, where `__`
//! separates nesting levels (`NUCACHE_UPSTREAM__READ_TIMEOUT=3s`).
//! Every key is documented in `config.example.toml`.

mod bytesize;
mod env;
mod listen;
mod secret;
mod wording;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::providers::{Format, Toml};
use figment::Figment;
use serde::{Deserialize, Serialize};

pub use bytesize::{ByteSize, MinFree};
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
    Invalid { key: &'static str, reason: String },
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
    pub upstream: UpstreamConfig,
    pub cache: CacheConfig,
    pub ttl: TtlConfig,
    pub server: ServerConfig,
    pub publish: PublishConfig,
    pub auth: AuthConfig,
    pub admin: AdminConfig,
    pub log: LogConfig,
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

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct UpstreamConfig {
    pub service_index: String,
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
            cache: CacheConfig::default(),
            ttl: TtlConfig::default(),
            server: ServerConfig::default(),
            publish: PublishConfig::default(),
            auth: AuthConfig::default(),
            admin: AdminConfig::default(),
            log: LogConfig::default(),
        }
    }
}

impl Default for UpstreamConfig {
    fn default() -> Self {
        UpstreamConfig {
            service_index: "https://api.nuget.org/v3/index.json".into(),
            connect_timeout: Duration::from_secs(5),
            read_timeout: Duration::from_secs(30),
            download_timeout: Duration::from_secs(30 * 60),
            retries: 3,
            max_redirects: 5,
            max_document_size: ByteSize::mib(64),
            username: None,
            password: None,
            password_file: None,
            token: None,
            token_file: None,
            auth_origins: Vec::new(),
            breaker_threshold: 5,
            breaker_cooldown: Duration::from_secs(10),
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
        let config = config.with_secret_files()?;
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
        self.upstream.password = read_secret(
            ("upstream.password", "upstream.password_file"),
            self.upstream.password.take(),
            self.upstream.password_file.as_deref(),
        )?;
        self.upstream.token = read_secret(
            ("upstream.token", "upstream.token_file"),
            self.upstream.token.take(),
            self.upstream.token_file.as_deref(),
        )?;
        Ok(self)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        check_url("upstream.service_index", &self.upstream.service_index)?;
        if let Some(url) = &self.public_url {
            check_url("public_url", url)?;
            if url.contains('?') || url.contains('#') {
                return invalid("public_url", "must not have a query or fragment");
            }
        }
        for (key, value) in [
            ("upstream.connect_timeout", self.upstream.connect_timeout),
            ("upstream.read_timeout", self.upstream.read_timeout),
            ("upstream.download_timeout", self.upstream.download_timeout),
            ("server.header_read_timeout", self.server.header_read_timeout),
        ] {
            if value.is_zero() {
                return invalid(key, "must be longer than 0s");
            }
        }
        if self.upstream.max_redirects > 20 {
            return invalid("upstream.max_redirects", "must be at most 20");
        }
        if self.upstream.retries > 10 {
            return invalid("upstream.retries", "must be at most 10");
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
        let upstream = &self.upstream;
        if upstream.username.is_some() != upstream.password.is_some() {
            return invalid(
                "upstream.username",
                "upstream.username and upstream.password go together",
            );
        }
        if upstream.password.is_some() && upstream.token.is_some() {
            return invalid("upstream.token", "use either a token or a username and password");
        }
        for origin in &upstream.auth_origins {
            check_url("upstream.auth_origins", origin)?;
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
        if let Some(fix) = service_index_fix(&self.upstream.service_index) {
            warnings.push(format!(
                "upstream.service_index {} does not end in index.json, as a NuGet V3 service index does: \
                 did you mean {fix}?",
                self.upstream.service_index
            ));
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
        match &self.public_url {
            Some(url) => url.clone(),
            None if listening.ip().is_unspecified() => {
                format!("http://{}:{}", hostname(), listening.port())
            }
            None => format!("http://{listening}"),
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

fn invalid(key: &'static str, reason: &str) -> Result<(), ConfigError> {
    Err(ConfigError::Invalid {
        key,
        reason: reason.to_string(),
    })
}

fn check_url(key: &'static str, url: &str) -> Result<(), ConfigError> {
    let parsed: http::Uri = url.parse().map_err(|e| ConfigError::Invalid {
        key,
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
    fn snippet_points_at_the_service_index() {
        let c = Config::default();
        assert!(c
            .nuget_config_snippet(c.listen)
            .contains("value=\"http://127.0.0.1:5000/v3/index.json\""));
    }
}
