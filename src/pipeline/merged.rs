//! Phase 6, **merge**: a version list, a registration index or page, or a
//! search answer of several upstreams as one document, cached under its
//! own key in the merged namespace (in memory) like any other document:
//! its ETag is its content's, its gzip form is made once, and it is served
//! as it is (a 304 for a client that has it) until its oldest part
//! expires. Then the parts are looked up again (each through the cache,
//! refreshed as usual) and merged again only when one of them changed (a
//! fingerprint of the parts' hashes). An upstream that fails degrades the
//! answer (its cached copy, else nothing of it), is named in
//! `X-Nucache-Missing-Upstreams`, and such an answer is not kept.

use std::sync::Arc;

use bytes::Bytes;
use futures_util::future::join_all;
use http::request::Parts;
use serde_json::Value;
use sha2::{Digest, Sha256, Sha512};

use super::resolve::{Part, Plan};
use super::Pipeline;
use crate::cache::{CacheStatus, Entry, EntryKind, HotDoc, Namespace};
use crate::error::{InternalError, ProxyError};
use crate::merge::{registration, search, versions, MergeError};
use crate::reply::Reply;
use crate::rewrite::{template_value, to_template};
use crate::route::TargetKind;

const JSON: &str = "application/json; charset=utf-8";

/// What is merged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum How {
    Versions,
    RegistrationIndex,
    RegistrationPage,
    Search,
    Autocomplete,
}

/// How `target` is merged among several upstreams: a version list, a
/// registration index or page; `None` for anything else (a registration
/// leaf, a catalog document: the first upstream that has it).
pub(super) fn how_of(target: &crate::route::Target) -> Option<How> {
    match target.kind {
        TargetKind::VersionList => Some(How::Versions),
        TargetKind::Registration => registration_shape(&target.rest),
        _ => None,
    }
}

/// A registration index (`{id}/index.json`) or page (`{id}/page/{lo}/{hi}.json`).
fn registration_shape(rest: &str) -> Option<How> {
    let mut segments = rest.split('/').skip(1);
    match (segments.next(), segments.next(), segments.next(), segments.next()) {
        (Some("index.json"), None, _, _) => Some(How::RegistrationIndex),
        (Some("page"), Some(_), Some(_), None) => Some(How::RegistrationPage),
        _ => None,
    }
}

/// One upstream's documents for a merged answer.
struct Gotten {
    part: Part,
    /// The document itself; for a registration, the index then its pages.
    docs: Vec<Arc<HotDoc>>,
}

/// What the parts answered.
#[derive(Default)]
pub(super) struct Gathered {
    got: Vec<Gotten>,
    statuses: Vec<CacheStatus>,
    /// Upstreams that failed: absent from `got`, or there from the cache only.
    missing: Vec<String>,
    failure: Option<ProxyError>,
}

impl Gathered {
    /// The error to answer with when no upstream gave anything.
    fn nothing(self) -> ProxyError {
        self.failure.unwrap_or(ProxyError::NotFound)
    }

    fn fail(&mut self, part: &Part, error: ProxyError) {
        tracing::info!(upstream = part.feed.name, %error, "upstream failed; answering without it");
        self.missing.push(part.feed.name.clone());
        self.failure.get_or_insert(error);
    }

    /// The worst of the parts' cache statuses.
    fn status(&self) -> CacheStatus {
        [
            CacheStatus::Stale,
            CacheStatus::Miss,
            CacheStatus::Updating,
            CacheStatus::Revalidated,
        ]
        .into_iter()
        .find(|s| self.statuses.contains(s))
        .unwrap_or(CacheStatus::Hit)
    }

    /// Identifies the parts' contents: equal fingerprints, equal merges.
    fn fingerprint(&self) -> String {
        let mut hash = Sha256::new();
        for gotten in &self.got {
            hash.update(gotten.part.feed.namespace.prefix());
            for doc in &gotten.docs {
                hash.update(&doc.entry.sha512);
                hash.update(b"\n");
            }
        }
        hex::encode(&hash.finalize()[..16])
    }

    /// When the oldest part was last confirmed: the merge is as fresh as it.
    fn oldest(&self) -> u64 {
        let fetched = self.got.iter().flat_map(|g| &g.docs).map(|d| d.entry.fetched_at);
        fetched.min().unwrap_or(0)
    }
}

