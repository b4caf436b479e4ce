//! Request routing: turns a fully read request into a [`Reply`] (no faults
//! here; see `pipeline.rs` for those).

use std::io::{Read as _, Write as _};

use base64::Engine as _;
use md5::Digest as _;

use bytes::Bytes;
use http::header::{CONTENT_ENCODING, CONTENT_TYPE, LOCATION};
use http::{HeaderMap, HeaderValue, Method, StatusCode};
use serde_json::Value;

use super::docs::{self, Docs, Query};
use super::layout::{Hive, CDN_SIGNATURE};
use super::model::{xml_escape, Package, BASE_TIME};
use super::{Role, Shared};

/// What the body is, for faults that only touch some bodies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    Json,
    Nupkg,
    Other,
}

/// A response before faults, validators and framing are applied.
pub(crate) struct Reply {
    pub(crate) status: StatusCode,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Bytes,
    pub(crate) kind: Kind,
    /// Set on cacheable 200s: gets `ETag` + `Last-Modified` (unix seconds).
    pub(crate) last_modified: Option<u64>,
}

impl Reply {
    pub(crate) fn new(status: StatusCode, ctype: &'static str, body: impl Into<Bytes>) -> Reply {
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static(ctype));
        Reply {
            status,
            headers,
            body: body.into(),
            kind: Kind::Other,
            last_modified: None,
        }
    }

    /// A 200 that carries validators.
    fn ok(ctype: &'static str, body: impl Into<Bytes>, last_modified: u64) -> Reply {
        let mut reply = Reply::new(StatusCode::OK, ctype, body);
        reply.last_modified = Some(last_modified);
        reply
    }

    fn json(doc: &Value, last_modified: u64) -> Reply {
        let body = serde_json::to_vec(doc).unwrap_or_default();
        let mut reply = Reply::ok("application/json", body, last_modified);
        reply.kind = Kind::Json;
        reply
    }

    fn gzip_json(doc: &Value, last_modified: u64) -> Reply {
        let plain = serde_json::to_vec(doc).unwrap_or_default();
        let gz = match gzip(&plain) {
            Ok(gz) => gz,
            Err(e) => return Reply::error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
        };
        let mut reply = Reply::ok("application/json", gz, last_modified);
        reply.kind = Kind::Json;
        let gzip = HeaderValue::from_static("gzip");
        reply.headers.insert(CONTENT_ENCODING, gzip);
        reply
    }

    /// The same JSON document with a UTF-8 byte order mark in front
    /// (inside the gzip stream when it is gzipped).
    fn with_byte_order_mark(mut self) -> Reply {
        let gzipped = self.headers.contains_key(CONTENT_ENCODING);
        let mut marked = b"\xef\xbb\xbf".to_vec();
        let body = match gzipped {
            false => {
                marked.extend_from_slice(&self.body);
                Ok(marked)
            }
            true => flate2::read::GzDecoder::new(&self.body[..])
                .read_to_end(&mut marked)
                .and_then(|_| gzip(&marked)),
        };
        match body {
            Ok(body) => self.body = body.into(),
            Err(e) => return Reply::error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
        }
        self
    }

    /// `{"error": message}` with the given status.
    pub(crate) fn error(status: StatusCode, message: &str) -> Reply {
        let body = serde_json::json!({ "error": message }).to_string();
        Reply::new(status, "application/json", body)
    }

    fn not_found() -> Reply {
        Reply::error(StatusCode::NOT_FOUND, "not found")
    }

    fn method_not_allowed() -> Reply {
        Reply::error(StatusCode::METHOD_NOT_ALLOWED, "method not allowed")
    }

    fn see_other(location: &str) -> Reply {
        let mut reply = Reply::new(StatusCode::SEE_OTHER, "text/plain", "");
        if let Ok(value) = HeaderValue::from_str(location) {
            reply.headers.insert(LOCATION, value);
        }
        reply
    }
}

/// The request as the router sees it (the body has been drained).
pub(crate) struct Req<'a> {
    pub(crate) role: Role,
    pub(crate) method: &'a Method,
    pub(crate) path: &'a str,
    pub(crate) query: Query,
    pub(crate) headers: &'a HeaderMap,
    pub(crate) body_len: usize,
    pub(crate) body_sha256: [u8; 32],
}

pub(crate) fn route(shared: &Shared, req: &Req<'_>) -> Reply {
    let reply = match req.role {
        Role::Www => route_www(req),
        Role::Search => route_search(shared, req),
        Role::Api => route_api(shared, req),
        Role::Cdn => route_cdn(shared, req),
    };
    match shared.byte_order_mark && reply.kind == Kind::Json {
        true => reply.with_byte_order_mark(),
        false => reply,
    }
}

