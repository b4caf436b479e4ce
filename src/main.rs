//! The `nucache` command: runs the proxy (default) or checks a configuration.

use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use nucache::{Config, Server};

/// Shown under `--help`: where the configuration comes from.
const ENVIRONMENT_HELP: &str = "\
Configuration: built-in defaults < a TOML file (--config PATH, else $NUCACHE_CONFIG) <
environment variables NUCACHE_<KEY>, with __ between nesting levels:
  NUCACHE_LISTEN=0.0.0.0:5000  NUCACHE_UPSTREAM__READ_TIMEOUT=10s  NUCACHE_CACHE__DIR=/srv/nucache
Every key, its default and its variable: config.example.toml. `nucache check-config` shows
the result. Logs go to stderr, filtered by RUST_LOG (default info; e.g. RUST_LOG=nucache=debug).
stats, purge and verify --online call the running nucache with the key in $NUCACHE_ADMIN_KEY.";

#[derive(Parser)]
#[command(
    name = "nucache",
    version,
    about = "A caching pull-through proxy for NuGet V3 feeds",
    after_help = ENVIRONMENT_HELP
)]
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
    /// Validate the configuration, check that the cache directory is usable
    /// and the listen address free, print the configuration (TOML, without
    /// secrets) on stdout and exit.
    CheckConfig {
        /// Also fetch the upstream's service index and check that nucache
        /// can serve it (exit 1 if not).
        #[arg(long)]
        probe: bool,
    },
    /// Re-hash every cached object and drop those that no longer match
    /// (they are fetched again when next asked for). nucache must be
    /// stopped, unless --online asks the running one to do it.
    /// Exit 0: all intact; 1: something dropped; 2: cannot verify.
    Verify {
        /// Ask the running nucache (admin API, key in $NUCACHE_ADMIN_KEY).
        #[arg(long)]
        online: bool,
        #[command(flatten)]
        server: ServerUrl,
    },
    /// Rebuild the cache index from the records every cached object
    /// carries (nucache does this by itself at start-up when the index is
    /// missing or unreadable). nucache must be stopped.
    /// Exit 0: rebuilt; 2: cannot rebuild.
    RebuildIndex,
    /// Print what the running nucache is doing (admin API, JSON; key in
    /// $NUCACHE_ADMIN_KEY).
    Stats {
        #[command(flatten)]
        server: ServerUrl,
    },
    /// Drop a package (one version, or all) from the running nucache's
    /// cache: files and the documents that list it; the next request
    /// fetches it again (admin API; key in $NUCACHE_ADMIN_KEY).
    Purge {
        id: String,
        version: Option<String>,
        #[command(flatten)]
        server: ServerUrl,
    },
    /// Read a key (or password) on stdin and print its SHA-256, as
    /// publish.client_keys, auth.read_keys and auth.users expect.
    HashKey,
    /// Print the nuget.config that points NuGet at nucache, alone on stdout
    /// (`nucache nuget-config > nuget.config`).
    #[command(visible_alias = "print-config-snippet")]
    NugetConfig,
    /// Prefetch into a running nucache, through its feed, what a restore of
    /// FILE... needs (packages.lock.json, *.csproj/*.fsproj/*.vbproj,
    /// Directory.Packages.props, packages.config, or `Id Version` lines).
    /// Exit 1 if any package failed.
    Warm {
        /// The feed's service index (default: http://<listen>/v3/index.json).
        #[arg(long, value_name = "URL")]
        feed: Option<String>,
        /// Also warm the dependencies, walked from the nuspecs.
        #[arg(long)]
        with_dependencies: bool,
        /// Walk only the dependency groups of this target framework.
        #[arg(long, value_name = "TFM")]
        framework: Option<String>,
        /// Requests in flight at once.
        #[arg(long, default_value_t = 8, value_name = "N")]
        jobs: usize,
        #[arg(required = true, value_name = "FILE")]
        files: Vec<PathBuf>,
    },
    /// Write a bundle of what a restore of the cached packages needs, from
    /// a running nucache: packages/ (a NuGet folder feed), metadata/ (the
    /// upstream's documents) and manifest.json (every file's size and SHA-512).
    Export {
        /// The bundle directory to write.
        #[arg(value_name = "DIR")]
        dir: PathBuf,
        /// The feed's service index (default: http://<listen>/v3/index.json).
        #[arg(long, value_name = "URL")]
        feed: Option<String>,
        /// Only the packages these files name (the inputs of `warm`).
        #[arg(long, num_args = 1.., value_name = "FILE")]
        only: Vec<PathBuf>,
        /// Leave out what this earlier bundle already holds.
        #[arg(long, value_name = "BUNDLE")]
        since: Option<PathBuf>,
    },
    /// Verify a bundle against its manifest (a bad file: nothing imported)
    /// and store it in a stopped nucache's cache directory, served from
    /// then on as if fetched, with the upstream unreachable.
    Import {
        /// The bundle directory (with manifest.json).
        #[arg(value_name = "DIR")]
        dir: PathBuf,
        /// The cache directory of a stopped nucache (instead of --url).
        #[arg(long, value_name = "DIR", conflicts_with = "url")]
        cache_dir: Option<PathBuf>,
        /// A running nucache, through its admin API with the key in
        /// $NUCACHE_ADMIN_KEY (default: http:// + the configuration's listen).
        #[arg(long, value_name = "BASE")]
        url: Option<String>,
    },
}

