//! nucache — a caching pull-through proxy for NuGet V3 feeds.
//!
//! A request travels through the modules in one direction:
//!
//! ```text
//! server      accept HTTP/1.1 connections, graceful shutdown
//!   -> proxy  the phases: classify -> lookup -> fetch -> respond
//!      -> route          path -> Route / Target (cache key, upstream URL); hostile input stops here
//!      -> cache          sled index + objects carrying their own records (verified reads, scrub, index rebuild) + hot documents and blobs in moka
//!      -> stash          single-flight fetch on a miss: documents, and downloads streamed to disk and clients
//!         -> upstream    hyper + rustls client: redirects, retries, timeouts
//!         -> rewrite     upstream URLs -> nucache URLs (service index, JSON documents)
//! ```
//!
//! Publish calls take a side road: proxy -> `auth` (whose key) -> `publish`
//! (streamed once to the upstream) -> cache invalidation of that package.
//!
//! Beside the pipeline: `body` (the response body type every layer builds),
//! `budget` (fair limits on the work clients can start: upstream requests,
//! document bytes, background refreshes; 503 with `Retry-After` past them),
//! `access_log` (one line per request, written when its body ends),
//! `metrics` (the counters behind `/metrics`, atomics only on the request path),
//! `admin_client` (the `stats`, `purge`, `verify --online` commands: HTTP to `/admin/`),
//! `config` (figment: defaults < TOML < `NUCACHE_*`),
//! `nuget` (ids, versions, package files), `merge` (several upstreams as
//! one: packageSourceMapping patterns, merged version lists, registrations
//! and search answers; below `nuget` only), `error` (who failed: client,
//! upstream or nucache), `shutdown` (signals), `reload` (what SIGHUP
//! changes), `logging` (the subscriber and its live filter), `preflight`
//! (what `check-config` checks on the machine), `probe` (is the upstream a
//! usable service index).

pub(crate) mod access_log;
pub mod admin_client;
pub mod airgap;
pub(crate) mod auth;
pub(crate) mod body;
pub(crate) mod budget;
pub mod config;
pub mod error;
mod log_writer;
pub mod logging;
pub mod merge;
pub(crate) mod metrics;
pub mod nuget;
pub(crate) mod ops;
pub(crate) mod pipeline;
pub mod preflight;
pub mod probe;
pub(crate) mod proxy;
pub(crate) mod publish;
pub mod reload;
pub(crate) mod reply;
pub mod rewrite;
pub mod route;
pub(crate) mod search;
pub mod shutdown;

mod cache;
mod server;
mod stash;
mod upstream;

pub use cache::{is_cache_dir, rebuild_cache_index, verify_cache, CacheStatus, IndexRebuild, Repair, Verification};
pub use config::Config;

/// The cache key under which nucache keeps `local` (a canonical path below
/// `/v3/`, e.g. `flatcontainer/foo/1.0.0/foo.1.0.0.nupkg`) of the upstream
/// whose service index is `service_index`: for tools and tests that look
/// at a cache directory.
pub fn cache_key(service_index: &str, local: &str) -> String {
    cache::Namespace::of_upstream(service_index).key(local)
}
pub use server::{Reloader, Server, StartError};
