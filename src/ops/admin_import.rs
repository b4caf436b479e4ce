//! `nucache import --url`: a bundle carried into a running nucache through
//! the admin API. The command checks the bundle against its manifest, then
//! uploads it file by file (`PUT /admin/import/{upload}/{path}`) into a
//! staging directory of its own below the cache directory, and asks for it
//! to be imported (`POST /admin/import/{upload}`): the server checks every
//! file against the manifest again before it stores anything (what the
//! network may have changed), stores it as `import --cache-dir` does, and
//! drops the staging directory either way. Staging (its size limit, and
//! discarding an upload that fails) is `airgap::Staging`'s.

use std::path::PathBuf;

use http::{Response, StatusCode};
use hyper::body::Incoming;
use serde_json::json;

use super::Ops;
use crate::airgap::{import_into_running, StagingError};
use crate::body::Body;
use crate::cache::KeySet;
use crate::error::{ClientError, InternalError, ProxyError};
use crate::reply as respond;
use crate::stash::blocking;

impl From<StagingError> for ProxyError {
    fn from(error: StagingError) -> Self {
        match error {
            StagingError::TooLarge { limit, .. } => ClientError::PayloadTooLarge(limit).into(),
            other => ProxyError::Internal(InternalError::Staging(std::sync::Arc::new(other))),
        }
    }
}

impl Ops {
    /// Writes one uploaded bundle file (`path` already checked to stay
    /// inside the bundle) into the upload's staging directory; past
    /// `limits.import_staging` 413, and the upload is discarded.
    pub(super) async fn receive_import_file(
        &self,
        upload: &str,
        path: PathBuf,
        body: Incoming,
    ) -> Result<Response<Body>, ProxyError> {
        let received = self.import_staging.receive(upload, &path, body).await?;
        Ok(respond::json(
            StatusCode::OK,
            json!({ "received": received }).to_string(),
        ))
    }

    /// Imports a whole upload into the cache; a bundle that does not match
    /// its manifest is refused (400, naming the file) and nothing is stored.
    pub(super) async fn commit_import(&self, upload: &str) -> Result<Response<Body>, ProxyError> {
        let dir = self.import_staging.dir(upload);
        if !dir.join("manifest.json").is_file() {
            self.import_staging.discard(upload).await;
            let text = format!("upload {upload}: no manifest.json was uploaded");
            return Ok(respond::json(
                StatusCode::BAD_REQUEST,
                json!({ "error": text }).to_string(),
            ));
        }
        let (cache, config, staged) = (self.cache.clone(), self.config.clone(), dir.clone());
        let outcome = blocking(move || Ok(import_into_running(&staged, &cache, &config))).await;
        self.import_staging.discard(upload).await;
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
