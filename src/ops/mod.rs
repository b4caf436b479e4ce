//! The operations surface: what operators and their tools ask nucache
//! about itself — `/health` and `/ready` (load balancers, Kubernetes),
//! `/metrics` (Prometheus), the home line and the status page (`status.rs`),
//! the admin API (`admin.rs`: stats, purge, online verify, the export
//! listing in `export_listing.rs`, bundle imports in `admin_import.rs`).
//! It sees the read pipeline only through [`View`], and the cache, the
//! metrics and the configuration it is given.

mod admin;
mod admin_import;
mod export_listing;
mod status;

use std::sync::Arc;
use std::time::Instant;

use http::{HeaderMap, Response, StatusCode};

use crate::auth;
use crate::body::Body;
use crate::cache::Cache;
use crate::config::Config;
use crate::metrics::Metrics;
use crate::pipeline::View;
use crate::reply;
use crate::shared::SharedStore;
use crate::upstream::BreakerState;

pub(crate) use status::wants_html;

pub(crate) struct Ops {
    config: Arc<Config>,
    cache: Arc<Cache>,
    metrics: Arc<Metrics>,
    pipeline: Arc<dyn View>,
    started: Instant,
    /// Where today's figures of the status page start.
    today: status::TodayCell,
    /// Uploads of `nucache import --url` (`limits.import_staging`).
    import_staging: crate::airgap::Staging,
    /// The store a fleet shares, when there is one.
    shared: Option<Arc<SharedStore>>,
}

impl Ops {
    pub fn new(
        config: Arc<Config>,
        cache: Arc<Cache>,
        metrics: Arc<Metrics>,
        pipeline: Arc<dyn View>,
        shared: Option<Arc<SharedStore>>,
    ) -> Ops {
        Ops {
            cache,
            metrics,
            pipeline,
            shared,
            started: Instant::now(),
            today: status::TodayCell::default(),
            import_staging: crate::airgap::Staging::new(&config.cache.dir, config.limits.import_staging.bytes()),
            config,
        }
    }

    /// The one-line answer at `/` for anything but a browser.
    pub fn home(&self) -> Response<Body> {
        let feeds: Vec<String> = self.pipeline.upstreams().into_iter().map(|u| u.service_index).collect();
        let text = format!(
            "nucache {}: a caching proxy for the NuGet V3 feed {}\nPoint NuGet clients at /v3/index.json on this host.",
            env!("CARGO_PKG_VERSION"),
            feeds.join(" and ")
        );
        reply::text(StatusCode::OK, &text)
    }

    /// Open to everyone (load balancers poll it); when reads need
    /// credentials, anonymous callers see no upstream address or error text.
    pub fn health(&self, headers: &HeaderMap) -> Response<Body> {
        let anonymous = auth::check_read(&self.config, headers).is_err();
        let upstreams = self.pipeline.upstreams();
        // Anonymous callers of a closed feed learn the state, not the
        // addresses or error texts (they may name hosts and local paths).
        let status_of = |status: &crate::upstream::UpstreamStatus| match anonymous {
            true => status.clone().without_addresses(),
            false => status.clone(),
        };
        let listed: Vec<serde_json::Value> = upstreams
            .iter()
            .map(|u| {
                let status = status_of(&u.status);
                serde_json::json!({
                    "name": u.name,
                    "state": status.state,
                    "origins": status.origins,
                    "service_index": u.index.as_str(),
                })
            })
            .collect();
        let any_open = upstreams.iter().any(|u| u.status.state == BreakerState::Open);
        let storage_error = self.cache.health.problem();
        let shared_down = self.shared.as_ref().is_some_and(|shared| shared.is_down());
        let degraded = any_open || storage_error.is_some() || shared_down;
        let totals = self.cache.totals();
        let last_error = storage_error.clone().filter(|_| !anonymous);
        let primary = upstreams.first();
        let fleet = self.pipeline.fleet().map(|fleet| match anonymous {
            true => fleet.without_addresses(),
            false => fleet,
        });
        let body = serde_json::json!({
            "status": if degraded { "degraded" } else { "ok" },
            "version": env!("CARGO_PKG_VERSION"),
            "uptime_seconds": self.started.elapsed().as_secs(),
            // The primary's: its index is the one clients see. Every
            // upstream's is under "upstreams".
            "service_index": primary.map_or("not loaded", |u| u.index.as_str()),
            "upstream": primary.map(|u| status_of(&u.status)),
            "upstreams": listed,
            "storage": { "writable": storage_error.is_none(), "last_error": last_error },
            "shared": self.shared_health(anonymous),
            "cache_entries": totals.entries,
            "cache_bytes": totals.bytes,
            "downloads_in_flight": self.pipeline.downloads_in_flight(),
            // This node and its peers (up: they own their keys), in a fleet.
            "fleet": fleet,
        });
        reply::json(StatusCode::OK, body.to_string())
    }

