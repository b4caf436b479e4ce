//! The tables of a fleet: `[shared]`, the object store the nodes share,
//! and `[fleet]`, this node's name, its peers and the key they share.
//! With both empty (the default) nucache is one node, as before.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::secret::read_secret;
use super::{check_url, invalid, ConfigError, Secret};

/// The S3-compatible object store every node of a fleet reads and writes
/// package files and last good documents in.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct SharedConfig {
    /// `s3://bucket/optional/prefix`; empty: no shared store.
    pub url: String,
    /// The S3 endpoint of a server other than AWS (SeaweedFS, MinIO, Ceph RGW).
    pub endpoint: Option<String>,
    pub region: String,
    /// Allow a plain-http endpoint (a store on the same host or network).
    pub allow_http: bool,
    /// Credentials: these, else the files, else the standard
    /// `AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY` / `AWS_SESSION_TOKEN`;
    /// none at all: anonymous requests.
    pub access_key_id: Option<Secret>,
    pub access_key_id_file: Option<PathBuf>,
    pub secret_access_key: Option<Secret>,
    pub secret_access_key_file: Option<PathBuf>,
    /// Longest wait for one call to the store (a read's first byte, a
    /// write, a check); its retries fit in it too. The store is a cache
    /// tier: a slow one is skipped, never waited out.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// Failed calls in a row that open the store's breaker, and how long
    /// it stays open before one call tries again.
    pub failure_threshold: u32,
    #[serde(with = "humantime_serde")]
    pub breaker_cooldown: Duration,
}

impl Default for SharedConfig {
    fn default() -> Self {
        SharedConfig {
            url: String::new(),
            endpoint: None,
            region: "us-east-1".to_string(),
            allow_http: false,
            access_key_id: None,
            access_key_id_file: None,
            secret_access_key: None,
            secret_access_key_file: None,
            timeout: Duration::from_secs(5),
            failure_threshold: 3,
            breaker_cooldown: Duration::from_secs(10),
        }
    }
}

impl SharedConfig {
    pub fn enabled(&self) -> bool {
        !self.url.is_empty()
    }

    pub(super) fn read_secrets(&mut self) -> Result<(), ConfigError> {
        self.access_key_id = read_secret(
            ("shared.access_key_id", "shared.access_key_id_file"),
            self.access_key_id.take(),
            self.access_key_id_file.as_deref(),
        )?;
        self.secret_access_key = read_secret(
            ("shared.secret_access_key", "shared.secret_access_key_file"),
            self.secret_access_key.take(),
            self.secret_access_key_file.as_deref(),
        )?;
        Ok(())
    }

    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        if !self.enabled() {
            return Ok(());
        }
        if !self.url.starts_with("s3://") || self.url.len() <= "s3://".len() {
            return invalid("shared.url", "must be s3://BUCKET or s3://BUCKET/PREFIX");
        }
        if let Some(endpoint) = &self.endpoint {
            check_url("shared.endpoint", endpoint)?;
            if endpoint.starts_with("http://") && !self.allow_http {
                return invalid(
                    "shared.endpoint",
                    "is plain http: set shared.allow_http = true to allow it",
                );
            }
        }
        if self.access_key_id.is_some() != self.secret_access_key.is_some() {
            return invalid(
                "shared.access_key_id",
                "shared.access_key_id and shared.secret_access_key go together",
            );
        }
        if self.timeout.is_zero() {
            return invalid("shared.timeout", "must be longer than 0s");
        }
        if self.failure_threshold == 0 {
            return invalid("shared.failure_threshold", "must be at least 1");
        }
        Ok(())
    }
}

/// This node and the others of its fleet.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct FleetConfig {
    /// This node's URL as its peers reach it (`http://10.0.0.5:5000`); it
    /// is also the node's id in `Via`. Unset: an id generated once and kept
    /// in the cache directory.
    pub node: Option<String>,
    /// Every node of the fleet (this one may be listed too); a miss is
    /// asked of the key's owner among them before the upstream.
    pub peers: Vec<String>,
    /// The key peers present to each other (`X-Nucache-Fleet-Key`).
    pub key: Option<Secret>,
    pub key_file: Option<PathBuf>,
}

impl FleetConfig {
    pub fn enabled(&self) -> bool {
        !self.peers.is_empty()
    }

    pub(super) fn read_secrets(&mut self) -> Result<(), ConfigError> {
        self.key = read_secret(
            ("fleet.key", "fleet.key_file"),
            self.key.take(),
            self.key_file.as_deref(),
        )?;
        Ok(())
    }

    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        if let Some(node) = &self.node {
            check_url("fleet.node", node)?;
        }
        for peer in &self.peers {
            check_url("fleet.peers", peer)?;
        }
        if self.enabled() && self.node.is_none() {
            return invalid(
                "fleet.node",
                "a node with peers must name itself (its URL as the peers reach it)",
            );
        }
        if self.enabled() && self.key.is_none() {
            return invalid("fleet.key", "peers must share a key (fleet.key or fleet.key_file)");
        }
        Ok(())
    }
}