impl Pipeline {
    /// Phases 4 to 7 for a document merged from several upstreams.
    pub(super) async fn serve_merged(
        self: &Arc<Self>,
        plan: &Plan,
        request: &Parts,
        how: How,
    ) -> Result<Reply, ProxyError> {
        let kind = plan.target().kind;
        let key = Namespace::merged().key(&plan.target().key);
        let kept = self.cache.hot_document(&key);
        if let Some(doc) = kept.as_ref().filter(|doc| doc.is_fresh(self.ttl_of(kind))) {
            doc.touch();
            return self.respond(request, doc, CacheStatus::Hit, kind, &plan.missing);
        }
        let mut gathered = match how {
            How::RegistrationIndex | How::RegistrationPage => self.gather_registrations(plan).await,
            _ => self.gather(plan, kind).await,
        };
        gathered.missing.extend(plan.missing.iter().cloned());
        if gathered.got.is_empty() {
            return Err(gathered.nothing());
        }
        let fingerprint = gathered.fingerprint();
        let doc = match kept.filter(|doc| doc.entry.etag.as_deref() == Some(fingerprint.as_str())) {
            Some(same) => {
                self.metrics.merge(true);
                self.keep_merged(&key, same.body.text().clone(), fingerprint, &gathered)
            }
            None => {
                let body = self.merge(plan, how, &mut gathered)?;
                self.metrics.merge(false);
                self.keep_merged(&key, body, fingerprint, &gathered)
            }
        };
        self.respond(request, &doc, gathered.status(), kind, &dedup(&gathered.missing))
    }

    /// The merged answer as a document; kept only when no upstream was
    /// missing from it.
    fn keep_merged(&self, key: &str, body: Bytes, fingerprint: String, gathered: &Gathered) -> Arc<HotDoc> {
        let entry = Entry {
            kind: EntryKind::Document,
            url: String::new(),
            size: body.len() as u64,
            sha512: hex::encode(Sha512::digest(&body)),
            content_type: JSON.to_string(),
            etag: Some(fingerprint),
            last_modified: None,
            fetched_at: gathered.oldest(),
            xxh3: None,
        };
        let keep = gathered.missing.is_empty();
        self.cache.hold_document(key, entry, body, keep)
    }

    /// Every part's document, asked at once.
    async fn gather(self: &Arc<Self>, plan: &Plan, kind: TargetKind) -> Gathered {
        let asked = plan.parts.iter().map(|part| self.part_document(part, kind));
        let answers = join_all(asked).await;
        let mut gathered = Gathered::default();
        for (part, answer) in plan.parts.iter().zip(answers) {
            match answer {
                Ok((doc, status)) => gathered.add(part, vec![doc], &[status]),
                Err(ProxyError::NotFound) => {}
                Err(error) => gathered.fail(part, error),
            }
        }
        gathered
    }

    /// Every part's registration index of the id, with the pages it does
    /// not inline: all the leaves are needed to page the merged index.
    async fn gather_registrations(self: &Arc<Self>, plan: &Plan) -> Gathered {
        let id = plan.target().rest.split('/').next().unwrap_or_default().to_string();
        let asked = plan
            .parts
            .iter()
            .map(|part| self.registration_of(part.sibling(&format!("{id}/index.json"))));
        let answers = join_all(asked).await;
        let mut gathered = Gathered::default();
        for (part, answer) in plan.parts.iter().zip(answers) {
            match answer {
                Ok((docs, statuses)) => gathered.add(part, docs, &statuses),
                Err(ProxyError::NotFound) => {}
                Err(error) => gathered.fail(part, error),
            }
        }
        gathered
    }

    /// One upstream's registration index and its outlined pages.
    async fn registration_of(
        self: &Arc<Self>,
        index: Part,
    ) -> Result<(Vec<Arc<HotDoc>>, Vec<CacheStatus>), ProxyError> {
        let (doc, status) = self.part_document(&index, TargetKind::Registration).await?;
        let parsed = template_value(doc.body.text()).map_err(|e| unusable(&index, e.to_string()))?;
        let mut docs = vec![doc];
        let mut statuses = vec![status];
        for page_url in registration::outlined_pages(&parsed) {
            let Some(rest) = local_rest(&page_url, index.local()) else {
                return Err(unusable(&index, format!("a page outside its hive: {page_url}")));
            };
            let (page, status) = self
                .part_document(&index.sibling(rest), TargetKind::Registration)
                .await?;
            docs.push(page);
            statuses.push(status);
        }
        Ok((docs, statuses))
    }

    /// The merged body (a template) of what was gathered.
    fn merge(&self, plan: &Plan, how: How, gathered: &mut Gathered) -> Result<Bytes, ProxyError> {
        let merged = match how {
            How::Versions => merge_versions(gathered).map(Some),
            How::RegistrationIndex | How::RegistrationPage => merge_registration(plan, how, gathered),
            How::Search | How::Autocomplete => self.merge_search(plan, how, gathered).map(Some),
        };
        match merged {
            Ok(Some(body)) => Ok(body),
            // A page the merged index does not have.
            Ok(None) => Err(ProxyError::NotFound),
            Err(error) => Err(InternalError::Merge(error).into()),
        }
    }

