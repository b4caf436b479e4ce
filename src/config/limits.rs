//! `[limits]`: the budgets of the work clients can start (background
//! refreshes, bytes of documents in flight, the wait for either, HTTP/2
//! streams, idle connections, import staging), and the per-upstream
//! `max_concurrent_requests`. The defaults are sized for a farm of about
//! 200 build agents; `config.example.toml` says why for each.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{invalid, ByteSize, Config, ConfigError};

/// `upstream.max_concurrent_requests` (and each `[upstreams.NAME]`'s).
pub const DEFAULT_UPSTREAM_REQUESTS: u32 = 64;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Background refreshes of expired documents running at once (the
    /// whole process); a refresh past it is skipped: the stale copy was
    /// served, the next request tries again.
    pub background_refreshes: u32,
    /// Bytes of metadata documents being read, inflated and rewritten at
    /// once, over every upstream.
    pub document_bytes: ByteSize,
    /// How long a request waits in the fair queue of a spent budget
    /// (upstream requests, document bytes) before it is answered 503.
    #[serde(with = "humantime_serde")]
    pub queue_timeout: Duration,
    /// Streams one HTTP/2 connection may have open at once.
    pub http2_max_streams: u32,
    /// A connection (HTTP/1.1 keep-alive or HTTP/2) with no request in
    /// flight for this long is closed.
    #[serde(with = "humantime_serde")]
    pub idle_timeout: Duration,
    /// Largest size of one `nucache import --url` upload, staged below
    /// `{cache.dir}/import/` (413 beyond it).
    pub import_staging: ByteSize,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            background_refreshes: 32,
            document_bytes: ByteSize::mib(256),
            queue_timeout: Duration::from_secs(20),
            http2_max_streams: 100,
            idle_timeout: Duration::from_secs(90),
            import_staging: ByteSize::mib(32 * 1024),
        }
    }
}

/// Budgets count in `u32` permits (tokio's semaphore takes that many at once).
const MOST_PERMITS: u64 = u32::MAX as u64;

impl LimitsConfig {
    /// Every check of `[limits]` and of each upstream's
    /// `max_concurrent_requests`; errors name the key.
    pub(super) fn validate(&self, config: &Config) -> Result<(), ConfigError> {
        for (key, value) in [
            ("limits.background_refreshes", u64::from(self.background_refreshes)),
            ("limits.http2_max_streams", u64::from(self.http2_max_streams)),
            ("limits.import_staging", self.import_staging.bytes()),
        ] {
            if value == 0 {
                return invalid(key, "must be at least 1");
            }
        }
        for (key, value) in [
            ("limits.queue_timeout", self.queue_timeout),
            ("limits.idle_timeout", self.idle_timeout),
        ] {
            if value.is_zero() {
                return invalid(key, "must be longer than 0s");
            }
        }
        let bytes = self.document_bytes.bytes();
        if bytes > MOST_PERMITS {
            return invalid("limits.document_bytes", "must be less than 4GiB");
        }
        for (prefix, upstream) in upstream_keys(config) {
            if upstream.max_concurrent_requests == 0 {
                return invalid(&format!("{prefix}.max_concurrent_requests"), "must be at least 1");
            }
            // A document is held twice at its peak: as received and decoded.
            let largest = upstream.max_document_size.bytes().saturating_mul(2);
            if bytes < largest {
                let reason = format!(
                    "must be at least twice {prefix}.max_document_size ({}): one document is held as received and decoded",
                    upstream.max_document_size
                );
                return invalid("limits.document_bytes", &reason);
            }
        }
        Ok(())
    }
}

/// Each upstream with the prefix of its keys (`upstream`, `upstreams.NAME`).
fn upstream_keys(config: &Config) -> Vec<(String, &super::UpstreamConfig)> {
    if config.upstreams.is_empty() {
        return vec![("upstream".to_string(), &config.upstream)];
    }
    config
        .upstreams
        .iter()
        .map(|(name, upstream)| (format!("upstreams.{name}"), upstream))
        .collect()
}

#[cfg(test)]
mod tests {
    use figment::providers::{Format, Toml};
    use figment::Figment;

    use super::*;

    fn error(toml: &str) -> String {
        Config::from_figment(Figment::new().merge(Toml::string(toml)))
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default()
    }

    #[test]
    fn bad_limits_are_refused_naming_the_key() {
        assert!(error("[limits]\nbackground_refreshes = 0").starts_with("limits.background_refreshes: "));
        assert!(error("[limits]\nqueue_timeout = \"0s\"").starts_with("limits.queue_timeout: "));
        assert!(error("[limits]\ndocument_bytes = \"5GiB\"").starts_with("limits.document_bytes: "));
        let small = error("[limits]\ndocument_bytes = \"100MiB\"");
        assert!(small.contains("twice upstream.max_document_size (64MiB)"), "{small}");
        let named =
            "[upstreams.acme]\nservice_index = \"https://acme.corp/v3/index.json\"\nmax_concurrent_requests = 0";
        assert!(error(named).starts_with("upstreams.acme.max_concurrent_requests: "));
    }

    #[test]
    fn limits_come_from_the_file() {
        let toml = "[limits]\nbackground_refreshes = 4\nidle_timeout = \"5s\"\n[upstream]\nmax_concurrent_requests = 3";
        let config = Config::from_figment(Figment::new().merge(Toml::string(toml))).map_err(|e| e.to_string());
        let got = config.map(|c| {
            (
                c.limits.background_refreshes,
                c.limits.idle_timeout,
                c.upstream.max_concurrent_requests,
            )
        });
        assert_eq!(got, Ok((4, Duration::from_secs(5), 3)));
    }
}