/// Where the admin commands find the running nucache.
#[derive(clap::Args)]
struct ServerUrl {
    /// Base URL of the running nucache (default: http:// + the configured listen).
    #[arg(long, value_name = "URL")]
    url: Option<String>,
}

fn main() -> ExitCode {
    limit_malloc_arenas();
    let cli = Cli::parse();
    if let Some(Command::HashKey) = cli.command {
        return hash_key();
    }
    // The configuration first: it says how to write the log (log.format).
    let loaded = match Config::load_with_warnings(cli.config.as_deref()) {
        Ok(loaded) => loaded,
        Err(error) => {
            eprintln!("nucache: {error}");
            return ExitCode::from(2);
        }
    };
    // The guard flushes what the log thread still holds when main returns.
    let nucache::logging::Installed {
        control: logging,
        guard: _log_writer,
        problem,
    } = nucache::logging::init(loaded.config.log.format);
    if let Some(problem) = problem {
        tracing::warn!("{problem}");
    }
    for warning in &loaded.warnings {
        tracing::warn!("{warning}");
    }
    let config = loaded.config;
    if let Err(error) = logging.apply(&config.log_filter) {
        tracing::warn!(%error, "log filter unchanged");
    }
    match cli.command.unwrap_or(Command::Serve) {
        Command::CheckConfig { probe } => check_config(&config, probe),
        Command::Serve => serve(config, cli.config, logging),
        Command::Verify { online: false, .. } => verify(&config),
        Command::Verify { online: true, server } => admin(&config, server, AdminCommand::Verify),
        Command::RebuildIndex => rebuild_index(&config),
        Command::Stats { server } => admin(&config, server, AdminCommand::Stats),
        Command::Purge { id, version, server } => admin(&config, server, AdminCommand::Purge { id, version }),
        Command::HashKey => hash_key(),
        Command::Warm {
            feed,
            with_dependencies,
            framework,
            jobs,
            files,
        } => {
            let options = nucache::airgap::WarmOptions {
                feed: feed.unwrap_or_else(|| default_feed(&config)),
                with_dependencies,
                framework,
                jobs,
                files,
                progress: std::io::IsTerminal::is_terminal(&std::io::stderr()),
            };
            warm(options, &config)
        }
        Command::Export { dir, feed, only, since } => {
            let options = nucache::airgap::ExportOptions {
                dir,
                feed: feed.unwrap_or_else(|| default_feed(&config)),
                only,
                since,
                admin_key: std::env::var(nucache::config::ADMIN_KEY_ENV).ok(),
            };
            let outcome =
                client_runtime().and_then(|runtime| runtime.block_on(nucache::airgap::export(options, &config)));
            finish("export", outcome)
        }
        Command::Import {
            dir,
            cache_dir: Some(cache_dir),
            ..
        } => finish("import", nucache::airgap::import_into_cache(&dir, &cache_dir, &config)),
        Command::Import {
            dir,
            cache_dir: None,
            url,
        } => {
            let base = nucache::admin_client::base_url(&config, url.as_deref());
            let outcome = client_runtime()
                .and_then(|runtime| runtime.block_on(nucache::airgap::import_through_server(&dir, &base)));
            finish("import", outcome)
        }
        Command::NugetConfig => {
            print!("{}", config.nuget_config_snippet(config.listen));
            ExitCode::SUCCESS
        }
    }
}

