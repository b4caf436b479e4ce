//! The health checker: every `fleet.health_interval`, a GET of each other
//! peer's `/health` bounded by `fleet.health_timeout`; a 200 is up, anything
//! else a failure ([`super::peers::Peer`] counts them). It runs until the
//! server stops (the task is aborted at shutdown).

use std::sync::Arc;

use http::header::HeaderMap;
use http::StatusCode;
use tokio::time::MissedTickBehavior;

use super::peers::{Change, Peer};
use super::Fleet;
use crate::upstream::Wanted;

/// Largest `/health` answer read.
const MAX_HEALTH: u64 = 256 * 1024;

impl Fleet {
    /// Checks every peer now and then every interval, for ever.
    pub async fn watch(self: Arc<Self>) {
        let mut ticks = tokio::time::interval(self.settings.health_interval);
        ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            let checks = self.peers.iter().map(|peer| self.check(peer));
            futures_util::future::join_all(checks).await;
        }
    }

    async fn check(&self, peer: &Peer) {
        let bound = self.settings.health_timeout;
        let failure = match tokio::time::timeout(bound, self.ask_health(peer)).await {
            Ok(Ok(())) => None,
            Ok(Err(reason)) => Some(reason),
            Err(_) => Some(format!("no answer to /health within {} s", bound.as_secs_f64())),
        };
        match failure {
            None => {
                if peer.succeeded() == Change::Up {
                    tracing::info!(peer = peer.url, "fleet peer up: it owns its keys again");
                }
            }
            Some(reason) => self.note_failure(peer, &reason),
        }
    }

    async fn ask_health(&self, peer: &Peer) -> Result<(), String> {
        let url = format!("{}/health", peer.url);
        let mut fetched = self
            .client
            .get(&url, Wanted::Blob, &HeaderMap::new())
            .await
            .map_err(|error| error.to_string())?;
        let status = fetched.status;
        // Read to the end: the connection goes back to the pool.
        self.client
            .read_to_end(&mut fetched, MAX_HEALTH)
            .await
            .map_err(|error| error.to_string())?;
        match status {
            StatusCode::OK => Ok(()),
            status => Err(format!("/health answered {status}")),
        }
    }
}