fn gzip(plain: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(plain)?;
    encoder.finish()
}

fn is_read(method: &Method) -> bool {
    method == Method::GET || method == Method::HEAD
}

// ---------------------------------------------------------------------------
// search host

/// nuget.org's search host; a private feed serves search on the api host
/// and leaves this one answering 404.
fn route_search(shared: &Shared, req: &Req<'_>) -> Reply {
    if !is_read(req.method) {
        return Reply::method_not_allowed();
    }
    if shared.layout.private() {
        return Reply::not_found();
    }
    let store = shared.store();
    let docs = Docs {
        store: &store,
        layout: &shared.layout,
        registration_hashes: shared.registration_hashes(),
        content_md5: shared.content_md5(),
    };
    match req.path {
        "/query" | "/" => search(&docs, req),
        "/autocomplete" => autocomplete(&docs, req),
        _ => Reply::not_found(),
    }
}

fn search(docs: &Docs<'_>, req: &Req<'_>) -> Reply {
    Reply::json(&docs.search(&req.query), docs.store.mtime())
}

fn autocomplete(docs: &Docs<'_>, req: &Req<'_>) -> Reply {
    Reply::json(&docs.autocomplete(&req.query), docs.store.mtime())
}

// ---------------------------------------------------------------------------
// www host

fn route_www(req: &Req<'_>) -> Reply {
    if !is_read(req.method) {
        return Reply::method_not_allowed();
    }
    let page = |title: &str| {
        let t = xml_escape(title);
        let html = format!("<!doctype html><title>{t}</title><h1>{t}</h1>\n");
        Reply::ok("text/html; charset=utf-8", html, BASE_TIME)
    };
    let segs: Vec<&str> = req.path.trim_matches('/').split('/').collect();
    match segs.as_slice() {
        ["packages", rest @ ..] if !rest.is_empty() && rest.len() <= 3 => page(&rest.join(" ")),
        ["profiles", owner] => page(owner),
        ["api", "v2"] => {
            let xml = "<?xml version=\"1.0\" encoding=\"utf-8\"?><service><workspace>\
                       <collection href=\"Packages\"/></workspace></service>\n";
            Reply::ok("application/xml; charset=utf-8", xml, BASE_TIME)
        }
        _ => Reply::new(
            StatusCode::NOT_FOUND,
            "text/html",
            "<!doctype html><title>not found</title>\n",
        ),
    }
}

// ---------------------------------------------------------------------------
// api host: reads

/// The api host: with a path prefix, nothing outside it exists.
fn route_api(shared: &Shared, req: &Req<'_>) -> Reply {
    let layout = &shared.layout;
    let Some(rest) = req
        .path
        .strip_prefix(layout.prefix.as_str())
        .and_then(|rest| rest.strip_prefix('/'))
    else {
        return Reply::not_found();
    };
    let segs: Vec<&str> = rest.split('/').collect();
    if let Some((target, rest)) = publish_target(layout.private(), &segs) {
        return route_publish(shared, req, target, rest);
    }
    if !is_read(req.method) {
        return Reply::method_not_allowed();
    }
    let store = shared.store();
    let docs = Docs {
        store: &store,
        layout,
        registration_hashes: shared.registration_hashes(),
        content_md5: shared.content_md5(),
    };
    if let ["v3", name, rest @ ..] = segs.as_slice() {
        if let Some(hive) = layout.hive(name) {
            return registration(&docs, hive, rest);
        }
    }
    match segs.as_slice() {
        ["v3", "index.json"] => Reply::json(&docs::service_index(layout), BASE_TIME),
        segs if layout.private() => private_feed_reads(&docs, req, segs),
        segs => nuget_org_reads(&docs, segs),
    }
}

/// Reads only nuget.org has (paths from the host root).
fn nuget_org_reads(docs: &Docs<'_>, segs: &[&str]) -> Reply {
    let mtime = docs.store.mtime();
    match segs {
        ["v3-flatcontainer", rest @ ..] => flat_container(docs, rest),
        ["v3", "catalog0", "index.json"] => Reply::json(&docs.catalog_index(), mtime),
        ["v3", "catalog0", "page0.json"] => Reply::json(&docs.catalog_page(), mtime),
        ["v3", "catalog0", "data", _, file] => match file.strip_suffix(".json").and_then(|n| docs.catalog_leaf(n)) {
            Some(doc) => Reply::json(&doc, mtime),
            None => Reply::not_found(),
        },
        ["v3-index", "repository-signatures", "4.7.0" | "4.9.0" | "5.0.0", "index.json"] => {
            Reply::json(&docs::repository_signatures(), BASE_TIME)
        }
        ["v3", "vulnerabilities", "index.json"] => Reply::json(&docs::vulnerability_index(docs.layout), BASE_TIME),
        ["v3", "vulnerabilities", "base.json" | "update.json"] => Reply::json(&serde_json::json!({}), BASE_TIME),
        _ => Reply::not_found(),
    }
}

