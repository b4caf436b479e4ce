//! The S3 clients of `[shared]`: bucket and prefix from the URL, the
//! endpoint of an S3-compatible server, credentials (the configuration's,
//! else the standard `AWS_*` environment, else anonymous: never the
//! instance metadata service, which a node outside AWS would wait on).
//!
//! Two clients share the settings and differ in retries: reads do not
//! retry (a failed read is a miss the upstream answers at once; the
//! breaker counts it), writes run in the background and retry twice
//! within `shared.timeout`. object_store's own request timeout is off:
//! it would also cut a long body short; every call is bounded by the
//! caller instead (`shared.timeout` to the first byte, and between chunks).

use std::sync::Arc;
use std::time::Duration;

use object_store::aws::{AmazonS3Builder, S3ConditionalPut};
use object_store::{BackoffConfig, ClientOptions, ObjectStore, RetryConfig};

use super::SharedError;
use crate::config::SharedConfig;

/// The clients of one store, and where in the bucket nucache's objects are.
pub(crate) struct Clients {
    pub reads: Arc<dyn ObjectStore>,
    pub writes: Arc<dyn ObjectStore>,
    /// The URL's path, without slashes at either end ("" for none).
    pub prefix: String,
}

pub(crate) fn connect(config: &SharedConfig) -> Result<Clients, SharedError> {
    let (bucket, prefix) = bucket_and_prefix(&config.url)?;
    let no_retries = RetryConfig {
        max_retries: 0,
        retry_timeout: config.timeout,
        backoff: BackoffConfig::default(),
    };
    let few_retries = RetryConfig {
        max_retries: 2,
        retry_timeout: config.timeout,
        backoff: BackoffConfig {
            init_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(1),
            base: 2.0,
        },
    };
    Ok(Clients {
        reads: Arc::new(
            builder(config, &bucket)
                .with_retry(no_retries)
                .build()
                .map_err(build_error)?,
        ),
        writes: Arc::new(
            builder(config, &bucket)
                .with_retry(few_retries)
                .build()
                .map_err(build_error)?,
        ),
        prefix,
    })
}

fn build_error(source: object_store::Error) -> SharedError {
    SharedError::Store {
        what: "configuring the S3 client",
        source: Arc::new(source),
    }
}

fn builder(config: &SharedConfig, bucket: &str) -> AmazonS3Builder {
    let options = ClientOptions::new()
        .with_allow_http(config.allow_http)
        .with_connect_timeout(config.timeout)
        .with_timeout_disabled()
        .with_user_agent(http::HeaderValue::from_static(concat!(
            "nucache/",
            env!("CARGO_PKG_VERSION")
        )));
    let mut builder = AmazonS3Builder::new()
        .with_bucket_name(bucket)
        .with_region(&config.region)
        .with_allow_http(config.allow_http)
        .with_client_options(options)
        .with_conditional_put(S3ConditionalPut::ETagMatch);
    if let Some(endpoint) = &config.endpoint {
        builder = builder.with_endpoint(endpoint.trim_end_matches('/'));
    }
    match credentials(config) {
        Some(keys) => {
            builder = builder.with_access_key_id(keys.id).with_secret_access_key(keys.secret);
            if let Some(token) = keys.token {
                builder = builder.with_token(token);
            }
        }
        None => builder = builder.with_skip_signature(true),
    }
    builder
}

struct Keys {
    id: String,
    secret: String,
    token: Option<String>,
}

/// The configuration's keys (or their files, read at load), else the
/// standard environment; `None`: anonymous.
fn credentials(config: &SharedConfig) -> Option<Keys> {
    if let (Some(id), Some(secret)) = (&config.access_key_id, &config.secret_access_key) {
        return Some(Keys {
            id: id.expose().to_string(),
            secret: secret.expose().to_string(),
            token: None,
        });
    }
    let env = |name| std::env::var(name).ok().filter(|value| !value.is_empty());
    Some(Keys {
        id: env("AWS_ACCESS_KEY_ID")?,
        secret: env("AWS_SECRET_ACCESS_KEY")?,
        token: env("AWS_SESSION_TOKEN"),
    })
}

/// `s3://BUCKET[/PREFIX]` as the bucket and the prefix.
fn bucket_and_prefix(url: &str) -> Result<(String, String), SharedError> {
    let bad = |reason: &str| SharedError::Url(format!("{url:?} {reason}"));
    let rest = url
        .strip_prefix("s3://")
        .ok_or_else(|| bad("is not s3://BUCKET[/PREFIX]"))?;
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    if bucket.is_empty() {
        return Err(bad("names no bucket"));
    }
    let prefix = prefix.trim_matches('/').to_string();
    if !prefix.is_empty() && object_store::path::Path::parse(&prefix).is_err() {
        return Err(bad("has a prefix that is not a valid object path"));
    }
    Ok((bucket.to_string(), prefix))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_url_names_the_bucket_and_the_prefix() {
        let split = |url: &str| bucket_and_prefix(url).ok();
        assert_eq!(split("s3://cache"), Some(("cache".into(), String::new())));
        assert_eq!(split("s3://cache/"), Some(("cache".into(), String::new())));
        assert_eq!(split("s3://cache/fleet/a/"), Some(("cache".into(), "fleet/a".into())));
        assert!(split("s3:///x").is_none());
        assert!(split("gs://cache").is_none());
        assert!(split("s3://cache/a//b").is_none());
    }

    #[test]
    fn configured_keys_come_before_the_environment() {
        let config = SharedConfig {
            url: "s3://b".into(),
            access_key_id: Some(crate::config::Secret::new("id")),
            secret_access_key: Some(crate::config::Secret::new("secret")),
            ..SharedConfig::default()
        };
        let keys = credentials(&config).map(|k| (k.id, k.secret));
        assert_eq!(keys, Some(("id".into(), "secret".into())));
    }
}
