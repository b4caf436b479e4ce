//! Publish calls through the front door (a side road beside the read
//! pipeline): the upstream pushes go to, the call forwarded by `publish`
//! with the key that goes upstream, then the package's cached metadata
//! dropped so that the change shows at once. This module owns
//! `publish.api_key` as last read (SIGHUP re-reads its file).

use std::sync::{Arc, RwLock};

use http::request::Parts;
use hyper::body::Incoming;

use crate::auth::UpstreamKey;
use crate::cache::{Cache, Namespace};
use crate::config::{Config, Secret};
use crate::error::{ClientError, ProxyError};
use crate::pipeline::{Feed, Pipeline, Resolved, ServiceSnapshot};
use crate::publish::{self, Publisher};
use crate::reply::Reply;
use crate::rewrite::MountKind;
use crate::route::RouteError;

pub(crate) struct Publishing {
    config: Arc<Config>,
    cache: Arc<Cache>,
    pipeline: Arc<Pipeline>,
    /// `publish.api_key` as last read.
    key: RwLock<Option<Secret>>,
}

impl Publishing {
    pub fn new(config: Arc<Config>, cache: Arc<Cache>, pipeline: Arc<Pipeline>) -> Publishing {
        let key = RwLock::new(config.publish.api_key.clone());
        Publishing {
            config,
            cache,
            pipeline,
            key,
        }
    }

    /// Takes `publish.api_key` from `fresh` (SIGHUP); whether one is set.
    pub fn reload_key(&self, fresh: &Config) -> bool {
        if let Ok(mut key) = self.key.write() {
            key.clone_from(&fresh.publish.api_key);
        }
        fresh.publish.api_key.is_some()
    }

    /// Forwards an authorized publish call (`call` already checked against
    /// the method) to the upstream pushes go to; returns the answer and the
    /// `id/version` pushed, if any.
    pub async fn forward(
        &self,
        resolved: &Resolved,
        call: publish::Call,
        key: UpstreamKey,
        parts: Parts,
        body: Incoming,
    ) -> Result<(Reply, Option<String>), ProxyError> {
        let (feed, service) = self.publish_feed().await?;
        let part = self
            .pipeline
            .part_in(&feed, &service, resolved)
            .ok_or(ClientError::Route(RouteError::NotFound))?;
        let publisher = Publisher {
            config: &self.config,
            upstream: &feed.client,
            temp_dir: self.config.cache.dir.join("tmp"),
            server_key: self.key.read().ok().and_then(|k| k.clone()),
        };
        let forwarded = publisher.forward(call, key, &part.url(), parts, body).await?;
        if let Some(id) = &forwarded.changed {
            self.forget_package_metadata(&feed, id);
        }
        Ok((Reply::plain(forwarded.response), forwarded.pushed))
    }

    /// The upstream pushes go to: `publish.upstream`, else the
    /// highest-priority one whose index lists `PackagePublish`.
    async fn publish_feed(&self) -> Result<(Arc<Feed>, Arc<ServiceSnapshot>), ProxyError> {
        let has_publish = |service: &ServiceSnapshot| service.map.mounts.first_of(MountKind::Publish).is_some();
        let feeds = self.pipeline.feeds();
        if let Some(wanted) = &self.config.publish.upstream {
            // Validated at load: publish.upstream names a configured upstream.
            let feed = feeds.named(wanted).ok_or(ProxyError::NotFound)?.clone();
            let (service, _) = self.pipeline.service_map(&feed, false).await?;
            return Ok((feed, service));
        }
        for feed in feeds.all() {
            match self.pipeline.service_map(feed, false).await {
                Ok((service, _)) if has_publish(&service) => return Ok((feed.clone(), service)),
                Ok(_) => {}
                Err(error) => {
                    tracing::debug!(upstream = feed.name, %error, "no service index; not a publish target now")
                }
            }
        }
        Err(ProxyError::NotFound)
    }

    /// Drops the version list, every hive's registration documents and all
    /// search answers that may show `lower_id` (of `feed`, and the merged
    /// answers), and forgets every 404 the upstream gave for the id: its
    /// package files too (a push makes a version that did not exist).
    fn forget_package_metadata(&self, feed: &Feed, lower_id: &str) {
        let Some(map) = self.pipeline.feeds().primary().service.current().map(|s| s.map.clone()) else {
            return;
        };
        let namespaces = [feed.namespace.clone(), Namespace::merged()];
        let mut documents = crate::pipeline::package_keys(&map, namespaces.iter().cloned(), lower_id, None);
        for mount in map.mounts.iter() {
            if matches!(mount.kind, MountKind::Search | MountKind::Autocomplete) {
                documents
                    .prefixes
                    .extend(namespaces.iter().map(|ns| ns.key(&mount.local)));
            }
        }
        match self.cache.remove_documents(&documents) {
            Ok(removed) => tracing::info!(
                package = lower_id,
                removed,
                "package changed upstream; cached metadata dropped"
            ),
            Err(error) => tracing::warn!(package = lower_id, %error, "could not drop cached metadata"),
        }
        self.cache.forget_missing(documents);
    }
}
