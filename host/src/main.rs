//! The `tocsin` binary: parses flags, sets up logging, loads the
//! configuration and runs one command.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tocsin::commands::{self, Exit, notify::NotifyArgs};
use tocsin::config::Config;
use tocsin::telemetry::{self, LogFormat};

/// OpenStack alarm notifications through sandboxed WebAssembly notifiers.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    /// Configuration file (TOML). `TOCSIN_*` variables override it.
    #[arg(long, env = "TOCSIN_CONFIG", global = true)]
    config: Option<PathBuf>,
    /// Log output format (stderr).
    #[arg(long, env = "TOCSIN_LOG_FORMAT", value_enum, default_value = "text", global = true)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Check that a component is a notifier tocsin will run; print what it
    /// imports and exports. Exit 0 valid, 1 invalid.
    Check {
        /// The component (`.wasm`).
        plugin: PathBuf,
    },
    /// Run one notification through the sandbox and print the outcome as
    /// one JSON line. Exit 0 delivered, 1 failed, 2 bad input.
    Notify {
        /// A built-in notifier (log, http, test) or a path to a `.wasm`;
        /// by default the built-in for the action's scheme.
        #[arg(long)]
        plugin: Option<String>,
        /// The action URL, e.g. `log://` or `https://hooks.example/alarm`.
        #[arg(long)]
        action: String,
        /// The alarm as JSON (Aodh's fields), a file or `-` for stdin;
        /// the sample alarm when absent.
        #[arg(long)]
        alarm: Option<PathBuf>,
        /// Grant this host for this run, loopback or private included.
        #[arg(long = "allow-host")]
        allow_hosts: Vec<String>,
    },
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    telemetry::init(cli.log_format);
    let result = match Config::load(cli.config.as_deref()) {
        Err(error) => Err(anyhow::Error::new(error).context("cannot load the configuration")),
        Ok(config) => match cli.command {
            Command::Check { plugin } => commands::check::run(&config, &plugin),
            Command::Notify { plugin, action, alarm, allow_hosts } => {
                commands::notify::run(config, NotifyArgs { plugin, action, alarm, allow_hosts }).await
            }
        },
    };
    match result {
        Ok(exit) => exit.into(),
        Err(error) => {
            eprintln!("tocsin: {error:#}");
            Exit::Usage.into()
        }
    }
}
