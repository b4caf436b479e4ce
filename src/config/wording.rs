//! How configuration problems are put to the operator: the key as written
//! in the file (`upstream.read_timeout`) and, when the value came from the
//! environment, the variable's name (`NUCACHE_UPSTREAM__READ_TIMEOUT`); the
//! value that was refused and the forms that are accepted; a did-you-mean
//! for a misspelt key.

use figment::error::{Actual, Kind};
use figment::Source;

use super::env::variable_name;

/// What durations look like (humantime).
const DURATION_FORMS: &str = "a number and a unit, e.g. \"500ms\", \"30s\", \"5m\", \"1h\", \"1h 30m\"";

/// Every problem figment found, one per line.
pub(super) fn describe(error: figment::Error) -> String {
    let lines: Vec<String> = error.into_iter().map(|one| describe_one(&one)).collect();
    lines.join("\n")
}

fn describe_one(error: &figment::Error) -> String {
    let key = error.path.join(".");
    if let Kind::UnknownField(found, expected) = &error.kind {
        return unknown_key(&error.path, found, expected, source(error, &key));
    }
    let problem = problem(&error.kind);
    match (key.is_empty(), source(error, &key)) {
        (true, Some(source)) => format!("{source}: {problem}"),
        (true, None) => problem,
        (false, Some(source)) => format!("{key} ({source}): {problem}"),
        (false, None) => format!("{key}: {problem}"),
    }
}

/// Where the value came from: a file, or an environment variable.
fn source(error: &figment::Error, key: &str) -> Option<String> {
    let metadata = error.metadata.as_ref()?;
    if let Some(Source::File(path)) = &metadata.source {
        return Some(format!("in {}", path.display()));
    }
    if metadata.name.contains("environment variable") && !key.is_empty() {
        return Some(format!("from {}", variable_name(key)));
    }
    None
}

fn problem(kind: &Kind) -> String {
    match kind {
        Kind::Message(message) => message.clone(),
        Kind::InvalidValue(actual, expected) | Kind::InvalidType(actual, expected) if expected == "a duration" => {
            format!("{} is not a duration: write {DURATION_FORMS}", value(actual))
        }
        Kind::InvalidValue(actual, expected) | Kind::InvalidType(actual, expected) => {
            format!("{} is not {}", value(actual), article(expected))
        }
        Kind::UnknownVariant(found, expected) => {
            let quoted: Vec<String> = expected.iter().map(|v| format!("{v:?}")).collect();
            let hint = suggest(found, expected.iter())
                .map(|close| format!(" (did you mean {close:?}?)"))
                .unwrap_or_default();
            format!("{found:?} is not one of {}{hint}", quoted.join(", "))
        }
        other => other.to_string(),
    }
}

/// `path` ends with the unknown name itself.
fn unknown_key(path: &[String], found: &str, expected: &[&str], source: Option<String>) -> String {
    let parent = &path[..path.len().saturating_sub(1)];
    let full = |name: &str| {
        let mut key = parent.to_vec();
        key.push(name.to_string());
        key.join(".")
    };
    let hint = match suggest(found, expected.iter()) {
        Some(close) => format!(" (did you mean {}?)", full(&close)),
        None => format!(" (the keys here are {})", expected.join(", ")),
    };
    let source = source.map(|s| format!(" {s}")).unwrap_or_default();
    format!("unknown key {}{source}{hint}", full(found))
}

/// The refused value as the operator wrote it.
fn value(actual: &Actual) -> String {
    match actual {
        Actual::Str(text) => format!("{text:?}"),
        Actual::Unsigned(n) => n.to_string(),
        Actual::Signed(n) => n.to_string(),
        Actual::Float(n) => n.to_string(),
        Actual::Bool(b) => b.to_string(),
        Actual::Seq => "a list".to_string(),
        Actual::Map => "a table".to_string(),
        other => other.to_string(),
    }
}

/// serde's expectations read as nouns: `u32` -> "a whole number (0 to ...)".
fn article(expected: &str) -> String {
    match expected {
        "u16" => "a whole number from 0 to 65535".to_string(),
        "u32" => "a whole number from 0 to 4294967295".to_string(),
        "u64" | "usize" => "a whole number of 0 or more".to_string(),
        "a boolean" => "true or false".to_string(),
        other => other.to_string(),
    }
}

/// The candidate closest to `input`, when it is close enough to be a
/// likely misspelling (case is ignored).
pub(crate) fn suggest<I, S>(input: &str, candidates: I) -> Option<String>
where
    I: IntoIterator<Item = S>,
    S: AsRef<str>,
{
    let input = input.to_ascii_lowercase();
    candidates
        .into_iter()
        .map(|c| {
            let score = strsim::jaro_winkler(&input, &c.as_ref().to_ascii_lowercase());
            (score, c.as_ref().to_string())
        })
        .filter(|(score, _)| *score >= 0.85)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, candidate)| candidate)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use figment::providers::{Format, Toml};
    use figment::Figment;

    fn error_for(toml: &str) -> String {
        match Figment::new().merge(Toml::string(toml)).extract::<Config>() {
            Ok(_) => String::new(),
            Err(error) => describe(error),
        }
    }

    #[test]
    fn suggests_only_close_names() {
        let keys = ["listen", "public_url", "upstream"];
        assert_eq!(suggest("lisen", keys), Some("listen".to_string()));
        assert_eq!(suggest("upstrem", keys), Some("upstream".to_string()));
        assert_eq!(suggest("zzz", keys), None);
    }

    #[test]
    fn keys_are_named_as_in_the_file_without_a_profile() {
        let message = error_for("[upstream]\nread_timeout = \"3 parsecs\"");
        assert!(
            message.starts_with("upstream.read_timeout: \"3 parsecs\" is not a duration"),
            "{message}"
        );
        assert!(message.contains("\"500ms\""), "{message}");
        assert!(!message.contains("default.") && !message.contains('`'), "{message}");
    }

    #[test]
    fn a_misspelt_key_gets_a_suggestion() {
        let message = error_for("[upstream]\nread_timout = \"3s\"");
        assert_eq!(
            message,
            "unknown key upstream.read_timout (did you mean upstream.read_timeout?)"
        );
        let message = error_for("[publish]\nmode = \"key\"");
        assert!(
            message.contains("\"key\" is not one of \"keys\", \"passthrough\" (did you mean \"keys\"?)"),
            "{message}"
        );
    }

    #[test]
    fn numbers_say_what_is_expected() {
        let message = error_for("[upstream]\nretries = \"many\"");
        assert_eq!(
            message,
            "upstream.retries: \"many\" is not a whole number from 0 to 4294967295"
        );
    }
}