/// The feed of the configured nucache.
fn default_feed(config: &Config) -> String {
    format!("{}/v3/index.json", config.advertised_base(config.listen))
}

fn client_runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))
}

/// Exit 0: every package warmed; 1: some failed; 2: nothing could be done.
fn warm(options: nucache::airgap::WarmOptions, config: &Config) -> ExitCode {
    let outcome = client_runtime().and_then(|runtime| runtime.block_on(nucache::airgap::warm(options, config)));
    match outcome {
        Ok(summary) => {
            print!("{summary}");
            if summary.failed.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(error) => {
            eprintln!("nucache warm: {error}");
            ExitCode::from(2)
        }
    }
}

/// Prints a summary (exit 0) or the error (exit 2).
fn finish<T: std::fmt::Display>(command: &str, outcome: Result<T, String>) -> ExitCode {
    match outcome {
        Ok(summary) => {
            print!("{summary}");
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("nucache {command}: {error}");
            ExitCode::from(2)
        }
    }
}

/// The checks go to stderr, the configuration alone to stdout.
fn check_config(config: &Config, probe: bool) -> ExitCode {
    let mut checks = vec![
        nucache::preflight::check_cache_dir(&config.cache),
        nucache::preflight::check_listen(config.listen),
    ];
    if probe {
        for (_, upstream) in config.upstream_set() {
            checks.push(probe_now(config, upstream).map(|report| format!("upstream {report}")));
        }
    }
    let mut failed = false;
    for check in checks {
        match check {
            Ok(fine) => eprintln!("ok: {fine}"),
            Err(problem) => {
                eprintln!("error: {problem}");
                failed = true;
            }
        }
    }
    print!("{}", config.effective_toml());
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

fn probe_now(
    config: &Config,
    upstream: &nucache::config::UpstreamConfig,
) -> Result<nucache::probe::ProbeReport, String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))?;
    runtime
        .block_on(nucache::probe::probe(config, upstream))
        .map_err(|e| format!("upstream {e}"))
}

/// Whether `cache.dir` holds a cache; if not, says so for `command`.
fn is_cache_dir(config: &Config, command: &str) -> bool {
    let found = nucache::is_cache_dir(&config.cache.dir);
    if !found {
        eprintln!(
            "nucache {command}: {}: no cache here (no index or content directory); \
             give the cache.dir nucache serves from (--config, NUCACHE_CACHE__DIR)",
            config.cache.describe_dir()
        );
    }
    found
}

/// Exit 0: rebuilt; 2: cannot rebuild (nucache running, disk failing).
fn rebuild_index(config: &Config) -> ExitCode {
    if !is_cache_dir(config, "rebuild-index") {
        return ExitCode::from(2);
    }
    let dir = config.cache.describe_dir();
    match nucache::rebuild_cache_index(&config.cache) {
        Ok(report) => {
            println!(
                "{dir}: index rebuilt from {} objects' records; {} older duplicates and {} files without a record removed",
                report.entries, report.removed_duplicate_files, report.removed_orphan_files
            );
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("nucache rebuild-index: {dir}: {error}");
            ExitCode::from(2)
        }
    }
}

