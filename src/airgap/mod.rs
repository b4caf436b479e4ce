//! The air gap: fill a cache from a solution's files (`warm`), carry it
//! across as a verified bundle (`export`), and load it on the other side
//! (`import`), so that restores work with no upstream at all.
//!
//! - `inputs`: lock files, project files, packages.config, plain lists;
//! - `ranges`: version ranges and floating versions, resolved as restore does;
//! - `nuspec`: a package's dependencies per target framework;
//! - `client`: the HTTP client of a running nucache's feed;
//! - `warm`: prefetch through the feed;
//! - `bundle`: the bundle's layout and manifest, written and verified;
//! - `export`: a running nucache's cache into a bundle;
//! - `import`: a verified bundle into a stopped cache directory;
//! - `staging`: a running nucache's uploads of a bundle, bounded and swept.

mod bundle;
mod client;
mod export;
mod import;
pub(crate) mod inputs;
mod nuspec;
pub(crate) mod ranges;
mod staging;
mod upload;
mod warm;

pub(crate) use bundle::checked_path;
pub use export::{export, ExportOptions, ExportSummary};
pub(crate) use import::import_into_running;
pub use import::{import_into_cache, ImportSummary};
pub use staging::StagingError;
pub(crate) use staging::{sweep_staging, Staging};
pub use upload::import_through_server;
pub use warm::{warm, WarmOptions, WarmSummary};