/// Reads only a private feed has (paths below the prefix).
fn private_feed_reads(docs: &Docs<'_>, req: &Req<'_>, segs: &[&str]) -> Reply {
    match segs {
        ["v3", "flatcontainer", rest @ ..] => flat_container(docs, rest),
        ["v3", "query2"] | ["v3", "query2", ""] => search(docs, req),
        ["v3", "autocomplete"] | ["v3", "autocomplete", ""] => autocomplete(docs, req),
        _ => Reply::not_found(),
    }
}

fn is_lower(s: &str) -> bool {
    s.to_lowercase() == s
}

fn flat_container(docs: &Docs<'_>, segs: &[&str]) -> Reply {
    if !segs.iter().all(|s| is_lower(s)) {
        return Reply::not_found(); // the blob store is case-sensitive
    }
    match segs {
        [id, "index.json"] => match docs.flat_versions(id) {
            Some(doc) => Reply::json(&doc, docs.store.mtime()),
            None => Reply::not_found(),
        },
        [id, ver, file] => match (docs.store.get(id, ver), docs.layout.cdn_nupkg_url(id, ver)) {
            (Some(_), Some(cdn)) if is_nupkg(id, ver, file) => Reply::see_other(&cdn),
            (Some(pkg), _) => package_file(pkg, id, ver, file, docs.content_md5),
            (None, _) => Reply::not_found(),
        },
        _ => Reply::not_found(),
    }
}

fn is_nupkg(id: &str, ver: &str, file: &str) -> bool {
    file == format!("{id}.{ver}.nupkg")
}

fn package_file(pkg: &Package, id: &str, ver: &str, file: &str, content_md5: bool) -> Reply {
    let lm = pkg.published;
    if is_nupkg(id, ver, file) {
        let mut reply = Reply::ok("application/octet-stream", pkg.nupkg.clone(), lm);
        reply.kind = Kind::Nupkg;
        // As Azure blob storage does for nuget.org's flat container.
        let md5 = base64::engine::general_purpose::STANDARD.encode(md5::Md5::digest(&pkg.nupkg));
        if let (true, Ok(value)) = (content_md5, HeaderValue::from_str(&md5)) {
            reply.headers.insert("content-md5", value);
        }
        reply
    } else if file == format!("{id}.nuspec") {
        Reply::ok("text/xml", pkg.nuspec(), lm)
    } else if file == "readme" {
        let md = format!("# {} {}\n\n{}\n", pkg.id, pkg.version.full(), pkg.description());
        Reply::ok("text/markdown", md, lm)
    } else if file == "icon" {
        Reply::ok("image/png", Bytes::from_static(ICON_PNG), lm)
    } else {
        Reply::not_found()
    }
}

/// A 1x1 transparent PNG.
const ICON_PNG: &[u8] = &[
    0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0x00, 0x00, 0x00, 0x0d, 0x49, 0x48, 0x44, 0x52, 0x00, 0x00, 0x00,
    0x01, 0x00, 0x00, 0x00, 0x01, 0x08, 0x06, 0x00, 0x00, 0x00, 0x1f, 0x15, 0xc4, 0x89, 0x00, 0x00, 0x00, 0x0d, 0x49,
    0x44, 0x41, 0x54, 0x78, 0x9c, 0x63, 0x00, 0x01, 0x00, 0x00, 0x05, 0x00, 0x01, 0x0d, 0x0a, 0x2d, 0xb4, 0x00, 0x00,
    0x00, 0x00, 0x49, 0x45, 0x4e, 0x44, 0xae, 0x42, 0x60, 0x82,
];

fn registration(docs: &Docs<'_>, hive: Hive, segs: &[&str]) -> Reply {
    if !segs.iter().all(|s| is_lower(s)) {
        return Reply::not_found();
    }
    let doc = match segs {
        [id, "index.json"] => docs.reg_index(hive, id),
        [id, "page", lower, upper] => upper
            .strip_suffix(".json")
            .and_then(|upper| docs.reg_page(hive, id, lower, upper)),
        [id, leaf] => leaf.strip_suffix(".json").and_then(|ver| docs.reg_leaf(hive, id, ver)),
        _ => None,
    };
    match (doc, hive.gzip()) {
        (None, _) => Reply::not_found(),
        (Some(doc), true) => Reply::gzip_json(&doc, docs.store.mtime()),
        (Some(doc), false) => Reply::json(&doc, docs.store.mtime()),
    }
}

