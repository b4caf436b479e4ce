//! SIGHUP: the secrets read from files are taken again from a freshly
//! loaded configuration, without a restart and without dropping a request.

use super::Proxy;
use crate::config::Config;

impl Proxy {
    /// Takes `publish.api_key` and the upstream credentials from `fresh`;
    /// returns what was reloaded, for the log (never the values).
    pub fn reload_secrets(&self, fresh: &Config) -> Vec<&'static str> {
        if let Ok(mut key) = self.publish_key.write() {
            key.clone_from(&fresh.publish.api_key);
        }
        let mut reloaded = vec![if fresh.publish.api_key.is_some() {
            "publish.api_key"
        } else {
            "publish.api_key (now unset)"
        }];
        let credentials = self.upstream.set_credentials(&fresh.upstream);
        reloaded.push(if credentials {
            "upstream credentials"
        } else {
            "upstream credentials (none)"
        });
        reloaded
    }
}
