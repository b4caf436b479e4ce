//! An in-process NuGet V3 upstream for integration tests.
//!
//! By default three HTTP/1.1 listeners on 127.0.0.1 mimic nuget.org's hosts:
//!
//! * `api`: service index, flat container, the three registration hives,
//!   catalog, repository signatures, vulnerability info and publishing;
//! * `search`: `/query` and `/autocomplete`;
//! * `www`: the human pages the URI templates point at.
//!
//! [`FakeOptions`] turn it into a private feed (Azure Artifacts / GitHub
//! Packages style: everything on the api host under a path prefix), make
//! every body chunked, or redirect `.nupkg` downloads to a fourth `cdn`
//! listener.
//!
//! Every request is recorded before faults are applied; faults
//! ([`Fault`]) and basic auth apply to the api and search hosts only.
//! Dropping the [`FakeUpstream`] closes the listeners and ends every task
//! it spawned.
//!
//! A request goes `listener` (sockets, accept loops) -> `pipeline` (record,
//! faults, auth, validators; `connection` lets a fault act on the socket)
//! -> `routes` (path to reply, from the `model`'s packages, the `layout`'s
//! URLs and the `docs`' JSON) -> `framing` (how the body goes out).

mod connection;
mod docs;
mod framing;
mod in_flight;
mod layout;
mod listener;
mod model;
mod pipeline;
mod routes;

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use base64::Engine as _;
use http::HeaderMap;
use tokio::runtime::Handle;
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use model::Corpus;

use in_flight::InFlight;
use layout::Layout;
use listener::{Ctl, Listener};
use model::Store;

/// Deterministic pseudo-random `.nupkg` bytes (20-24 KiB, seeded by id and
/// version, starting with `PK\x03\x04`; not a valid zip), as the corpus uses.
pub fn fake_nupkg(id: &str, version: &str) -> Vec<u8> {
    model::fake_nupkg(id, version)
}

/// Which host a request reached.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    Api,
    Search,
    Www,
    /// Serves redirected `.nupkg` downloads
    /// ([`FakeOptions::redirect_packages_to_cdn`]).
    Cdn,
}

impl Role {
    const COUNT: usize = 4;

    fn index(self) -> usize {
        match self {
            Role::Api => 0,
            Role::Search => 1,
            Role::Www => 2,
            Role::Cdn => 3,
        }
    }

    /// Subject to faults and basic auth.
    fn guarded(self) -> bool {
        matches!(self, Role::Api | Role::Search)
    }
}

/// The shape of the fake feed; the default is nuget.org's.
#[derive(Clone, Debug, Default)]
pub struct FakeOptions {
    /// Non-empty: a private feed whose every resource lives on the api host
    /// under this prefix (e.g. `/_packaging/feed/nuget`): service index
    /// `{prefix}/v3/index.json`, flat container `{prefix}/v3/flatcontainer/`,
    /// plain-JSON hives `{prefix}/v3/registrations2/` (SemVer 1) and
    /// `{prefix}/v3/registrations2-semver2/`, search `{prefix}/v3/query2/`,
    /// autocomplete `{prefix}/v3/autocomplete/`, publish `{prefix}/v2/`.
    /// No catalog, repository signatures or vulnerability info; paths
    /// outside the prefix and the search host answer 404.
    /// Empty: nuget.org's shape on three hosts.
    pub path_prefix: String,
    /// Every response body goes out `Transfer-Encoding: chunked`, without
    /// `Content-Length` (answers to HEAD and 304s are unchanged).
    pub chunked: bool,
    /// `.nupkg` downloads answer 303 See Other to a fourth listener
    /// ([`Role::Cdn`], see [`FakeUpstream::cdn`]) that serves the bytes;
    /// it records requests but knows no faults and no basic auth.
    pub redirect_packages_to_cdn: bool,
    /// Every host serves https with this configuration (its certificate
    /// from a test CA, see `common::tls::Ca::server_config`); origins are
    /// `https://127.0.0.1:PORT`.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// Every JSON document starts with a UTF-8 byte order mark (inside the
    /// gzip stream of a gzipped one), as some feeds write them; NuGet's
    /// client accepts it.
    pub byte_order_mark: bool,
}

