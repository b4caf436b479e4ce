//! Request routing: turns a fully read request into a [`Reply`] (no faults
//! here; see `server.rs` for those).

use std::io::Write as _;

use bytes::Bytes;
use http::header::{CONTENT_ENCODING, CONTENT_TYPE};
use http::{HeaderMap, HeaderValue, Method, StatusCode};
use serde_json::Value;

use super::docs::{self, Docs, Hive, Query};
use super::model::{xml_escape, BASE_TIME};
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
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        let gz = match enc.write_all(&plain).and_then(|()| enc.finish()) {
            Ok(gz) => gz,
            Err(e) => return Reply::error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
        };
        let mut reply = Reply::ok("application/json", gz, last_modified);
        reply.kind = Kind::Json;
        let gzip = HeaderValue::from_static("gzip");
        reply.headers.insert(CONTENT_ENCODING, gzip);
        reply
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
    match req.role {
        Role::Www => route_www(req),
        Role::Search => route_search(shared, req),
        Role::Api if is_publish_path(req.path) => route_publish(shared, req),
        Role::Api => route_api(shared, req),
    }
}

fn is_read(method: &Method) -> bool {
    method == Method::GET || method == Method::HEAD
}

// ---------------------------------------------------------------------------
// search host

fn route_search(shared: &Shared, req: &Req<'_>) -> Reply {
    if !is_read(req.method) {
        return Reply::method_not_allowed();
    }
    let store = shared.store();
    let docs = Docs {
        store: &store,
        o: &shared.origins,
    };
    let doc = match req.path {
        "/query" | "/" => docs.search(&req.query),
        "/autocomplete" => docs.autocomplete(&req.query),
        _ => return Reply::not_found(),
    };
    Reply::json(&doc, store.mtime())
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

fn route_api(shared: &Shared, req: &Req<'_>) -> Reply {
    if !is_read(req.method) {
        return Reply::method_not_allowed();
    }
    let store = shared.store();
    let docs = Docs {
        store: &store,
        o: &shared.origins,
    };
    let mtime = store.mtime();
    let segs: Vec<&str> = req
        .path
        .strip_prefix('/')
        .unwrap_or("")
        .split('/')
        .collect();
    if let ["v3", name, rest @ ..] = segs.as_slice() {
        if let Some(hive) = Hive::from_name(name) {
            return registration(&docs, hive, rest);
        }
    }
    match segs.as_slice() {
        ["v3", "index.json"] => Reply::json(&docs::service_index(&shared.origins), BASE_TIME),
        ["v3-flatcontainer", rest @ ..] => flat_container(&docs, rest),
        ["v3", "catalog0", "index.json"] => Reply::json(&docs.catalog_index(), mtime),
        ["v3", "catalog0", "page0.json"] => Reply::json(&docs.catalog_page(), mtime),
        ["v3", "catalog0", "data", _, file] => {
            match file
                .strip_suffix(".json")
                .and_then(|n| docs.catalog_leaf(n))
            {
                Some(doc) => Reply::json(&doc, mtime),
                None => Reply::not_found(),
            }
        }
        ["v3-index", "repository-signatures", "4.7.0" | "4.9.0" | "5.0.0", "index.json"] => {
            Reply::json(&docs::repository_signatures(), BASE_TIME)
        }
        ["v3", "vulnerabilities", "index.json"] => {
            Reply::json(&docs::vulnerability_index(&shared.origins), BASE_TIME)
        }
        ["v3", "vulnerabilities", "base.json" | "update.json"] => {
            Reply::json(&serde_json::json!({}), BASE_TIME)
        }
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
        [id, ver, file] => match docs.store.get(id, ver) {
            Some(pkg) => package_file(pkg, id, ver, file),
            None => Reply::not_found(),
        },
        _ => Reply::not_found(),
    }
}

fn package_file(pkg: &super::model::Package, id: &str, ver: &str, file: &str) -> Reply {
    let lm = pkg.published;
    if file == format!("{id}.{ver}.nupkg") {
        let mut reply = Reply::ok("application/octet-stream", pkg.nupkg.clone(), lm);
        reply.kind = Kind::Nupkg;
        reply
    } else if file == format!("{id}.nuspec") {
        Reply::ok("text/xml", pkg.nuspec(), lm)
    } else if file == "readme" {
        let md = format!(
            "# {} {}\n\n{}\n",
            pkg.id,
            pkg.version.full(),
            pkg.description()
        );
        Reply::ok("text/markdown", md, lm)
    } else if file == "icon" {
        Reply::ok("image/png", Bytes::from_static(ICON_PNG), lm)
    } else {
        Reply::not_found()
    }
}

/// A 1x1 transparent PNG.
const ICON_PNG: &[u8] = &[
    0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0x00, 0x00, 0x00, 0x0d, 0x49, 0x48, 0x44, 0x52,
    0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x01, 0x08, 0x06, 0x00, 0x00, 0x00, 0x1f, 0x15, 0xc4,
    0x89, 0x00, 0x00, 0x00, 0x0d, 0x49, 0x44, 0x41, 0x54, 0x78, 0x9c, 0x63, 0x00, 0x01, 0x00, 0x00,
    0x05, 0x00, 0x01, 0x0d, 0x0a, 0x2d, 0xb4, 0x00, 0x00, 0x00, 0x00, 0x49, 0x45, 0x4e, 0x44, 0xae,
    0x42, 0x60, 0x82,
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
        [id, leaf] => leaf
            .strip_suffix(".json")
            .and_then(|ver| docs.reg_leaf(hive, id, ver)),
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

fn is_publish_path(path: &str) -> bool {
    path.starts_with("/api/v2/package") || path.starts_with("/api/v2/symbolpackage")
}

fn route_publish(shared: &Shared, req: &Req<'_>) -> Reply {
    if !shared.api_key_ok(req.headers) {
        return Reply::error(StatusCode::FORBIDDEN, "The specified API key is invalid.");
    }
    let segs: Vec<&str> = req.path.trim_matches('/').split('/').collect();
    match (req.method, segs.as_slice()) {
        (&Method::PUT, ["api", "v2", "package"]) => push(shared, req),
        (&Method::PUT, ["api", "v2", "symbolpackage"]) => {
            shared.note_push(req.body_len, req.body_sha256, false);
            Reply::new(StatusCode::CREATED, "text/plain", "")
        }
        (&Method::DELETE, ["api", "v2", "package", id, ver]) => {
            relist(shared, id, ver, false, StatusCode::NO_CONTENT)
        }
        (&Method::POST, ["api", "v2", "package", id, ver]) => {
            relist(shared, id, ver, true, StatusCode::OK)
        }
        (_, ["api", "v2", "package" | "symbolpackage", ..]) => Reply::method_not_allowed(),
        _ => Reply::not_found(),
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
// helpers

/// Parses a query string (`a=b&c=d`, `+` = space, percent escapes).
pub(crate) fn parse_query(query: Option<&str>) -> Query {
    let mut out = Query::new();
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        out.entry(percent_decode(k))
            .or_insert_with(|| percent_decode(v));
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
