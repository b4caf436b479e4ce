//! Secrets in configuration (API keys, passwords, tokens): never printed,
//! never serialized, compared only through their SHA-256 digests.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::ConfigError;

/// Where systemd puts the credentials of `LoadCredential=`.
const CREDENTIALS_ENV: &str = "CREDENTIALS_DIRECTORY";

/// A secret value; `Debug` and `Serialize` show `***`.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The value itself, for sending it where it belongs.
    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str("***")
    }
}

impl<'de> Deserialize<'de> for Secret {
    /// Accepts numbers too: a key made of digits arrives as one from the environment.
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct SecretVisitor;
        impl Visitor<'_> for SecretVisitor {
            type Value = Secret;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a secret string")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Secret, E> {
                Ok(Secret(v.to_string()))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Secret, E> {
                Ok(Secret(v.to_string()))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Secret, E> {
                Ok(Secret(v.to_string()))
            }
        }
        deserializer.deserialize_any(SecretVisitor)
    }
}

/// SHA-256 of `value`, lowercase hex: how client keys are configured
/// (`nucache hash-key`).
pub fn digest_hex(value: &str) -> String {
    hex::encode(Sha256::digest(value.as_bytes()))
}

/// Whether `presented` hashes to one of `digests` (lowercase hex). Every
/// digest is compared, each in constant time, so the timing says nothing
/// about which one (if any) matched.
pub fn matches_any_digest<'a>(presented: &str, digests: impl IntoIterator<Item = &'a String>) -> bool {
    let presented = Sha256::digest(presented.as_bytes());
    let mut found = subtle::Choice::from(0);
    for digest in digests {
        if let Ok(expected) = hex::decode(digest) {
            found |= expected.as_slice().ct_eq(presented.as_slice());
        }
    }
    found.into()
}

/// Constant-time equality of two strings; strings of different lengths
/// differ at once (a length is not secret).
pub fn same(a: &str, b: &str) -> bool {
    a.as_bytes().ct_eq(b.as_bytes()).into()
}

/// A `*_file` key's path: a relative one names a systemd credential
/// (`LoadCredential=NAME:/etc/...` -> `api_key_file = "NAME"`) when
/// `$CREDENTIALS_DIRECTORY` is set, so that a service user who cannot read
/// the root-owned original still gets the key; otherwise it is taken
/// relative to the working directory, as any path.
pub(crate) fn secret_path(file: &Path) -> PathBuf {
    match std::env::var_os(CREDENTIALS_ENV) {
        Some(dir) if file.is_relative() && !dir.is_empty() => Path::new(&dir).join(file),
        _ => file.to_path_buf(),
    }
}

/// A secret given as a value or as a file (`keys`: the value's key and its
/// `_file` key); never both. Trailing newlines of a file are dropped.
pub(crate) fn read_secret(
    (key, file_key): (&str, &str),
    value: Option<Secret>,
    file: Option<&Path>,
) -> Result<Option<Secret>, ConfigError> {
    match (value, file) {
        (Some(_), Some(_)) => Err(ConfigError::Invalid {
            key: key.to_string(),
            reason: format!("set either {key} or {file_key}, not both"),
        }),
        (value, None) => Ok(value.filter(|v| !v.is_empty())),
        (None, Some(file)) => {
            let path = secret_path(file);
            let text = std::fs::read_to_string(&path).map_err(|e| ConfigError::Invalid {
                key: file_key.to_string(),
                reason: match path.as_path() == file {
                    true => format!("cannot read {}: {e}", path.display()),
                    false => format!("cannot read {} (in ${CREDENTIALS_ENV}): {e}", path.display()),
                },
            })?;
            let trimmed = text.trim_end_matches(['\r', '\n']);
            Ok((!trimmed.is_empty()).then(|| Secret::new(trimmed)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_do_not_show() {
        let secret = Secret::new("hunter2");
        assert_eq!(format!("{secret:?}"), "***");
        assert_eq!(serde_json::to_string(&secret).ok(), Some("\"***\"".to_string()));
        assert_eq!(secret.expose(), "hunter2");
    }

    #[test]
    fn digests_match_only_their_key() {
        let digests = vec![digest_hex("one"), digest_hex("two")];
        assert!(matches_any_digest("two", &digests));
        assert!(!matches_any_digest("three", &digests));
        assert!(!matches_any_digest("", &digests));
        assert_eq!(
            digest_hex("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
