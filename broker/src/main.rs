//! `fjord-broker`: runs one Fjord broker until SIGTERM or Ctrl-C, then shuts down
//! gracefully (in-flight requests finish, every log is flushed and checkpointed).
//! `fjord-broker healthcheck` asks a running broker whether it is ready instead.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};
use fjord_broker::Broker;
use fjord_broker::config::{BrokerConfig, ConfigOverrides};

mod freed_memory;
mod healthcheck;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The Fjord event-streaming broker.
///
/// Settings come from the TOML file given with --config, then FJORD_* environment
/// variables, then these flags; see docs/configuration.md. Logging follows RUST_LOG
/// (default: info); log lines are coloured only when stdout is a terminal.
#[derive(Debug, Parser)]
#[command(name = "fjord-broker", version)]
struct Cli {
    /// TOML configuration file.
    #[arg(long, env = "FJORD_CONFIG")]
    config: Option<PathBuf>,
    #[command(flatten)]
    overrides: ConfigOverrides,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Asks a running broker's GET /readyz: exit 0 when it is ready, 1 otherwise with
    /// the reason on stderr (for container health checks; the image has no curl).
    Healthcheck(healthcheck::HealthcheckArgs),
}

fn main() -> ExitCode {
    let defaults: String = fjord_broker::config::describe_settings()
        .into_iter()
        .map(|(name, _, default, _)| format!("  {name} = {default}\n"))
        .collect();
    let matches = Cli::command()
        .after_long_help(format!("Defaults:\n{defaults}"))
        .try_get_matches()
        .unwrap_or_else(|error| exit_on_bad_arguments(error));
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|error| error.exit());
    if let Some(Command::Healthcheck(args)) = &cli.command {
        return healthcheck::run(args, cli.config.as_deref(), cli.overrides);
    }
    // Colours only for a person at a terminal: a file or a pipe gets plain text.
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_ansi(std::io::stdout().is_terminal())
        .init();
    let config = match BrokerConfig::load(cli.config.as_deref(), cli.overrides) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("error: {error}");
            return ExitCode::from(2);
        }
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .on_thread_park(freed_memory::on_worker_park)
        .build()
        .expect("cannot start the tokio runtime");
    let workers = runtime.metrics().num_workers();
    if let Err(error) = freed_memory::start(runtime.handle().clone(), workers) {
        eprintln!("error: cannot start the thread that gives freed memory back: {error}");
        return ExitCode::FAILURE;
    }
    match runtime.block_on(run(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// Exits on arguments (or `FJORD_*` variables) clap cannot parse: with clap's message
/// and status 2, except for a health check, whose callers read any status but 0 and 1
/// as reserved (Docker): there it is status 1 and one line.
fn exit_on_bad_arguments(error: clap::Error) -> ! {
    let is_healthcheck = std::env::args()
        .skip(1)
        .any(|argument| argument == "healthcheck");
    if is_healthcheck && error.use_stderr() {
        let message = error.render().to_string();
        let first_line = message.lines().next().unwrap_or_default();
        eprintln!("unhealthy: {first_line}");
        std::process::exit(1);
    }
    error.exit()
}

async fn run(config: BrokerConfig) -> anyhow::Result<()> {
    // Listen before starting: a signal that arrives once clients are served, but before
    // `start` has returned, must still mean a graceful shutdown, not the default death.
    let mut signals = Signals::listen()?;
    let handle = Broker::start(config).await?;
    signals.wait().await;
    tracing::info!("shutting down");
    handle.shutdown().await
}

/// SIGTERM and SIGINT (Ctrl-C), listened to from creation on.
struct Signals {
    terminate: tokio::signal::unix::Signal,
    interrupt: tokio::signal::unix::Signal,
}

impl Signals {
    fn listen() -> std::io::Result<Self> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Self {
            terminate: signal(SignalKind::terminate())?,
            interrupt: signal(SignalKind::interrupt())?,
        })
    }

    async fn wait(&mut self) {
        tokio::select! {
            _ = self.terminate.recv() => {}
            _ = self.interrupt.recv() => {}
        }
    }
}
