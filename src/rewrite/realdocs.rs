//! The real documents of `../shared/realdocs` (see its SOURCES.md), read in
//! place by the rewriter's tests: skipped where the directory is absent,
//! a failure under CI.

use std::path::{Path, PathBuf};

/// The directory, when it is there.
pub(super) fn dir() -> Option<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/realdocs");
    if dir.is_dir() {
        return Some(dir);
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "{} is missing under CI",
        dir.display()
    );
    eprintln!("skipping: no {}", dir.display());
    None
}

/// The bytes of one document, when the directory is there.
pub(super) fn read(name: &str) -> Option<Vec<u8>> {
    let path = dir()?.join(name);
    Some(std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display())))
}
