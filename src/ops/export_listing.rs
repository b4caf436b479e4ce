//! `GET /admin/packages`: what `nucache export` needs to know of the
//! cache: every cached package, the public mounts (which upstream prefix
//! each local path stands for) and the primary upstream's service index
//! URL (the source the bundle names; clients see its index). An admin call
//! (`admin.rs`): it names upstream addresses, so it needs an admin key
//! (`nucache export` sends `NUCACHE_ADMIN_KEY`).

use std::sync::Arc;

use http::request::Parts;
use http::StatusCode;
use serde_json::json;

use super::Ops;
use crate::error::{ProxyError, UpstreamError};
use crate::reply::{self as respond, base, Reply};
use crate::stash::blocking;

impl Ops {
    pub(super) async fn admin_packages(self: &Arc<Self>, parts: &Parts) -> Result<Reply, ProxyError> {
        let base = base::public_base(&self.config, parts)?;
        let map = self.pipeline.public_mounts().ok_or_else(|| {
            UpstreamError::NoServiceIndex("the primary upstream's service index is not loaded".into())
        })?;
        let cache = self.cache.clone();
        let packages = blocking(move || Ok(cache.packages())).await?;
        let mounts: Vec<serde_json::Value> = map
            .mounts
            .iter()
            .map(|m| {
                json!({
                    "kind": format!("{:?}", m.kind),
                    "local": m.local,
                    "public": format!("{}/v3/{}", base.url, m.local),
                    "upstream": m.upstream,
                })
            })
            .collect();
        let packages: Vec<serde_json::Value> = packages
            .into_iter()
            .map(|(id, version)| json!({"id": id, "version": version}))
            .collect();
        let body = json!({
            "upstream": self.pipeline.upstreams().first().map(|u| u.service_index.clone()),
            "mounts": mounts,
            "packages": packages,
        });
        Ok(Reply::plain(respond::json(StatusCode::OK, body.to_string())))
    }
}
