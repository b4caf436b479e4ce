//! `proxy = "http://user:pass@host:port"`: an HTTP proxy whose credentials
//! are a secret: `Debug` and `Serialize` show the password as `***`.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

#[derive(Clone, PartialEq, Eq)]
pub struct ProxyUrl(String);

impl ProxyUrl {
    /// The URL itself, credentials included, for the proxy matcher only.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// `http://user:***@host:port` (or the URL, when it has no password).
    pub fn redacted(&self) -> String {
        let Some((scheme, rest)) = self.0.split_once("://") else {
            return "***".to_string();
        };
        match rest.split_once('@') {
            Some((userinfo, host)) => {
                let user = userinfo.split_once(':').map_or(userinfo, |(user, _)| user);
                format!("{scheme}://{user}:***@{host}")
            }
            None => self.0.clone(),
        }
    }

    /// Why this is not a usable proxy URL, if it is not.
    pub(super) fn problem(&self) -> Option<String> {
        let shown = self.redacted();
        let uri: http::Uri = match self.0.parse() {
            Ok(uri) => uri,
            Err(_) => return Some(format!("{shown:?} is not a URL")),
        };
        if uri.scheme_str() != Some("http") {
            return Some(format!(
                "{shown:?}: the proxy is spoken to in plain http (http://HOST:PORT)"
            ));
        }
        if uri.host().is_none_or(str::is_empty) {
            return Some(format!("{shown:?} names no host"));
        }
        if !matches!(uri.path(), "" | "/") || uri.query().is_some() {
            return Some(format!("{shown:?}: a proxy URL has no path"));
        }
        None
    }
}

impl fmt::Debug for ProxyUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

impl Serialize for ProxyUrl {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.redacted())
    }
}

impl<'de> Deserialize<'de> for ProxyUrl {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer).map(ProxyUrl)
    }
}

impl From<&str> for ProxyUrl {
    fn from(url: &str) -> Self {
        ProxyUrl(url.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_password_never_shows() {
        let proxy = ProxyUrl::from("http://build:s3cret@proxy.corp:3128");
        assert_eq!(proxy.redacted(), "http://build:***@proxy.corp:3128");
        assert_eq!(format!("{proxy:?}"), "http://build:***@proxy.corp:3128");
        let json = serde_json::to_string(&proxy).unwrap_or_default();
        assert!(!json.contains("s3cret"), "{json}");
        assert_eq!(ProxyUrl::from("http://proxy:3128").redacted(), "http://proxy:3128");
    }

    #[test]
    fn only_plain_http_proxies_with_a_host() {
        assert_eq!(ProxyUrl::from("http://u:p@proxy:3128").problem(), None);
        assert!(ProxyUrl::from("https://proxy:3128").problem().is_some());
        assert!(ProxyUrl::from("socks5://proxy:1080").problem().is_some());
        assert!(ProxyUrl::from("http://proxy:3128/path").problem().is_some());
        let message = ProxyUrl::from("ftp://u:hidden@proxy").problem().unwrap_or_default();
        assert!(!message.contains("hidden"), "{message}");
    }
}
