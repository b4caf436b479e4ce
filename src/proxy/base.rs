//! The public base URL of a request: where the client reaches nucache, and
//! so what every rewritten URL in its answer starts with.

use http::header::{HeaderMap, HOST};
use http::request::Parts;

use crate::config::Config;
use crate::error::ClientError;

/// `public_url` when configured; otherwise `http://{Host}`, or the
/// forwarded host and scheme when `trust_forwarded_headers` is on.
pub(crate) fn public_base(config: &Config, request: &Parts) -> Result<String, ClientError> {
    if let Some(url) = &config.public_url {
        return Ok(url.clone());
    }
    let headers = &request.headers;
    let forwarded = |name| {
        config
            .trust_forwarded_headers
            .then(|| first_value(headers, name))
            .flatten()
    };
    let scheme = match forwarded("x-forwarded-proto") {
        Some(proto) if proto.eq_ignore_ascii_case("https") => "https",
        Some(proto) if proto.eq_ignore_ascii_case("http") => "http",
        Some(_) => return Err(ClientError::BadHost),
        None => "http",
    };
    let host = forwarded("x-forwarded-host")
        .or_else(|| first_value(headers, HOST.as_str()))
        .or_else(|| request.uri.authority().map(|a| a.as_str().to_string()))
        .ok_or(ClientError::BadHost)?;
    if !is_valid_host(&host) {
        return Err(ClientError::BadHost);
    }
    Ok(format!("{scheme}://{}", host.to_ascii_lowercase()))
}

fn first_value(headers: &HeaderMap, name: &str) -> Option<String> {
    let value = headers.get(name)?.to_str().ok()?;
    let first = value.split(',').next()?.trim();
    (!first.is_empty()).then(|| first.to_string())
}

/// `host[:port]` or `[v6]:port` of plain characters: the base is pasted
/// into JSON strings and URLs, so nothing that needs escaping may pass.
fn is_valid_host(host: &str) -> bool {
    host.len() <= 255
        && !host.is_empty()
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':' | b'[' | b']' | b'_'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(headers: &[(&str, &str)]) -> Parts {
        let mut builder = http::Request::builder().uri("/v3/index.json");
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        builder
            .body(())
            .map(|r| r.into_parts().0)
            .unwrap_or_else(|_| http::Request::new(()).into_parts().0)
    }

    #[test]
    fn derives_the_base_from_host() {
        let config = Config::default();
        assert_eq!(
            public_base(&config, &parts(&[("host", "Proxy:5000")])).ok(),
            Some("http://proxy:5000".into())
        );
        assert!(public_base(&config, &parts(&[])).is_err());
        assert!(public_base(&config, &parts(&[("host", "evil\"}")])).is_err());
        assert!(public_base(&config, &parts(&[("host", "a/b")])).is_err());
    }

    #[test]
    fn forwarded_headers_only_when_trusted() {
        let headers = [
            ("host", "inner:5000"),
            ("x-forwarded-host", "nuget.corp"),
            ("x-forwarded-proto", "https"),
        ];
        let untrusted = Config::default();
        assert_eq!(
            public_base(&untrusted, &parts(&headers)).ok(),
            Some("http://inner:5000".into())
        );
        let trusted = Config {
            trust_forwarded_headers: true,
            ..Config::default()
        };
        assert_eq!(
            public_base(&trusted, &parts(&headers)).ok(),
            Some("https://nuget.corp".into())
        );
    }

    #[test]
    fn configured_public_url_wins() {
        let config = Config {
            public_url: Some("https://nuget.corp/feed".into()),
            ..Config::default()
        };
        assert_eq!(
            public_base(&config, &parts(&[("host", "x")])).ok(),
            Some("https://nuget.corp/feed".into())
        );
    }
}
