//! `nucache import DIR --url BASE`: the bundle is checked here against its
//! manifest (a bad file: refused, nothing sent), then uploaded file by file
//! to the running nucache's admin API and imported there in one call, which
//! checks every file again before it stores anything (see
//! `proxy/admin_import.rs`).

use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use futures_util::stream;
use http::Method;
use http_body::Frame;
use http_body_util::{BodyExt, StreamBody};
use tokio::io::AsyncReadExt;

use super::bundle::{self, Manifest, MANIFEST};
use super::ImportSummary;
use crate::admin_client::{call_with_body, no_body, AdminBody};

/// Bytes read from a bundle file per request body chunk.
const CHUNK: usize = 256 * 1024;

/// Uploads and imports the bundle at `dir` into the nucache at `base`.
pub async fn import_through_server(dir: &Path, base: &str) -> Result<ImportSummary, String> {
    let manifest = Manifest::read(dir).map_err(|e| e.to_string())?;
    let checking = (dir.to_path_buf(), manifest.clone());
    tokio::task::spawn_blocking(move || bundle::verify(&checking.0, &checking.1))
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| format!("refused, nothing imported: {e}"))?;
    let upload = upload_name();
    let paths = manifest.files.iter().map(|f| f.path.as_str()).chain([MANIFEST]);
    for path in paths {
        let file = dir.join(bundle::checked_path(path).map_err(|e| e.to_string())?);
        let body = file_body(&file).await.map_err(|e| format!("{path}: {e}"))?;
        call_with_body(base, Method::PUT, &format!("import/{upload}/{path}"), body)
            .await
            .map_err(|e| format!("uploading {path}: {e}"))?;
    }
    let answer = call_with_body(base, Method::POST, &format!("import/{upload}"), no_body())
        .await
        .map_err(|e| e.to_string())?;
    let count = |name: &str| answer.get(name).and_then(serde_json::Value::as_u64).unwrap_or(0);
    Ok(ImportSummary {
        packages: count("packages") as usize,
        package_files: count("package_files") as usize,
        documents: count("documents") as usize,
        bytes: count("bytes"),
        refused: count("refused") as usize,
    })
}

/// A name no other upload of this moment has (it names a staging directory).
fn upload_name() -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("{nanos:x}{:x}", std::process::id())
}

/// The file as a streamed request body (never whole in memory).
async fn file_body(path: &Path) -> std::io::Result<AdminBody> {
    let file = tokio::fs::File::open(path).await?;
    let chunks = stream::unfold(Some(file), |state| async move {
        let mut file = state?;
        let mut buffer = vec![0u8; CHUNK];
        match file.read(&mut buffer).await {
            Ok(0) => None,
            Ok(n) => {
                buffer.truncate(n);
                Some((Ok(Frame::data(Bytes::from(buffer))), Some(file)))
            }
            Err(error) => Some((Err(error), None)),
        }
    });
    Ok(StreamBody::new(chunks).boxed())
}
