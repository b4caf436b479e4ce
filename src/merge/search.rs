//! Search and autocomplete answers of several upstreams as one answer:
//! packages deduplicated by id (case-insensitive), their versions merged,
//! `totalHits` less the duplicates, ordered by upstream priority and then
//! each upstream's own order.

use std::cmp::Ordering;

use serde_json::{Map, Value};

use crate::nuget::NuGetVersion;

fn version_of(entry: &Value) -> Option<NuGetVersion> {
    entry
        .as_str()
        .or_else(|| entry.get("version").and_then(Value::as_str))
        .and_then(|v| NuGetVersion::parse(v).ok())
}

fn same_version(a: &Value, b: &Value) -> bool {
    match (version_of(a), version_of(b)) {
        (Some(a), Some(b)) => a.precedence(&b) == Ordering::Equal,
        _ => false,
    }
}

fn by_version(a: &Value, b: &Value) -> Ordering {
    match (version_of(a), version_of(b)) {
        (Some(a), Some(b)) => a.precedence(&b),
        (Some(_), None) => Ordering::Greater,
        (None, Some(_)) => Ordering::Less,
        (None, None) => Ordering::Equal,
    }
}

fn total_hits(answer: &Value) -> u64 {
    answer.get("totalHits").and_then(Value::as_u64).unwrap_or(0)
}

fn data(answer: &Value) -> &[Value] {
    answer.get("data").and_then(Value::as_array).map_or(&[], Vec::as_slice)
}

/// `entry`'s versions gain those of `other` it lacks (in NuGet order), and
/// its `version` becomes the highest of them.
fn absorb(entry: &mut Map<String, Value>, other: &Value) {
    let extra = other
        .get("versions")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let Some(Value::Array(versions)) = entry.get_mut("versions") else {
        return;
    };
    for version in extra {
        if !versions.iter().any(|v| same_version(v, &version)) {
            versions.push(version);
        }
    }
    versions.sort_by(by_version);
    let highest = versions.last().and_then(|v| v.get("version")).cloned();
    if let Some(highest) = highest {
        let current = entry.get("version").cloned().unwrap_or(Value::Null);
        if by_version(&highest, &current) == Ordering::Greater {
            entry.insert("version".into(), highest);
        }
    }
}

/// Merges `SearchQueryService` answers given in upstream priority order;
/// at most `take` packages when given. The first answer's other fields
/// (`@context`) are kept.
pub fn merge_search(answers: &[Value], take: Option<usize>) -> Value {
    let mut merged: Vec<Map<String, Value>> = Vec::new();
    let mut duplicates = 0u64;
    for answer in answers {
        for package in data(answer) {
            let Some(id) = package.get("id").and_then(Value::as_str) else {
                continue;
            };
            let same_id = |m: &&mut Map<String, Value>| {
                m.get("id")
                    .and_then(Value::as_str)
                    .is_some_and(|other| other.eq_ignore_ascii_case(id))
            };
            match merged.iter_mut().find(|m| same_id(m)) {
                Some(existing) => {
                    absorb(existing, package);
                    duplicates += 1;
                }
                None => merged.extend(package.as_object().cloned()),
            }
        }
    }
    let total = answers.iter().map(total_hits).sum::<u64>().saturating_sub(duplicates);
    if let Some(take) = take {
        merged.truncate(take);
    }
    let mut out = answers.first().and_then(Value::as_object).cloned().unwrap_or_default();
    out.insert("totalHits".into(), total.into());
    out.insert("data".into(), merged.into_iter().map(Value::Object).collect());
    Value::Object(out)
}

/// Merges `SearchAutocompleteService` answers: package ids (deduplicated
/// case-insensitively, priority order), or, for `?id=` queries
/// (`versions`), the union of the versions in NuGet order.
pub fn merge_autocomplete(answers: &[Value], versions: bool, take: Option<usize>) -> Value {
    let mut merged: Vec<Value> = Vec::new();
    let mut duplicates = 0u64;
    for answer in answers {
        for entry in data(answer) {
            let seen = match versions {
                true => merged.iter().any(|m| same_version(m, entry)),
                false => merged.iter().any(|m| match (m.as_str(), entry.as_str()) {
                    (Some(a), Some(b)) => a.eq_ignore_ascii_case(b),
                    _ => false,
                }),
            };
            match seen {
                true => duplicates += 1,
                false => merged.push(entry.clone()),
            }
        }
    }
    let total = match versions {
        true => merged.len() as u64,
        false => answers.iter().map(total_hits).sum::<u64>().saturating_sub(duplicates),
    };
    if versions {
        merged.sort_by(by_version);
    }
    if let Some(take) = take {
        merged.truncate(take);
    }
    serde_json::json!({ "totalHits": total, "data": merged })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// nuget.org's answer (two packages), and a private feed's that has one
    /// of them too, with a version nuget.org does not list.
    fn answers() -> Option<(Value, Value)> {
        let public = super::super::tests::realdoc("search.microsoft.sourcelink.github.json")?;
        let private = json!({
            "totalHits": 2,
            "data": [
                { "id": "Acme.Build", "version": "1.0.0", "versions": [ { "version": "1.0.0", "downloads": 1 } ] },
                { "id": "microsoft.sourcelink.github", "version": "99.0.0-acme",
                  "versions": [ { "version": "99.0.0-acme", "downloads": 3 } ] }
            ]
        });
        Some((private, public))
    }

    #[test]
    fn search_answers_merge_by_id_in_priority_order_with_versions_and_total_adjusted() {
        let Some((private, public)) = answers() else { return };
        let public_versions = public["data"][0]["versions"].as_array().map_or(0, Vec::len);
        let merged = merge_search(&[private, public.clone()], None);
        let ids: Vec<&str> = merged["data"]
            .as_array()
            .map(|d| d.iter().filter_map(|p| p["id"].as_str()).collect())
            .unwrap_or_default();
        assert_eq!(ids, ["Acme.Build", "microsoft.sourcelink.github", "ThisAssembly.Git"]);
        assert_eq!(merged["totalHits"], 3, "2 + 2 less one duplicate");
        let versions = merged["data"][1]["versions"].as_array().cloned().unwrap_or_default();
        assert_eq!(versions.len(), public_versions + 1);
        assert_eq!(
            versions.last().map(|v| v["version"].clone()),
            Some(json!("99.0.0-acme"))
        );
        assert_eq!(merged["data"][1]["version"], "99.0.0-acme");
        // The public answer's @context survives only when it comes first.
        let merged = merge_search(&[public.clone(), json!({"totalHits": 0, "data": []})], Some(1));
        assert_eq!(merged["@context"], public["@context"]);
        assert_eq!(merged["data"].as_array().map(Vec::len), Some(1));
    }

    #[test]
    fn autocomplete_merges_ids_or_versions() {
        let ids = merge_autocomplete(
            &[
                json!({"totalHits": 2, "data": ["Acme.Core", "NUnit"]}),
                json!({"totalHits": 5, "data": ["nunit", "NUnit3TestAdapter"]}),
            ],
            false,
            None,
        );
        assert_eq!(
            ids,
            json!({"totalHits": 6, "data": ["Acme.Core", "NUnit", "NUnit3TestAdapter"]})
        );
        let versions = merge_autocomplete(
            &[
                json!({"totalHits": 2, "data": ["2.0.0", "1.0.0"]}),
                json!({"totalHits": 2, "data": ["1.0.0", "1.5.0-beta"]}),
            ],
            true,
            None,
        );
        assert_eq!(
            versions,
            json!({"totalHits": 3, "data": ["1.0.0", "1.5.0-beta", "2.0.0"]})
        );
    }
}