/// One request as received (recorded before any fault is applied).
#[derive(Clone, Debug)]
pub struct Recorded {
    pub host: Role,
    pub method: String,
    /// Path with query, as sent.
    pub path: String,
    pub headers: HeaderMap,
    /// Bytes in the request body (after de-chunking).
    pub body_len: usize,
}

/// Misbehaviour to inject on the api and search hosts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    Ok,
    /// The listeners are closed (connect fails with ECONNREFUSED) and open
    /// connections are dropped; clearing the fault re-binds the same ports.
    /// As a per-path fault ([`FakeUpstream::set_fault_for`]) it acts as `Reset`.
    Refuse,
    /// Every request is answered with this status and a small JSON body.
    Status(u16),
    /// Wait this long before sending the response head.
    Delay(Duration),
    /// Read the request, never answer (until the fault changes).
    Hang,
    /// Full `Content-Length`, half the body, then close.
    Truncate,
    /// Head and half the body, then stall until the fault changes, then close.
    StallBody,
    /// Flip bytes in `.nupkg` bodies (same length).
    Corrupt,
    /// Close with RST right after reading the request.
    Reset,
    /// JSON documents become an HTML error page (200, `text/html`).
    BadJson,
    /// `.nupkg` bodies: more bytes on the wire than `Content-Length`, then close.
    LongerBody,
    /// 302 with `Location` = the request URL.
    RedirectLoop,
}

/// The fake upstream; see the module docs.
pub struct FakeUpstream {
    shared: Arc<Shared>,
    tasks: Vec<JoinHandle<()>>,
}

impl FakeUpstream {
    /// Starts with [`Corpus::default_corpus`].
    pub async fn start() -> FakeUpstream {
        FakeUpstream::start_with(Corpus::default_corpus()).await
    }

    /// nuget.org's shape ([`FakeOptions::default`]).
    pub async fn start_with(corpus: Corpus) -> FakeUpstream {
        FakeUpstream::start_with_options(corpus, FakeOptions::default()).await
    }

    pub async fn start_with_options(corpus: Corpus, options: FakeOptions) -> FakeUpstream {
        let bind = || Listener::bind_any().expect("fake upstream: bind 127.0.0.1:0");
        let mut listeners = vec![(Role::Api, bind()), (Role::Search, bind()), (Role::Www, bind())];
        if options.redirect_packages_to_cdn {
            listeners.push((Role::Cdn, bind()));
        }
        let origin = |role: Role| {
            let (_, listener) = listeners.iter().find(|(r, _)| *r == role)?;
            let scheme = if options.tls.is_some() { "https" } else { "http" };
            Some(format!("{scheme}://{}", listener.addr()))
        };
        let layout = Layout {
            api: origin(Role::Api).expect("api listener"),
            search: origin(Role::Search).expect("search listener"),
            www: origin(Role::Www).expect("www listener"),
            cdn: origin(Role::Cdn),
            prefix: layout::normalize_prefix(&options.path_prefix),
        };
        let mut shared = Shared::new(layout, options.chunked, Store::new(corpus), listeners);
        shared.tls = options.tls.map(tokio_rustls::TlsAcceptor::from);
        shared.byte_order_mark = options.byte_order_mark;
        let shared = Arc::new(shared);
        let tasks = shared
            .listeners
            .iter()
            .map(|(role, _)| tokio::spawn(listener::accept_loop(shared.clone(), *role)))
            .collect();
        FakeUpstream { shared, tasks }
    }

    /// `{api}{prefix}/v3/index.json`
    pub fn index_url(&self) -> String {
        self.shared.layout.index_url()
    }

    /// `http://127.0.0.1:PORT` of the api host (no trailing slash).
    pub fn api(&self) -> String {
        self.shared.layout.api.clone()
    }

    pub fn search(&self) -> String {
        self.shared.layout.search.clone()
    }

    pub fn www(&self) -> String {
        self.shared.layout.www.clone()
    }

    /// The cdn host, when `.nupkg` downloads are redirected.
    pub fn cdn(&self) -> Option<String> {
        self.shared.layout.cdn.clone()
    }

