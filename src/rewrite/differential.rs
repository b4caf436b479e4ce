//! The streaming rewriter against the reference (the Value-based rewriter it
//! replaced): same acceptance, and the same JSON once rendered, over real
//! nuget.org documents, the fuzz seeds, and generated documents full of
//! mounted prefixes in keys and values, escapes and near misses.

use std::path::{Path, PathBuf};

use serde_json::Value;

use super::{reference, rewrite_with_hashes, MountKind, Mounts, Template};
use crate::nuget::package_hashes;

const BASE: &str = "http://nucache:5000";

/// What a template says once rendered, parsed, or the error.
fn rendered(template: Result<bytes::Bytes, super::RewriteError>) -> Result<Value, String> {
    let template = template.map_err(|e| e.to_string())?;
    let body = Template::new(template, "00").render(BASE).identity().clone();
    serde_json::from_slice(&body).map_err(|e| format!("rendered body is not JSON: {e}"))
}

/// Both rewriters agree on `body`: both refuse it, or both render the same
/// JSON; and both read the same package hashes. Returns the rendering.
fn agree(body: &[u8], mounts: &Mounts) -> Option<String> {
    let rewritten = rewrite_with_hashes(body, mounts);
    let hashes = rewritten.as_ref().ok().map(|(_, hashes)| hashes.clone());
    let new = rendered(rewritten.map(|(template, _)| template));
    let old = rendered(reference::rewrite_document(body, mounts));
    let shown = String::from_utf8_lossy(body);
    match (&new, &old) {
        (Ok(new), Ok(old)) => assert!(
            reference::same_json(new, old),
            "renderings differ for {shown}:\n{new}\n{old}"
        ),
        (Err(_), Err(_)) => {}
        _ => panic!("one rewriter refused {shown}: new {new:?}, old {old:?}"),
    }
    let reference_hashes = super::parse_json(body).ok().map(|doc| package_hashes(&doc));
    assert_eq!(hashes, reference_hashes, "package hashes differ for {shown}");
    new.ok().map(|doc| doc.to_string())
}

fn json_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|entries| entries.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    files.retain(|p| p.is_file() && !p.to_string_lossy().ends_with(".md"));
    files.sort();
    files
}

#[test]
fn real_nuget_org_documents_rewrite_as_the_reference_does() {
    let Some(dir) = super::realdocs::dir() else { return };
    let index = std::fs::read(dir.join("nuget.index.json")).unwrap_or_default();
    let map = super::build_service_map(&index, true).map_err(|e| e.to_string());
    let mounts = map.map(|m| m.mounts).unwrap_or_default();
    assert!(mounts.iter().count() > 5, "nuget.org's index gives its mounts");
    let files = json_files(&dir);
    assert!(files.len() >= 7, "the realdocs are all there");
    for file in files {
        let body = std::fs::read(&file).unwrap_or_default();
        let rendered = agree(&body, &mounts);
        let rendered = rendered.unwrap_or_else(|| panic!("{} was refused", file.display()));
        assert!(
            rendered.contains(&format!("{BASE}/v3/")),
            "{} rewrote nothing",
            file.display()
        );
    }
}

#[test]
fn the_fuzz_seeds_rewrite_as_the_reference_does() {
    let seeds = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds/rewrite");
    let files = json_files(&seeds);
    assert!(!files.is_empty(), "no seeds in {}", seeds.display());
    for file in files {
        let body = std::fs::read(&file).unwrap_or_default();
        assert!(
            agree(&body, &sample_mounts()).is_some(),
            "{} was refused",
            file.display()
        );
    }
}

