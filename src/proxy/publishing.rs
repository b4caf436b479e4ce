//! Publish calls through the proxy: forwarded by `publish`, then the
//! package's cached metadata is dropped so the change shows at once.

use std::sync::Arc;

use http::request::Parts;
use hyper::body::Incoming;

use super::feeds::{Feed, ServiceSnapshot};
use super::respond::Reply;
use super::Proxy;
use crate::auth::UpstreamKey;
use crate::cache::KeySet;
use crate::error::ProxyError;
use crate::publish::{Call, Publisher};
use crate::rewrite::{MountKind, ServiceMap};

impl Proxy {
    /// The upstream pushes go to: `publish.upstream`, else the
    /// highest-priority one whose index lists `PackagePublish`; with its
    /// service map (`primary` is the primary's, already loaded).
    pub(super) async fn publish_feed(
        self: &Arc<Self>,
        primary: &Arc<ServiceSnapshot>,
    ) -> Result<(Arc<Feed>, Arc<ServiceSnapshot>), ProxyError> {
        let has_publish = |service: &ServiceSnapshot| service.map.mounts.first_of(MountKind::Publish).is_some();
        if let Some(wanted) = &self.config.publish.upstream {
            let feed = self.feeds.all().iter().find(|f| &f.name == wanted);
            // Validated at load: publish.upstream names a configured upstream.
            let feed = feed.ok_or(ProxyError::NotFound)?.clone();
            let (service, _) = self.service_map(&feed, false).await?;
            return Ok((feed, service));
        }
        if has_publish(primary) {
            return Ok((self.feeds.primary().clone(), primary.clone()));
        }
        for feed in self.feeds.all().iter().skip(1) {
            match self.service_map(feed, false).await {
                Ok((service, _)) if has_publish(&service) => return Ok((feed.clone(), service)),
                Ok(_) => {}
                Err(error) => {
                    tracing::debug!(upstream = feed.name, %error, "no service index; not a publish target now")
                }
            }
        }
        Err(ProxyError::NotFound)
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) async fn publish(
        self: &Arc<Self>,
        feed: &Feed,
        call: Call,
        key: UpstreamKey,
        url: &str,
        parts: Parts,
        body: Incoming,
        map: &ServiceMap,
    ) -> Result<(Reply, Option<String>), ProxyError> {
        let publisher = Publisher {
            config: &self.config,
            upstream: &feed.client,
            temp_dir: self.config.cache.dir.join("tmp"),
            server_key: self.publish_key.read().ok().and_then(|k| k.clone()),
        };
        let forwarded = publisher.forward(call, key, url, parts, body).await?;
        if let Some(id) = &forwarded.changed {
            self.forget_package_metadata(feed, id, map);
        }
        Ok((Reply::plain(forwarded.response), forwarded.pushed))
    }

    /// Drops the version list, every hive's registration documents and all
    /// search answers that may show `lower_id`, and forgets every 404 the
    /// upstream gave for the id: its package files too (a push makes a
    /// version that did not exist).
    fn forget_package_metadata(&self, feed: &Feed, lower_id: &str, map: &ServiceMap) {
        let mut documents = KeySet::default();
        let mut not_found = KeySet::default();
        for mount in map.mounts.iter() {
            match mount.kind {
                MountKind::PackageBase => {
                    documents
                        .exact
                        .push(feed.key(&format!("{}{lower_id}/index.json", mount.local)));
                    not_found
                        .prefixes
                        .push(feed.key(&format!("{}{lower_id}/", mount.local)));
                }
                MountKind::Registrations => documents
                    .prefixes
                    .push(feed.key(&format!("{}{lower_id}/", mount.local))),
                MountKind::Search | MountKind::Autocomplete => documents.prefixes.push(feed.key(&mount.local)),
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
