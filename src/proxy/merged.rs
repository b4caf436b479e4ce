//! Reads among several upstreams: the upstreams the patterns allow for
//! the id, asked in priority order, their answers merged (`merge`) or the
//! first that has it taken. An upstream that fails degrades the answer
//! (its cached copy, else nothing of it) and is named in
//! `X-Nucache-Missing-Upstreams`; it never fails the answer while another
//! gave one.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::HeaderValue;
use http::request::Parts;
use serde_json::Value;
use sha2::{Digest, Sha512};

use super::feeds::{Feed, ServiceSnapshot};
use super::respond::{self, Reply};
use super::{base, Proxy, Read};
use crate::cache::{CacheStatus, HotDoc};
use crate::error::{ClientError, ProxyError};
use crate::merge::{registration, search, versions};
use crate::rewrite::{MountKind, Template};
use crate::route::{self, RouteError, Target, TargetKind};

/// The header naming the upstreams an answer lacks.
const MISSING: &str = "x-nucache-missing-upstreams";

/// What several upstreams answered for one document.
#[derive(Default)]
struct Gathered {
    /// In priority order: the upstream and its (cached or fetched) copy.
    docs: Vec<(Arc<Feed>, Arc<HotDoc>, CacheStatus)>,
    /// Upstreams that failed: absent from `docs`, or there from the cache only.
    missing: Vec<String>,
    failure: Option<ProxyError>,
}

impl Gathered {
    /// The error to answer with when no upstream gave anything.
    fn nothing(self) -> ProxyError {
        self.failure.unwrap_or(ProxyError::NotFound)
    }

    /// The worst of the parts' cache statuses.
    fn status(&self) -> CacheStatus {
        let has = |wanted: CacheStatus| self.docs.iter().any(|(_, _, s)| *s == wanted);
        [
            CacheStatus::Stale,
            CacheStatus::Miss,
            CacheStatus::Updating,
            CacheStatus::Revalidated,
        ]
        .into_iter()
        .find(|s| has(*s))
        .unwrap_or(CacheStatus::Hit)
    }
}

impl Proxy {
    /// A read under a mount when several upstreams are configured
    /// (`target` resolved against the primary's mounts).
    pub(super) async fn read_merged(
        self: &Arc<Self>,
        parts: &Parts,
        path: &str,
        target: &Target,
        kind: Option<MountKind>,
    ) -> Result<Reply, ProxyError> {
        if let Some(kind @ (MountKind::Search | MountKind::Autocomplete)) = kind {
            return self.merged_search(parts, path, kind).await;
        }
        let sources = self.feeds.sources(target.read_id());
        if sources.len() < 2 {
            return self.first_answer(&sources, parts, path).await;
        }
        match target.kind {
            TargetKind::VersionList => self.merged_versions(&sources, parts, path).await,
            TargetKind::PackageFile(_) => self.package_from_owner(&sources, parts, path, target).await,
            TargetKind::Registration if !is_leaf(target) => self.merged_registration(&sources, parts, target).await,
            _ => self.first_answer(&sources, parts, path).await,
        }
    }

    /// `path` read from `feed` alone; a path its mounts lack is a 404.
    async fn read_in(self: &Arc<Self>, feed: &Arc<Feed>, parts: &Parts, path: &str) -> Result<Reply, ProxyError> {
        match self.resolve_in(feed, parts, path).await? {
            Some((service, target)) => self.read(feed, &service, parts, &target).await,
            None => Err(ProxyError::NotFound),
        }
    }

    /// The first answer of `sources` (priority order) that is not a 404;
    /// an upstream that fails is passed over while a later one answers.
    async fn first_answer(
        self: &Arc<Self>,
        sources: &[Arc<Feed>],
        parts: &Parts,
        path: &str,
    ) -> Result<Reply, ProxyError> {
        let mut failure = None;
        for feed in sources {
            match self.read_in(feed, parts, path).await {
                Ok(reply) => return Ok(reply),
                Err(ProxyError::NotFound) => {}
                Err(error) => {
                    tracing::debug!(upstream = feed.name, %error, "upstream failed; asking the next one");
                    failure.get_or_insert(error);
                }
            }
        }
        Err(failure.unwrap_or(ProxyError::NotFound))
    }

