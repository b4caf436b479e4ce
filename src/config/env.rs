//! The `NUCACHE_*` environment layer. Unlike the TOML file (where an
//! unknown key is a typo and stops start-up), the environment is shared
//! with whatever runs nucache: Kubernetes injects `NUCACHE_PORT`,
//! `NUCACHE_SERVICE_HOST`... into every pod of a namespace with a Service
//! named `nucache` (Docker links do the same). So variables that match no
//! key are left out and reported once; service-link variables silently.

use std::collections::BTreeSet;
use std::sync::Arc;

use figment::providers::Env;

use super::{suggest, Config, ADMIN_KEY_ENV, CONFIG_ENV, ENV_PREFIX};

/// Every key path of the configuration (`listen`, `upstream`,
/// `upstream.read_timeout`...), taken from the serialized defaults so that
/// a new key is known without being listed here too.
pub(super) fn known_keys() -> BTreeSet<String> {
    let mut keys = BTreeSet::new();
    if let Ok(value) = serde_json::to_value(Config::default()) {
        collect_keys("", &value, &mut keys);
    }
    keys
}

fn collect_keys(prefix: &str, value: &serde_json::Value, keys: &mut BTreeSet<String>) {
    let serde_json::Value::Object(fields) = value else {
        return;
    };
    for (name, inner) in fields {
        let key = if prefix.is_empty() {
            name.clone()
        } else {
            format!("{prefix}.{name}")
        };
        collect_keys(&key, inner, keys);
        keys.insert(key);
    }
}

/// Whether `key` (lower case) names a configuration key: one of `known`,
/// or a key of a named upstream (`upstreams.NAME[.KEY]`, where KEY is a
/// key of `[upstream]`): those tables are a map, so that variables can
/// make them (`NUCACHE_UPSTREAMS__ACME__SERVICE_INDEX`).
fn is_known(known: &BTreeSet<String>, key: &str) -> bool {
    if known.contains(key) {
        return true;
    }
    let Some(rest) = key.strip_prefix("upstreams.") else {
        return false;
    };
    match rest.split_once('.') {
        None => !rest.is_empty(),
        Some((name, inner)) => !name.is_empty() && known.contains(&format!("upstream.{inner}")),
    }
}

/// The environment provider, limited to variables that name a key.
pub(super) fn provider() -> Env {
    let known = Arc::new(known_keys());
    all().filter(move |key| is_known(&known, key.as_str().to_ascii_lowercase().as_str()))
}

/// Every `NUCACHE_*` variable but `NUCACHE_CONFIG` and `NUCACHE_ADMIN_KEY`
/// (the admin commands' key), as dotted keys.
fn all() -> Env {
    let not_keys = [CONFIG_ENV, ADMIN_KEY_ENV].map(|name| name.trim_start_matches(ENV_PREFIX).to_ascii_lowercase());
    Env::prefixed(ENV_PREFIX)
        .filter(move |key| !not_keys.iter().any(|name| key.as_str().eq_ignore_ascii_case(name)))
        .split("__")
}

/// One warning naming the variables that match no key (with a did-you-mean
/// for each), or none; Kubernetes service links are not mentioned.
pub(super) fn unknown_variables_warning() -> Option<String> {
    let known = known_keys();
    let names: Vec<String> = all()
        .iter()
        .map(|(key, _)| key.as_str().to_ascii_lowercase())
        .filter(|key| !is_known(&known, key) && !is_service_link(key))
        .map(|key| {
            let name = variable_name(&key);
            let candidates = known.iter().map(|k| variable_name(k));
            match suggest(&name, candidates) {
                Some(close) => format!("{name} (did you mean {close}?)"),
                None => name,
            }
        })
        .collect();
    (!names.is_empty()).then(|| {
        format!(
            "ignoring environment variables that match no configuration key: {}",
            names.join(", ")
        )
    })
}

/// `upstream.read_timeout` -> `NUCACHE_UPSTREAM__READ_TIMEOUT`.
pub(crate) fn variable_name(key: &str) -> String {
    format!("{ENV_PREFIX}{}", key.replace('.', "__").to_ascii_uppercase())
}

/// Kubernetes (and Docker link) variables for a service named `nucache`:
/// `NUCACHE_PORT`, `NUCACHE_PORT_5000_TCP[_PROTO|_PORT|_ADDR]`,
/// `NUCACHE_SERVICE_HOST`, `NUCACHE_SERVICE_PORT[_NAME]`.
fn is_service_link(key: &str) -> bool {
    key == "port"
        || key.starts_with("port_")
        || key == "service_host"
        || key == "service_port"
        || key.starts_with("service_port_")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn knows_nested_keys_and_their_tables() {
        let keys = known_keys();
        for key in [
            "listen",
            "upstream",
            "upstream.read_timeout",
            "cache.dir",
            "publish.api_key_file",
        ] {
            assert!(keys.contains(key), "{key} missing from {keys:?}");
        }
        assert!(!keys.contains("port"));
    }

    #[test]
    fn service_links_are_recognised() {
        for key in [
            "port",
            "port_5000_tcp",
            "port_5000_tcp_addr",
            "service_host",
            "service_port",
            "service_port_http",
        ] {
            assert!(is_service_link(key), "{key}");
        }
        for key in ["listen", "upstream.read_timeout", "portal", "service"] {
            assert!(!is_service_link(key), "{key}");
        }
    }

    #[test]
    fn variable_names_use_double_underscores() {
        assert_eq!(variable_name("upstream.read_timeout"), "NUCACHE_UPSTREAM__READ_TIMEOUT");
        assert_eq!(variable_name("listen"), "NUCACHE_LISTEN");
    }
}
