#![allow(dead_code)]

pub mod airgap;
pub mod metrics;
pub mod nucache;
pub mod poll;
pub mod process;
pub mod seaweed;
pub mod tinyproxy;
pub mod tls;
pub mod two_feeds;
pub mod upstream;

/// What a test that cannot run here (`message` says why) returns: `false`,
/// said on stderr as SKIPPED, unless the environment variable `var` is
/// `value` (CI sets it, and installs what the test needs): then it fails.
pub fn skipped(message: &str, (var, value): (&str, &str)) -> bool {
    if std::env::var(var).is_ok_and(|set| set == value) {
        panic!("{message}; {var}={value} requires it");
    }
    eprintln!("SKIPPED {message}");
    false
}

/// The content file of `local` (a path below `/v3/`) of the upstream at
/// `service_index` in the cache at `dir` (files are named by a hash of the
/// cache key).
pub fn content_file(dir: &std::path::Path, service_index: &str, local: &str) -> Option<std::path::PathBuf> {
    use sha2::Digest;
    let key = ::nucache::cache_key(service_index, local);
    let prefix = hex::encode(sha2::Sha256::digest(key.as_bytes()));
    files_under(&dir.join("content"))
        .into_iter()
        .find(|f| f.file_name().is_some_and(|n| n.to_string_lossy().starts_with(&prefix)))
}

/// Every file below `root` (recursively).
pub fn files_under(root: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    let mut pending = vec![root.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                pending.push(path);
            } else {
                files.push(path);
            }
        }
    }
    files
}

/// Every string value in `doc` that is an absolute http(s) URL, in
/// document order.
pub fn urls_in(doc: &serde_json::Value) -> Vec<String> {
    use serde_json::Value;
    match doc {
        Value::String(s) if s.starts_with("http://") || s.starts_with("https://") => vec![s.clone()],
        Value::Array(items) => items.iter().flat_map(urls_in).collect(),
        Value::Object(map) => map.values().flat_map(urls_in).collect(),
        _ => Vec::new(),
    }
}

/// The content of a cache file: the file without the record it ends with
/// (`[content][record JSON][u32 LE length of the JSON][8-byte magic]`).
pub fn stored_content(file: &[u8]) -> &[u8] {
    let Some(trailer_at) = file.len().checked_sub(12) else {
        return file;
    };
    let trailer = &file[trailer_at..];
    let record = u32::from_le_bytes([trailer[0], trailer[1], trailer[2], trailer[3]]) as usize;
    &file[..trailer_at.saturating_sub(record)]
}
