//! Publish calls through the proxy: forwarded by `publish`, then the
//! package's cached metadata is dropped so the change shows at once.

use std::sync::Arc;

use http::request::Parts;
use hyper::body::Incoming;

use super::respond::Reply;
use super::Proxy;
use crate::auth::UpstreamKey;
use crate::cache::KeySet;
use crate::error::ProxyError;
use crate::publish::{Call, Publisher};
use crate::rewrite::{MountKind, ServiceMap};

impl Proxy {
    pub(super) async fn publish(
        self: &Arc<Self>,
        call: Call,
        key: UpstreamKey,
        url: &str,
        parts: Parts,
        body: Incoming,
        map: &ServiceMap,
    ) -> Result<(Reply, Option<String>), ProxyError> {
        let publisher = Publisher {
            config: &self.config,
            upstream: &self.upstream,
            temp_dir: self.config.cache.dir.join("tmp"),
            server_key: self.publish_key.read().ok().and_then(|k| k.clone()),
        };
        let forwarded = publisher.forward(call, key, url, parts, body).await?;
        if let Some(id) = &forwarded.changed {
            self.forget_package_metadata(id, map);
        }
        Ok((Reply::plain(forwarded.response), forwarded.pushed))
    }

    /// Drops the version list, every hive's registration documents and all
    /// search answers that may show `lower_id`, and forgets every 404 the
    /// upstream gave for the id: its package files too (a push makes a
    /// version that did not exist).
    fn forget_package_metadata(&self, lower_id: &str, map: &ServiceMap) {
        let mut documents = KeySet::default();
        let mut not_found = KeySet::default();
        for mount in map.mounts.iter() {
            match mount.kind {
                MountKind::PackageBase => {
                    documents.exact.push(format!("{}{lower_id}/index.json", mount.local));
                    not_found.prefixes.push(format!("{}{lower_id}/", mount.local));
                }
                MountKind::Registrations => documents.prefixes.push(format!("{}{lower_id}/", mount.local)),
                MountKind::Search | MountKind::Autocomplete => documents.prefixes.push(mount.local.clone()),
                _ => {}
            }
        }
        match self.cache.remove_documents(&documents) {
            Ok(removed) => tracing::info!(
                package = lower_id,
                removed,
                "package changed upstream; cached metadata dropped"
            ),
            Err(error) => {
                tracing::warn!(package = lower_id, %error, "could not drop cached metadata")
            }
        }
        not_found.exact.extend(documents.exact);
        not_found.prefixes.extend(documents.prefixes);
        self.cache.forget_missing(not_found);
    }
}
