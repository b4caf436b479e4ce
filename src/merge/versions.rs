//! Version lists of several upstreams as one: the union in NuGet version
//! order without duplicates (flat container `{id}/index.json`), and which
//! upstream a given version's files come from (the highest-priority one
//! that lists it).

use std::cmp::Ordering;

use serde_json::Value;

use super::MergeError;
use crate::nuget::NuGetVersion;

/// A version as listed, with its parsed form for ordering.
struct Listed<'a> {
    text: &'a str,
    parsed: NuGetVersion,
}

/// The union of `lists` (any order, any case), sorted in NuGet order;
/// versions equal by NuGet's rules appear once, spelled as the first list
/// (in priority order) that has them spells them. Unparsable entries are
/// dropped: a client could not use them either.
pub fn union<'a>(lists: impl IntoIterator<Item = &'a [String]>) -> Vec<String> {
    let mut merged: Vec<Listed<'a>> = Vec::new();
    for list in lists {
        for text in list {
            let Ok(parsed) = NuGetVersion::parse(text) else {
                continue;
            };
            if !merged.iter().any(|m| m.parsed.precedence(&parsed) == Ordering::Equal) {
                merged.push(Listed { text, parsed });
            }
        }
    }
    merged.sort_by(|a, b| a.parsed.precedence(&b.parsed));
    merged.into_iter().map(|m| m.text.to_string()).collect()
}

/// The versions of a flat-container `{"versions": [...]}` document.
pub fn flat_versions(document: &[u8]) -> Result<Vec<String>, MergeError> {
    let value: Value = serde_json::from_slice(document).map_err(|e| MergeError::NotJson(e.to_string()))?;
    let versions = value
        .get("versions")
        .and_then(Value::as_array)
        .ok_or(MergeError::Shape("a version list without a \"versions\" array"))?;
    Ok(versions.iter().filter_map(Value::as_str).map(str::to_string).collect())
}

/// The merged flat-container document of `documents` (priority order).
pub fn merge_flat_indexes(documents: &[&[u8]]) -> Result<Vec<u8>, MergeError> {
    let lists = documents
        .iter()
        .map(|d| flat_versions(d))
        .collect::<Result<Vec<_>, _>>()?;
    let merged = union(lists.iter().map(Vec::as_slice));
    Ok(serde_json::json!({ "versions": merged }).to_string().into_bytes())
}

/// The first upstream (of `listings`, in priority order) whose list has
/// `version`: where that version's `.nupkg` and `.nuspec` come from.
pub fn owner_of<'n>(listings: &[(&'n str, Vec<String>)], version: &str) -> Option<&'n str> {
    let wanted = NuGetVersion::parse(version).ok()?;
    listings
        .iter()
        .find(|(_, list)| {
            list.iter()
                .any(|v| NuGetVersion::parse(v).is_ok_and(|listed| listed.precedence(&wanted) == Ordering::Equal))
        })
        .map(|(name, _)| *name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(list: &[&str]) -> Vec<String> {
        list.iter().map(|v| v.to_string()).collect()
    }

    #[test]
    fn the_union_is_in_nuget_order_without_duplicates() {
        let private = strings(&["1.0.0", "2.0.0-beta.1", "10.0.0"]);
        let public = strings(&["1.0.0", "1.0.0.0", "2.0.0", "2.0.0-BETA.1", "9.1.0"]);
        assert_eq!(
            union([private.as_slice(), public.as_slice()]),
            ["1.0.0", "2.0.0-beta.1", "2.0.0", "9.1.0", "10.0.0"]
        );
    }

    #[test]
    fn flat_indexes_merge_and_bad_ones_say_why() {
        let a = br#"{"versions":["1.0.0","1.2.0"]}"#;
        let b = br#"{"versions":["1.1.0","1.2.0"]}"#;
        let merged = merge_flat_indexes(&[a, b]).map(|d| String::from_utf8_lossy(&d).into_owned());
        assert_eq!(merged.as_deref(), Ok(r#"{"versions":["1.0.0","1.1.0","1.2.0"]}"#));
        assert!(matches!(merge_flat_indexes(&[b"<html>"]), Err(MergeError::NotJson(_))));
        assert!(matches!(merge_flat_indexes(&[b"{}"]), Err(MergeError::Shape(_))));
    }

    #[test]
    fn a_version_comes_from_the_highest_priority_upstream_listing_it() {
        let listings = [
            ("acme", strings(&["1.0.0", "3.0.0"])),
            ("nugetorg", strings(&["1.0.0", "2.0.0"])),
        ];
        assert_eq!(owner_of(&listings, "1.0.0"), Some("acme"));
        assert_eq!(owner_of(&listings, "1.0.0.0"), Some("acme"), "equal by NuGet's rules");
        assert_eq!(owner_of(&listings, "2.0.0"), Some("nugetorg"));
        assert_eq!(owner_of(&listings, "4.0.0"), None);
    }

    #[test]
    fn real_registration_versions_sort_as_nuget_sorts_them() {
        let Some(doc) = super::super::tests::realdoc("nunit.registration.json") else {
            return;
        };
        let versions: Vec<String> = super::super::registration::inlined_leaves(&doc)
            .iter()
            .filter_map(|leaf| leaf.pointer("/catalogEntry/version").and_then(Value::as_str))
            .map(str::to_string)
            .collect();
        assert_eq!(versions.len(), 45);
        // nuget.org lists them in order; shuffled and split in two, they merge back.
        let (odd, even): (Vec<_>, Vec<_>) = versions.iter().cloned().enumerate().partition(|(i, _)| i % 2 == 1);
        let odd: Vec<String> = odd.into_iter().rev().map(|(_, v)| v).collect();
        let even: Vec<String> = even.into_iter().map(|(_, v)| v).collect();
        assert_eq!(union([even.as_slice(), odd.as_slice(), versions.as_slice()]), versions);
    }
}
