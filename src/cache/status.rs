//! How a response relates to the cache; shown in `X-Cache`, in the access
//! log and in metrics.

use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CacheStatus {
    /// Served from the cache without asking the upstream.
    Hit,
    /// Fetched from the upstream now (and stored).
    Miss,
    /// Served from the cache because the upstream failed.
    Stale,
    /// The upstream confirmed the cached copy (304).
    Revalidated,
    /// Served from the cache after its TTL, while a background refresh asks
    /// the upstream (stale-while-revalidate).
    Updating,
}

impl CacheStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            CacheStatus::Hit => "HIT",
            CacheStatus::Miss => "MISS",
            CacheStatus::Stale => "STALE",
            CacheStatus::Revalidated => "REVALIDATED",
            CacheStatus::Updating => "UPDATING",
        }
    }
}

impl fmt::Display for CacheStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
