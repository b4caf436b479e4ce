//! A fleet's peers, so that each package file is downloaded from the
//! upstream once for the whole fleet: the peer list (`fleet.peers`, this
//! node `fleet.node`, URLs compared normalised: `peers.rs`), who owns a
//! cache key (rendezvous hashing over the peers that answer their health
//! checks, this node always among them: `rendezvous.rs`), the health
//! checker (`health.rs`) and the client that asks an owner for a package
//! (`forward.rs`, the upstream client with no proxy and no retries).
//!
//! Forwarding goes one hop at most: a request carrying the right fleet key
//! is a peer's ([`FromPeer`], set by the front door) and is never
//! forwarded again. Since every node counts itself among the candidates,
//! a node forwards a key only to a node of higher weight for it, so
//! differing views of who is up cannot make a cycle either.

mod forward;
mod health;
mod peers;
mod rendezvous;

use std::sync::Arc;
use std::time::Duration;

use http::header::{HeaderMap, HeaderValue};
use serde::Serialize;

use crate::config::{FleetConfig, UpstreamConfig};
use crate::metrics::Metrics;
use crate::tiers::NodeId;
use crate::upstream::Upstream;

pub(crate) use forward::Forwarded;
pub(crate) use peers::{Peer, PeerStatus};

/// The fleet key a peer presents.
pub(crate) const KEY_HEADER: &str = "x-nucache-fleet-key";
/// The node that forwarded a request (for logs; the key decides).
pub(crate) const HOP_HEADER: &str = "x-nucache-fleet-hop";
/// The cache-key namespace (upstream) whose copy a peer asks for.
pub(crate) const NAMESPACE_HEADER: &str = "x-nucache-fleet-namespace";

/// What the front door learned of a request sent by a peer (its fleet key
/// checked); kept in the request's extensions. Such a request is served
/// like any read, and never forwarded.
#[derive(Debug, Clone, Default)]
pub(crate) struct FromPeer {
    /// The node that sent it (for the access log).
    pub hop: Option<String>,
    /// The namespace of the upstream whose copy it asks for.
    pub namespace: Option<String>,
}

impl FromPeer {
    pub fn of(headers: &HeaderMap) -> FromPeer {
        let text = |name| headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_string);
        FromPeer {
            hop: text(HOP_HEADER),
            namespace: text(NAMESPACE_HEADER),
        }
    }
}

struct Settings {
    health_interval: Duration,
    health_timeout: Duration,
    down_after: u32,
    forward_timeout: Duration,
}

/// This node's fleet: its name, the other peers and their health.
pub(crate) struct Fleet {
    /// This node, normalised.
    node: String,
    /// The other nodes, normalised, each once.
    peers: Vec<Arc<Peer>>,
    client: Arc<Upstream>,
    key: HeaderValue,
    hop: HeaderValue,
    settings: Settings,
    metrics: Arc<Metrics>,
}

/// What `/health` and the status page show of the fleet.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct FleetStatus {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    pub peers: Vec<PeerStatus>,
}

impl FleetStatus {
    /// States only: no URL, no error text (they name hosts).
    pub fn without_addresses(mut self) -> FleetStatus {
        self.node = None;
        for peer in &mut self.peers {
            peer.url = None;
            peer.last_error = None;
        }
        self
    }
}

impl Fleet {
    /// The fleet `config` describes; `None` without peers. Counts into
    /// `metrics` (its own requests to peers are not upstream requests, and
    /// are counted apart).
    pub fn from_config(config: &FleetConfig, metrics: &Arc<Metrics>, id: &Arc<NodeId>) -> Option<Arc<Fleet>> {
        if !config.enabled() {
            return None;
        }
        // Both are checked at load; without them there is no fleet to join.
        let node = peers::normalize(config.node.as_deref()?);
        let mut key = HeaderValue::from_str(config.key.as_ref()?.expose()).ok()?;
        key.set_sensitive(true);
        let hop = HeaderValue::from_str(&node).ok()?;
        let mut urls: Vec<String> = config.peers.iter().map(|peer| peers::normalize(peer)).collect();
        urls.sort();
        urls.dedup();
        urls.retain(|url| *url != node);
        let peers = urls
            .into_iter()
            .map(|url| {
                let gauge = metrics.peer_up(&url);
                Arc::new(Peer::new(url, gauge))
            })
            .collect();
        let client = Upstream::direct(&peer_client_config(config), Arc::new(Metrics::new()), Some(id.clone()));
        Some(Arc::new(Fleet {
            node,
            peers,
            client: Arc::new(client),
            key,
            hop,
            settings: Settings {
                health_interval: config.health_interval,
                health_timeout: config.health_timeout,
                down_after: config.down_after,
                forward_timeout: config.forward_timeout,
            },
            metrics: metrics.clone(),
        }))
    }

    /// The peer that owns cache key `key` now, or `None` when this node does.
    pub fn owner_of(&self, key: &str) -> Option<Arc<Peer>> {
        let up = self.peers.iter().filter(|peer| peer.is_up());
        let candidates = up.clone().map(|peer| peer.url.as_str()).chain([self.node.as_str()]);
        let owner = rendezvous::owner(key, candidates)?;
        up.into_iter().find(|peer| peer.url == owner).cloned()
    }

    pub fn status(&self) -> FleetStatus {
        FleetStatus {
            node: Some(self.node.clone()),
            peers: self.peers.iter().map(|peer| peer.status()).collect(),
        }
    }
}

/// The owner of cache key `key` among `nodes` (URLs, compared normalised),
/// as every node of a fleet with all of them up computes it: for tests and
/// tools that must know which node owns a package.
pub fn owner_of(key: &str, nodes: &[&str]) -> Option<String> {
    let nodes: Vec<String> = nodes.iter().map(|node| peers::normalize(node)).collect();
    rendezvous::owner(key, nodes.iter().map(String::as_str)).map(str::to_string)
}

/// The peer client's settings: no retries (the upstream is the retry), no
/// redirects, no breakers (the health checker is the breaker), no
/// credentials, and the forward timeout as its bound.
fn peer_client_config(config: &FleetConfig) -> UpstreamConfig {
    UpstreamConfig {
        service_index: String::new(),
        connect_timeout: config.forward_timeout,
        read_timeout: config.forward_timeout,
        retries: 0,
        max_redirects: 0,
        breaker_threshold: 0,
        ..UpstreamConfig::default()
    }
    .without_credentials()
}
