//! What a client's request passes on to the upstream when it causes a
//! fetch: its `Via` (so that every tier up the chain can tell a loop) and
//! the `X-NuGet-*` headers a feed reads (the session id that ties one
//! restore's requests together, the client and protocol versions). The
//! proxy runs each request inside its [`Forwarded`]; a fetch runs in
//! tasks of its own (single flight, background refreshes), which
//! [`spawn`] carries it into; the upstream client adds it to every request
//! it sends ([`Forwarded::prepare`]), and with none (start-up, breaker
//! probes) sends this node's `Via` entry alone.
//!
//! A fetch shared by several clients (single flight) passes on the
//! headers of the one that started it.

use std::future::Future;
use std::sync::Arc;

use http::header::{HeaderMap, HeaderName, HeaderValue, VIA};
use http::Version;
use tokio::task::JoinHandle;

use super::{via, NodeId};

/// Client headers that go upstream with the fetches they cause (publish
/// calls forward their own, the same ones).
const PASSED: [HeaderName; 3] = [
    HeaderName::from_static("x-nuget-session-id"),
    HeaderName::from_static("x-nuget-client-version"),
    HeaderName::from_static("x-nuget-protocol-version"),
];

tokio::task_local! {
    static CURRENT: Arc<Forwarded>;
}

/// Who a piece of work is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Asker {
    /// nucache itself, with no request (the start-up load of the indexes).
    Nucache,
    /// A client's request that came through no other cache.
    Client,
    /// A request that came through another cache (its `Via` names one).
    OtherCache,
}

/// The part of a client's request its fetches pass on.
#[derive(Debug, Clone)]
pub(crate) struct Forwarded {
    /// The client's `Via` values, in order.
    via: Vec<HeaderValue>,
    /// The protocol the request came in (this node's `Via` entry says it).
    version: Version,
    passed: Vec<(HeaderName, HeaderValue)>,
}

impl Forwarded {
    pub fn of(headers: &HeaderMap, version: Version) -> Forwarded {
        let passed = PASSED
            .iter()
            .filter_map(|name| Some((name.clone(), headers.get(name)?.clone())))
            .collect();
        Forwarded {
            via: headers.get_all(VIA).iter().cloned().collect(),
            version,
            passed,
        }
    }

    /// Runs `work` (the request's handling) with these headers current.
    pub async fn scope<F: Future>(self, work: F) -> F::Output {
        CURRENT.scope(Arc::new(self), work).await
    }

    fn current() -> Option<Arc<Forwarded>> {
        CURRENT.try_with(Arc::clone).ok()
    }

    /// Who the work running now is for.
    pub fn asker() -> Asker {
        match Forwarded::current() {
            None => Asker::Nucache,
            Some(forwarded) if forwarded.via.is_empty() => Asker::Client,
            Some(_) => Asker::OtherCache,
        }
    }

    /// Completes the headers of a request to the upstream: the current
    /// client's pass-through headers it does not set itself, and `Via`
    /// (the client's, then `node`'s entry).
    pub fn prepare(node: &NodeId, headers: &mut HeaderMap) {
        let current = Forwarded::current();
        let (client_via, version) = match current.as_deref() {
            Some(forwarded) => (forwarded.via.as_slice(), forwarded.version),
            None => (&[][..], Version::HTTP_11),
        };
        if let Some(via) = via::appended(client_via, &via::entry(node, version)) {
            headers.insert(VIA, via);
        }
        for (name, value) in current.iter().flat_map(|forwarded| &forwarded.passed) {
            headers.entry(name).or_insert_with(|| value.clone());
        }
    }
}

/// `tokio::spawn`, carrying the current request's [`Forwarded`] into the
/// task: a fetch that drops the client's `Via` would let a loop of tiers
/// pass unseen.
pub(crate) fn spawn<F>(work: F) -> JoinHandle<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    match Forwarded::current() {
        Some(forwarded) => tokio::spawn(CURRENT.scope(forwarded, work)),
        None => tokio::spawn(work),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client() -> HeaderMap {
        super::super::headers_of(&[
            ("via", "1.1 edge-a"),
            ("x-nuget-session-id", "5d6e"),
            ("x-nuget-apikey", "secret"),
        ])
    }

    fn prepared() -> HeaderMap {
        let mut upstream = HeaderMap::new();
        Forwarded::prepare(&NodeId::named("regional-b"), &mut upstream);
        upstream
    }

    #[tokio::test]
    async fn a_fetch_passes_on_its_client_s_via_and_nuget_headers_in_spawned_tasks() {
        let forwarded = Forwarded::of(&client(), Version::HTTP_2);
        let upstream = forwarded
            .scope(async { spawn(async { prepared() }).await.expect("task") })
            .await;
        assert_eq!(upstream.get(VIA).expect("via"), "1.1 edge-a, 2 regional-b");
        assert_eq!(upstream.get("x-nuget-session-id").expect("session"), "5d6e");
        assert!(upstream.get("x-nuget-apikey").is_none(), "keys are not read headers");
    }

    #[tokio::test]
    async fn the_asker_is_told_by_the_request_s_via() {
        assert_eq!(Forwarded::asker(), Asker::Nucache);
        let through_a_cache = Forwarded::of(&client(), Version::HTTP_11);
        assert_eq!(
            through_a_cache.scope(async { Forwarded::asker() }).await,
            Asker::OtherCache
        );
        let direct = Forwarded::of(&HeaderMap::new(), Version::HTTP_11);
        assert_eq!(direct.scope(async { Forwarded::asker() }).await, Asker::Client);
    }

    #[tokio::test]
    async fn without_a_client_only_this_node_s_entry_goes() {
        let upstream = prepared();
        assert_eq!(upstream.get(VIA).expect("via"), "1.1 regional-b");
        assert_eq!(upstream.len(), 1);
        let plain = tokio::spawn(async { prepared() }).await.expect("task");
        assert_eq!(plain.get(VIA).expect("via"), "1.1 regional-b");
    }
}
