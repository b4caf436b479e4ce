//! The admin API under `/admin/` (JSON), for operators and the `nucache
//! stats | purge | verify --online` commands. The key was checked by
//! `dispatch` (`auth::check_admin`) before anything here runs. New calls
//! are a variant of [`AdminCall`] and an arm in [`AdminCall::parse`] and
//! [`Ops::admin`].

use std::path::PathBuf;
use std::sync::Arc;

use http::request::Parts;
use http::{Method, Response, StatusCode};
use hyper::body::Incoming;
use serde_json::json;

use super::Ops;
use crate::body::Body;
use crate::cache::{scrub, KeySet};
use crate::error::{ClientError, ProxyError};
use crate::nuget::{LowerId, NuGetVersion};
use crate::reply::{self as respond, Reply};
use crate::route::{describe_key, RouteError};
use crate::shared::{ObjectKind, SharedStore};
use object_store::path::Path;

/// What an admin request asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum AdminCall {
    Stats,
    /// Drop a package's files and documents (all versions without one).
    Purge {
        id: LowerId,
        version: Option<String>,
    },
    /// Re-hash the whole cache now, dropping what no longer matches.
    Verify,
    /// The cached packages and the mounts, for `nucache export`.
    Packages,
    /// One file of a bundle being uploaded (`nucache import --url`).
    ImportFile {
        upload: String,
        path: PathBuf,
    },
    /// Import an uploaded bundle.
    ImportCommit {
        upload: String,
    },
}

impl AdminCall {
    /// `path` is what follows `/admin/`, percent-decoded.
    pub fn parse(method: &Method, path: &str) -> Result<AdminCall, ClientError> {
        let segments: Vec<&str> = path.split('/').collect();
        let call = match segments.as_slice() {
            ["stats"] => (Method::GET, AdminCall::Stats),
            ["purge", id] => (Method::POST, purge(id, None)?),
            ["purge", id, version] => (Method::POST, purge(id, Some(version))?),
            ["verify"] => (Method::POST, AdminCall::Verify),
            ["packages"] => (Method::GET, AdminCall::Packages),
            ["import", upload] => (
                Method::POST,
                AdminCall::ImportCommit {
                    upload: upload_name(upload)?,
                },
            ),
            ["import", upload, file @ ..] if !file.is_empty() => (
                Method::PUT,
                AdminCall::ImportFile {
                    upload: upload_name(upload)?,
                    path: crate::airgap::checked_path(&file.join("/"))
                        .map_err(|_| RouteError::Malformed("a bundle path must stay inside the bundle"))?,
                },
            ),
            _ => return Err(RouteError::NotFound.into()),
        };
        match call {
            (Method::GET, call) if matches!(*method, Method::GET | Method::HEAD) => Ok(call),
            (Method::POST, call) if *method == Method::POST => Ok(call),
            (Method::PUT, call) if *method == Method::PUT => Ok(call),
            (expected, _) => Err(ClientError::MethodNotAllowed {
                method: method.to_string(),
                allow: match expected {
                    Method::GET => "GET, HEAD",
                    Method::PUT => "PUT",
                    _ => "POST",
                },
            }),
        }
    }
}

/// An upload's name: 1 to 64 ASCII letters and digits (it names a directory).
fn upload_name(name: &str) -> Result<String, ClientError> {
    let valid = (1..=64).contains(&name.len()) && name.bytes().all(|b| b.is_ascii_alphanumeric());
    match valid {
        true => Ok(name.to_string()),
        false => Err(RouteError::Malformed("an upload name is 1 to 64 letters and digits").into()),
    }
}

fn purge(id: &str, version: Option<&str>) -> Result<AdminCall, ClientError> {
    let id = LowerId::parse(id).map_err(RouteError::from)?;
    let version = version
        .map(|v| NuGetVersion::parse(v).map(|v| v.lower_normalized()))
        .transpose()
        .map_err(RouteError::from)?;
    Ok(AdminCall::Purge { id, version })
}

impl Ops {
    pub(crate) async fn admin(
        self: &Arc<Self>,
        parts: &Parts,
        body: Incoming,
        path: &str,
    ) -> Result<Reply, ProxyError> {
        let response = match AdminCall::parse(&parts.method, path)? {
            AdminCall::Stats => respond::json(StatusCode::OK, self.stats().to_string()),
            AdminCall::Purge { id, version } => self.purge(&id, version.as_deref()).await?,
            AdminCall::Verify => self.verify_online().await,
            AdminCall::Packages => return self.admin_packages(parts).await,
            AdminCall::ImportFile { upload, path } => self.receive_import_file(&upload, path, body).await?,
            AdminCall::ImportCommit { upload } => self.commit_import(&upload).await?,
        };
        Ok(Reply::plain(response))
    }

    /// Drops the package's files (of `version`, or every version) and the
    /// documents that list it: version list and every hive's registration
    /// documents. Remembered 404s for it are forgotten too.
    async fn purge(self: &Arc<Self>, id: &LowerId, version: Option<&str>) -> Result<Response<Body>, ProxyError> {
        // Every upstream's copies, each in its own namespace, and merged answers.
        let keys = self.pipeline.package_keys(id.as_str(), version);
        let cache = self.cache.clone();
        let covered = keys.clone();
        let purged = crate::stash::blocking(move || cache.purge(&covered)).await?;
        let shared = self.purge_shared(&keys).await;
        self.cache.forget_missing(keys);
        let package = match version {
            Some(version) => format!("{id} {version}"),
            None => id.to_string(),
        };
        tracing::info!(package, objects = purged.objects, bytes = purged.bytes, shared = %shared, "admin: purged");
        let body = json!({
            "package": package,
            "purged_objects": purged.objects,
            "purged_bytes": purged.bytes,
            "shared": shared,
        });
        Ok(respond::json(StatusCode::OK, body.to_string()))
    }

