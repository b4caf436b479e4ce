//! Logs go to stderr (the journal under systemd), coloured only on a
//! terminal, filtered by `RUST_LOG` when it is set, else by `log_filter`
//! from the configuration, which SIGHUP can change while nucache runs. A
//! thread of their own writes them in batches (`log_writer`), so that no
//! request waits on stderr.

use std::io::IsTerminal;

use tracing_subscriber::prelude::*;
use tracing_subscriber::{reload, EnvFilter, Layer, Registry};

use crate::config::LogFormat;
use crate::log_writer::{BatchedStderr, FlushGuard};

/// Changes the filter of the installed subscriber.
pub struct Logging {
    handle: reload::Handle<EnvFilter, Registry>,
    /// `RUST_LOG`, when set (and valid): it overrides the configuration.
    from_env: Option<String>,
}

/// The installed subscriber.
pub struct Installed {
    pub control: Logging,
    /// Flushes what the log thread still holds when dropped (keep it until
    /// main returns).
    pub guard: FlushGuard,
    /// Why `RUST_LOG` was not used, when it is invalid (said, not silently
    /// replaced).
    pub problem: Option<String>,
}

/// Installs the subscriber, writing `format` (`log.format`: it needs the
/// configuration, so a configuration that does not load is reported on
/// stderr before any log line).
pub fn init(format: LogFormat) -> Installed {
    let (filter, from_env, problem) = match std::env::var(EnvFilter::DEFAULT_ENV) {
        Ok(value) if !value.trim().is_empty() => match EnvFilter::try_new(&value) {
            Ok(filter) => (filter, Some(value), None),
            Err(error) => (
                EnvFilter::new("info"),
                None,
                Some(format!(
                    "RUST_LOG={value:?} is not a valid filter ({error}); using log_filter"
                )),
            ),
        },
        _ => (EnvFilter::new("info"), None, None),
    };
    let (filter, handle) = reload::Layer::new(filter);
    let (writer, guard) = BatchedStderr::start();
    let lines = match format {
        LogFormat::Text => tracing_subscriber::fmt::layer()
            .with_target(false)
            .with_ansi(std::io::stderr().is_terminal())
            .with_writer(writer)
            .boxed(),
        // The event's fields at the top level; the request span (its id) in
        // `span`, so a warning within a request names the request.
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .with_target(false)
            .with_writer(writer)
            .boxed(),
    };
    tracing_subscriber::registry().with(filter).with(lines).init();
    Installed {
        control: Logging { handle, from_env },
        guard,
        problem,
    }
}

impl Logging {
    /// The filter in effect once `configured` is applied.
    pub fn describe(&self, configured: &str) -> String {
        match &self.from_env {
            Some(env) => format!("RUST_LOG={env:?} (it overrides log_filter)"),
            None => format!("log_filter {configured:?}"),
        }
    }

    /// Filters by `configured` unless `RUST_LOG` is set.
    pub fn apply(&self, configured: &str) -> Result<(), String> {
        if self.from_env.is_some() {
            return Ok(());
        }
        let filter = EnvFilter::try_new(configured).map_err(|e| format!("log_filter {configured:?}: {e}"))?;
        self.handle
            .reload(filter)
            .map_err(|e| format!("cannot change the log filter: {e}"))
    }
}
