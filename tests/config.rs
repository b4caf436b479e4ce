//! Configuration layering through the real environment and files:
//! defaults < TOML file < NUCACHE_* variables, `__` between levels.
// figment::Jail closures must return figment::Error, a large type.
#![allow(clippy::result_large_err)]

use std::time::Duration;

use figment::Jail;
use nucache::Config;

#[test]
fn environment_overrides_the_file_which_overrides_defaults() {
    Jail::expect_with(|jail| {
        jail.create_file(
            "nucache.toml",
            r#"
            listen = "127.0.0.1:6001"
            [upstream]
            service_index = "https://feed.example/v3/index.json"
            read_timeout = "7s"
            [ttl]
            versions = "2m"
            "#,
        )?;
        jail.set_env("NUCACHE_CONFIG", "nucache.toml");
        jail.set_env("NUCACHE_UPSTREAM__READ_TIMEOUT", "500ms");
        jail.set_env("NUCACHE_UPSTREAM__CONNECT_TIMEOUT", "3s");
        jail.set_env("NUCACHE_CACHE__DIR", "/tmp/nucache-config-test");
        jail.set_env("NUCACHE_PUBLIC_URL", "https://nuget.corp/");
        let config = Config::load(None).map_err(|e| e.to_string())?;
        assert_eq!(config.listen.to_string(), "127.0.0.1:6001");
        assert_eq!(config.upstream.service_index, "https://feed.example/v3/index.json");
        assert_eq!(config.upstream.read_timeout, Duration::from_millis(500));
        assert_eq!(config.upstream.connect_timeout, Duration::from_secs(3));
        assert_eq!(config.ttl.versions, Duration::from_secs(120));
        assert_eq!(
            config.ttl.registration,
            Duration::from_secs(600),
            "untouched keys keep defaults"
        );
        assert_eq!(config.cache.dir.to_string_lossy(), "/tmp/nucache-config-test");
        assert_eq!(config.public_url.as_deref(), Some("https://nuget.corp"));
        Ok(())
    });
}

#[test]
fn an_explicit_path_wins_over_nucache_config() {
    Jail::expect_with(|jail| {
        jail.create_file("a.toml", "listen = \"127.0.0.1:7001\"")?;
        jail.create_file("b.toml", "listen = \"127.0.0.1:7002\"")?;
        jail.set_env("NUCACHE_CONFIG", "a.toml");
        let config = Config::load(Some(std::path::Path::new("b.toml"))).map_err(|e| e.to_string())?;
        assert_eq!(config.listen.port(), 7002);
        Ok(())
    });
}

#[test]
fn bad_values_stop_start_up_naming_the_key() {
    Jail::expect_with(|jail| {
        jail.set_env("NUCACHE_UPSTREAM__READ_TIMEOUT", "soon");
        let error = Config::load(None).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(error.to_lowercase().contains("upstream.read_timeout"), "{error}");
        Ok(())
    });
    Jail::expect_with(|jail| {
        jail.create_file("bad.toml", "[upstream]\nservice_index = \"not a url\"")?;
        let error = Config::load(Some(std::path::Path::new("bad.toml")))
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(error.contains("upstream.service_index"), "{error}");
        Ok(())
    });
    Jail::expect_with(|jail| {
        jail.set_env("NUCACHE_LISTEN", "not-an-address");
        let error = Config::load(None).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(error.to_lowercase().contains("listen"), "{error}");
        Ok(())
    });
    Jail::expect_with(|_| {
        let error = Config::load(Some(std::path::Path::new("missing.toml")))
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(error.contains("missing.toml"), "{error}");
        Ok(())
    });
}

#[test]
fn the_example_file_is_valid_and_matches_the_defaults() {
    Jail::expect_with(|_| {
        let example = concat!(env!("CARGO_MANIFEST_DIR"), "/config.example.toml");
        let from_file = Config::load(Some(std::path::Path::new(example))).map_err(|e| e.to_string())?;
        let defaults = Config::load(None).map_err(|e| e.to_string())?;
        assert_eq!(from_file.effective(), defaults.effective());
        Ok(())
    });
}

#[test]
fn named_upstreams_can_be_made_from_environment_variables() {
    Jail::expect_with(|jail| {
        jail.set_env(
            "NUCACHE_UPSTREAMS__ACME__SERVICE_INDEX",
            "https://acme.corp/v3/index.json",
        );
        jail.set_env("NUCACHE_UPSTREAMS__ACME__PACKAGES", "[\"Acme.*\"]");
        jail.set_env("NUCACHE_UPSTREAMS__ACME__READ_TIMEOUT", "4s");
        jail.set_env("NUCACHE_UPSTREAMS__ACME__READTIMEOUT", "9s");
        let loaded = Config::load_with_warnings(None).map_err(|e| e.to_string())?;
        let names: Vec<&str> = loaded.config.upstream_set().iter().map(|(n, _)| *n).collect();
        assert_eq!(names, ["acme"]);
        let (_, acme) = loaded.config.primary_upstream();
        assert_eq!(acme.service_index, "https://acme.corp/v3/index.json");
        assert_eq!(acme.packages, ["Acme.*"]);
        assert_eq!(acme.read_timeout, Duration::from_secs(4));
        let warning = loaded
            .warnings
            .iter()
            .find(|w| w.contains("NUCACHE_"))
            .cloned()
            .unwrap_or_default();
        assert!(warning.contains("NUCACHE_UPSTREAMS__ACME__READTIMEOUT"), "{warning}");
        assert!(!warning.contains("NUCACHE_UPSTREAMS__ACME__SERVICE_INDEX"), "{warning}");
        Ok(())
    });
}