// ---------------------------------------------------------------------------
// api host: publishing

/// What a publish path addresses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Publish {
    Package,
    Symbols,
}

/// Splits `segs` (relative to the prefix) into a publish target and the
/// segments after its base (a trailing empty segment dropped): nuget.org
/// publishes at `/api/v2/package` and `/api/v2/symbolpackage`, a private
/// feed at `{prefix}/v2`.
fn publish_target<'s>(private: bool, segs: &'s [&'s str]) -> Option<(Publish, &'s [&'s str])> {
    let (target, rest) = match (private, segs) {
        (false, ["api", "v2", "package", rest @ ..]) => (Publish::Package, rest),
        (false, ["api", "v2", "symbolpackage", rest @ ..]) => (Publish::Symbols, rest),
        (true, ["v2", rest @ ..]) => (Publish::Package, rest),
        _ => return None,
    };
    Some((target, rest.strip_suffix(&[""]).unwrap_or(rest)))
}

fn route_publish(shared: &Shared, req: &Req<'_>, target: Publish, rest: &[&str]) -> Reply {
    if !shared.api_key_ok(req.headers) {
        return Reply::error(StatusCode::FORBIDDEN, "The specified API key is invalid.");
    }
    match (req.method, target, rest) {
        (&Method::PUT, Publish::Package, []) => push(shared, req),
        (&Method::PUT, Publish::Symbols, []) => {
            shared.note_push(req.body_len, req.body_sha256, false);
            Reply::new(StatusCode::CREATED, "text/plain", "")
        }
        (&Method::DELETE, Publish::Package, [id, ver]) => relist(shared, id, ver, false, StatusCode::NO_CONTENT),
        (&Method::POST, Publish::Package, [id, ver]) => relist(shared, id, ver, true, StatusCode::OK),
        _ => Reply::method_not_allowed(),
    }
}

fn push(shared: &Shared, req: &Req<'_>) -> Reply {
    match shared.note_push(req.body_len, req.body_sha256, true) {
        true => Reply::new(StatusCode::CREATED, "text/plain", ""),
        false => Reply::error(
            StatusCode::CONFLICT,
            "A package with this id and version already exists.",
        ),
    }
}

fn relist(shared: &Shared, id: &str, ver: &str, listed: bool, ok: StatusCode) -> Reply {
    match shared.store().set_listed(id, ver, listed) {
        true => Reply::new(ok, "text/plain", ""),
        false => Reply::not_found(),
    }
}

// ---------------------------------------------------------------------------
// cdn host

/// Blob storage behind redirected `.nupkg` downloads:
/// `/blobs/{id}/{ver}/{id}.{ver}.nupkg?sv=...&sig=...`, as the redirect says.
fn route_cdn(shared: &Shared, req: &Req<'_>) -> Reply {
    if !is_read(req.method) {
        return Reply::method_not_allowed();
    }
    let segs: Vec<&str> = req.path.trim_start_matches('/').split('/').collect();
    let ["blobs", id, ver, file] = segs.as_slice() else {
        return Reply::not_found();
    };
    if req.query.get("sig").map(String::as_str) != Some(CDN_SIGNATURE) {
        let message = "Server failed to authenticate the request.";
        return Reply::error(StatusCode::FORBIDDEN, message);
    }
    let store = shared.store();
    match store.get(id, ver) {
        Some(pkg) if is_nupkg(id, ver, file) => package_file(pkg, id, ver, file, shared.content_md5()),
        _ => Reply::not_found(),
    }
}

// ---------------------------------------------------------------------------
// helpers

/// Parses a query string (`a=b&c=d`, `+` = space, percent escapes).
pub(crate) fn parse_query(query: Option<&str>) -> Query {
    let mut out = Query::new();
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        out.entry(percent_decode(k)).or_insert_with(|| percent_decode(v));
    }
    out
}

fn percent_decode(s: &str) -> String {
    let hex = |b: u8| (b as char).to_digit(16);
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = match bytes.get(i..i + 3) {
            Some([b'%', hi, lo]) => hex(*hi).zip(hex(*lo)).map(|(h, l)| (h * 16 + l) as u8),
            _ => None,
        };
        match (escaped, bytes[i]) {
            (Some(b), _) => {
                out.push(b);
                i += 3;
            }
            (None, b'+') => {
                out.push(b' ');
                i += 1;
            }
            (None, b) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}
