//! The upstream probe: fetch the service index once and say, in one line,
//! whether the configured upstream is a NuGet V3 feed nucache can serve —
//! at start-up (in the background) and for `check-config --probe`. It goes
//! straight to the upstream: it neither reads nor fills the cache.

use std::sync::Arc;

use http::{HeaderMap, StatusCode};

use crate::config::{Config, UpstreamConfig};
use crate::rewrite::{build_service_map, decode_body, MountKind, ServiceMap};
use crate::upstream::{Upstream, Wanted};

/// What the upstream's service index offers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeReport {
    pub url: String,
    /// Resources nucache serves from it (mounts).
    pub resources: usize,
    /// Registration hives (`registration5-gz-semver2`...).
    pub hives: Vec<String>,
}

impl std::fmt::Display for ProbeReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let hives = match self.hives.is_empty() {
            true => "none".to_string(),
            false => self.hives.join(", "),
        };
        write!(
            f,
            "{}: a NuGet V3 service index; {} resources served through nucache; registration hives: {hives}",
            self.url, self.resources
        )
    }
}

/// Fetches and reads `settings.service_index` (one of `config`'s upstreams,
/// see `Config::upstream_set`); the error says why it is not usable
/// (unreachable, status, not a service index).
pub async fn probe(config: &Config, settings: &UpstreamConfig) -> Result<ProbeReport, String> {
    let url = settings.service_index.clone();
    let fail = |why: String| format!("{url}: {why}");
    let upstream = Arc::new(Upstream::new(settings, Arc::default()));
    let mut fetched = match upstream.get(&url, Wanted::Document, &HeaderMap::new()).await {
        Ok(fetched) => fetched,
        Err(error) => return Err(fail(error.to_string())),
    };
    if fetched.status != StatusCode::OK {
        return Err(fail(format!("answered {}", fetched.status)));
    }
    let cap = settings.max_document_size.bytes();
    let raw = match upstream.read_to_end(&mut fetched, cap).await {
        Ok(raw) => raw,
        Err(error) => return Err(fail(error.to_string())),
    };
    let map = decode_body(&raw, cap)
        .and_then(|body| build_service_map(&body, config.publish.enabled))
        .map_err(|error| fail(format!("not a NuGet V3 service index: {error}")))?;
    if map.mounts.first_of(MountKind::PackageBase).is_none() {
        return Err(fail(
            "lists no PackageBaseAddress: packages could not be restored through it".to_string(),
        ));
    }
    Ok(report(url, &map))
}

/// What `map` (of the service index at `url`) offers.
pub(crate) fn report(url: String, map: &ServiceMap) -> ProbeReport {
    let hives = map
        .mounts
        .iter()
        .filter(|m| m.kind == MountKind::Registrations)
        .filter_map(|m| m.upstream.trim_end_matches('/').rsplit('/').next())
        .map(str::to_string)
        .collect();
    ProbeReport {
        url,
        resources: map.mounts.iter().count(),
        hives,
    }
}
