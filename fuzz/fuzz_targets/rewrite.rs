//! The JSON rewriter never panics, and what it produces renders to valid
//! JSON in which no string value holds a mounted upstream prefix.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nucache::rewrite::{rewrite_document, MountKind, Mounts, Template};
use serde_json::Value;

const FLAT: &str = "https://api.example/flat/";

fn assert_no_prefix(value: &Value) {
    match value {
        Value::String(text) => assert!(!text.contains(FLAT), "upstream prefix left in {text:?}"),
        Value::Array(items) => items.iter().for_each(assert_no_prefix),
        Value::Object(map) => map.values().for_each(assert_no_prefix),
        _ => {}
    }
}

fuzz_target!(|data: &[u8]| {
    let mut mounts = Mounts::default();
    mounts.add(MountKind::PackageBase, FLAT, "");
    mounts.add(MountKind::Search, "https://s.example/query", "");
    let Ok(template) = rewrite_document(data, &mounts) else { return };
    let rendered = Template::new(template, "fuzz").render("http://nucache:5000");
    let body = rendered.identity();
    match serde_json::from_slice::<Value>(body) {
        Ok(doc) => assert_no_prefix(&doc),
        Err(error) => panic!("rendered body is not JSON ({error}): {:?}", String::from_utf8_lossy(body)),
    }
});
