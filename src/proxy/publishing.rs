//! Publish calls through the proxy: forwarded by `publish`, then the
//! package's cached metadata is dropped so the change shows at once.

use std::sync::Arc;

use http::request::Parts;
use hyper::body::Incoming;

use super::respond::Reply;
use super::Proxy;
use crate::cache::KeySet;
use crate::error::ProxyError;
use crate::publish::{Call, Publisher};
use crate::rewrite::{MountKind, ServiceMap};

impl Proxy {
    pub(super) async fn publish(
        self: &Arc<Self>,
        call: Call,
        url: &str,
        parts: Parts,
        body: Incoming,
        map: &ServiceMap,
    ) -> Result<Reply, ProxyError> {
        let publisher = Publisher {
            config: &self.config,
            upstream: &self.stash.upstream,
            temp_dir: self.config.cache.dir.join("tmp"),
            server_key: self.publish_key.read().ok().and_then(|k| k.clone()),
        };
        let forwarded = publisher.forward(call, url, parts, body).await?;
        if let Some(id) = &forwarded.changed {
            self.forget_package_metadata(id, map);
        }
        Ok(Reply::plain(forwarded.response))
    }

    /// Drops the version list, every hive's registration documents and all
    /// search answers that may show `lower_id`, and its remembered 404s.
    fn forget_package_metadata(&self, lower_id: &str, map: &ServiceMap) {
        let mut keys = KeySet::default();
        for mount in map.mounts.iter() {
            match mount.kind {
                MountKind::PackageBase => keys.exact.push(format!("{}{lower_id}/index.json", mount.local)),
                MountKind::Registrations => keys.prefixes.push(format!("{}{lower_id}/", mount.local)),
                MountKind::Search | MountKind::Autocomplete => keys.prefixes.push(mount.local.clone()),
                _ => {}
            }
        }
        match self.stash.cache.remove_documents(&keys) {
            Ok(removed) => tracing::info!(
                package = lower_id,
                removed,
                "package changed upstream; cached metadata dropped"
            ),
            Err(error) => {
                tracing::warn!(package = lower_id, %error, "could not drop cached metadata")
            }
        }
        if let Err(error) = self.not_found.invalidate_entries_if(move |key, _| keys.contains(key)) {
            tracing::warn!(%error, "could not drop remembered 404s");
        }
    }
}
