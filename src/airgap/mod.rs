//! The air gap: fill a cache from a solution's files (`warm`), carry it
//! across as a verified bundle (`export`), and load it on the other side
//! (`import`), so that restores work with no upstream at all.
//!
//! - `inputs`: lock files, project files, packages.config, plain lists;
//! - `ranges`: version ranges and floating versions, resolved as restore does.

// Used by `warm`, which comes next.
#[allow(dead_code)]
pub(crate) mod inputs;
#[allow(dead_code)]
pub(crate) mod ranges;
