//! The `nucache` command: runs the proxy (default) or checks a configuration.

use std::io::{IsTerminal, Read};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use nucache::{Config, Server};
use tracing_subscriber::EnvFilter;

#[derive(Parser)]
#[command(name = "nucache", version, about = "A caching pull-through proxy for NuGet V3 feeds")]
struct Cli {
    /// TOML configuration file (default: $NUCACHE_CONFIG, else built-in defaults).
    #[arg(long, short, global = true, value_name = "PATH")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the proxy (the default).
    Serve,
    /// Validate the configuration, print it (without secrets) and exit.
    CheckConfig,
    /// Re-hash every cached object and drop those that no longer match
    /// (they are fetched again when next asked for). nucache must be stopped.
    Verify,
    /// Read a key (or password) on stdin and print its SHA-256, as
    /// publish.client_keys, auth.read_keys and auth.users expect.
    HashKey,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(Command::HashKey) = cli.command {
        return hash_key();
    }
    init_logging();
    let config = match Config::load_with_warnings(cli.config.as_deref()) {
        Ok(loaded) => {
            for warning in &loaded.warnings {
                tracing::warn!("{warning}");
            }
            loaded.config
        }
        Err(error) => {
            eprintln!("nucache: {error}");
            return ExitCode::from(2);
        }
    };
    match cli.command.unwrap_or(Command::Serve) {
        Command::CheckConfig => {
            println!("{}", config.effective());
            ExitCode::SUCCESS
        }
        Command::Serve => serve(config),
        Command::Verify => verify(&config),
        Command::HashKey => hash_key(),
    }
}

fn verify(config: &Config) -> ExitCode {
    match nucache::verify_cache(&config.cache) {
        Ok(report) => {
            for key in &report.dropped {
                println!("dropped (bytes do not match their record): {key}");
            }
            println!(
                "verified {} objects, {} bytes intact, {} dropped",
                report.checked,
                report.bytes,
                report.dropped.len()
            );
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("nucache verify: {error}");
            ExitCode::FAILURE
        }
    }
}

fn hash_key() -> ExitCode {
    let mut key = String::new();
    if let Err(error) = std::io::stdin().read_to_string(&mut key) {
        eprintln!("nucache: cannot read the key from stdin: {error}");
        return ExitCode::FAILURE;
    }
    let key = key.trim_end_matches(['\r', '\n']);
    if key.is_empty() {
        eprintln!("nucache: no key on stdin (try: printf %s \"$KEY\" | nucache hash-key)");
        return ExitCode::from(2);
    }
    println!("{}", nucache::config::digest_hex(key));
    ExitCode::SUCCESS
}

fn serve(config: Config) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("nucache: cannot start the runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        tracing::info!(config = %config.effective(), "effective configuration");
        warn_about_publishing(&config);
        let snippet = config.nuget_config_snippet();
        let server = match Server::bind(config).await {
            Ok(server) => server,
            Err(error) => {
                tracing::error!(%error, "nucache cannot start");
                return ExitCode::FAILURE;
            }
        };
        let repair = server.repair();
        tracing::info!(
            entries = repair.entries,
            dropped_entries = repair.dropped_entries,
            removed_temp_files = repair.removed_temp_files,
            removed_orphan_files = repair.removed_orphan_files,
            "cache checked"
        );
        match server.local_addr() {
            Ok(addr) => tracing::info!(%addr, "listening"),
            Err(error) => tracing::warn!(%error, "listening on an unknown address"),
        }
        println!("Point NuGet at nucache with this nuget.config:\n{snippet}");
        server.run(nucache::shutdown::signal()).await;
        ExitCode::SUCCESS
    })
}

fn warn_about_publishing(config: &Config) {
    let publish = &config.publish;
    if !publish.enabled || publish.mode != nucache::config::PublishMode::Keys {
        return;
    }
    if publish.client_keys.is_empty() {
        tracing::warn!("publish.client_keys is empty: pushes through nucache are refused");
    } else if publish.api_key.is_none() {
        tracing::warn!("publish.api_key is not set: pushes reach the upstream without a key");
    }
}

/// Logs go to stderr (the journal under systemd), filtered by `RUST_LOG`
/// (default `info`), coloured only on a terminal.
fn init_logging() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .init();
}
