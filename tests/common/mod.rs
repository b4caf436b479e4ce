#![allow(dead_code)]

pub mod metrics;
pub mod nucache;
pub mod process;
pub mod tinyproxy;
pub mod tls;
pub mod upstream;

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