    /// `path` resolved against `feed`'s (aligned) mounts; `None` when the
    /// feed has no such resource.
    async fn resolve_in(
        self: &Arc<Self>,
        feed: &Arc<Feed>,
        parts: &Parts,
        path: &str,
    ) -> Result<Option<(Arc<ServiceSnapshot>, Target)>, ProxyError> {
        let (service, _) = self.service_map(feed, false).await?;
        match route::resolve(path, parts.uri.query(), &service.map.mounts) {
            Ok(target) => Ok(Some((service, target))),
            Err(RouteError::NotFound) => Ok(None),
            Err(other) => Err(ClientError::from(other).into()),
        }
    }

    /// One upstream's copy of the document at `path`: `Ok(None)` for a 404
    /// (or no such resource there).
    async fn document_of(
        self: &Arc<Self>,
        feed: &Arc<Feed>,
        parts: &Parts,
        path: &str,
    ) -> Result<Option<(Arc<HotDoc>, CacheStatus)>, ProxyError> {
        let Some((service, target)) = self.resolve_in(feed, parts, path).await? else {
            return Ok(None);
        };
        match self.read_document(feed, &service, &target).await {
            Ok(Read::Document(doc, status, _)) => Ok(Some((doc, status))),
            Ok(Read::Package(_)) => Err(ProxyError::Internal(
                "a package file where a document was expected".into(),
            )),
            Err(ProxyError::NotFound) => Ok(None),
            Err(error) => Err(error),
        }
    }

    /// The document at `path` from every upstream of `sources`, asked at once.
    async fn gather(self: &Arc<Self>, sources: &[Arc<Feed>], parts: &Parts, path: &str) -> Gathered {
        let asked = sources.iter().map(|feed| self.document_of(feed, parts, path));
        let answers = futures_util::future::join_all(asked).await;
        let mut gathered = Gathered::default();
        for (feed, answer) in sources.iter().zip(answers) {
            match answer {
                Ok(Some((doc, status))) => {
                    if status == CacheStatus::Stale {
                        gathered.missing.push(feed.name.clone());
                    }
                    gathered.docs.push((feed.clone(), doc, status));
                }
                Ok(None) => {}
                Err(error) => {
                    tracing::info!(upstream = feed.name, %error, "upstream failed; answering without it");
                    gathered.missing.push(feed.name.clone());
                    gathered.failure.get_or_insert(error);
                }
            }
        }
        gathered
    }

    /// `{id}/index.json`: the union of every allowed upstream's list.
    async fn merged_versions(
        self: &Arc<Self>,
        sources: &[Arc<Feed>],
        parts: &Parts,
        path: &str,
    ) -> Result<Reply, ProxyError> {
        let mut gathered = self.gather(sources, parts, path).await;
        let mut lists = Vec::new();
        for (feed, doc, _) in &gathered.docs {
            match versions::flat_versions(doc.body.text()) {
                Ok(list) => lists.push(list),
                Err(error) => {
                    tracing::warn!(upstream = feed.name, %error, "unusable version list; answering without it");
                    gathered.missing.push(feed.name.clone());
                }
            }
        }
        if lists.is_empty() {
            return Err(gathered.nothing());
        }
        let merged = versions::union(lists.iter().map(Vec::as_slice));
        let body = serde_json::json!({ "versions": merged }).to_string();
        self.merged_reply(parts, Bytes::from(body), &gathered, self.config.ttl.versions)
    }

