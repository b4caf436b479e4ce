//! The public base URL of a request: where the client reaches nucache, and
//! so what every rewritten URL in its answer starts with.

use http::header::{HeaderMap, HOST};
use http::request::Parts;

use crate::config::Config;
use crate::error::ClientError;

/// A request's public base URL, and the request headers it was made of
/// (for `Vary`, so that no shared cache hands one host's body to another).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Base {
    pub url: String,
    pub vary: &'static str,
}

/// `public_url` when configured; otherwise `http://{Host}` (`https://`
/// when nucache serves TLS itself), or the
/// forwarded host and scheme when `trust_forwarded_headers` is on.
pub(crate) fn public_base(config: &Config, request: &Parts) -> Result<Base, ClientError> {
    if let Some(url) = &config.public_url {
        return Ok(Base {
            url: url.clone(),
            vary: "Accept-Encoding",
        });
    }
    let headers = &request.headers;
    let forwarded = |name| {
        config
            .trust_forwarded_headers
            .then(|| last_value(headers, name))
            .flatten()
    };
    let scheme = match forwarded("x-forwarded-proto") {
        Some(proto) if proto.eq_ignore_ascii_case("https") => "https",
        Some(proto) if proto.eq_ignore_ascii_case("http") => "http",
        Some(_) => return Err(ClientError::BadHost),
        None => config.served_scheme(),
    };
    let host = forwarded("x-forwarded-host")
        .or_else(|| last_value(headers, HOST.as_str()))
        .or_else(|| request.uri.authority().map(|a| a.as_str().to_string()))
        .ok_or(ClientError::BadHost)?;
    if !is_valid_host(&host) {
        return Err(ClientError::BadHost);
    }
    let vary = if config.trust_forwarded_headers {
        "Accept-Encoding, Host, X-Forwarded-Host, X-Forwarded-Proto"
    } else {
        "Accept-Encoding, Host"
    };
    Ok(Base {
        url: format!("{scheme}://{}", host.to_ascii_lowercase()),
        vary,
    })
}

/// The request path below `public_url`'s path prefix, the one place it is
/// stripped: with `public_url = "https://host/nuget"`, `/nuget/v3/...` is
/// served as `/v3/...` (a reverse proxy that passes the prefix on), and
/// `/v3/...` still is (direct access).
pub(crate) fn local_path<'p>(config: &Config, path: &'p str) -> &'p str {
    let prefix = config.public_path_prefix();
    if prefix.is_empty() {
        return path;
    }
    match path.strip_prefix(prefix) {
        Some("") => "/",
        Some(rest) if rest.starts_with('/') => rest,
        _ => path,
    }
}

/// The client's address as the trusted reverse proxy saw it (the
/// right-most `X-Forwarded-For` value), for the access log; only when
/// `trust_forwarded_headers` is on.
pub(crate) fn forwarded_for(config: &Config, headers: &HeaderMap) -> Option<String> {
    let value = config
        .trust_forwarded_headers
        .then(|| last_value(headers, "x-forwarded-for"))
        .flatten()?;
    Some(value.chars().take(64).collect())
}

