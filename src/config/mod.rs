//! Configuration: built-in defaults < TOML file (`--config PATH` or
//! `NUCACHE_CONFIG`) < environment variables `NUCACHE_*`, where `__`
//! separates nesting levels (`NUCACHE_UPSTREAM__READ_TIMEOUT=3s`).
//! Every key is documented in `config.example.toml`.

mod bytesize;
mod env;
mod fleet;
mod limits;
mod listen;
mod proxy_url;
mod secret;
mod sections;
mod upstream;
mod wording;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use figment::providers::{Format, Toml};
use figment::Figment;
use serde::{Deserialize, Serialize};

pub use bytesize::{ByteSize, MinFree};
pub use fleet::{FleetConfig, SharedConfig};
pub use limits::LimitsConfig;
pub use proxy_url::ProxyUrl;
use secret::read_secret;
pub use secret::{digest_hex, matches_any_digest, same, Secret};
pub use sections::*;
use upstream::service_index_fix;
pub use upstream::UpstreamConfig;
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
    pub shared: SharedConfig,
    pub fleet: FleetConfig,
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
            shared: SharedConfig::default(),
            fleet: FleetConfig::default(),
        }
    }
}

impl Config {
    /// The highest-priority upstream: its service index is the one clients see.
    pub fn primary_upstream(&self) -> (&str, &UpstreamConfig) {
        match self.upstream_set().first() {
            Some(first) => *first,
            None => ("default", &self.upstream),
        }
    }

    /// Every upstream's `(name, service index URL)`, in priority order.
    pub fn upstream_urls(&self) -> Vec<(String, String)> {
        self.upstream_set()
            .iter()
            .map(|(name, upstream)| (name.to_string(), upstream.service_index.clone()))
            .collect()
    }

    /// The settings (timeouts, proxy, CA) to reach `url` with: those of the
    /// configured upstream at the same origin, else the primary's (a feed
    /// client talking to nucache itself or to another feed).
    pub fn settings_for(&self, url: &str) -> &UpstreamConfig {
        let origin = |u: &str| {
            let after = u.split_once("://").map_or(u, |(_, rest)| rest);
            let host = after.split(['/', '?', '#']).next().unwrap_or(after);
            (
                u.split_once("://").map(|(s, _)| s.to_ascii_lowercase()),
                host.to_ascii_lowercase(),
            )
        };
        let wanted = origin(url);
        self.upstream_set()
            .into_iter()
            .find(|(_, upstream)| origin(&upstream.service_index) == wanted)
            .map_or(self.primary_upstream().1, |(_, upstream)| upstream)
    }

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
        self.shared.read_secrets()?;
        self.fleet.read_secrets()?;
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
    /// The one way to read upstream settings: nothing outside loading reads
    /// `[upstream]` itself, so one upstream is the case N = 1 of several.
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
        self.shared.validate()?;
        self.fleet.validate()?;
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
mod tests;
