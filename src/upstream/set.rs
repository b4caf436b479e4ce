//! The upstreams nucache fronts, by name and in priority order, each with
//! its own client (and so its own breakers, credentials, proxy and CA),
//! and which package ids each may serve (`merge::mapping`). An id that no
//! upstream's patterns give to an upstream is never asked of it: a public
//! upstream never sees a request for a private id.
//!
//! The proxy gives each member its own service map and fetch stage
//! (`proxy::feeds`) and merges their answers (`merge`).

use std::sync::Arc;

use super::{Budgets, Upstream};
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
    /// Every client counts its requests into `metrics`, and takes from its
    /// own budget of requests and the one budget of document bytes.
    pub fn from_config(config: &Config, metrics: &Arc<Metrics>) -> Upstreams {
        let set = config.upstream_set();
        let bytes = Budgets::document_bytes(&config.limits, metrics);
        let member = |(name, upstream): &(&str, &crate::config::UpstreamConfig)| {
            let budgets = Budgets::of(name, upstream, &config.limits, bytes.clone(), metrics);
            Member {
                name: name.to_string(),
                client: Arc::new(Upstream::with_budgets(upstream, metrics.clone(), budgets)),
            }
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

    /// Every upstream, in priority order.
    pub fn members(&self) -> impl Iterator<Item = &Member> {
        std::iter::once(&self.first).chain(&self.rest)
    }

    /// The upstreams (by name, priority order) package `id` may come from.
    pub fn sources_for(&self, id: &str) -> Vec<&str> {
        self.mapping.sources_for(id)
    }
}