    /// Deletes what `keys` covers from the shared store too (eviction is
    /// each node's, a purge is the fleet's): `{"purged_objects": n}`, or
    /// `{"error": why}` (the node's own copies are gone all the same);
    /// `null` without a store.
    async fn purge_shared(&self, keys: &KeySet) -> serde_json::Value {
        let Some(shared) = &self.shared else {
            return serde_json::Value::Null;
        };
        let (names, folders) = shared_names(shared, keys);
        match shared.delete_all(names, folders).await {
            Ok(deleted) => json!({ "purged_objects": deleted }),
            Err(error) => {
                let error = crate::error::chain(&error);
                tracing::warn!(%error, "admin: purge could not delete from the shared store");
                json!({ "error": error })
            }
        }
    }

    /// The scrub's pass, now and without its rate limit.
    async fn verify_online(&self) -> Response<Body> {
        let found = scrub::pass(&self.cache, 0).await;
        let dropped: Vec<String> = found.dropped.iter().map(|key| describe_key(key)).collect();
        tracing::info!(
            checked = found.checked,
            bytes = found.bytes,
            dropped = dropped.len(),
            "admin: online verify"
        );
        let body = json!({ "checked": found.checked, "intact_bytes": found.bytes, "dropped": dropped });
        respond::json(StatusCode::OK, body.to_string())
    }

    /// What nucache is doing, as JSON (the status page shows the same
    /// figures); admins see upstream origins and error texts.
    fn stats(&self) -> serde_json::Value {
        let totals = self.cache.totals();
        let served = self.metrics.totals();
        let upstreams = self.pipeline.upstreams();
        let upstream = upstreams.first().map(|u| u.status.clone());
        let every: Vec<serde_json::Value> = upstreams
            .iter()
            .map(|u| json!({ "name": u.name, "service_index": u.index.as_str(), "breakers": u.status }))
            .collect();
        let hit_ratio = (served.cacheable > 0).then(|| served.from_cache as f64 / served.cacheable as f64);
        json!({
            "version": env!("CARGO_PKG_VERSION"),
            "uptime_seconds": self.started.elapsed().as_secs(),
            "cache": {
                "entries": totals.entries,
                "bytes": totals.bytes,
                "max_size": self.config.cache.max_size.map(|cap| cap.bytes()),
                "storage_writable": self.cache.health.problem().is_none(),
            },
            "requests": {
                "cacheable": served.cacheable,
                "from_cache": served.from_cache,
                "hit_ratio": hit_ratio,
            },
            "served_bytes": { "cache": served.bytes_from_cache, "upstream": served.bytes_from_upstream },
            "evictions": { "objects": served.evictions, "bytes": served.evicted_bytes },
            "downloads_in_flight": self.pipeline.downloads_in_flight(),
            "upstream": upstream,
            "upstreams": every,
            "shared": self.shared_health(false),
        })
    }
}

/// The objects and folders of the shared store that `keys` covers: each
/// key as a package and as a document (a key names one or the other).
fn shared_names(shared: &SharedStore, keys: &KeySet) -> (Vec<Path>, Vec<Path>) {
    let kinds = [ObjectKind::Package, ObjectKind::Document];
    let split = crate::cache::namespace::split_key;
    let names = keys.exact.iter().map(String::as_str).filter_map(split);
    let names = names.flat_map(|(ns, local)| kinds.iter().filter_map(move |kind| shared.name(*kind, ns, local)));
    let folders = keys.prefixes.iter().map(String::as_str).filter_map(split);
    let folders = folders.flat_map(|(ns, local)| kinds.iter().filter_map(move |kind| shared.folder(*kind, ns, local)));
    (names.collect(), folders.collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calls_are_parsed_from_the_method_and_the_path() {
        assert_eq!(AdminCall::parse(&Method::GET, "stats").ok(), Some(AdminCall::Stats));
        assert_eq!(AdminCall::parse(&Method::POST, "verify").ok(), Some(AdminCall::Verify));
        let call = AdminCall::parse(&Method::POST, "purge/Fake.Core/1.1.0.0").ok();
        let Some(AdminCall::Purge { id, version }) = call else {
            panic!("not a purge: {call:?}")
        };
        assert_eq!((id.as_str(), version.as_deref()), ("fake.core", Some("1.1.0")));
        assert!(matches!(
            AdminCall::parse(&Method::GET, "purge/fake.core"),
            Err(ClientError::MethodNotAllowed { .. })
        ));
        assert!(matches!(
            AdminCall::parse(&Method::POST, "purge/bad id!"),
            Err(ClientError::Route(RouteError::Id(_)))
        ));
        assert!(matches!(
            AdminCall::parse(&Method::GET, "nothing"),
            Err(ClientError::Route(RouteError::NotFound))
        ));
    }
}
