//! SIGHUP: the secrets read from files are taken again from a freshly
//! loaded configuration, by their one owner each (the publish key by
//! `publishing`, each upstream's credentials by its client), without a
//! restart and without dropping a request.

use super::Proxy;
use crate::config::Config;

impl Proxy {
    /// Takes `publish.api_key` and the upstream credentials from `fresh`;
    /// returns what was reloaded, for the log (never the values).
    pub fn reload_secrets(&self, fresh: &Config) -> Vec<&'static str> {
        let mut reloaded = vec![match self.publishing.reload_key(fresh) {
            true => "publish.api_key",
            false => "publish.api_key (now unset)",
        }];
        let mut credentials = false;
        let settings = fresh.upstream_set();
        for feed in self.pipeline.feeds().all() {
            // Upstreams are set at start; a SIGHUP re-reads their secrets only.
            if let Some((_, upstream)) = settings.iter().find(|(name, _)| *name == feed.name) {
                credentials |= feed.client.set_credentials(upstream);
            }
        }
        reloaded.push(match credentials {
            true => "upstream credentials",
            false => "upstream credentials (none)",
        });
        reloaded
    }
}
