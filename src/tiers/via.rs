//! `Via` (RFC 9110 §7.6.3): every request nucache sends upstream carries
//! the client's `Via` with this node's entry appended, and every answer
//! carries this node's entry. A request whose `Via` already names this
//! node has been here before: its upstream chain loops back, and it is
//! refused before any other work.
//!
//! ```text
//! Via = #( received-protocol RWS received-by [ RWS comment ] )
//! ```

use http::header::{HeaderMap, HeaderValue, VIA};
use http::Version;

use super::NodeId;

/// Whether the `Via` of `headers` names `node` (any entry, any case,
/// whatever its protocol and comment).
pub(crate) fn names(headers: &HeaderMap, node: &NodeId) -> bool {
    headers
        .get_all(VIA)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(entries)
        .filter_map(received_by)
        .any(|by| by.eq_ignore_ascii_case(node.via_name()))
}

/// This node's entry, for a message received as `version`.
pub(crate) fn entry(node: &NodeId, version: Version) -> String {
    format!("{} {}", protocol(version), node.via_name())
}

/// `client` (the `Via` values of the client's request, in order) with
/// `entry` appended, as one value.
pub(crate) fn appended(client: &[HeaderValue], entry: &str) -> Option<HeaderValue> {
    let mut value = Vec::new();
    for previous in client {
        value.extend_from_slice(previous.as_bytes());
        value.extend_from_slice(b", ");
    }
    value.extend_from_slice(entry.as_bytes());
    HeaderValue::from_bytes(&value).ok()
}

/// `received-protocol` of a message received as `version` (the protocol
/// name is left out when it is HTTP).
fn protocol(version: Version) -> &'static str {
    match version {
        Version::HTTP_09 => "0.9",
        Version::HTTP_10 => "1.0",
        Version::HTTP_2 => "2",
        Version::HTTP_3 => "3",
        _ => "1.1",
    }
}

/// The entries of one `Via` value: split at the commas outside comments
/// (which nest, and may hold quoted pairs).
fn entries(value: &str) -> Vec<&str> {
    let mut found = Vec::new();
    let (mut depth, mut escaped, mut start) = (0usize, false, 0usize);
    for (at, c) in value.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if depth > 0 => escaped = true,
            '(' => depth += 1,
            ')' => depth = depth.saturating_sub(1),
            ',' if depth == 0 => {
                found.push(&value[start..at]);
                start = at + 1;
            }
            _ => {}
        }
    }
    found.push(&value[start..]);
    found.into_iter().map(str::trim).filter(|e| !e.is_empty()).collect()
}

/// `received-by` of an entry: the word after the protocol.
fn received_by(entry: &str) -> Option<&str> {
    let mut words = entry.split_ascii_whitespace();
    let _protocol = words.next()?;
    words.next()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn via(values: &[&'static str]) -> HeaderMap {
        let pairs: Vec<_> = values.iter().map(|value| ("via", *value)).collect();
        super::super::headers_of(&pairs)
    }

    #[test]
    fn finds_this_node_among_several_entries() {
        let node = NodeId::named("nucache-0123456789ab");
        assert!(names(&via(&["1.1 proxy.example, 1.1 nucache-0123456789ab"]), &node));
        assert!(names(
            &via(&["1.0 fred", "HTTP/1.1 nucache-0123456789ab (nucache)"]),
            &node
        ));
        assert!(names(&via(&["2 NUCACHE-0123456789AB"]), &node), "any case");
        assert!(
            names(&via(&["1.1 a,1.1 nucache-0123456789ab,1.1 b"]), &node),
            "no spaces"
        );
        assert!(
            !names(&via(&["1.1 nucache-0123456789abc"]), &node),
            "another id it prefixes"
        );
        assert!(!names(&via(&["1.1 other"]), &node));
        assert!(!names(&HeaderMap::new(), &node));
    }

    #[test]
    fn comments_are_not_entries() {
        let node = NodeId::named("nucache-0123456789ab");
        let commented = ["1.1 gw (passed by, 1.1 nucache-0123456789ab (nested, too))"];
        assert!(
            !names(&via(&commented), &node),
            "the id inside a comment names no entry"
        );
        let escaped = ["1.1 gw (a \\) b, 1.1 nucache-0123456789ab), 1.1 last"];
        assert!(
            !names(&via(&escaped), &node),
            "an escaped parenthesis does not end a comment"
        );
        let after = ["1.1 gw (comment, with a comma), 1.1 nucache-0123456789ab"];
        assert!(names(&via(&after), &node), "the entry after a comment");
    }

    #[test]
    fn a_fleet_node_goes_by_its_host_and_port() {
        let node = NodeId::named("http://10.0.0.5:5000");
        assert_eq!(entry(&node, Version::HTTP_11), "1.1 10.0.0.5:5000");
        assert_eq!(entry(&node, Version::HTTP_2), "2 10.0.0.5:5000");
        assert_eq!(node.via_entry(Version::HTTP_2).expect("entry"), "2 10.0.0.5:5000");
        assert_eq!(node.via_entry(Version::HTTP_10).expect("entry"), "1.0 10.0.0.5:5000");
        assert!(names(&via(&["1.1 10.0.0.5:5000"]), &node));
        assert!(!names(&via(&["1.1 10.0.0.5:5001"]), &node));
    }

    #[test]
    fn the_entry_is_appended_to_what_the_client_sent() {
        let client = [
            HeaderValue::from_static("1.0 fred"),
            HeaderValue::from_static("1.1 p.example (Apache/1.1)"),
        ];
        let value = appended(&client, "1.1 nucache-x").expect("value");
        assert_eq!(value, "1.0 fred, 1.1 p.example (Apache/1.1), 1.1 nucache-x");
        assert_eq!(appended(&[], "1.1 nucache-x").expect("value"), "1.1 nucache-x");
    }
}