    /// api, search, www, then cdn if present.
    pub fn origins(&self) -> Vec<String> {
        let mut origins = vec![self.api(), self.search(), self.www()];
        origins.extend(self.cdn());
        origins
    }

    /// The global fault of the api and search hosts.
    pub fn set_fault(&self, fault: Fault) {
        lock(&self.shared.faults).global = fault;
        self.shared.faults_changed();
        self.shared.set_refusing(fault == Fault::Refuse);
    }

    /// A fault for requests whose path (with query) contains `path_contains`;
    /// it wins over the global one. Setting the same key again replaces it.
    pub fn set_fault_for(&self, path_contains: &str, fault: Fault) {
        {
            let mut faults = lock(&self.shared.faults);
            faults.rules.retain(|(key, _)| key != path_contains);
            faults.rules.push((path_contains.to_string(), fault));
        }
        self.shared.faults_changed();
    }

    pub fn clear_faults(&self) {
        {
            let mut faults = lock(&self.shared.faults);
            faults.global = Fault::Ok;
            faults.rules.clear();
        }
        self.shared.faults_changed();
        self.shared.set_refusing(false);
    }

    /// Every request received on any host, in order.
    pub fn requests(&self) -> Vec<Recorded> {
        lock(&self.shared.log).iter().map(|(_, r)| r.clone()).collect()
    }

    /// Number of recorded requests whose path (with query) contains `path_contains`.
    pub fn count(&self, path_contains: &str) -> usize {
        lock(&self.shared.log)
            .iter()
            .filter(|(_, r)| r.path.contains(path_contains))
            .count()
    }

    pub fn reset_log(&self) {
        lock(&self.shared.log).clear();
    }

    /// Adds (or replaces) a listed package; flat container, registration
    /// and search reflect it at once. Panics on an invalid version.
    pub fn add_package(&self, id: &str, version: &str, nupkg: Vec<u8>) {
        let added = self.shared.store().add(id, version, nupkg);
        assert!(added, "fake upstream: invalid version {version:?}");
    }

    /// Panics if the package does not exist.
    pub fn set_listed(&self, id: &str, version: &str, listed: bool) {
        let found = self.shared.store().set_listed(id, version, listed);
        assert!(found, "fake upstream: no package {id} {version}");
    }

    /// The `.nupkg` bytes served for `id` `version` (any casing / spelling).
    pub fn nupkg_bytes(&self, id: &str, version: &str) -> Option<Vec<u8>> {
        self.shared.store().find(id, version).map(|p| p.nupkg.to_vec())
    }

    /// `.nupkg` bodies go out in chunks of `chunk` bytes with `delay`
    /// between them (default: the whole body at once).
    pub fn set_body_chunking(&self, chunk: usize, delay: Duration) {
        lock(&self.shared.settings).chunking = Some((chunk.max(1), delay));
    }

    /// Registration catalog entries state each package's SHA-512
    /// `packageHash`, as some servers do (nuget.org only in catalog leaves).
    pub fn set_registration_hashes(&self, on: bool) {
        lock(&self.shared.settings).registration_hashes = on;
    }

    /// `.nupkg` answers carry `Content-MD5` (the default), or not.
    pub fn set_content_md5(&self, on: bool) {
        lock(&self.shared.settings).no_content_md5 = !on;
    }

