//! Byte sizes in configuration: `268435456`, `"256MiB"`, `"64 MB"`, `"1g"`.

use std::fmt;

use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct ByteSize(pub u64);

impl ByteSize {
    pub const fn mib(n: u64) -> Self {
        ByteSize(n * 1024 * 1024)
    }

    pub fn bytes(self) -> u64 {
        self.0
    }

    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
        let (number, unit) = text.split_at(split);
        let number: u64 = number
            .parse()
            .map_err(|_| format!("{text:?} does not start with a number"))?;
        let factor: u64 = match unit.trim().to_ascii_lowercase().as_str() {
            "" | "b" => 1,
            "k" | "kb" => 1_000,
            "kib" => 1 << 10,
            "m" | "mb" => 1_000_000,
            "mib" => 1 << 20,
            "g" | "gb" => 1_000_000_000,
            "gib" => 1 << 30,
            "t" | "tb" => 1_000_000_000_000,
            "tib" => 1 << 40,
            other => {
                return Err(format!(
                    "unknown unit {other:?} (use B, KB, KiB, MB, MiB, GB, GiB, TB, TiB)"
                ))
            }
        };
        number
            .checked_mul(factor)
            .map(ByteSize)
            .ok_or_else(|| format!("{text:?} is too large"))
    }
}

impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const UNITS: [(&str, u64); 4] = [("TiB", 1 << 40), ("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)];
        for (name, size) in UNITS {
            if self.0 >= size && self.0 % size == 0 {
                return write!(f, "{}{name}", self.0 / size);
            }
        }
        write!(f, "{}B", self.0)
    }
}

impl Serialize for ByteSize {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct SizeVisitor;
        impl Visitor<'_> for SizeVisitor {
            type Value = ByteSize;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a size such as 268435456, \"256MiB\" or \"10 GB\"")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<ByteSize, E> {
                Ok(ByteSize(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<ByteSize, E> {
                u64::try_from(v)
                    .map(ByteSize)
                    .map_err(|_| E::custom("a size cannot be negative"))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<ByteSize, E> {
                ByteSize::parse(v).map_err(E::custom)
            }
        }
        deserializer.deserialize_any(SizeVisitor)
    }
}

/// Free space to keep on the cache's file system: bytes, or a share of the
/// file system (`"5%"`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum MinFree {
    Bytes(ByteSize),
    /// Percent of the file system's size, above 0 and below 100.
    Percent(f64),
}

impl MinFree {
    /// The bytes to keep free on a file system of `total` bytes.
    pub fn of(self, total: u64) -> u64 {
        match self {
            MinFree::Bytes(size) => size.bytes(),
            MinFree::Percent(percent) => (total as f64 * percent / 100.0) as u64,
        }
    }

    pub fn parse(text: &str) -> Result<Self, String> {
        let Some(number) = text.trim().strip_suffix('%') else {
            return ByteSize::parse(text).map(MinFree::Bytes);
        };
        match number.trim().parse::<f64>() {
            Ok(percent) if percent > 0.0 && percent < 100.0 => Ok(MinFree::Percent(percent)),
            _ => Err(format!("{text:?}: a percentage is above 0% and below 100%")),
        }
    }
}

impl fmt::Display for MinFree {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MinFree::Bytes(size) => size.fmt(f),
            MinFree::Percent(percent) => write!(f, "{percent}%"),
        }
    }
}

impl Serialize for MinFree {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for MinFree {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct MinFreeVisitor;
        impl Visitor<'_> for MinFreeVisitor {
            type Value = MinFree;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a size such as \"10GiB\" or a share of the file system such as \"5%\"")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<MinFree, E> {
                Ok(MinFree::Bytes(ByteSize(v)))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<MinFree, E> {
                u64::try_from(v)
                    .map(|v| MinFree::Bytes(ByteSize(v)))
                    .map_err(|_| E::custom("a size cannot be negative"))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<MinFree, E> {
                MinFree::parse(v).map_err(E::custom)
            }
        }
        deserializer.deserialize_any(MinFreeVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn min_free_is_bytes_or_a_share() {
        assert_eq!(MinFree::parse("5%"), Ok(MinFree::Percent(5.0)));
        assert_eq!(MinFree::parse("2GiB"), Ok(MinFree::Bytes(ByteSize(2 << 30))));
        assert_eq!(MinFree::Percent(5.0).of(1000), 50);
        assert!(MinFree::parse("100%").is_err() && MinFree::parse("0%").is_err() && MinFree::parse("x%").is_err());
        assert_eq!(MinFree::Percent(2.5).to_string(), "2.5%");
    }

    #[test]
    fn parses_and_prints_sizes() {
        assert_eq!(ByteSize::parse("256MiB"), Ok(ByteSize::mib(256)));
        assert_eq!(ByteSize::parse("64 MB"), Ok(ByteSize(64_000_000)));
        assert_eq!(ByteSize::parse("1024"), Ok(ByteSize(1024)));
        assert!(ByteSize::parse("12 parsecs").is_err());
        assert!(ByteSize::parse("MiB").is_err());
        assert_eq!(ByteSize::mib(250).to_string(), "250MiB");
        assert_eq!(ByteSize(1500).to_string(), "1500B");
    }
}