    /// A package file from the highest-priority allowed upstream whose
    /// version list has that version (the next on a 404); a copy any of
    /// them gave before is served from the cache as it is.
    async fn package_from_owner(
        self: &Arc<Self>,
        sources: &[Arc<Feed>],
        parts: &Parts,
        path: &str,
        target: &Target,
    ) -> Result<Reply, ProxyError> {
        for feed in sources {
            if let Some(reply) = self.cached_package_file(&parts.headers, &feed.key(&target.key)).await? {
                return Ok(reply);
            }
        }
        let (id, version) = target
            .package
            .as_deref()
            .and_then(|p| p.split_once('/'))
            .ok_or(ProxyError::NotFound)?;
        let list_path = format!("{}{id}/index.json", mount_local(target));
        let mut failure = None;
        for feed in sources {
            let listed = match self.document_of(feed, parts, &list_path).await {
                Ok(Some((doc, _))) => versions::flat_versions(doc.body.text())
                    .is_ok_and(|list| versions::owner_of(&[(feed.name.as_str(), list)], version).is_some()),
                Ok(None) => false,
                Err(error) => {
                    failure.get_or_insert(error);
                    false
                }
            };
            if !listed {
                continue;
            }
            match self.read_in(feed, parts, path).await {
                Ok(reply) => return Ok(reply),
                Err(ProxyError::NotFound) => {}
                Err(error) => {
                    failure.get_or_insert(error);
                }
            }
        }
        Err(failure.unwrap_or(ProxyError::NotFound))
    }

    /// A registration index (or a page of a merged index) of one hive: the
    /// leaves of every allowed upstream, paged as nuget.org pages them.
    async fn merged_registration(
        self: &Arc<Self>,
        sources: &[Arc<Feed>],
        parts: &Parts,
        target: &Target,
    ) -> Result<Reply, ProxyError> {
        let base = base::public_base(&self.config, parts)?;
        let id = target.rest.split('/').next().unwrap_or_default();
        let index_path = format!("{}{id}/index.json", mount_local(target));
        let mut gathered = self.gather(sources, parts, &index_path).await;
        let local_base = format!("{}/v3/", base.url);
        let mut first = None;
        let mut leaves_by_upstream = Vec::new();
        for (feed, doc, _) in gathered.docs.clone() {
            let Ok(index) = serde_json::from_slice::<Value>(doc.body.render(&base.url).identity()) else {
                gathered.missing.push(feed.name.clone());
                continue;
            };
            let mut leaves = registration::inlined_leaves(&index);
            for page_url in registration::outlined_pages(&index) {
                let page_path = page_url.strip_prefix(&local_base).unwrap_or_default();
                match self.document_of(&feed, parts, page_path).await {
                    Ok(Some((page, _))) => {
                        let page = serde_json::from_slice::<Value>(page.body.render(&base.url).identity());
                        leaves.extend(page.map(|p| registration::page_leaves(&p)).unwrap_or_default());
                    }
                    Ok(None) => {}
                    Err(error) => {
                        tracing::info!(upstream = feed.name, %error, "registration page unavailable; merging without it");
                        gathered.missing.push(feed.name.clone());
                    }
                }
            }
            leaves_by_upstream.push(leaves);
            first.get_or_insert(index);
        }
        let Some(first) = first else {
            return Err(gathered.nothing());
        };
        let index_url = format!("{local_base}{index_path}");
        let merged = registration::merge(&index_url, &first, leaves_by_upstream);
        let wanted = format!("{local_base}{}", target.key);
        let body = match target.rest.ends_with("/index.json") && target.rest.matches('/').count() == 1 {
            true => merged.index,
            false => merged
                .pages
                .into_iter()
                .find(|(url, _)| *url == wanted)
                .map(|(_, page)| page)
                .ok_or(ProxyError::NotFound)?,
        };
        let body = Bytes::from(body.to_string());
        self.merged_reply(parts, body, &gathered, self.config.ttl.registration)
    }

