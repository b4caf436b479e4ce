//! Who may do what: reads (`auth.read`) and publish calls (`publish.mode`).
//! Presented secrets are hashed and compared with every configured digest
//! in constant time; none is ever logged or echoed.

use base64::Engine as _;
use http::header::{HeaderMap, HeaderValue, AUTHORIZATION};

use crate::config::{digest_hex, matches_any_digest, same, AuthConfig, Config, PublishMode, ReadAccess};
use crate::error::ClientError;

pub(crate) const API_KEY_HEADER: &str = "x-nuget-apikey";

/// What a successful publish check decided to send upstream as the key.
pub(crate) enum UpstreamKey {
    /// nucache's own key (mode `keys`; the proxy holds the current one,
    /// which SIGHUP may have re-read).
    Server,
    /// The client's key, unchanged (mode `passthrough`).
    Client(Option<HeaderValue>),
}

/// Who a request authenticated as, for the access log: a configured user
/// name, or the first 8 hex digits of the key's SHA-256 (as listed in the
/// configuration), never the key.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) enum Identity {
    #[default]
    Anonymous,
    User(String),
    Key(String),
    /// A peer of the fleet (it presented the fleet key), and the node it
    /// says it is (its hop header).
    Peer(Option<String>),
}

impl Identity {
    fn of_key(key: &str) -> Identity {
        Identity::Key(digest_hex(key)[..8].to_string())
    }
}

impl std::fmt::Display for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Identity::Anonymous => f.write_str("-"),
            Identity::User(name) => f.write_str(name),
            Identity::Key(prefix) => write!(f, "key:{prefix}"),
            Identity::Peer(None) => f.write_str("fleet-peer"),
            Identity::Peer(Some(node)) => write!(f, "fleet-peer:{}", node.chars().take(100).collect::<String>()),
        }
    }
}

/// Checks read credentials; open feeds accept everyone (anonymously).
pub(crate) fn check_read(config: &Config, headers: &HeaderMap) -> Result<Identity, ClientError> {
    let auth = &config.auth;
    if auth.read == ReadAccess::Open {
        return Ok(Identity::Anonymous);
    }
    // Keys that may publish may read too.
    let keys = || auth.read_keys.iter().chain(&config.publish.client_keys);
    if let Some(key) = api_key(headers) {
        return if matches_any_digest(key, keys()) {
            Ok(Identity::of_key(key))
        } else {
            Err(ClientError::Unauthorized("the API key is not valid for reading"))
        };
    }
    match basic_credentials(headers) {
        Some((user, password)) if user_matches(auth, &user, &password) => Ok(Identity::User(user)),
        Some((_, password)) if matches_any_digest(&password, keys()) => Ok(Identity::of_key(&password)),
        Some(_) => Err(ClientError::Unauthorized("invalid credentials")),
        None => Err(ClientError::Unauthorized("credentials required")),
    }
}

/// Whether a request comes from a peer of the fleet: `Ok(false)` without
/// `X-Nucache-Fleet-Key`, `Ok(true)` with this fleet's key (compared in
/// constant time; a peer may then read as a client with a read key), and
/// 403 with any other key, or on a node that is in no fleet.
pub(crate) fn check_fleet(config: &Config, headers: &HeaderMap) -> Result<bool, ClientError> {
    let Some(presented) = headers.get(crate::fleet::KEY_HEADER) else {
        return Ok(false);
    };
    let key = config.fleet.key.as_ref().filter(|_| config.fleet.enabled());
    match (key, presented.to_str()) {
        (Some(key), Ok(presented)) if same(presented, key.expose()) => Ok(true),
        (None, _) => Err(ClientError::Forbidden(
            "X-Nucache-Fleet-Key refused: this node is in no fleet (fleet.peers is empty)",
        )),
        _ => Err(ClientError::Forbidden(
            "X-Nucache-Fleet-Key is not this fleet's key (fleet.key must be the same on every node)",
        )),
    }
}

/// Checks a publish call's key and decides which key goes upstream; the
/// identity is the key's (in passthrough mode too, unchecked).
pub(crate) fn check_publish(config: &Config, headers: &HeaderMap) -> Result<(UpstreamKey, Identity), ClientError> {
    let identity = api_key(headers).map(Identity::of_key).unwrap_or_default();
    check_publish_key(config, headers).map(|key| (key, identity))
}

fn check_publish_key(config: &Config, headers: &HeaderMap) -> Result<UpstreamKey, ClientError> {
    let publish = &config.publish;
    match publish.mode {
        PublishMode::Passthrough => Ok(UpstreamKey::Client(headers.get(API_KEY_HEADER).cloned())),
        PublishMode::Keys if publish.client_keys.is_empty() => Err(ClientError::Forbidden(
            "publishing through nucache is not configured: list the SHA-256 of each client key in \
             publish.client_keys (`nucache hash-key` makes one) and set publish.api_key",
        )),
        PublishMode::Keys => match api_key(headers) {
            None => Err(ClientError::KeyRequired("an API key is required to publish")),
            Some(key) if matches_any_digest(key, &publish.client_keys) => Ok(UpstreamKey::Server),
            Some(_) => Err(ClientError::Forbidden(
                "the API key is not valid for publishing through nucache",
            )),
        },
    }
}