#[test]
fn kubernetes_service_links_and_unknown_variables_do_not_stop_start_up() {
    Jail::expect_with(|jail| {
        for (name, value) in [
            ("NUCACHE_PORT", "tcp://10.0.0.7:5000"),
            ("NUCACHE_PORT_5000_TCP", "tcp://10.0.0.7:5000"),
            ("NUCACHE_PORT_5000_TCP_PROTO", "tcp"),
            ("NUCACHE_PORT_5000_TCP_PORT", "5000"),
            ("NUCACHE_PORT_5000_TCP_ADDR", "10.0.0.7"),
            ("NUCACHE_SERVICE_HOST", "10.0.0.7"),
            ("NUCACHE_SERVICE_PORT", "5000"),
            ("NUCACHE_SERVICE_PORT_HTTP", "5000"),
            ("NUCACHE_UPSTREAM__READTIMEOUT", "9s"),
            ("NUCACHE_UPSTREAM__READ_TIMEOUT", "3s"),
        ] {
            jail.set_env(name, value);
        }
        let loaded = Config::load_with_warnings(None).map_err(|e| e.to_string())?;
        assert_eq!(loaded.config.upstream.read_timeout, Duration::from_secs(3));
        let about_env: Vec<&String> = loaded.warnings.iter().filter(|w| w.contains("NUCACHE_")).collect();
        assert_eq!(about_env.len(), 1, "{:?}", loaded.warnings);
        let warning = about_env[0];
        assert!(
            warning.contains("NUCACHE_UPSTREAM__READTIMEOUT (did you mean NUCACHE_UPSTREAM__READ_TIMEOUT?)"),
            "{warning}"
        );
        assert!(!warning.contains("PORT") && !warning.contains("SERVICE"), "{warning}");
        Ok(())
    });
}

#[test]
fn unknown_keys_in_the_file_stay_errors() {
    Jail::expect_with(|jail| {
        jail.create_file("typo.toml", "[upstream]\nread_timout = \"3s\"")?;
        let error = Config::load(Some(std::path::Path::new("typo.toml")))
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(error.contains("read_timout"), "{error}");
        Ok(())
    });
}

#[test]
fn errors_name_the_variable_the_value_and_the_accepted_forms() {
    let error = |jail_setup: &dyn Fn(&mut Jail) -> figment::error::Result<()>| {
        let mut message = String::new();
        Jail::expect_with(|jail| {
            jail_setup(jail)?;
            message = Config::load(None).err().map(|e| e.to_string()).unwrap_or_default();
            Ok(())
        });
        message
    };
    let message = error(&|jail| {
        jail.set_env("NUCACHE_UPSTREAM__READ_TIMEOUT", "soon");
        Ok(())
    });
    assert_eq!(
        message,
        "upstream.read_timeout (from NUCACHE_UPSTREAM__READ_TIMEOUT): \"soon\" is not a duration: \
         write a number and a unit, e.g. \"500ms\", \"30s\", \"5m\", \"1h\", \"1h 30m\""
    );
    let message = error(&|jail| {
        jail.set_env("NUCACHE_LISTEN", "not-an-address");
        Ok(())
    });
    assert!(
        message.starts_with("listen (from NUCACHE_LISTEN): \"not-an-address\""),
        "{message}"
    );
    assert!(message.contains("\"0.0.0.0:5000\""), "{message}");
    let message = error(&|jail| {
        jail.set_env("NUCACHE_PUBLISH__API_KEY_FILE", "/nonexistent/key");
        Ok(())
    });
    assert!(
        message.starts_with("publish.api_key_file: cannot read /nonexistent/key"),
        "{message}"
    );
    let message = error(&|jail| {
        jail.set_env("NUCACHE_CONFIG", jail.directory().display().to_string());
        Ok(())
    });
    assert!(message.ends_with("is a directory, not a TOML file"), "{message}");
}

#[test]
fn listen_accepts_a_host_name() {
    Jail::expect_with(|jail| {
        jail.set_env("NUCACHE_LISTEN", "localhost:5055");
        let config = Config::load(None).map_err(|e| e.to_string())?;
        assert_eq!(config.listen.port(), 5055);
        assert!(config.listen.ip().is_loopback(), "{}", config.listen);
        Ok(())
    });
}

