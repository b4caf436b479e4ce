use super::*;
use figment::providers::Serialized;
use std::time::Duration;

fn with(pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
    let mut figment = Figment::new();
    for (key, value) in pairs {
        figment = figment.merge(Serialized::global(key, value));
    }
    Config::from_figment(figment)
}

#[test]
fn defaults_are_valid() {
    let c = with(&[]).map_err(|e| e.to_string());
    assert_eq!(
        c.as_ref().map(|c| c.listen.to_string()),
        Ok("127.0.0.1:5000".to_string())
    );
    assert_eq!(
        c.map(|c| c.upstream.service_index),
        Ok("https://api.nuget.org/v3/index.json".to_string())
    );
}

#[test]
fn errors_name_the_key() {
    let err = |pairs: &[(&str, &str)]| with(pairs).err().map(|e| e.to_string()).unwrap_or_default();
    assert!(err(&[("upstream", "")]).contains("upstream"));
    let timeout = Figment::new().merge(Toml::string("[upstream]\nread_timeout = \"3 parsecs\""));
    let message = Config::from_figment(timeout)
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(message.contains("upstream.read_timeout"), "{message}");
    let unknown = Figment::new().merge(Toml::string("lisen = \"127.0.0.1:1\""));
    let message = Config::from_figment(unknown)
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(message.contains("lisen"), "{message}");
    let bad_url = Figment::new().merge(Toml::string("[upstream]\nservice_index = \"ftp://x/\""));
    let message = Config::from_figment(bad_url)
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(message.contains("upstream.service_index"), "{message}");
}

#[test]
fn toml_and_durations() {
    let toml = "listen = \"127.0.0.1:6000\"\npublic_url = \"https://nuget.corp/\"\n[upstream]\nread_timeout = \"500ms\"\n[ttl]\nversions = \"2m\"\n[cache]\nmemory = \"32MiB\"";
    let c = Config::from_figment(Figment::new().merge(Toml::string(toml))).map_err(|e| e.to_string());
    let c = c.map(|c| {
        (
            c.listen.port(),
            c.public_url,
            c.upstream.read_timeout,
            c.ttl.versions,
            c.cache.memory,
        )
    });
    assert_eq!(
        c,
        Ok((
            6000,
            Some("https://nuget.corp".to_string()),
            Duration::from_millis(500),
            Duration::from_secs(120),
            ByteSize::mib(32)
        ))
    );
}

#[test]
fn a_service_index_without_index_json_gets_a_fix() {
    assert_eq!(service_index_fix("https://api.nuget.org/v3/index.json"), None);
    assert_eq!(
        service_index_fix("https://api.nuget.org/v3/").as_deref(),
        Some("https://api.nuget.org/v3/index.json")
    );
    assert_eq!(
        service_index_fix("https://api.nuget.org").as_deref(),
        Some("https://api.nuget.org/v3/index.json")
    );
    assert_eq!(
        service_index_fix("https://pkgs.dev.azure.com/o/_packaging/f/nuget/v3").as_deref(),
        Some("https://pkgs.dev.azure.com/o/_packaging/f/nuget/v3/index.json")
    );
}

#[test]
fn with_tls_the_snippet_is_https_without_insecure_connections() {
    let mut c = Config::default();
    c.tls.cert = Some("cert.pem".into());
    c.tls.key = Some("key.pem".into());
    let snippet = c.nuget_config_snippet(c.listen);
    assert!(
        snippet.contains("value=\"https://127.0.0.1:5000/v3/index.json\""),
        "{snippet}"
    );
    assert!(!snippet.contains("allowInsecureConnections"), "{snippet}");
}

#[test]
fn a_bad_proxy_or_ca_file_is_refused_naming_the_key() {
    let message = |pairs: &[(&str, &str)]| with(pairs).err().map(|e| e.to_string()).unwrap_or_default();
    let proxy = message(&[("upstream.proxy", "https://user:hidden@proxy:3128")]);
    assert!(proxy.starts_with("upstream.proxy: "), "{proxy}");
    assert!(!proxy.contains("hidden"), "{proxy}");
    let missing = message(&[("upstream.ca_file", "/nonexistent/ca.pem")]);
    assert!(
        missing.starts_with("upstream.ca_file: /nonexistent/ca.pem"),
        "{missing}"
    );
    let dir = tempfile::tempdir().expect("temp dir");
    let not_pem = dir.path().join("ca.pem");
    std::fs::write(&not_pem, "hello").expect("write");
    let empty = message(&[("upstream.ca_file", &not_pem.display().to_string())]);
    assert!(empty.contains("no PEM CERTIFICATE"), "{empty}");
}

fn from_toml(text: &str) -> Result<Config, String> {
    Config::from_figment(Figment::new().merge(Toml::string(text))).map_err(|e| e.to_string())
}