/// Checks an admin call's key (`X-NuGet-ApiKey`, or the Basic password
/// with any user name) against `admin.keys`. Without admin keys the admin
/// API does not exist (404); no key is 401, a wrong one 403.
pub(crate) fn check_admin(config: &Config, headers: &HeaderMap) -> Result<Identity, ClientError> {
    let keys = &config.admin.keys;
    if keys.is_empty() {
        return Err(ClientError::Route(crate::route::RouteError::NotFound));
    }
    let presented = match (api_key(headers), basic_credentials(headers)) {
        (Some(key), _) => key.to_string(),
        (None, Some((_, password))) => password,
        (None, None) => return Err(ClientError::Unauthorized("an admin key is required")),
    };
    if matches_any_digest(&presented, keys) {
        Ok(Identity::of_key(&presented))
    } else {
        Err(ClientError::Forbidden("the key is not an admin key"))
    }
}

fn api_key(headers: &HeaderMap) -> Option<&str> {
    headers.get(API_KEY_HEADER).and_then(|v| v.to_str().ok())
}

/// `Authorization: Basic base64(user:password)`.
fn basic_credentials(headers: &HeaderMap) -> Option<(String, String)> {
    let value = headers.get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, encoded) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD.decode(encoded.trim()).ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (user, password) = text.split_once(':')?;
    Some((user.to_string(), password.to_string()))
}

/// `users` entries are `name:sha256hex(password)`; every entry is checked.
fn user_matches(auth: &AuthConfig, user: &str, password: &str) -> bool {
    let digest = crate::config::digest_hex(password);
    let mut found = false;
    for entry in &auth.users {
        if let Some((name, expected)) = entry.split_once(':') {
            found |= same(name, user) & same(expected, &digest);
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Secret;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            if let (Ok(name), Ok(value)) = (http::HeaderName::try_from(*name), HeaderValue::from_str(value)) {
                map.insert(name, value);
            }
        }
        map
    }

    fn basic(user: &str, password: &str) -> String {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
        )
    }

    fn config() -> Config {
        let mut config = Config::default();
        config.auth.read = ReadAccess::Required;
        config.auth.users = vec![format!("alice:{}", digest_hex("wonderland"))];
        config.auth.read_keys = vec![digest_hex("reader-key")];
        config.publish.client_keys = vec![digest_hex("client-key")];
        config.publish.api_key = Some(Secret::new("upstream-key"));
        config
    }

    #[test]
    fn reads_need_valid_credentials_when_required() {
        let config = config();
        assert!(check_read(&config, &headers(&[])).is_err());
        assert!(check_read(&config, &headers(&[("authorization", &basic("alice", "wonderland"))])).is_ok());
        assert!(check_read(&config, &headers(&[("authorization", &basic("alice", "wrong"))])).is_err());
        assert!(check_read(&config, &headers(&[("authorization", &basic("bob", "wonderland"))])).is_err());
        assert!(check_read(&config, &headers(&[("authorization", &basic("any", "reader-key"))])).is_ok());
        assert!(check_read(&config, &headers(&[("x-nuget-apikey", "client-key")])).is_ok());
        assert!(check_read(&config, &headers(&[("x-nuget-apikey", "nope")])).is_err());
        assert!(check_read(&Config::default(), &headers(&[])).is_ok());
    }

    #[test]
    fn identities_name_the_user_or_the_key_digest_never_the_key() {
        let config = config();
        let who = |pairs: &[(&str, &str)]| check_read(&config, &headers(pairs)).map(|i| i.to_string()).ok();
        assert_eq!(
            who(&[("authorization", &basic("alice", "wonderland"))]).as_deref(),
            Some("alice")
        );
        let reader = format!("key:{}", &digest_hex("reader-key")[..8]);
        assert_eq!(who(&[("authorization", &basic("any", "reader-key"))]), Some(reader));
        let client = format!("key:{}", &digest_hex("client-key")[..8]);
        assert_eq!(who(&[("x-nuget-apikey", "client-key")]), Some(client));
        assert_eq!(
            check_read(&Config::default(), &headers(&[]))
                .map(|i| i.to_string())
                .ok()
                .as_deref(),
            Some("-")
        );
    }

    #[test]
    fn publishing_needs_a_listed_client_key() {
        let config = config();
        assert!(matches!(
            check_publish(&config, &headers(&[])),
            Err(ClientError::KeyRequired(_))
        ));
        assert!(matches!(
            check_publish(&config, &headers(&[("x-nuget-apikey", "wrong")])),
            Err(ClientError::Forbidden(_))
        ));
        assert!(matches!(
            check_publish(&config, &headers(&[("x-nuget-apikey", "client-key")])),
            Ok((UpstreamKey::Server, Identity::Key(prefix))) if prefix == digest_hex("client-key")[..8]
        ));
        let unconfigured = Config::default();
        let refused = check_publish(&unconfigured, &headers(&[("x-nuget-apikey", "client-key")]));
        assert!(matches!(refused, Err(ClientError::Forbidden(reason)) if reason.contains("publish.client_keys")));
    }

    #[test]
    fn passthrough_forwards_the_client_key() {
        let mut config = config();
        config.publish.mode = PublishMode::Passthrough;
        match check_publish(&config, &headers(&[("x-nuget-apikey", "their-own")])) {
            Ok((UpstreamKey::Client(Some(key)), _)) => assert_eq!(key, "their-own"),
            _ => panic!("passthrough must forward the client's key"),
        }
    }
}