/// Under systemd, `LoadCredential=nuget-org-api-key:/etc/nucache/...` puts
/// the key in `$CREDENTIALS_DIRECTORY`; a relative `*_file` names it there.
#[test]
fn relative_key_files_are_read_from_the_credentials_directory() {
    Jail::expect_with(|jail| {
        let credentials = jail.directory().join("credentials");
        std::fs::create_dir(&credentials).map_err(|e| e.to_string())?;
        std::fs::write(credentials.join("nuget-org-api-key"), "from-systemd\n").map_err(|e| e.to_string())?;
        std::fs::write(credentials.join("upstream-token"), "token-from-systemd").map_err(|e| e.to_string())?;
        jail.create_file(
            "nucache.toml",
            "[publish]\napi_key_file = \"nuget-org-api-key\"\n[upstream]\ntoken_file = \"upstream-token\"",
        )?;
        jail.set_env("CREDENTIALS_DIRECTORY", credentials.display().to_string());
        let config = Config::load(Some(std::path::Path::new("nucache.toml"))).map_err(|e| e.to_string())?;
        assert_eq!(
            config.publish.api_key.as_ref().map(|k| k.expose()),
            Some("from-systemd")
        );
        assert_eq!(
            config.upstream.token.as_ref().map(|k| k.expose()),
            Some("token-from-systemd")
        );
        jail.set_env("NUCACHE_PUBLISH__API_KEY_FILE", "missing-credential");
        let error = Config::load(Some(std::path::Path::new("nucache.toml")))
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            error.starts_with("publish.api_key_file: cannot read ")
                && error.contains("credentials/missing-credential (in $CREDENTIALS_DIRECTORY)"),
            "{error}"
        );
        Ok(())
    });
}

/// `CacheDirectory=nucache` sets `$CACHE_DIRECTORY`: the default follows it,
/// and a `cache.dir` in the file still wins over the default.
#[test]
fn the_default_cache_directory_follows_systemds_cache_directory() {
    Jail::expect_with(|jail| {
        jail.set_env("CACHE_DIRECTORY", "/var/cache/nucache");
        let config = Config::load(None).map_err(|e| e.to_string())?;
        assert_eq!(config.cache.dir, std::path::Path::new("/var/cache/nucache"));
        assert!(config.cache.describe_dir().contains("$CACHE_DIRECTORY"));
        jail.create_file("nucache.toml", "[cache]\ndir = \"/srv/nucache\"")?;
        let config = Config::load(Some(std::path::Path::new("nucache.toml"))).map_err(|e| e.to_string())?;
        assert_eq!(config.cache.dir, std::path::Path::new("/srv/nucache"));
        Ok(())
    });
}

#[test]
fn admin_keys_must_be_digests_and_the_commands_key_variable_is_no_key() {
    Jail::expect_with(|jail| {
        jail.set_env("NUCACHE_ADMIN__KEYS", "[\"plain-key\"]");
        let error = Config::load(None).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(error.contains("admin.keys") && error.contains("hash-key"), "{error}");
        Ok(())
    });
    Jail::expect_with(|jail| {
        let digest = nucache::config::digest_hex("k");
        jail.set_env("NUCACHE_ADMIN__KEYS", format!("[\"{}\"]", digest.to_uppercase()));
        jail.set_env("NUCACHE_ADMIN_KEY", "k");
        let loaded = Config::load_with_warnings(None).map_err(|e| e.to_string())?;
        assert_eq!(loaded.config.admin.keys, [digest], "lower-cased");
        assert!(
            !loaded.warnings.iter().any(|w| w.contains("NUCACHE_ADMIN_KEY")),
            "{:?}",
            loaded.warnings
        );
        Ok(())
    });
}

#[test]
fn log_format_is_text_or_json() {
    Jail::expect_with(|jail| {
        jail.set_env("NUCACHE_LOG__FORMAT", "json");
        let config = Config::load(None).map_err(|e| e.to_string())?;
        assert_eq!(config.log.format, nucache::config::LogFormat::Json);
        jail.set_env("NUCACHE_LOG__FORMAT", "yaml");
        let error = Config::load(None).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(error.contains("log.format"), "{error}");
        Ok(())
    });
}

#[test]
fn the_disk_cap_keys_take_sizes_and_shares() {
    Jail::expect_with(|jail| {
        jail.set_env("NUCACHE_CACHE__MAX_SIZE", "50GiB");
        jail.set_env("NUCACHE_CACHE__MIN_FREE", "2.5%");
        let config = Config::load(None).map_err(|e| e.to_string())?;
        assert_eq!(config.cache.max_size, Some(nucache::config::ByteSize(50 << 30)));
        assert_eq!(config.cache.min_free, nucache::config::MinFree::Percent(2.5));
        jail.set_env("NUCACHE_CACHE__MIN_FREE", "150%");
        let error = Config::load(None).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(error.contains("cache.min_free"), "{error}");
        jail.set_env("NUCACHE_CACHE__MIN_FREE", "1GiB");
        jail.set_env("NUCACHE_CACHE__MAX_SIZE", "0");
        let error = Config::load(None).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(error.contains("cache.max_size"), "{error}");
        Ok(())
    });
}