    /// Readiness, open like `/health`: 200 once the cache takes writes and
    /// every upstream's service index is loaded (at start-up, from the
    /// cache or the upstream, with no client request), else 503 and why.
    /// Anonymous callers of a closed feed get no error text.
    pub fn ready(&self, headers: &HeaderMap) -> Response<Body> {
        let detailed = auth::check_read(&self.config, headers).is_ok();
        let mut reasons = Vec::new();
        if let Some(problem) = self.cache.health.problem() {
            let mut reason = "the cache directory does not take writes".to_string();
            if detailed {
                reason = format!("{reason}: {problem}");
            }
            reasons.push(reason);
        }
        for upstream in self.pipeline.upstreams() {
            if upstream.index != crate::pipeline::IndexState::NotLoaded {
                continue;
            }
            let mut reason = format!(
                "the service index of upstream {} is not loaded yet (none cached, and the upstream has not given it)",
                upstream.name
            );
            if let Some(failure) = upstream.index_failure.filter(|_| detailed) {
                reason = format!("{reason}: {failure}");
            }
            reasons.push(reason);
        }
        let status = match reasons.is_empty() {
            true => StatusCode::OK,
            false => StatusCode::SERVICE_UNAVAILABLE,
        };
        // Ready all the same: the store is a cache tier, the node serves
        // from its disk and the upstream without it.
        let degraded: Vec<String> = self
            .shared
            .iter()
            .filter(|shared| shared.is_down())
            .map(|_| {
                "the shared store is unreachable (its breaker is open): reads go to the upstream, writes are skipped"
                    .to_string()
            })
            .collect();
        let body = serde_json::json!({
            "ready": reasons.is_empty(),
            "status": if !reasons.is_empty() { "not ready" } else if degraded.is_empty() { "ok" } else { "degraded" },
            "reasons": reasons,
            "degraded": degraded,
        });
        reply::json(status, body.to_string())
    }

    /// `/metrics`: the counters, and the states read now from their owners.
    pub fn metrics_text(&self) -> Response<Body> {
        let totals = self.cache.totals();
        let origins = self.pipeline.upstreams().into_iter().flat_map(|u| u.status.origins);
        let snapshot = crate::metrics::Snapshot {
            cache_size_bytes: totals.bytes,
            cache_entries: totals.entries as u64,
            downloads_in_flight: self.pipeline.downloads_in_flight() as u64,
            storage_writable: self.cache.health.problem().is_none(),
            breakers: origins
                .filter_map(|b| Some((b.origin?, b.state == BreakerState::Open)))
                .collect(),
            shared_breaker_open: self.shared.as_ref().map(|shared| shared.is_down()),
        };
        reply::metrics(self.metrics.render(&snapshot))
    }
}

impl Ops {
    /// The shared store on `/health`: its state, and for callers allowed
    /// to read, its URL and last error (never credentials: it has none).
    fn shared_health(&self, anonymous: bool) -> serde_json::Value {
        let Some(shared) = &self.shared else {
            return serde_json::Value::Null;
        };
        let mut status = shared.status();
        if anonymous {
            status.last_error = None;
        }
        serde_json::json!({
            "url": (!anonymous).then(|| shared.url()),
            "state": status.state,
            "consecutive_failures": status.consecutive_failures,
            "last_error": status.last_error,
            "open_for_seconds": status.open_for_seconds,
            "times_opened": status.times_opened,
        })
    }
}