    /// Search and autocomplete: every upstream's answer (for an
    /// autocomplete of one id's versions, the upstreams the id may come
    /// from), less the packages an upstream may not serve, merged.
    async fn merged_search(self: &Arc<Self>, parts: &Parts, path: &str, kind: MountKind) -> Result<Reply, ProxyError> {
        let query = parts.uri.query().unwrap_or_default();
        let param = |name: &str| {
            query.split('&').find_map(|pair| {
                pair.split_once('=')
                    .filter(|(key, _)| *key == name)
                    .map(|(_, value)| value)
            })
        };
        let take = param("take").and_then(|t| t.parse::<usize>().ok());
        let versions_of = param("id").filter(|_| kind == MountKind::Autocomplete);
        let sources = match versions_of {
            Some(id) => self.feeds.sources(Some(id)),
            None => self.feeds.all().to_vec(),
        };
        let mut gathered = self.gather(&sources, parts, path).await;
        if gathered.docs.is_empty() && gathered.failure.is_some() {
            return Err(gathered.nothing());
        }
        let base = base::public_base(&self.config, parts)?;
        let mut answers = Vec::new();
        for (feed, doc, _) in gathered.docs.clone() {
            match serde_json::from_slice::<Value>(doc.body.render(&base.url).identity()) {
                Ok(mut answer) => {
                    if versions_of.is_none() {
                        self.drop_foreign_packages(&feed, &mut answer);
                    }
                    answers.push(answer);
                }
                Err(_) => gathered.missing.push(feed.name.clone()),
            }
        }
        let merged = match kind {
            MountKind::Search => search::merge_search(&answers, take),
            _ => search::merge_autocomplete(&answers, versions_of.is_some(), take),
        };
        let body = Bytes::from(merged.to_string());
        self.merged_reply(parts, body, &gathered, self.config.ttl.search)
    }

    /// Removes from `feed`'s search answer the packages the patterns give
    /// to other upstreams (a public squatter of a private id), and counts
    /// them out of its `totalHits`.
    fn drop_foreign_packages(&self, feed: &Feed, answer: &mut Value) {
        let Some(Value::Array(data)) = answer.get_mut("data") else {
            return;
        };
        let before = data.len();
        data.retain(|entry| {
            let id = entry.as_str().or_else(|| entry.get("id").and_then(Value::as_str));
            id.is_none_or(|id| self.feeds.may_ask(feed, id))
        });
        let dropped = (before - data.len()) as u64;
        if let Some(total) = answer.get("totalHits").and_then(Value::as_u64) {
            answer["totalHits"] = Value::from(total.saturating_sub(dropped));
        }
    }

    /// A merged document as an answer, naming the upstreams it lacks.
    fn merged_reply(
        &self,
        parts: &Parts,
        body: Bytes,
        gathered: &Gathered,
        max_age: Duration,
    ) -> Result<Reply, ProxyError> {
        let base = base::public_base(&self.config, parts)?;
        let content_id = hex::encode(&Sha512::digest(&body)[..12]);
        let rendered = Template::new(body, &content_id).render(&base.url);
        let mut reply = respond::document(&parts.headers, &rendered, None, gathered.status(), max_age, base.vary);
        let mut missing: Vec<&str> = Vec::new();
        for name in &gathered.missing {
            if !missing.contains(&name.as_str()) {
                missing.push(name);
            }
        }
        if let Ok(value) = HeaderValue::from_str(&missing.join(",")) {
            if !missing.is_empty() {
                reply.response.headers_mut().insert(MISSING, value);
            }
        }
        Ok(reply)
    }
}

/// The local path of `target`'s mount (`flatcontainer/`, a hive).
fn mount_local(target: &Target) -> &str {
    target.key.strip_suffix(&target.rest).unwrap_or_default()
}

/// A registration leaf (`{id}/{version}.json`), not an index or a page.
fn is_leaf(target: &Target) -> bool {
    let mut segments = target.rest.split('/').skip(1);
    !matches!(
        (segments.next(), segments.next()),
        (Some("index.json"), None) | (Some("page"), Some(_))
    )
}
