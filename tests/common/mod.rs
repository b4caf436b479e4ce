#![allow(dead_code)]

pub mod metrics;
pub mod nucache;
pub mod poll;
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
