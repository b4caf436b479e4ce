//! `nucache import --url`: a bundle carried into a running nucache through
//! the admin API. The command checks the bundle against its manifest, then
//! uploads it file by file (`PUT /admin/import/{upload}/{path}`) into a
//! staging directory of its own below the cache directory, and asks for it
//! to be imported (`POST /admin/import/{upload}`): the server checks every
//! file against the manifest again before it stores anything (what the
//! network may have changed), stores it as `import --cache-dir` does, and
//! drops the staging directory either way.

use std::path::PathBuf;

use futures_util::StreamExt;
use http::{Response, StatusCode};
use http_body_util::BodyStream;
use hyper::body::Incoming;
use serde_json::json;
use tokio::io::AsyncWriteExt;

use super::Ops;
use crate::airgap::import_into_running;
use crate::body::Body;
use crate::cache::KeySet;
use crate::error::ProxyError;
use crate::reply as respond;
use crate::stash::blocking;

/// Where an upload is staged: `{cache.dir}/import/{upload}` (the upload
/// name is checked by `AdminCall::parse`: letters and digits only).
fn staging(ops: &Ops, upload: &str) -> PathBuf {
    ops.config.cache.dir.join("import").join(upload)
}

impl Ops {
    /// Writes one uploaded bundle file (`path` already checked to stay
    /// inside the bundle) into the upload's staging directory.
    pub(super) async fn receive_import_file(
        &self,
        upload: &str,
        path: PathBuf,
        body: Incoming,
    ) -> Result<Response<Body>, ProxyError> {
        let target = staging(self, upload).join(path);
        let storage = |e: std::io::Error| ProxyError::Internal(format!("staging an imported file: {e}"));
        if let Some(parent) = target.parent() {
            tokio::fs::create_dir_all(parent).await.map_err(storage)?;
        }
        let mut file = tokio::fs::File::create(&target).await.map_err(storage)?;
        let mut frames = BodyStream::new(body);
        let mut received = 0u64;
        while let Some(frame) = frames.next().await {
            let frame = frame.map_err(|e| ProxyError::Internal(format!("the upload broke off: {e}")))?;
            if let Ok(data) = frame.into_data() {
                received += data.len() as u64;
                file.write_all(&data).await.map_err(storage)?;
            }
        }
        file.flush().await.map_err(storage)?;
        Ok(respond::json(
            StatusCode::OK,
            json!({ "received": received }).to_string(),
        ))
    }

    /// Imports a whole upload into the cache; a bundle that does not match
    /// its manifest is refused (400, naming the file) and nothing is stored.
    pub(super) async fn commit_import(&self, upload: &str) -> Result<Response<Body>, ProxyError> {
        let dir = staging(self, upload);
        if !dir.join("manifest.json").is_file() {
            let text = format!("upload {upload}: no manifest.json was uploaded");
            return Ok(respond::json(
                StatusCode::BAD_REQUEST,
                json!({ "error": text }).to_string(),
            ));
        }
        let (cache, config, staged) = (self.cache.clone(), self.config.clone(), dir.clone());
        let outcome = blocking(move || Ok(import_into_running(&staged, &cache, &config))).await;
        if let Err(error) = tokio::fs::remove_dir_all(&dir).await {
            tracing::warn!(dir = %dir.display(), %error, "could not remove an import's staging directory");
        }
        match outcome? {
            Ok(summary) => {
                // A remembered 404 would hide an imported package until it expired.
                self.cache.forget_missing(KeySet {
                    exact: Vec::new(),
                    prefixes: vec![String::new()],
                });
                tracing::info!(
                    packages = summary.packages,
                    documents = summary.documents,
                    bytes = summary.bytes,
                    refused = summary.refused,
                    "bundle imported"
                );
                let body = json!({
                    "packages": summary.packages,
                    "package_files": summary.package_files,
                    "documents": summary.documents,
                    "bytes": summary.bytes,
                    "refused": summary.refused,
                });
                Ok(respond::json(StatusCode::OK, body.to_string()))
            }
            Err(refusal) => Ok(respond::json(
                StatusCode::BAD_REQUEST,
                json!({ "error": refusal }).to_string(),
            )),
        }
    }
}
