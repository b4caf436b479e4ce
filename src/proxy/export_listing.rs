//! `GET /admin/packages`: what `nucache export` needs to know of the
//! cache: every cached package, the mounts (which upstream prefix each
//! local path stands for) and the upstream service index URL. An admin
//! call (`admin.rs`): it names upstream addresses, so it needs an admin
//! key (`nucache export` sends `NUCACHE_ADMIN_KEY`).

use std::sync::Arc;

use http::request::Parts;
use http::StatusCode;
use serde_json::json;

use super::{base, respond, Proxy, Reply};
use crate::error::ProxyError;
use crate::stash::blocking;

impl Proxy {
    pub(super) async fn admin_packages(self: &Arc<Self>, parts: &Parts) -> Result<Reply, ProxyError> {
        let base = base::public_base(&self.config, parts)?;
        let (snapshot, _) = self.service_map(self.feeds.primary(), false).await?;
        let cache = self.cache.clone();
        let packages = blocking(move || Ok(cache.packages())).await?;
        let mounts: Vec<serde_json::Value> = snapshot
            .map
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
            "upstream": self.config.upstream.service_index,
            "mounts": mounts,
            "packages": packages,
        });
        Ok(Reply::plain(respond::json(StatusCode::OK, body.to_string())))
    }
}
