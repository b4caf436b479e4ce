//! The rewriter: upstream URLs inside documents become nucache URLs.
//!
//! - `mounts`: which upstream prefix is served under which local path;
//! - `service_index`: builds the mounts and the rewritten service index;
//! - `json`: rewrites any other JSON document (registrations, search...) in
//!   one pass: `scan` reads and validates the text, `splice` rewrites its
//!   string values (finding prefixes with `matcher`), `hashes` collects the
//!   package hashes it states;
//! - `template`: rewritten documents with a placeholder for the public base
//!   URL, rendered per base without parsing.

#[cfg(test)]
mod differential;
mod hashes;
mod json;
mod matcher;
mod mounts;
mod placeholder;
#[cfg(test)]
mod realdocs;
#[cfg(any(test, feature = "reference"))]
pub mod reference;
mod scan;
mod service_index;
mod splice;
mod template;

pub use json::{
    decode_body, parse_json, rewrite_document, rewrite_value, rewrite_with_hashes, template_value, to_template,
};
pub use mounts::{Mount, MountKind, Mounts};
pub use service_index::{build as build_service_map, render_for, ServiceMap};
pub use template::{gzip, Rendered, Template};

/// Stands for the public base URL inside templates.
pub const PLACEHOLDER: char = '\0';

/// Why an upstream document could not be rewritten.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RewriteError {
    #[error("not valid JSON: {0}")]
    Json(String),
    #[error("not a valid gzip stream: {0}")]
    Gzip(String),
    #[error("larger than {0} bytes once decompressed")]
    TooLarge(u64),
    #[error("not a NuGet V3 service index: {0}")]
    NotAServiceIndex(String),
}