fn sample_mounts() -> Mounts {
    let mut m = Mounts::default();
    m.add(MountKind::PackageBase, "https://api.example/flat/", "");
    m.add(MountKind::Registrations, "https://api.example/reg/", "reg");
    m.add(MountKind::Registrations, "https://api.example/reg/gz/", "gz");
    m.add(MountKind::Search, "https://s.example/query", "");
    m.add(MountKind::Catalog, "https://s.example/query/cat/", "");
    m.add(MountKind::Autocomplete, "http://s.example/auto\u{e9}", "");
    // Prefixes with quotes: raw text has them escaped, so a hit on the raw
    // text may start at a string's opening quote or end past its closing one.
    m.add(MountKind::PackageBase, "\"https://q.example/", "");
    m.add(MountKind::PackageBase, "https://q.example/end\"", "");
    // Not a URL: rewritten only inside text that holds a "://" elsewhere.
    m.add(MountKind::Vulnerabilities, "urn:x/", "");
    m
}

/// Pieces strings are made of: mounted prefixes, near misses, boundaries,
/// non-ASCII text, NUL and the characters JSON escapes.
const PIECES: [&str; 29] = [
    "urn:x/",
    "\"https://q.example/",
    "https://q.example/end",
    "https://api.example/flat/",
    "https://api.example/reg/",
    "https://api.example/reg/gz/",
    "https://s.example/query",
    "https://s.example/query/cat/",
    "http://s.example/auto\u{e9}",
    "https://api.example/fla",
    "https://s.example/queryable",
    "https://s.example/quer",
    "https://api.example/",
    "https://github.com/x",
    "://",
    "/",
    "?q=1",
    "#frag",
    " ",
    "\"",
    "\\",
    "\0",
    "\n\t",
    "\u{1f}",
    "caf\u{e9}",
    "\u{65e5}\u{672c}",
    "\u{1f980}",
    "a.nupkg",
    "index.json",
];

struct Gen {
    rng: fastrand::Rng,
    out: String,
}

impl Gen {
    fn ws(&mut self) {
        const WS: [&str; 5] = ["", "", " ", "\n  ", "\t\r\n"];
        self.out.push_str(WS[self.rng.usize(..WS.len())]);
    }

    fn text(&mut self) -> String {
        (0..self.rng.usize(0..5))
            .map(|_| PIECES[self.rng.usize(..PIECES.len())])
            .collect()
    }

    /// `text` as a JSON string literal, each character written plainly or
    /// (in half of the strings) escaped at random (`\/`, `\uXXXX` with
    /// surrogate pairs...).
    fn string(&mut self, text: &str) {
        let rate = [0, 0, 3, 8][self.rng.usize(..4)];
        self.out.push('"');
        for c in text.chars() {
            let must = matches!(c, '"' | '\\') || c < ' ';
            let dice = if rate == 0 { u8::MAX } else { self.rng.u8(..rate) };
            match (must, dice) {
                (_, 0) => {
                    let mut units = [0u16; 2];
                    for unit in c.encode_utf16(&mut units) {
                        self.out.push_str(&format!("\\u{unit:04x}"));
                    }
                }
                (_, 1) if c == '/' => self.out.push_str("\\/"),
                (true, _) => match c {
                    '"' => self.out.push_str("\\\""),
                    '\\' => self.out.push_str("\\\\"),
                    '\n' => self.out.push_str("\\n"),
                    '\t' => self.out.push_str("\\t"),
                    _ => self.out.push_str(&format!("\\u{:04X}", c as u32)),
                },
                (false, _) => self.out.push(c),
            }
        }
        self.out.push('"');
    }

    fn value(&mut self, depth: usize) {
        self.ws();
        self.bare_value(depth);
        self.ws();
    }

    fn bare_value(&mut self, depth: usize) {
        self.ws();
        match self.rng.u8(..if depth == 0 { 4 } else { 8 }) {
            0 | 1 => {
                let text = self.text();
                self.string(&text);
            }
            2 => {
                const NUMBERS: [&str; 6] = ["0", "-12", "3.25", "1e3", "-0.5E-2", "18446744073709551616"];
                self.out.push_str(NUMBERS[self.rng.usize(..NUMBERS.len())]);
            }
            3 => self.out.push_str(["true", "false", "null"][self.rng.usize(..3)]),
            4 => self.package_entry(depth),
            5 => self.array(depth),
            _ => self.object(depth),
        }
    }

