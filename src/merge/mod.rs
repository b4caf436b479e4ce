//! Several upstreams as one feed: which upstreams an id may come from
//! (`mapping`, NuGet's packageSourceMapping rules), and the merged views of
//! their answers: version lists (`versions`), registration indexes
//! (`registration`), search and autocomplete (`search`). Pure functions
//! over documents already fetched (and rewritten) per upstream; the
//! answers come in upstream priority order (a lower `priority` first).

pub mod mapping;
pub mod registration;
pub mod search;
pub mod versions;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MergeError {
    #[error("an upstream answer is not JSON: {0}")]
    NotJson(String),
    #[error("an upstream answer has an unexpected shape: {0}")]
    Shape(&'static str),
}

#[cfg(test)]
pub(crate) mod tests {
    use std::path::Path;

    /// A real nuget.org document of `../shared/realdocs` (read in place,
    /// never copied into the repository); `None` (skip) where it is absent
    /// outside CI.
    pub(crate) fn realdoc(name: &str) -> Option<serde_json::Value> {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../shared/realdocs")
            .join(name);
        match std::fs::read(&path) {
            Ok(bytes) => Some(serde_json::from_slice(&bytes).expect("realdocs parse as JSON")),
            Err(error) => {
                assert!(
                    std::env::var_os("CI").is_none(),
                    "{} is missing under CI: {error}",
                    path.display()
                );
                eprintln!("skipping: no {}", path.display());
                None
            }
        }
    }
}
