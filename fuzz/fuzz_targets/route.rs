//! Request-path classification never panics, and whatever it accepts is
//! clean: no dot segments, separators or control characters in what it
//! resolves, and a canonical key that resolves to itself.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nucache::rewrite::{MountKind, Mounts};
use nucache::route::{classify, resolve, Route};

fn mounts() -> Mounts {
    let mut mounts = Mounts::default();
    mounts.add(MountKind::PackageBase, "https://api.example/v3-flatcontainer/", "");
    mounts.add(MountKind::Registrations, "https://api.example/v3/registration5-gz-semver2/", "registration5-gz-semver2");
    mounts.add(MountKind::Search, "https://search.example/query", "");
    mounts.add(MountKind::Catalog, "https://api.example/v3/catalog0/", "");
    mounts.add(MountKind::Publish, "https://www.example/api/v2/package", "");
    mounts
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let (path, query) = match text.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (text, None),
    };
    let Ok(Route::Mounted(rest)) = classify(path) else { return };
    assert!(!rest.split('/').any(|s| s == ".." || s == "."), "dot segment in {rest:?}");
    assert!(!rest.contains('\\') && !rest.chars().any(char::is_control), "unclean {rest:?}");
    let mounts = mounts();
    if let Ok(target) = resolve(&rest, query, &mounts) {
        let (key_path, key_query) = match target.key.split_once('?') {
            Some((p, q)) => (p.to_string(), Some(q.to_string())),
            None => (target.key.clone(), None),
        };
        // Query strings may hold anything; paths may not hold `..`.
        assert!(!key_path.contains(".."), "key {:?}", target.key);
        // The canonical key is itself a path nucache resolves to the same key.
        if !key_path.contains('%') {
            let again = resolve(&key_path, key_query.as_deref(), &mounts);
            assert_eq!(again.map(|t| t.key), Ok(target.key.clone()));
        }
    }
});
