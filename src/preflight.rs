//! What `nucache check-config` checks beyond the configuration itself:
//! that the cache directory can be used and the listen address is free.
//! Nothing is created or kept: a check leaves the machine as it was.

use std::net::{SocketAddr, TcpListener};

use crate::config::CacheConfig;

/// Whether nucache could create and write its cache under `cache.dir`: the
/// directory itself when it exists, else its nearest existing parent.
pub fn check_cache_dir(cache: &CacheConfig) -> Result<String, String> {
    let dir = cache.dir.as_path();
    let fail = |reason: String| Err(format!("{}: {reason}", cache.describe_dir()));
    if dir.exists() {
        if !dir.is_dir() {
            return fail("exists but is not a directory".to_string());
        }
        return match tempfile::tempfile_in(dir) {
            Ok(_) => Ok(format!("{} is writable", cache.describe_dir())),
            Err(error) => fail(format!("not writable: {error}")),
        };
    }
    let Some(parent) = dir.ancestors().skip(1).find(|a| a.exists()) else {
        return fail("no parent directory exists".to_string());
    };
    match tempfile::tempfile_in(parent) {
        Ok(_) => Ok(format!(
            "{} does not exist yet; nucache can create it in {}",
            cache.describe_dir(),
            parent.display()
        )),
        Err(error) => fail(format!(
            "does not exist and cannot be created in {}: {error}",
            parent.display()
        )),
    }
}

/// Whether `addr` can be bound now (port 0 always can).
pub fn check_listen(addr: SocketAddr) -> Result<String, String> {
    if addr.port() == 0 {
        return Ok(format!("listen {addr}: any free port"));
    }
    match TcpListener::bind(addr) {
        Ok(_) => Ok(format!("listen {addr} is free")),
        Err(error) if error.kind() == std::io::ErrorKind::AddrInUse => Err(format!(
            "listen {addr}: the address is in use (is nucache already running?)"
        )),
        Err(error) => Err(format!("listen {addr}: cannot listen: {error}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn check(dir: &Path) -> Result<String, String> {
        check_cache_dir(&CacheConfig {
            dir: dir.to_path_buf(),
            ..CacheConfig::default()
        })
    }

    #[test]
    fn a_usable_and_an_unusable_cache_directory() {
        let dir = tempfile::tempdir().expect("temp dir");
        assert!(check(dir.path()).is_ok());
        assert!(check(&dir.path().join("new/deeper")).is_ok());
        let file = dir.path().join("file");
        std::fs::write(&file, b"x").expect("write");
        let error = check(&file).err().unwrap_or_default();
        assert!(
            error.contains("cache.dir") && error.contains("not a directory"),
            "{error}"
        );
        let below = file.join("below");
        let error = check(&below).err().unwrap_or_default();
        assert!(
            error.starts_with(&format!("cache.dir {}: ", below.display())),
            "{error}"
        );
    }

    #[test]
    fn a_taken_listen_address_is_reported() {
        let taken = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = taken.local_addr().expect("addr");
        let error = check_listen(addr).err().unwrap_or_default();
        assert!(error.contains("in use") && error.contains(&addr.to_string()), "{error}");
        drop(taken);
        assert!(check_listen(addr).is_ok());
    }
}
