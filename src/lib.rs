//! nucache — a caching pull-through proxy for NuGet V3 feeds.
//!
//! A request travels through the modules in one direction:
//!
//! ```text
//! server        accept HTTP/1.1 and HTTP/2 connections (stream and idle limits), graceful shutdown
//!   -> proxy    the front door: classify (route), check the method, authorize (auth), hand over;
//!               one access line per request (access_log)
//!      -> ops        health, ready, metrics, home, status page, admin API, imports, export listing;
//!                    sees the pipeline only through pipeline::View
//!      -> pipeline   every read, for any number of upstreams: resolve per upstream -> lookup ->
//!                    fetch (single flight) -> merge -> respond; owns the upstreams (feeds) and
//!                    their service indexes; publish calls take proxy's side road (publishing)
//!         -> reply       responses: headers, 304s, gzip, X-Cache; the public base URL
//!         -> search      the offline search engine (pure)
//!         -> merge       several upstreams' documents as one; packageSourceMapping patterns (pure)
//!         -> stash       single-flight fetch on a miss: documents, and downloads streamed to disk and clients;
//!                        a package miss is asked of its owner in the fleet before the upstream
//!            -> cache    sled index over objects that carry their own records (verified reads, scrub,
//!                        index rebuild, namespaces per upstream) + hot documents and blobs in moka
//!            -> fleet    the peers of a fleet: who owns a key (rendezvous hashing over the peers that
//!                        answer their health checks), the health checker, the client that asks an owner
//!            -> upstream hyper + rustls client: redirects, retries, timeouts, breakers, budgets
//!            -> shared   the S3 store a fleet shares: self-describing objects, short deadlines,
//!                        a breaker, background writes (object_store)
//!            -> rewrite  upstream URLs -> nucache URLs (service index, JSON documents)
//!   route       path -> Route / Target (cache key, upstream URL); hostile input stops here
//! ```
//!
//! Beside the pipeline: `body` (the response body type every layer builds),
//! `budget` (fair limits on the work clients can start: upstream requests,
//! document bytes, background refreshes; 503 with `Retry-After` past them),
//! `publish` (a publish call streamed once to the upstream), `metrics` (the
//! counters behind `/metrics`, atomics only on the request path),
//! `admin_client` (the `stats`, `purge`, `verify --online` commands: HTTP
//! to `/admin/`), `airgap` (`warm`, `export`, `import`), `config` (figment:
//! defaults < TOML < `NUCACHE_*`), `nuget` (ids, versions, package files),
//! `error` (who failed: client, upstream or nucache, with causes),
//! `shutdown` (signals), `reload` (what SIGHUP changes), `logging` (the
//! subscriber and its live filter), `preflight` (what `check-config` checks
//! on the machine), `probe` (is an upstream a usable service index),
//! `tiers` (how nucache chains with other caches: its node id, `Via` and
//! the loop guard, `Age`, `Cache-Status`, what a client's request passes
//! upstream).

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
pub(crate) mod tiers;

mod cache;
mod fleet;
mod server;
mod shared;
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
pub use fleet::owner_of as fleet_owner;
pub use server::{Reloader, Server, StartError};
