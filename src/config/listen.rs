//! The `listen` address: `IP:PORT`, or `HOST:PORT` with a host name that
//! is resolved once, when the configuration is loaded (`localhost:5055`).

use std::fmt;
use std::net::{SocketAddr, ToSocketAddrs};

use serde::de::{self, Visitor};
use serde::Deserializer;

const FORMS: &str =
    "write IP:PORT or HOST:PORT, e.g. \"127.0.0.1:5000\", \"0.0.0.0:5000\", \"[::]:5000\", \"localhost:5000\"";

pub(super) fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<SocketAddr, D::Error> {
    struct ListenVisitor;
    impl Visitor<'_> for ListenVisitor {
        type Value = SocketAddr;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("an address and port")
        }
        fn visit_str<E: de::Error>(self, text: &str) -> Result<SocketAddr, E> {
            parse(text).map_err(E::custom)
        }
        fn visit_u64<E: de::Error>(self, port: u64) -> Result<SocketAddr, E> {
            Err(E::custom(format!("{port} is a port alone: {FORMS}")))
        }
        fn visit_i64<E: de::Error>(self, port: i64) -> Result<SocketAddr, E> {
            Err(E::custom(format!("{port} is not an address: {FORMS}")))
        }
    }
    deserializer.deserialize_any(ListenVisitor)
}

/// An address, or a host name's first IPv4 address (else its first one):
/// one socket is bound, and IPv4 is what `localhost` clients mostly try.
pub(super) fn parse(text: &str) -> Result<SocketAddr, String> {
    let text = text.trim();
    if let Ok(addr) = text.parse::<SocketAddr>() {
        return Ok(addr);
    }
    let Some((host, port)) = text.rsplit_once(':') else {
        return Err(format!("{text:?} has no port: {FORMS}"));
    };
    if host.contains(':') {
        return Err(format!(
            "{text:?}: put an IPv6 address in brackets, e.g. \"[::1]:5000\""
        ));
    }
    let port: u16 = port
        .parse()
        .map_err(|_| format!("{text:?}: the port {port:?} is not a number from 0 to 65535"))?;
    if host.is_empty()
        || !host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-')
    {
        return Err(format!("{text:?} is not an address: {FORMS}"));
    }
    let addrs: Vec<SocketAddr> = (host, port)
        .to_socket_addrs()
        .map_err(|e| format!("{text:?}: cannot resolve {host:?}: {e}"))?
        .collect();
    addrs
        .iter()
        .find(|a| a.is_ipv4())
        .or(addrs.first())
        .copied()
        .ok_or_else(|| format!("{text:?}: {host:?} resolves to no address"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_and_host_names() {
        assert_eq!(parse("127.0.0.1:5055").ok(), "127.0.0.1:5055".parse().ok());
        assert_eq!(parse("[::1]:5055").ok(), "[::1]:5055".parse().ok());
        let local = parse("localhost:5055").map_err(|e| e.to_string());
        assert!(
            local.as_ref().is_ok_and(|a| a.port() == 5055 && a.ip().is_loopback()),
            "{local:?}"
        );
    }

    #[test]
    fn refusals_echo_the_value_and_the_forms() {
        for bad in ["not-an-address", "localhost", "localhost:99999", "::1:5000", "a b:5000"] {
            let error = parse(bad).err().unwrap_or_default();
            assert!(error.contains(&format!("{bad:?}")), "{bad}: {error}");
        }
        assert!(parse("nowhere").err().unwrap_or_default().contains("127.0.0.1:5000"));
    }
}