    fn array(&mut self, depth: usize) {
        self.out.push('[');
        for i in 0..self.rng.usize(0..5) {
            if i > 0 {
                self.out.push(',');
            }
            self.value(depth - 1);
        }
        self.out.push(']');
    }

    fn object(&mut self, depth: usize) {
        self.out.push('{');
        let mut keys = Vec::new();
        for _ in 0..self.rng.usize(0..5) {
            let key = self.text();
            // Unique keys: with duplicates, the reference finds hashes only
            // in the last value (duplicates are tested on their own).
            if keys.contains(&key) {
                continue;
            }
            if !keys.is_empty() {
                self.out.push(',');
            }
            self.ws();
            self.string(&key);
            keys.push(key);
            self.ws();
            self.out.push(':');
            self.value(depth - 1);
        }
        self.out.push('}');
    }

    /// A catalog entry stating a package hash (sometimes a wrong one), with
    /// something nested in it.
    fn package_entry(&mut self, depth: usize) {
        use base64::Engine as _;
        let bytes = vec![self.rng.u8(..); if self.rng.bool() { 64 } else { 32 }];
        let hash = base64::engine::general_purpose::STANDARD.encode(bytes);
        let algorithm = ["SHA512", "sha512", "SHA256"][self.rng.usize(..3)];
        let version = ["1.0.0.0", "2.0.0-RC.1+meta", "x"][self.rng.usize(..3)];
        self.out.push_str(&format!(
            r#"{{"@id":"https://api.example/reg/p/{version}.json","id":"P.Q","version":"{version}","packageHash":"{hash}","packageHashAlgorithm":"{algorithm}","packageContent":"https://api.example/flat/p.q/1.0.0/p.q.1.0.0.nupkg","nested":"#
        ));
        self.value(depth - 1);
        self.out.push('}');
    }
}

/// A generated document, and a broken copy of it (cut short, or a byte
/// changed) that both rewriters must refuse or rewrite alike.
fn generated(seed: u64) -> (String, Vec<u8>) {
    let mut g = Gen {
        rng: fastrand::Rng::with_seed(seed),
        out: String::new(),
    };
    g.value(5);
    let doc = g.out;
    let mut broken = doc.clone().into_bytes();
    if !broken.is_empty() {
        let at = g.rng.usize(..broken.len());
        match g.rng.u8(..3) {
            0 => broken.truncate(at),
            1 => broken[at] = b"\"\\:,{}[]0e\x00\xff"[g.rng.usize(..12)],
            _ => broken.insert(at, b'"'),
        }
    }
    (doc, broken)
}

#[test]
fn generated_documents_rewrite_as_the_reference_does() {
    let mounts = sample_mounts();
    let mut rewritten = 0;
    for seed in 0..3000 {
        let (doc, broken) = generated(seed);
        let rendered = agree(doc.as_bytes(), &mounts);
        let rendered = rendered.unwrap_or_else(|| panic!("seed {seed}: a generated document was refused: {doc}"));
        rewritten += usize::from(rendered.contains(&format!("{BASE}/v3/")));
        agree(&broken, &mounts);
    }
    // Not vacuous: most documents hold a mounted prefix in some value.
    assert!(rewritten > 1000, "only {rewritten} documents had anything rewritten");
}