/// Exit 0: every object intact; 1: something was dropped (it is fetched
/// again when next asked for); 2: nothing could be verified.
fn verify(config: &Config) -> ExitCode {
    let dir = config.cache.describe_dir();
    if !is_cache_dir(config, "verify") {
        return ExitCode::from(2);
    }
    let report = match nucache::verify_cache(&config.cache) {
        Ok(report) => report,
        Err(error) => {
            eprintln!("nucache verify: {dir}: {error}");
            return ExitCode::from(2);
        }
    };
    for key in &report.dropped {
        println!(
            "dropped {}: its bytes no longer match their record",
            nucache::route::describe_key(key)
        );
    }
    println!(
        "{dir}: verified {} objects, {} bytes intact, {} dropped",
        report.checked,
        report.bytes,
        report.dropped.len()
    );
    if report.dropped.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

enum AdminCommand {
    Stats,
    Purge { id: String, version: Option<String> },
    Verify,
}

/// Runs an admin command against the running nucache. Exit 0: done (verify:
/// all intact); 1: verify dropped something; 2: the call failed.
fn admin(config: &Config, server: ServerUrl, command: AdminCommand) -> ExitCode {
    let base = nucache::admin_client::base_url(config, server.url.as_deref());
    let (method, path) = match &command {
        AdminCommand::Stats => (http::Method::GET, "stats".to_string()),
        AdminCommand::Purge { id, version: None } => (http::Method::POST, format!("purge/{id}")),
        AdminCommand::Purge { id, version: Some(v) } => (http::Method::POST, format!("purge/{id}/{v}")),
        AdminCommand::Verify => (http::Method::POST, "verify".to_string()),
    };
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("nucache: cannot start the runtime: {error}");
            return ExitCode::from(2);
        }
    };
    let answer = match runtime.block_on(nucache::admin_client::call(&base, method, &path)) {
        Ok(answer) => answer,
        Err(error) => {
            eprintln!("nucache: {error}");
            return ExitCode::from(2);
        }
    };
    match command {
        AdminCommand::Stats => println!("{}", serde_json::to_string_pretty(&answer).unwrap_or_default()),
        AdminCommand::Purge { .. } => println!(
            "purged {}: {} objects, {} bytes",
            answer["package"].as_str().unwrap_or("?"),
            answer["purged_objects"],
            answer["purged_bytes"]
        ),
        AdminCommand::Verify => {
            let dropped = answer["dropped"].as_array().cloned().unwrap_or_default();
            for what in &dropped {
                println!(
                    "dropped {}: its bytes no longer match their record",
                    what.as_str().unwrap_or("?")
                );
            }
            println!(
                "{base}: verified {} objects, {} bytes intact, {} dropped",
                answer["checked"],
                answer["intact_bytes"],
                dropped.len()
            );
            if !dropped.is_empty() {
                return ExitCode::FAILURE;
            }
        }
    }
    ExitCode::SUCCESS
}

/// glibc gives each thread that allocates an arena of its own, up to 8 per
/// core. A package chunk is read (allocated) on a blocking-pool thread and
/// freed on an async worker once sent, and the many arenas this touches
/// stay fragmented: under 256 concurrent 50 MiB downloads peak RSS was
/// 67 MiB with them and 50 MiB with two (`benches/vs_nginx.sh`). An
/// operator's own `MALLOC_ARENA_MAX` wins.
fn limit_malloc_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
        // SAFETY: mallopt only sets a tunable; it is called before any
        // other thread exists.
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, 2);
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

/// `file`: the `--config` given, for reloading on SIGHUP.
fn serve(config: Config, file: Option<PathBuf>, logging: nucache::logging::Logging) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("nucache: cannot start the runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        tracing::info!(config = %config.effective(), "effective configuration");
        let hangups = nucache::shutdown::Hangups::listen();
        let shown = config.clone();
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
            adopted_files = repair.adopted_files,
            removed_duplicate_files = repair.removed_duplicate_files,
            upgraded_files = repair.upgraded_files,
            index_rebuilt = repair.rebuilt.is_some(),
            "cache checked"
        );
        match server.local_addr() {
            Ok(addr) => {
                tracing::info!(%addr, "listening");
                // Type=notify: systemd starts what depends on nucache now
                // (a no-op without $NOTIFY_SOCKET).
                if let Err(error) = sd_notify::notify(&[sd_notify::NotifyState::Ready]) {
                    tracing::warn!(%error, "could not tell systemd that nucache is ready");
                }
                // The snippet alone on stdout, so that it can be redirected.
                // stderr stays all JSON lines for log.format = "json".
                if shown.log.format == nucache::config::LogFormat::Text {
                    eprintln!("Point NuGet at nucache with this nuget.config:");
                }
                print!("{}", shown.nuget_config_snippet(addr));
            }
            Err(error) => tracing::warn!(%error, "listening on an unknown address"),
        }
        let reload = nucache::reload::Reload {
            file,
            running: shown,
            server: server.reloader(),
            logging,
        };
        let reloading = tokio::spawn(reload.on_hangups(hangups));
        server
            .run(async {
                nucache::shutdown::signal().await;
                let _ = sd_notify::notify(&[sd_notify::NotifyState::Stopping]);
            })
            .await;
        reloading.abort();
        ExitCode::SUCCESS
    })
}