#[test]
fn the_old_upstream_table_is_one_upstream_named_default() {
    let c = from_toml("[upstream]\nservice_index = \"https://feed.corp/v3/index.json\"");
    let set = c.as_ref().map(|c| {
        c.upstream_set()
            .iter()
            .map(|(name, u)| (name.to_string(), u.service_index.clone()))
            .collect::<Vec<_>>()
    });
    assert_eq!(
        set,
        Ok(vec![(
            "default".to_string(),
            "https://feed.corp/v3/index.json".to_string()
        )])
    );
}

#[test]
fn one_named_upstream_is_the_upstream_in_use() {
    let toml = "[upstreams.acme]\nservice_index = \"https://acme.corp/v3/index.json\"\npriority = 1\n\
                packages = [\"Acme.*\"]\nread_timeout = \"3s\"\n[publish]\nupstream = \"acme\"";
    let c = from_toml(toml);
    let used = c.as_ref().map(|c| {
        let (name, upstream) = c.primary_upstream();
        (
            upstream.service_index.clone(),
            upstream.read_timeout,
            upstream.packages.clone(),
            Some(name.to_string()),
        )
    });
    assert_eq!(
        used,
        Ok((
            "https://acme.corp/v3/index.json".to_string(),
            Duration::from_secs(3),
            vec!["Acme.*".to_string()],
            Some("acme".to_string())
        ))
    );
}

#[test]
fn named_upstream_errors_name_their_key() {
    let error = |toml: &str| from_toml(toml).err().unwrap_or_default();
    let acme = "[upstreams.acme]\nservice_index = \"https://acme.corp/v3/index.json\"\n";
    assert!(error(&format!("{acme}packages = [\"Ac*me\"]")).starts_with("upstreams.acme.packages: "));
    assert!(error(&format!("{acme}read_timeout = \"0s\"")).starts_with("upstreams.acme.read_timeout: "));
    assert!(error(&format!("{acme}username = \"u\"")).starts_with("upstreams.acme.username: "));
    assert!(error(&format!("{acme}proxy = \"socks5://p:1080\"")).starts_with("upstreams.acme.proxy: "));
    assert!(error("[upstreams.Acme]\n").starts_with("upstreams.Acme: "));
    assert!(error(&format!("{acme}[upstream]\nretries = 2")).starts_with("upstream: use either"));
    let wrong_publish = error(&format!("{acme}[publish]\nupstream = \"nugetorg\""));
    assert!(wrong_publish.starts_with("publish.upstream: \"nugetorg\" is not a configured upstream (acme)"));
    let same = error(&format!(
        "{acme}[upstreams.other]\nservice_index = \"https://acme.corp/v3/index.json\""
    ));
    assert!(
        same.starts_with("upstreams.other.service_index: another upstream"),
        "{same}"
    );
}

#[test]
fn several_upstreams_load_in_priority_order() {
    let toml = "[upstreams.nugetorg]\npriority = 10\n\
                [upstreams.acme]\nservice_index = \"https://acme.corp/v3/index.json\"\npriority = 1\n\
                packages = [\"Acme.*\"]";
    let names = from_toml(toml).map(|c| {
        c.upstream_set()
            .iter()
            .map(|(name, u)| (name.to_string(), u.packages.clone()))
            .collect::<Vec<_>>()
    });
    assert_eq!(
        names,
        Ok(vec![
            ("acme".to_string(), vec!["Acme.*".to_string()]),
            ("nugetorg".to_string(), Vec::new())
        ])
    );
}

#[test]
fn tls_cert_and_key_go_together() {
    let message = with(&[("tls.cert", "/etc/nucache/cert.pem")])
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(message.starts_with("tls.cert: "), "{message}");
}

#[test]
fn snippet_points_at_the_service_index() {
    let c = Config::default();
    assert!(c
        .nuget_config_snippet(c.listen)
        .contains("value=\"http://127.0.0.1:5000/v3/index.json\""));
}

#[test]
fn a_fleet_needs_a_sendable_key_and_timings_above_zero() {
    let fleet =
        "[fleet]\nnode = \"http://10.0.0.5:5000\"\npeers = [\"http://10.0.0.5:5000\", \"http://10.0.0.6:5000\"]\n";
    let load = |extra: &str| {
        Config::from_figment(Figment::new().merge(Toml::string(&format!("{fleet}{extra}")))).map_err(|e| e.to_string())
    };
    let fine = load("key = \"s3cret-Key\"\nforward_timeout = \"300ms\"").map(|c| c.fleet.forward_timeout);
    assert_eq!(fine, Ok(Duration::from_millis(300)));
    let spaced = load("key = \"two words\"").err().unwrap_or_default();
    assert!(spaced.contains("fleet.key") && spaced.contains("printable"), "{spaced}");
    for key in ["health_interval", "health_timeout", "forward_timeout"] {
        let zero = load(&format!("key = \"k\"\n{key} = \"0s\"")).err().unwrap_or_default();
        assert!(zero.contains(&format!("fleet.{key}")), "{zero}");
    }
    let never_down = load("key = \"k\"\ndown_after = 0").err().unwrap_or_default();
    assert!(never_down.contains("fleet.down_after"), "{never_down}");
}
