//! The upstreams nucache fronts, by name and in priority order, each with
//! its own client (and so its own breakers, credentials, proxy and CA),
//! and which package ids each may serve (`merge::mapping`). An id that no
//! upstream's patterns give to an upstream is never asked of it: a public
//! upstream never sees a request for a private id.
//!
//! Serving merges several upstreams only once the proxy is wired for it;
//! the configuration refuses more than one until then, so this set has
//! one member today and its patterns already guard it.

use std::sync::Arc;

use super::Upstream;
use crate::config::Config;
use crate::merge::mapping::SourceMapping;
use crate::metrics::Metrics;

/// One configured upstream.
pub(crate) struct Member {
    pub name: String,
    pub client: Arc<Upstream>,
}

pub(crate) struct Upstreams {
    /// The highest-priority upstream.
    first: Member,
    /// The others, in priority order.
    rest: Vec<Member>,
    mapping: SourceMapping,
}

impl Upstreams {
    /// Every client counts its requests into `metrics`.
    pub fn from_config(config: &Config, metrics: &Arc<Metrics>) -> Upstreams {
        let set = config.upstream_set();
        let member = |(name, upstream): &(&str, &crate::config::UpstreamConfig)| Member {
            name: name.to_string(),
            client: Arc::new(Upstream::new(upstream, metrics.clone())),
        };
        let mut members = set.iter().map(member);
        // upstream_set() is never empty; `[upstream]` stands in regardless.
        let first = members.next().unwrap_or_else(|| Member {
            name: "default".to_string(),
            client: Arc::new(Upstream::new(&config.upstream, metrics.clone())),
        });
        let rest = members.collect();
        let patterns = set.iter().map(|(name, upstream)| (*name, upstream.packages.as_slice()));
        // Patterns were checked at load; should one not parse after all,
        // the upstreams serve no id rather than every id.
        let mapping = SourceMapping::new(patterns).unwrap_or_else(|error| {
            tracing::error!(%error, "upstream packages patterns unusable; no package id is served");
            SourceMapping::empty()
        });
        Upstreams { first, rest, mapping }
    }

    /// The highest-priority upstream: the one that serves the service
    /// index (and everything, while the set has one member).
    pub fn primary(&self) -> &Member {
        &self.first
    }

    /// Every upstream's name, in priority order (for `/health`).
    pub fn names(&self) -> Vec<&str> {
        std::iter::once(&self.first)
            .chain(&self.rest)
            .map(|m| m.name.as_str())
            .collect()
    }

    /// Whether `member` may be asked for package `id` (its patterns, or
    /// another upstream's more specific ones, decide).
    pub fn may_ask(&self, member: &Member, id: &str) -> bool {
        self.mapping.sources_for(id).contains(&member.name.as_str())
    }
}