/// The right-most non-empty value over every line of header `name`: a
/// trusted proxy appends what it saw, the values before it are the
/// client's own claims.
fn last_value(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(name)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .map(str::trim)
        .rfind(|value| !value.is_empty())
        .map(str::to_string)
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
            public_base(&config, &parts(&[("host", "Proxy:5000")]))
                .ok()
                .map(|b| b.url),
            Some("http://proxy:5000".into())
        );
        assert!(public_base(&config, &parts(&[])).is_err());
        assert!(public_base(&config, &parts(&[("host", "evil\"}")])).is_err());
        assert!(public_base(&config, &parts(&[("host", "a/b")])).is_err());
    }

    #[test]
    fn with_tls_the_derived_base_is_https_also_from_an_http2_authority() {
        let mut config = Config::default();
        config.tls.cert = Some("cert.pem".into());
        config.tls.key = Some("key.pem".into());
        assert_eq!(
            public_base(&config, &parts(&[("host", "nuget.corp:5000")]))
                .ok()
                .map(|b| b.url),
            Some("https://nuget.corp:5000".into())
        );
        // HTTP/2 requests carry no Host header, only the URI's authority.
        let h2 = http::Request::builder()
            .uri("https://nuget.corp:5000/v3/index.json")
            .body(())
            .map(|r| r.into_parts().0)
            .unwrap_or_else(|_| http::Request::new(()).into_parts().0);
        assert_eq!(
            public_base(&config, &h2).ok().map(|b| b.url),
            Some("https://nuget.corp:5000".into())
        );
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
            public_base(&untrusted, &parts(&headers)).ok().map(|b| b.url),
            Some("http://inner:5000".into())
        );
        let trusted = Config {
            trust_forwarded_headers: true,
            ..Config::default()
        };
        assert_eq!(
            public_base(&trusted, &parts(&headers)).ok().map(|b| b.url),
            Some("https://nuget.corp".into())
        );
    }

    #[test]
    fn forwarded_headers_take_the_value_the_trusted_proxy_appended() {
        let trusted = Config {
            trust_forwarded_headers: true,
            ..Config::default()
        };
        // The client sent the first values; the proxy in front appended its own.
        let appended = [
            ("host", "inner:5000"),
            ("x-forwarded-host", "evil.example, nuget.corp"),
            ("x-forwarded-proto", "http, https"),
        ];
        assert_eq!(
            public_base(&trusted, &parts(&appended)).ok().map(|b| b.url),
            Some("https://nuget.corp".into())
        );
        // Repeated header lines and empty values: the last non-empty value.
        let mut request = http::Request::builder()
            .uri("/v3/index.json")
            .header("host", "inner:5000")
            .header("x-forwarded-host", "evil.example")
            .header("x-forwarded-host", "nuget.corp, ")
            .header("x-forwarded-proto", "https")
            .body(())
            .map(|r| r.into_parts().0)
            .unwrap_or_else(|_| http::Request::new(()).into_parts().0);
        assert_eq!(
            public_base(&trusted, &request).ok().map(|b| b.url),
            Some("https://nuget.corp".into())
        );
        request
            .headers
            .insert("x-forwarded-host", http::HeaderValue::from_static(" , "));
        assert_eq!(
            public_base(&trusted, &request).ok().map(|b| b.url),
            Some("https://inner:5000".into()),
            "no forwarded value: the Host header"
        );
    }

    #[test]
    fn the_forwarded_client_is_the_one_the_trusted_proxy_appended() {
        let headers = parts(&[("x-forwarded-for", "6.6.6.6, 10.0.0.9")]).headers;
        assert_eq!(forwarded_for(&Config::default(), &headers), None);
        let trusted = Config {
            trust_forwarded_headers: true,
            ..Config::default()
        };
        assert_eq!(forwarded_for(&trusted, &headers).as_deref(), Some("10.0.0.9"));
    }

    #[test]
    fn the_public_url_path_prefix_is_stripped_once() {
        let config = Config {
            public_url: Some("https://host/nuget".into()),
            ..Config::default()
        };
        assert_eq!(local_path(&config, "/nuget/v3/index.json"), "/v3/index.json");
        assert_eq!(local_path(&config, "/nuget"), "/");
        assert_eq!(local_path(&config, "/nuget/"), "/");
        assert_eq!(local_path(&config, "/v3/index.json"), "/v3/index.json");
        assert_eq!(local_path(&config, "/nugetx/v3/index.json"), "/nugetx/v3/index.json");
        assert_eq!(
            local_path(&config, "/nuget/nuget/v3/index.json"),
            "/nuget/v3/index.json"
        );
        assert_eq!(
            local_path(&Config::default(), "/nuget/v3/index.json"),
            "/nuget/v3/index.json"
        );
    }

    #[test]
    fn configured_public_url_wins() {
        let config = Config {
            public_url: Some("https://nuget.corp/feed".into()),
            ..Config::default()
        };
        assert_eq!(
            public_base(&config, &parts(&[("host", "x")])).ok().map(|b| b.url),
            Some("https://nuget.corp/feed".into())
        );
    }

    #[test]
    fn answers_vary_on_the_headers_the_base_came_from() {
        let vary = |config: &Config| public_base(config, &parts(&[("host", "x")])).ok().map(|b| b.vary);
        assert_eq!(vary(&Config::default()), Some("Accept-Encoding, Host"));
        let trusted = Config {
            trust_forwarded_headers: true,
            ..Config::default()
        };
        assert_eq!(
            vary(&trusted),
            Some("Accept-Encoding, Host, X-Forwarded-Host, X-Forwarded-Proto")
        );
        let fixed = Config {
            public_url: Some("https://nuget.corp".into()),
            ..trusted
        };
        assert_eq!(vary(&fixed), Some("Accept-Encoding"));
    }
}
