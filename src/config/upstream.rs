//! One upstream's settings (`[upstream]`, `[upstreams.NAME]`): where its
//! service index is, how to reach it (timeouts, proxy, CA, credentials),
//! and which package ids it serves; read and checked at load.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::secret::read_secret;
use super::{check_url, invalid, ByteSize, ConfigError, ProxyUrl, Secret};

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
            max_concurrent_requests: super::limits::DEFAULT_UPSTREAM_REQUESTS,
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

impl UpstreamConfig {
    /// Reads `password_file` / `token_file`; `prefix`: `upstream` or
    /// `upstreams.NAME`, for the error's key.
    pub(super) fn read_secrets(&mut self, prefix: &str) -> Result<(), ConfigError> {
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

    pub(super) fn read_ca_file(&mut self, prefix: &str) -> Result<(), ConfigError> {
        if let Some(file) = &self.ca_file {
            self.ca_certs = read_ca_file(&format!("{prefix}.ca_file"), file)?;
        }
        Ok(())
    }

    /// These settings with no credentials of any kind: for a client that
    /// must not send them, or a copy that must not keep them.
    pub fn without_credentials(&self) -> UpstreamConfig {
        UpstreamConfig {
            username: None,
            password: None,
            password_file: None,
            token: None,
            token_file: None,
            auth_origins: Vec::new(),
            ..self.clone()
        }
    }

    /// Every per-upstream check; errors name `{prefix}.KEY`.
    pub(super) fn validate(&self, prefix: &str) -> Result<(), ConfigError> {
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

/// The likely service index URL when `url` is not one (`.../v3/` ->
/// `.../v3/index.json`, `https://api.nuget.org` -> `.../v3/index.json`).
pub(super) fn service_index_fix(url: &str) -> Option<String> {
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
