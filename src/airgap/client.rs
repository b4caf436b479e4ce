//! A client of a running nucache's feed, for `warm` and `export`: the
//! upstream client (`upstream::Upstream`: pooled connections, retries,
//! timeouts) pointed at nucache instead of an upstream, without the
//! upstream's credentials and without circuit breakers.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http::{HeaderMap, StatusCode};
use serde_json::Value;

use crate::config::{Config, UpstreamConfig};
use crate::error::UpstreamError;
use crate::metrics::Metrics;
use crate::upstream::{Fetched, Upstream, Wanted};

/// Why a feed request failed; names the URL.
#[derive(Debug, Clone, thiserror::Error)]
pub(crate) enum FeedError {
    #[error("{url}: {error}")]
    Transport { url: String, error: UpstreamError },
    #[error("{url}: nucache answered {status}{reason}")]
    Status { url: String, status: u16, reason: String },
    #[error("{url}: not a JSON document: {reason}")]
    Json { url: String, reason: String },
    #[error("{url}: {reason}")]
    Sink { url: String, reason: String },
}

/// What nucache said of an answer (`X-Cache`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Answer<T> {
    pub body: T,
    /// `HIT`, `MISS`, `STALE`... (empty when absent).
    pub cache: String,
}

pub(crate) struct FeedClient {
    upstream: Arc<Upstream>,
    max_document: u64,
}

impl FeedClient {
    pub fn new(feed: &str, config: &Config) -> FeedClient {
        let settings = config.settings_for(feed);
        let upstream = UpstreamConfig {
            service_index: feed.to_string(),
            // A failing package must not fail the ones after it.
            breaker_threshold: 0,
            ..settings.without_credentials()
        };
        FeedClient {
            // The CLI's requests count into metrics nobody reads.
            upstream: Arc::new(Upstream::new(&upstream, Arc::new(Metrics::new()))),
            max_document: settings.max_document_size.bytes(),
        }
    }

    /// GET `url`; `None` on 404/410, an error on any other status but 200.
    async fn get(&self, url: &str, wanted: Wanted) -> Result<Option<Fetched>, FeedError> {
        self.get_with(url, wanted, &HeaderMap::new()).await
    }

    async fn get_with(&self, url: &str, wanted: Wanted, headers: &HeaderMap) -> Result<Option<Fetched>, FeedError> {
        let fetched = self
            .upstream
            .get(url, wanted, headers)
            .await
            .map_err(|error| FeedError::Transport {
                url: url.to_string(),
                error,
            })?;
        match fetched.status {
            StatusCode::OK => Ok(Some(fetched)),
            StatusCode::NOT_FOUND | StatusCode::GONE => Ok(None),
            status => {
                let mut fetched = fetched;
                let text = self.upstream.read_to_end(&mut fetched, 4096).await.unwrap_or_default();
                let reason = String::from_utf8_lossy(&text)
                    .lines()
                    .next()
                    .unwrap_or("")
                    .trim()
                    .to_string();
                Err(FeedError::Status {
                    url: url.to_string(),
                    status: status.as_u16(),
                    reason: if reason.is_empty() {
                        String::new()
                    } else {
                        format!(": {reason}")
                    },
                })
            }
        }
    }

    /// A whole document, decoded (gzip) but not parsed.
    pub async fn document(&self, url: &str) -> Result<Option<Answer<Bytes>>, FeedError> {
        self.document_with(url, &HeaderMap::new()).await
    }

    async fn document_with(&self, url: &str, headers: &HeaderMap) -> Result<Option<Answer<Bytes>>, FeedError> {
        let Some(mut fetched) = self.get_with(url, Wanted::Document, headers).await? else {
            return Ok(None);
        };
        let cache = x_cache(&fetched.headers);
        let transport = |error| FeedError::Transport {
            url: url.to_string(),
            error,
        };
        let raw = self
            .upstream
            .read_to_end(&mut fetched, self.max_document)
            .await
            .map_err(transport)?;
        let body = crate::rewrite::decode_body(&raw, self.max_document).map_err(|e| FeedError::Json {
            url: url.to_string(),
            reason: e.to_string(),
        })?;
        Ok(Some(Answer { body, cache }))
    }

    /// A JSON document, parsed.
    pub async fn json(&self, url: &str) -> Result<Option<Answer<Value>>, FeedError> {
        self.json_with(url, &HeaderMap::new()).await
    }

    /// A JSON document of the admin API, with `admin_key` when given (sent
    /// to this URL only).
    pub async fn admin_json(&self, url: &str, admin_key: Option<&str>) -> Result<Option<Answer<Value>>, FeedError> {
        let mut headers = HeaderMap::new();
        if let Some(mut key) = admin_key.and_then(|key| http::HeaderValue::from_str(key).ok()) {
            key.set_sensitive(true);
            headers.insert(crate::auth::API_KEY_HEADER, key);
        }
        self.json_with(url, &headers).await
    }