    /// Answers to requests whose path (with query) contains `path_contains`
    /// carry `headers` too (`Age`, `Cache-Status`: an upstream that is a
    /// cache). Setting the same key again replaces them.
    pub fn set_response_headers(&self, path_contains: &str, headers: &[(&'static str, &str)]) {
        let headers = headers
            .iter()
            .map(|(name, value)| {
                (
                    http::HeaderName::from_static(name),
                    http::HeaderValue::from_str(value).expect("header value"),
                )
            })
            .collect();
        let mut settings = lock(&self.shared.settings);
        settings.extra_headers.retain(|(key, _)| key != path_contains);
        settings.extra_headers.push((path_contains.to_string(), headers));
    }

    /// When Some, publish calls need `X-NuGet-ApiKey` == key (else 403).
    pub fn set_api_key(&self, key: Option<&str>) {
        lock(&self.shared.settings).api_key = key.map(str::to_string);
    }

    /// When Some, api/search requests without this Basic auth get 401
    /// (`WWW-Authenticate: Basic realm="fake"`); www and cdn never ask.
    pub fn set_basic_auth(&self, user_pass: Option<(&str, &str)>) {
        lock(&self.shared.settings).basic = user_pass.map(|(user, pass)| {
            let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"));
            format!("Basic {token}")
        });
    }

    /// Hex SHA-256 of the body of the last `PUT` to a publish endpoint.
    pub fn last_push_sha256(&self) -> Option<String> {
        lock(&self.shared.pushes).last.map(|(_, sha)| hex::encode(sha))
    }

    /// Requests being answered now, on any host (a request counts from its
    /// arrival until its response body is sent or dropped).
    pub fn in_flight(&self) -> usize {
        self.shared.in_flight.now()
    }

    /// The most requests answered at once since the start (or the last
    /// [`FakeUpstream::reset_max_in_flight`]).
    pub fn max_in_flight(&self) -> usize {
        self.shared.in_flight.most()
    }

    pub fn reset_max_in_flight(&self) {
        self.shared.in_flight.reset_most();
    }

    /// Body length of the last `PUT` to a publish endpoint.
    pub fn last_push_len(&self) -> Option<usize> {
        lock(&self.shared.pushes).last.map(|(len, _)| len)
    }
}

impl Drop for FakeUpstream {
    fn drop(&mut self) {
        self.shared.ctl.send_modify(|c| c.shutdown = true);
        for (_, listener) in &self.shared.listeners {
            listener.close();
        }
        for task in &self.tasks {
            task.abort();
        }
    }
}

// ---------------------------------------------------------------------------
// shared state

#[derive(Debug)]
struct Faults {
    global: Fault,
    /// (path substring, fault); the last matching rule wins.
    rules: Vec<(String, Fault)>,
}

#[derive(Debug, Default)]
struct Settings {
    chunking: Option<(usize, Duration)>,
    /// Registration catalog entries state `packageHash` (nuget.org's do not).
    registration_hashes: bool,
    /// `.nupkg` answers omit `Content-MD5` (they carry it by default).
    no_content_md5: bool,
    api_key: Option<String>,
    /// The expected `Authorization` header value.
    basic: Option<String>,
    /// (path substring, headers every matching answer carries).
    extra_headers: Vec<(String, Vec<(http::HeaderName, http::HeaderValue)>)>,
}

#[derive(Debug, Default)]
struct Pushes {
    seen: HashSet<[u8; 32]>,
    last: Option<(usize, [u8; 32])>,
}

/// State shared by the handle and every server task.
pub(crate) struct Shared {
    layout: Layout,
    /// Bodies go out chunked ([`FakeOptions::chunked`]).
    chunked: bool,
    /// [`FakeOptions::byte_order_mark`].
    byte_order_mark: bool,
    store: Mutex<Store>,
    faults: Mutex<Faults>,
    /// Bumped on every fault change (wakes `Hang` and `StallBody`).
    fault_tx: watch::Sender<u64>,
    ctl: watch::Sender<Ctl>,
    log: Mutex<Vec<(u64, Recorded)>>,
    next_seq: AtomicU64,
    settings: Mutex<Settings>,
    pushes: Mutex<Pushes>,
    listeners: Vec<(Role, Listener)>,
    handle: Handle,
    /// Set: connections speak TLS ([`FakeOptions::tls`]).
    tls: Option<tokio_rustls::TlsAcceptor>,
    in_flight: Arc<InFlight>,
}

/// Locks, ignoring poisoning (a panicking handler must not wedge the fake).
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Shared {
    fn new(layout: Layout, chunked: bool, store: Store, listeners: Vec<(Role, Listener)>) -> Shared {
        Shared {
            layout,
            chunked,
            byte_order_mark: false,
            store: Mutex::new(store),
            faults: Mutex::new(Faults {
                global: Fault::Ok,
                rules: Vec::new(),
            }),
            fault_tx: watch::Sender::new(0),
            ctl: watch::Sender::new(Ctl::default()),
            log: Mutex::new(Vec::new()),
            next_seq: AtomicU64::new(1),
            settings: Mutex::new(Settings::default()),
            pushes: Mutex::new(Pushes::default()),
            listeners,
            handle: Handle::current(),
            tls: None,
            in_flight: Arc::default(),
        }
    }

    fn store(&self) -> MutexGuard<'_, Store> {
        lock(&self.store)
    }

    fn origin(&self, role: Role) -> &str {
        match role {
            Role::Api => &self.layout.api,
            Role::Search => &self.layout.search,
            Role::Www => &self.layout.www,
            Role::Cdn => self.layout.cdn.as_deref().unwrap_or_default(),
        }
    }

    /// Panics for the cdn role when there is no cdn listener.
    fn listener(&self, role: Role) -> &Listener {
        self.listeners
            .iter()
            .find_map(|(r, listener)| (*r == role).then_some(listener))
            .unwrap_or_else(|| panic!("fake upstream: no {role:?} listener"))
    }

    fn fault_for(&self, role: Role, path: &str) -> Fault {
        if !role.guarded() {
            return Fault::Ok;
        }
        let faults = lock(&self.faults);
        faults
            .rules
            .iter()
            .rev()
            .find(|(key, _)| path.contains(key.as_str()))
            .map_or(faults.global, |(_, fault)| *fault)
    }

    fn faults_changed(&self) {
        self.fault_tx.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// Closes (and kills the connections of) or re-opens the api and search
    /// listeners.
    fn set_refusing(&self, refuse: bool) {
        for role in [Role::Api, Role::Search] {
            let listener = self.listener(role);
            if refuse {
                listener.close();
                self.ctl.send_modify(|c| c.epochs[role.index()] += 1);
            } else {
                listener
                    .reopen(&self.handle)
                    .unwrap_or_else(|e| panic!("fake upstream: re-bind {}: {e}", listener.addr()));
            }
        }
    }

    fn record(&self, rec: Recorded) -> u64 {
        let seq = self.next_seq.fetch_add(1, Ordering::Relaxed);
        lock(&self.log).push((seq, rec));
        seq
    }

    fn set_body_len(&self, seq: u64, len: usize) {
        let mut log = lock(&self.log);
        if let Some((_, rec)) = log.iter_mut().rev().find(|(s, _)| *s == seq) {
            rec.body_len = len;
        }
    }

    fn chunking(&self) -> Option<(usize, Duration)> {
        lock(&self.settings).chunking
    }

    /// The headers [`FakeUpstream::set_response_headers`] adds to the answer to `path`.
    fn extra_headers(&self, path: &str) -> Vec<(http::HeaderName, http::HeaderValue)> {
        let settings = lock(&self.settings);
        let matching = settings
            .extra_headers
            .iter()
            .filter(|(key, _)| path.contains(key.as_str()));
        matching.flat_map(|(_, headers)| headers.iter().cloned()).collect()
    }

    fn registration_hashes(&self) -> bool {
        lock(&self.settings).registration_hashes
    }

    pub(crate) fn content_md5(&self) -> bool {
        !lock(&self.settings).no_content_md5
    }

    fn api_key_ok(&self, headers: &HeaderMap) -> bool {
        match &lock(&self.settings).api_key {
            None => true,
            Some(key) => headers
                .get("X-NuGet-ApiKey")
                .is_some_and(|v| v.as_bytes() == key.as_bytes()),
        }
    }

    fn basic_ok(&self, headers: &HeaderMap) -> bool {
        match &lock(&self.settings).basic {
            None => true,
            Some(expected) => headers
                .get(http::header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.split_once(' '))
                .is_some_and(|(scheme, token)| {
                    scheme.eq_ignore_ascii_case("basic") && Some(token.trim()) == expected.strip_prefix("Basic ")
                }),
        }
    }

    /// Notes a publish body; true when this exact body is new (for
    /// packages only: `dedupe` false always answers true).
    fn note_push(&self, len: usize, sha: [u8; 32], dedupe: bool) -> bool {
        let mut pushes = lock(&self.pushes);
        pushes.last = Some((len, sha));
        !dedupe || pushes.seen.insert(sha)
    }
}
