//! Single-flight: concurrent requests for the same key share one fetch.
//! The fetch runs in its own task, so it goes on when the client that
//! started it hangs up (carrying what that client passes upstream, its
//! `Via` among it: `tiers::spawn`); its [`Ticket`] keeps the key "in
//! flight" until the fetch is really finished (a blob download outlives
//! its first answer).
//!
//! One exception: a request that came through another cache never joins
//! a fetch nucache started itself (its start-up load of the service
//! index), it fetches alone. Two nucaches configured as each other's
//! upstream start those loads at once; were each one's request for the
//! other's index to join the other's load, both would wait on each other
//! until their timeouts instead of one of them refusing the loop (`Via`).

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use futures_util::future::{BoxFuture, FutureExt, Shared};

use super::StashError;
use crate::error::InternalError;
use crate::tiers::{Asker, Forwarded};

type Outcome<T> = Result<T, StashError>;
type Flight<T> = Shared<BoxFuture<'static, Outcome<T>>>;
/// Each key's fetch: its id, the flight, and whether nucache started it
/// for itself.
type Table<T> = Arc<Mutex<HashMap<String, (u64, Flight<T>, bool)>>>;

pub(crate) struct Flights<T: Clone + Send + Sync + 'static> {
    table: Table<T>,
    next_id: AtomicU64,
}

/// Held by a fetch for as long as later requests should join it.
pub(crate) struct Ticket<T: Clone + Send + Sync + 'static> {
    table: Table<T>,
    key: String,
    id: u64,
}

impl<T: Clone + Send + Sync + 'static> Drop for Ticket<T> {
    fn drop(&mut self) {
        if let Ok(mut table) = self.table.lock() {
            if table.get(&self.key).is_some_and(|(id, _, _)| *id == self.id) {
                table.remove(&self.key);
            }
        }
    }
}

impl<T: Clone + Send + Sync + 'static> Default for Flights<T> {
    fn default() -> Self {
        Flights {
            table: Arc::new(Mutex::new(HashMap::new())),
            next_id: AtomicU64::new(0),
        }
    }
}

impl<T: Clone + Send + Sync + 'static> Flights<T> {
    /// Whether a fetch of `key` is in flight (to join it would start nothing).
    pub fn in_flight(&self, key: &str) -> bool {
        self.table.lock().is_ok_and(|table| table.contains_key(key))
    }

    /// Joins the fetch of `key` in flight, or starts one with `start`
    /// (alone, not to be joined, when the one in flight is nucache's own
    /// and the request came through another cache).
    pub fn join<F, Fut>(&self, key: &str, start: F) -> Flight<T>
    where
        F: FnOnce(Ticket<T>) -> Fut,
        Fut: Future<Output = Outcome<T>> + Send + 'static,
    {
        let Ok(mut table) = self.table.lock() else {
            let poisoned = InternalError::Broken("the table of fetches in flight is poisoned");
            return futures_util::future::ready(Err(poisoned.into())).boxed().shared();
        };
        let asker = Forwarded::asker();
        let alone = match table.get(key) {
            Some((_, flight, own)) if !(*own && asker == Asker::OtherCache) => return flight.clone(),
            Some(_) => true,
            None => false,
        };
        let (id, flight) = self.start(key, start);
        if !alone {
            table.insert(key.to_string(), (id, flight.clone(), asker == Asker::Nucache));
        }
        flight
    }

    /// Runs `start` in a task of its own, with a ticket of a new id (which
    /// names the key's entry only once it is in the table).
    fn start<F, Fut>(&self, key: &str, start: F) -> (u64, Flight<T>)
    where
        F: FnOnce(Ticket<T>) -> Fut,
        Fut: Future<Output = Outcome<T>> + Send + 'static,
    {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let ticket = Ticket {
            table: self.table.clone(),
            key: key.to_string(),
            id,
        };
        let task = crate::tiers::spawn(start(ticket));
        let flight = async move {
            task.await
                .unwrap_or_else(|e| Err(InternalError::task("a fetch")(e).into()))
        }
        .boxed()
        .shared();
        (id, flight)
    }

    /// How many fetches are in flight (for metrics and tests).
    pub fn len(&self) -> usize {
        self.table.lock().map(|t| t.len()).unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderMap;
    use std::sync::atomic::AtomicUsize;
    use std::time::Duration;

    #[tokio::test]
    async fn concurrent_joins_share_one_fetch() {
        let flights: Arc<Flights<u32>> = Arc::default();
        let started = Arc::new(AtomicUsize::new(0));
        let mut waiters = Vec::new();
        for _ in 0..10 {
            let started = started.clone();
            waiters.push(flights.join("k", move |ticket| async move {
                started.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(50)).await;
                drop(ticket);
                Ok(7)
            }));
        }
        for w in waiters {
            assert_eq!(w.await.ok(), Some(7));
        }
        assert_eq!(started.load(Ordering::SeqCst), 1);
        assert_eq!(flights.len(), 0);
    }

    // The scopes yield the flights unawaited: joining is what is tested.
    #[allow(clippy::async_yields_async)]
    #[tokio::test]
    async fn a_request_from_another_cache_never_waits_on_nucache_s_own_fetch() {
        let flights: Arc<Flights<u32>> = Arc::default();
        let (release, released) = tokio::sync::oneshot::channel::<()>();
        // nucache's own fetch (no request): it waits until released.
        let own = flights.join("k", move |ticket| async move {
            let _ = released.await;
            drop(ticket);
            Ok(1)
        });
        let mut through_a_cache = HeaderMap::new();
        through_a_cache.insert(http::header::VIA, http::HeaderValue::from_static("1.1 other"));
        let outsider = Forwarded::of(&through_a_cache, http::Version::HTTP_11);
        let alone = outsider.scope(async {
            flights.join("k", |ticket| async move {
                drop(ticket);
                Ok(2)
            })
        });
        let alone = tokio::time::timeout(Duration::from_secs(5), alone.await).await;
        assert_eq!(alone.expect("not waiting on the own fetch").ok(), Some(2));
        assert!(flights.in_flight("k"), "the own fetch is still the key's");
        let client = Forwarded::of(&HeaderMap::new(), http::Version::HTTP_11);
        let joined = client.scope(async { flights.join("k", |_| async { Ok(3) }) }).await;
        let _ = release.send(());
        assert_eq!(joined.await.ok(), Some(1), "a client joins it");
        assert_eq!(own.await.ok(), Some(1));
    }

    #[tokio::test]
    async fn a_fetch_survives_its_first_client() {
        let flights: Arc<Flights<u32>> = Arc::default();
        let (tx, rx) = tokio::sync::oneshot::channel();
        let first = flights.join("k", move |ticket| async move {
            tokio::time::sleep(Duration::from_millis(30)).await;
            let _ = tx.send(());
            drop(ticket);
            Ok(1)
        });
        drop(first);
        assert!(tokio::time::timeout(Duration::from_secs(5), rx).await.is_ok());
    }
}
