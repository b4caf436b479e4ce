//! SIGHUP: re-load the configuration and apply what can change while
//! nucache serves (secrets read from files, the log filter, the TLS
//! certificate for new connections); say what was
//! reloaded and which changed settings need a restart. A configuration
//! that no longer loads is reported and the running one kept.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use crate::config::Config;
use crate::logging::Logging;
use crate::server::Reloader;
use crate::shutdown::Hangups;

/// Keys applied live; every other change waits for a restart.
const LIVE: [&str; 5] = [
    "log_filter",
    "tls.cert",
    "tls.key",
    "publish.api_key",
    "publish.api_key_file",
];
/// Keys of every upstream (`upstream.KEY`, `upstreams.NAME.KEY`) applied
/// live: the credentials SIGHUP re-reads.
const LIVE_PER_UPSTREAM: [&str; 4] = ["password", "password_file", "token", "token_file"];

/// Whether a change of `key` takes effect without a restart.
fn is_live(key: &str) -> bool {
    if LIVE.contains(&key) {
        return true;
    }
    let per_upstream = match key.strip_prefix("upstreams.") {
        Some(rest) => rest.split_once('.').map(|(_, key)| key),
        None => key.strip_prefix("upstream."),
    };
    per_upstream.is_some_and(|key| LIVE_PER_UPSTREAM.contains(&key))
}

/// What reloading needs: where the configuration came from, the one in use.
pub struct Reload {
    pub file: Option<PathBuf>,
    pub running: Config,
    pub server: Reloader,
    pub logging: Logging,
}

impl Reload {
    /// Reloads on every SIGHUP, for ever (the task is dropped at shutdown).
    pub async fn on_hangups(self, mut hangups: Hangups) {
        loop {
            hangups.next().await;
            self.once();
        }
    }

    pub fn once(&self) {
        let fresh = match Config::load(self.file.as_deref()) {
            Ok(fresh) => fresh,
            Err(error) => {
                tracing::error!(%error, "SIGHUP: the configuration does not load; nothing changed");
                return;
            }
        };
        let mut reloaded: Vec<String> = self
            .server
            .reload_secrets(&fresh)
            .into_iter()
            .map(String::from)
            .collect();
        match self.server.reload_certificate(&fresh) {
            Ok(true) => reloaded.push("TLS certificate (new connections)".to_string()),
            Ok(false) if fresh.tls.enabled() => {
                tracing::error!("SIGHUP: tls.cert is set, but nucache started on plain http: restart to serve https");
            }
            Ok(false) => {}
            Err(error) => tracing::error!(%error, "SIGHUP: TLS certificate unchanged"),
        }
        reloaded.push(format!("log filter {}", self.logging.describe(&fresh.log_filter)));
        let restart = changed_keys(&self.running, &fresh);
        let restart = match restart.is_empty() {
            true => "-".to_string(),
            false => restart.join(", "),
        };
        // At warn, so that an operator sees the reload whatever the filter.
        tracing::warn!(
            reloaded = %reloaded.join(", "),
            need_restart = %restart,
            "SIGHUP: configuration reloaded"
        );
        // Last, so that the line above passes the filter it replaces.
        if let Err(error) = self.logging.apply(&fresh.log_filter) {
            tracing::error!(%error, "SIGHUP: log filter unchanged");
        }
    }
}

/// Keys whose values differ (secrets compare as `***`, so only their
/// `_file` keys can show), except those applied live.
fn changed_keys(running: &Config, fresh: &Config) -> Vec<String> {
    let (old, new) = (flatten(running), flatten(fresh));
    let keys: BTreeSet<&String> = old
        .keys()
        .chain(new.keys())
        .filter(|key| old.get(*key) != new.get(*key) && !is_live(key))
        .collect();
    keys.into_iter().cloned().collect()
}

fn flatten(config: &Config) -> BTreeMap<String, serde_json::Value> {
    fn walk(prefix: String, value: serde_json::Value, out: &mut BTreeMap<String, serde_json::Value>) {
        match value {
            serde_json::Value::Object(fields) => {
                for (name, inner) in fields {
                    let key = if prefix.is_empty() {
                        name
                    } else {
                        format!("{prefix}.{name}")
                    };
                    walk(key, inner, out);
                }
            }
            leaf => {
                out.insert(prefix, leaf);
            }
        }
    }
    let mut out = BTreeMap::new();
    if let Ok(value) = serde_json::to_value(config) {
        walk(String::new(), value, &mut out);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_changes_that_are_not_applied_live_need_a_restart() {
        let running = Config::default();
        let mut fresh = Config {
            log_filter: "warn".into(),
            ..Config::default()
        };
        fresh.publish.api_key_file = Some("key".into());
        assert!(changed_keys(&running, &fresh).is_empty());
        fresh.listen = "127.0.0.1:6000".parse().expect("address");
        fresh.ttl.versions = std::time::Duration::from_secs(1);
        assert_eq!(changed_keys(&running, &fresh), ["listen", "ttl.versions"]);
    }

    #[test]
    fn every_upstream_s_credentials_are_applied_live() {
        let mut running = Config::default();
        running.upstreams.insert("acme".into(), Default::default());
        let mut fresh = running.clone();
        if let Some(acme) = fresh.upstreams.get_mut("acme") {
            acme.token_file = Some("token".into());
            acme.read_timeout = std::time::Duration::from_secs(1);
        }
        fresh.upstream.password_file = Some("password".into());
        assert_eq!(changed_keys(&running, &fresh), ["upstreams.acme.read_timeout"]);
    }
}