    /// Search and autocomplete: each answer less the packages the patterns
    /// give to other upstreams (a public squatter of a private id), merged.
    fn merge_search(&self, plan: &Plan, how: How, gathered: &mut Gathered) -> Result<Bytes, MergeError> {
        let query = plan.target().rest.strip_prefix('?');
        let take = crate::search::Query::asked_take(query);
        let versions_of_id = how == How::Autocomplete && crate::search::Query::parse(query).id.is_some();
        let mut answers = Vec::new();
        for gotten in &gathered.got {
            let Some(doc) = gotten.docs.first() else { continue };
            match template_value(doc.body.text()) {
                Ok(mut answer) => {
                    if !versions_of_id {
                        self.drop_foreign_packages(&gotten.part, &mut answer);
                    }
                    answers.push(answer);
                }
                Err(_) => gathered.missing.push(gotten.part.feed.name.clone()),
            }
        }
        let merged = match how {
            How::Search => search::merge_search(&answers, take),
            _ => search::merge_autocomplete(&answers, versions_of_id, take),
        };
        to_template(&merged).map_err(|e| MergeError::NotJson(e.to_string()))
    }

    /// Removes from `part`'s search answer the packages its upstream may not
    /// serve by the patterns, and counts them out of its `totalHits`.
    fn drop_foreign_packages(&self, part: &Part, answer: &mut Value) {
        let Some(Value::Array(data)) = answer.get_mut("data") else {
            return;
        };
        let before = data.len();
        data.retain(|entry| {
            let id = entry.as_str().or_else(|| entry.get("id").and_then(Value::as_str));
            id.is_none_or(|id| self.feeds.may_serve(&part.feed, id))
        });
        let dropped = (before - data.len()) as u64;
        if let Some(total) = answer.get("totalHits").and_then(Value::as_u64) {
            answer["totalHits"] = Value::from(total.saturating_sub(dropped));
        }
    }
}

impl Gathered {
    fn add(&mut self, part: &Part, docs: Vec<Arc<HotDoc>>, statuses: &[CacheStatus]) {
        if statuses.contains(&CacheStatus::Stale) {
            // Served from the cache because the upstream failed.
            self.missing.push(part.feed.name.clone());
        }
        self.statuses.extend_from_slice(statuses);
        self.got.push(Gotten {
            part: part.clone(),
            docs,
        });
    }
}

/// `{id}/index.json` of the flat container: the union of every list.
fn merge_versions(gathered: &mut Gathered) -> Result<Bytes, MergeError> {
    let mut lists = Vec::new();
    for gotten in &gathered.got {
        let Some(doc) = gotten.docs.first() else { continue };
        match versions::flat_versions(doc.body.text()) {
            Ok(list) => lists.push(list),
            Err(error) => {
                tracing::warn!(upstream = gotten.part.feed.name, %error, "unusable version list; answering without it");
                gathered.missing.push(gotten.part.feed.name.clone());
            }
        }
    }
    let merged = versions::union(lists.iter().map(Vec::as_slice));
    Ok(Bytes::from(serde_json::json!({ "versions": merged }).to_string()))
}

/// A registration index of one hive, or one page of it, from every
/// upstream's leaves; only the document asked for is built.
fn merge_registration(plan: &Plan, how: How, gathered: &mut Gathered) -> Result<Option<Bytes>, MergeError> {
    let mut first = None;
    let mut leaves_by_upstream = Vec::new();
    for gotten in &gathered.got {
        let mut parsed = gotten.docs.iter().map(|doc| template_value(doc.body.text()));
        let Some(Ok(index)) = parsed.next() else {
            gathered.missing.push(gotten.part.feed.name.clone());
            continue;
        };
        let mut leaves = registration::inlined_leaves(&index);
        for page in parsed.flatten() {
            leaves.extend(registration::page_leaves(&page));
        }
        leaves_by_upstream.push(leaves);
        first.get_or_insert(index);
    }
    let first = first.ok_or(MergeError::Shape("no upstream gave a usable registration index"))?;
    let target = plan.target();
    let hive = target.key.strip_suffix(&target.rest).unwrap_or_default();
    let id = target.rest.split('/').next().unwrap_or_default();
    let index_url = format!("{}/v3/{hive}{id}/index.json", crate::rewrite::PLACEHOLDER);
    let leaves = registration::merge_leaves(leaves_by_upstream);
    let document = match how {
        How::RegistrationIndex => registration::index(&index_url, &first, &leaves),
        _ => {
            let wanted = format!("{}/v3/{}", crate::rewrite::PLACEHOLDER, target.key);
            match registration::page(&index_url, &leaves, &wanted) {
                Some(page) => page,
                None => return Ok(None),
            }
        }
    };
    to_template(&document)
        .map(Some)
        .map_err(|e| MergeError::NotJson(e.to_string()))
}

/// The path below `local` of a template URL (`PLACEHOLDER/v3/{local}{rest}`).
fn local_rest<'u>(url: &'u str, local: &str) -> Option<&'u str> {
    url.strip_prefix(crate::rewrite::PLACEHOLDER)?
        .strip_prefix("/v3/")?
        .strip_prefix(local)
}

fn unusable(part: &Part, reason: String) -> ProxyError {
    ProxyError::Upstream(crate::error::UpstreamError::Body {
        origin: crate::upstream::origin_of(&part.url()).to_string(),
        reason,
    })
}

fn dedup(names: &[String]) -> Vec<String> {
    let mut unique: Vec<String> = Vec::new();
    for name in names {
        if !unique.contains(name) {
            unique.push(name.clone());
        }
    }
    unique
}
