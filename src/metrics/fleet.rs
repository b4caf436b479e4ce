//! The series of a fleet's peers: forwards to owners, peers served and
//! refused, and each peer's `up` gauge.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;

use super::{Metrics, OutcomeLabels};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct PeerLabels {
    pub peer: String,
}

/// How a package miss asked of its owner in the fleet ended: the
/// `outcome` label of `nucache_fleet_forwards_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Forward {
    /// The owner served it from its cache.
    Hit,
    /// The owner served it while downloading it (or joined its download).
    Miss,
    /// The owner could not (down, slow, refusing, not 200): this node
    /// downloaded it from the upstream.
    Fallback,
    /// The owner's body broke off mid-way: the rest came from the upstream.
    Error,
}

impl Forward {
    const ALL: [Forward; 4] = [Forward::Hit, Forward::Miss, Forward::Fallback, Forward::Error];

    fn as_str(self) -> &'static str {
        match self {
            Forward::Hit => "hit",
            Forward::Miss => "miss",
            Forward::Fallback => "fallback",
            Forward::Error => "error",
        }
    }
}

/// The fleet's counters: handles on their atomics (a peer's `up` gauge is
/// made per peer by [`Metrics::peer_up`]).
#[derive(Clone, Debug, Default)]
pub(crate) struct FleetSeries {
    /// By [`Forward`], in the order of `Forward::ALL`.
    pub(super) forwards: [Counter; 4],
    /// Body bytes received from owners.
    pub forwarded_bytes: Counter,
    /// Requests from peers (right fleet key) answered.
    pub served_to_peers: Counter,
    /// Requests with a wrong fleet key, refused.
    pub refused_peers: Counter,
}

impl FleetSeries {
    pub fn forward(&self, outcome: Forward) {
        self.forwards[outcome as usize].inc();
    }

    /// Each outcome's label and count, for the status page.
    pub fn forwards(&self) -> [(&'static str, u64); 4] {
        Forward::ALL.map(|outcome| (outcome.as_str(), self.forwards[outcome as usize].get()))
    }
}

impl Metrics {
    pub(super) fn register_fleet(mut self) -> Metrics {
        let registry = &mut self.registry;
        let forwards = Family::<OutcomeLabels, Counter>::default();
        for outcome in Forward::ALL {
            let labels = OutcomeLabels {
                outcome: outcome.as_str(),
            };
            self.fleet.forwards[outcome as usize] = forwards.get_or_create(&labels).clone();
        }
        registry.register(
            "fleet_forwards",
            "Package misses asked of their owner in the fleet: served from its cache (hit), while it downloaded them (miss), fetched from the upstream instead (fallback), or broken off by the owner and finished from the upstream (error)",
            forwards,
        );
        registry.register(
            "fleet_forwarded_bytes",
            "Package bytes received from owners in the fleet",
            self.fleet.forwarded_bytes.clone(),
        );
        registry.register(
            "fleet_served_to_peers",
            "Requests from peers of the fleet (with the fleet key) answered",
            self.fleet.served_to_peers.clone(),
        );
        registry.register(
            "fleet_refused_peers",
            "Requests with a wrong fleet key, refused (403)",
            self.fleet.refused_peers.clone(),
        );
        registry.register(
            "fleet_peer_up",
            "1 while a peer of the fleet answers its health checks",
            self.peer_up.clone(),
        );
        self
    }

    /// The `up` gauge of fleet peer `peer`, listed (at 0) from now on.
    pub fn peer_up(&self, peer: &str) -> Gauge {
        self.peer_up
            .get_or_create(&PeerLabels { peer: peer.to_string() })
            .clone()
    }
}