#[test]
fn edge_cases_are_accepted_refused_and_rewritten_as_the_reference_does() {
    use base64::Engine as _;
    let mounts = sample_mounts();
    let hash = base64::engine::general_purpose::STANDARD.encode([9u8; 64]);
    let long_int = "9".repeat(400);
    let docs: Vec<String> = vec![
        // duplicate keys, escaped URLs, top-level strings, keys with URLs
        r#"{"a":"https://api.example/flat/x","a":"https://s.example/query"}"#.into(),
        r#""https:\/\/api.example\/flat\/top""#.into(),
        r#"["https:\u002f\u002fapi.example/flat/x", "https\u003a//s.example/query?q", "\u0000https://s.example/query"]"#.into(),
        r#"{"https:\/\/api.example/flat/": "https:\/\/api.example/flat/"}"#.into(),
        "  {\"k\" \n : \"https://s.example/query\" }  \n".into(),
        // numbers: range, precision, grammar
        "[1e308, 1.7976931348623157e308, -1e-400, 0.5e-330]".into(),
        "[2e308]".into(),
        "[1e400]".into(),
        format!("[{long_int}]"),
        format!("[{long_int}{long_int}]"),
        format!("[0.{long_int}e-5, -{long_int}.5]"),
        "[-0, 1.50, 1E2, 123456789012345678901234567890, 1e+2, 1E-2]".into(),
        "999999999999999999999999944999999999999999999944".into(),
        "[01]".into(),
        "[1.]".into(),
        "[.5]".into(),
        "[1e]".into(),
        "[-]".into(),
        "[+1]".into(),
        // strings: escapes, surrogates, control characters
        r#"["\ud83e\udd80", "\uD83E\uDD80", "\u00e9\n\t\b\f\r\/"]"#.into(),
        r#"["\ud800"]"#.into(),
        r#"["\udc00"]"#.into(),
        r#"["\ud800\u0041"]"#.into(),
        r#"["\u12"]"#.into(),
        r#"["\x"]"#.into(),
        "[\"tab\there\"]".into(),
        "[\"a\u{7f}\u{e9}\"]".into(),
        // structure
        r#"{"a":1,}"#.into(),
        "[1,]".into(),
        "[1 2]".into(),
        r#"{"a" 1}"#.into(),
        "{1:2}".into(),
        "{\"a\":1}{".into(),
        "\u{feff}{}".into(),
        "".into(),
        " ".into(),
        "nul".into(),
        "[true,false,null]".into(),
        "[tru]".into(),
        "\"x\" ".into(),
        // hashes: escaped keys, non-string fields, nested entries
        format!(r#"{{"id":"P","version":"1.0","package\u0048ash":"{hash}","items":[{{"id":"Q","version":"2.0.0","packageHash":"{hash}"}}]}}"#),
        format!(r#"{{"id":"P","version":"1.0","packageHash":"{hash}","packageHashAlgorithm":7}}"#),
        format!(r#"{{"id":"P","version":"1.0","packageHash":"{hash}","packageHashAlgorithm":"sha256"}}"#),
        format!(r#"{{"id":["P"],"version":"1.0","packageHash":"{hash}"}}"#),
        format!(r#"{{"id":"P","version":"1.0","packageHash":"{hash}","id":null}}"#),
        format!(r#"{{"id":"P","version":"1.0","packageHash":"{hash}","packageHashAlgorithm":"SHA256","packageHashAlgorithm":{{}}}}"#),
        format!(r#"{{"id":"P","version":{{"packageHash":"{hash}","id":"R","version":"3.0"}},"packageHash":"{hash}"}}"#),
    ];
    for doc in &docs {
        agree(doc.as_bytes(), &mounts);
    }
    for bytes in [
        &b"[\"https://api.example/flat/\xc3\"]"[..],
        b"[\"\xff\"]",
        b"[1]\xff",
        b"[\"\x00\"]",
    ] {
        agree(bytes, &mounts);
    }
    for depth in [126, 127, 128, 129, 200] {
        for (open, close) in [("[", "]"), ("{\"a\":", "}")] {
            let deep = format!("{}1{}", open.repeat(depth), close.repeat(depth));
            agree(deep.as_bytes(), &mounts);
        }
        let empty = format!("{}{{}}{}", "[".repeat(depth - 1), "]".repeat(depth - 1));
        agree(empty.as_bytes(), &mounts);
    }
}
