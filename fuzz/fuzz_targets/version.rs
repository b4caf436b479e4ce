//! Version normalization never panics and is idempotent: a normalized
//! version parses again to the same normalized form.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nucache::nuget::NuGetVersion;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Ok(version) = NuGetVersion::parse(text) else { return };
    let normalized = version.normalized();
    let again = NuGetVersion::parse(&normalized).map(|v| v.normalized());
    assert_eq!(again.as_deref(), Ok(normalized.as_str()));
    let full = NuGetVersion::parse(&version.full()).map(|v| v.full());
    assert_eq!(full, Ok(version.full()));
    assert_eq!(version.lower_normalized(), normalized.to_lowercase());
});
