//! Two fake upstreams behind one nucache: a private feed `acme` (priority
//! 1, owning `Acme.*` and sharing `*`) and a public one `nugetorg`
//! (priority 10), for the tests of several upstreams.

use nucache::config::UpstreamConfig;
use nucache::Config;

use super::nucache::Nucache;
use super::upstream::{fake_nupkg, Corpus, FakeOptions, FakeUpstream};

/// The private feed's bytes for a package (never the public feed's).
pub fn acme_bytes(id: &str, version: &str) -> Vec<u8> {
    fake_nupkg(id, &format!("acme {version}"))
}

pub struct Feeds {
    pub acme: FakeUpstream,
    pub public: FakeUpstream,
}

/// `Acme.Core` is on both feeds (the public one squats 1.0.0 and has a
/// 3.0.0 of its own); `Fake.Core` is public, and acme has a 1.0.0 of its
/// own and a 9.0.0-acme.
pub async fn feeds() -> Feeds {
    let mut private = Corpus::empty();
    for (id, version) in [
        ("Acme.Core", "1.0.0"),
        ("Acme.Core", "2.0.0"),
        ("Fake.Core", "1.0.0"),
        ("Fake.Core", "9.0.0-acme"),
        ("Acme.Only", "1.0.0"),
    ] {
        private.add(id, version, acme_bytes(id, version), true);
    }
    let options = FakeOptions {
        path_prefix: "/_packaging/acme/nuget".to_string(),
        ..FakeOptions::default()
    };
    let acme = FakeUpstream::start_with_options(private, options).await;
    let mut corpus = Corpus::default_corpus();
    corpus.add_generated("Acme.Core", "1.0.0", true);
    corpus.add_generated("Acme.Core", "3.0.0", true);
    let public = FakeUpstream::start_with(corpus).await;
    Feeds { acme, public }
}

pub fn named(base: &UpstreamConfig, index: &str, priority: u32, packages: &[&str]) -> UpstreamConfig {
    UpstreamConfig {
        service_index: index.to_string(),
        priority,
        packages: packages.iter().map(|p| p.to_string()).collect(),
        ..base.clone()
    }
}

pub async fn nucache_for(feeds: &Feeds, tweak: impl FnOnce(&mut Config)) -> Nucache {
    let (acme, public) = (feeds.acme.index_url(), feeds.public.index_url());
    Nucache::start(&acme, |c| {
        let acme = named(&c.upstream, &acme, 1, &["Acme.*", "*"]);
        let public = named(&c.upstream, &public, 10, &[]);
        c.upstreams.insert("acme".to_string(), acme);
        c.upstreams.insert("nugetorg".to_string(), public);
        tweak(c);
    })
    .await
}