    async fn json_with(&self, url: &str, headers: &HeaderMap) -> Result<Option<Answer<Value>>, FeedError> {
        let Some(answer) = self.document_with(url, headers).await? else {
            return Ok(None);
        };
        let body = serde_json::from_slice(&answer.body).map_err(|e| FeedError::Json {
            url: url.to_string(),
            reason: e.to_string(),
        })?;
        Ok(Some(Answer {
            body,
            cache: answer.cache,
        }))
    }

    /// Streams a package file into `sink` chunk by chunk (never whole in
    /// memory); returns its size. `None` on 404.
    pub async fn stream<S>(&self, url: &str, mut sink: S) -> Result<Option<Answer<u64>>, FeedError>
    where
        S: FnMut(&[u8]) -> std::io::Result<()>,
    {
        let Some(mut fetched) = self.get(url, Wanted::Blob).await? else {
            return Ok(None);
        };
        let cache = x_cache(&fetched.headers);
        let expected = crate::upstream::content_length(&fetched.headers);
        let deadline = Instant::now() + self.upstream.download_timeout();
        let origin = crate::upstream::origin_of(url).to_string();
        let mut size = 0u64;
        loop {
            let chunk = self
                .upstream
                .next_chunk_before(&mut fetched.body, &origin, Some(deadline))
                .await
                .map_err(|error| FeedError::Transport {
                    url: url.to_string(),
                    error,
                })?;
            let Some(chunk) = chunk else { break };
            size += chunk.len() as u64;
            sink(&chunk).map_err(|e| FeedError::Sink {
                url: url.to_string(),
                reason: e.to_string(),
            })?;
        }
        crate::upstream::check_length(expected, size, &origin).map_err(|error| FeedError::Transport {
            url: url.to_string(),
            error,
        })?;
        Ok(Some(Answer { body: size, cache }))
    }
}

fn x_cache(headers: &HeaderMap) -> String {
    headers
        .get("x-cache")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string()
}

/// The resources of a feed's service index that a restore uses.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct FeedIndex {
    /// `PackageBaseAddress/3.0.0`, ending with `/`.
    pub flat_container: String,
    /// Every `RegistrationsBaseUrl*` hive, each once, ending with `/`.
    pub hives: Vec<String>,
    /// `VulnerabilityInfo/6.7.0`.
    pub vulnerabilities: Option<String>,
}

impl FeedIndex {
    pub fn read(doc: &Value) -> Result<FeedIndex, String> {
        let resources = doc
            .get("resources")
            .and_then(Value::as_array)
            .ok_or("no resources array: not a NuGet V3 service index")?;
        let mut index = FeedIndex::default();
        for resource in resources {
            let Some(id) = resource.get("@id").and_then(Value::as_str) else {
                continue;
            };
            let types: Vec<&str> = match resource.get("@type") {
                Some(Value::String(t)) => vec![t.as_str()],
                Some(Value::Array(ts)) => ts.iter().filter_map(Value::as_str).collect(),
                _ => Vec::new(),
            };
            let slashed = if id.ends_with('/') {
                id.to_string()
            } else {
                format!("{id}/")
            };
            for t in types {
                let name = t.split('/').next().unwrap_or(t);
                match name {
                    "PackageBaseAddress" if index.flat_container.is_empty() => index.flat_container = slashed.clone(),
                    "RegistrationsBaseUrl" if !index.hives.contains(&slashed) => index.hives.push(slashed.clone()),
                    "VulnerabilityInfo" if index.vulnerabilities.is_none() => {
                        index.vulnerabilities = Some(id.to_string())
                    }
                    _ => {}
                }
            }
        }
        if index.flat_container.is_empty() {
            return Err("the service index lists no PackageBaseAddress".into());
        }
        Ok(index)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_resources_a_restore_uses() {
        let doc = serde_json::json!({"version": "3.0.0", "resources": [
            {"@id": "http://n/v3/flatcontainer/", "@type": "PackageBaseAddress/3.0.0"},
            {"@id": "http://n/v3/registration/a/", "@type": "RegistrationsBaseUrl"},
            {"@id": "http://n/v3/registration/a/", "@type": "RegistrationsBaseUrl/3.0.0-rc"},
            {"@id": "http://n/v3/registration/b", "@type": ["RegistrationsBaseUrl/3.6.0", "RegistrationsBaseUrl/Versioned"]},
            {"@id": "http://n/v3/vulnerabilities/index.json", "@type": "VulnerabilityInfo/6.7.0"},
            {"@id": "http://n/v3/query", "@type": "SearchQueryService"}
        ]});
        let index = FeedIndex::read(&doc);
        assert_eq!(
            index,
            Ok(FeedIndex {
                flat_container: "http://n/v3/flatcontainer/".into(),
                hives: vec![
                    "http://n/v3/registration/a/".into(),
                    "http://n/v3/registration/b/".into()
                ],
                vulnerabilities: Some("http://n/v3/vulnerabilities/index.json".into()),
            })
        );
        let none = FeedIndex::read(&serde_json::json!({"version": "3.0.0", "resources": []}));
        assert!(none.is_err_and(|e| e.contains("PackageBaseAddress")));
    }
}
