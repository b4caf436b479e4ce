//! The URL arithmetic of the upstream client: origins (for logs, errors
//! and breakers) and redirect targets.

/// `scheme://authority` of a URL (the URL itself when it has no path).
pub(crate) fn origin_of(url: &str) -> &str {
    let start = url.find("://").map_or(0, |i| i + 3);
    match url[start..].find(['/', '?', '#']) {
        Some(end) => &url[..start + end],
        None => url,
    }
}

/// The origin a circuit breaker is kept for: `scheme://host[:port]`,
/// lower-case, without the scheme's default port.
pub(super) fn breaker_origin(url: &str) -> String {
    let origin = origin_of(url).to_ascii_lowercase();
    match origin.split_once("://") {
        Some((scheme, authority)) => {
            let authority = authority.rsplit_once('@').map_or(authority, |(_, host)| host);
            let default_port = match scheme {
                "https" => ":443",
                "http" => ":80",
                _ => "",
            };
            let host = match authority.strip_suffix(default_port) {
                Some(host) if !default_port.is_empty() => host,
                _ => authority,
            };
            format!("{scheme}://{host}")
        }
        None => origin,
    }
}

/// Resolves a `Location` header against the URL that sent it.
pub(crate) fn join_url(base: &str, location: &str) -> String {
    if location.starts_with("http://") || location.starts_with("https://") {
        location.to_string()
    } else if let Some(rest) = location.strip_prefix("//") {
        let scheme = base.split("://").next().unwrap_or("https");
        format!("{scheme}://{rest}")
    } else if location.starts_with('/') {
        format!("{}{location}", origin_of(base))
    } else {
        let path_end = base.find(['?', '#']).unwrap_or(base.len());
        let dir_end = base[..path_end].rfind('/').map_or(base.len(), |i| i + 1);
        format!("{}{location}", &base[..dir_end])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn joins_locations() {
        let base = "https://a.example/x/y/index.json?q=1";
        assert_eq!(join_url(base, "https://b.example/z"), "https://b.example/z");
        assert_eq!(join_url(base, "//c.example/z"), "https://c.example/z");
        assert_eq!(join_url(base, "/root.json"), "https://a.example/root.json");
        assert_eq!(join_url(base, "sibling.json"), "https://a.example/x/y/sibling.json");
    }

    #[test]
    fn origins() {
        assert_eq!(origin_of("http://127.0.0.1:5/v3/index.json"), "http://127.0.0.1:5");
        assert_eq!(origin_of("https://api.nuget.org"), "https://api.nuget.org");
        assert_eq!(origin_of("https://h?x"), "https://h");
    }

    #[test]
    fn breaker_origins_are_canonical() {
        assert_eq!(
            breaker_origin("HTTPS://API.nuget.org:443/v3/index.json"),
            "https://api.nuget.org"
        );
        assert_eq!(breaker_origin("http://127.0.0.1:5000/x?y"), "http://127.0.0.1:5000");
        assert_eq!(breaker_origin("http://h:80"), "http://h");
        assert_eq!(breaker_origin("https://user:pw@h/x"), "https://h");
    }
}
