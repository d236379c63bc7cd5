//! The `tocsin` binary: parses flags, sets up logging, loads the
//! configuration and runs one command.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::ValueEnum;
use clap::{Parser, Subcommand};
use tocsin::commands::dlq::DlqAction;
use tocsin::commands::plugin::{ApiTarget, PluginCommand};
use tocsin::commands::{self, Exit, notify::NotifyArgs, publish::PublishArgs};
use tocsin::config::Config;
use tocsin::message::WireFormat;
use tocsin::process;
use tocsin::sandbox::compiler::CompileTarget;
use tocsin::sandbox::compiler::confine::Identity;
use tocsin::telemetry::{self, LogFormat, LogWriter};

/// Many small allocations per delivery (decode, records, sandbox state):
/// mimalloc serves them faster than the system allocator (see
/// docs/performance.md, "Why mimalloc").
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
    /// Run the service: consume OpenStack alarm messages from the broker
    /// and deliver every action through its sandboxed notifier, until
    /// SIGTERM or SIGINT.
    Serve,
    /// Publish alarm messages as an OpenStack evaluator does
    /// (byte-compatible with oslo.messaging) and wait for the broker's
    /// confirmations.
    Publish {
        /// `rpc` (a `notify_alarm` cast, as Ceilometer and Aodh 1.x send)
        /// or `notification` (`alarm.update`, as Aodh 2.x and later send).
        #[arg(long, value_enum, default_value = "notification")]
        format: Format,
        /// The alarm as JSON (Aodh's fields), a file or `-` for stdin;
        /// the sample alarm when absent.
        #[arg(long)]
        alarm: Option<PathBuf>,
        /// An action URL of the alarm; repeat for several.
        #[arg(long = "action", required = true)]
        actions: Vec<String>,
        /// How many messages to send, each with fresh ids.
        #[arg(long, default_value_t = 1)]
        count: u32,
    },
    /// Show, replay or remove dead letters: deliveries that failed for
    /// good and messages that could not be decoded, each with its reason.
    Dlq {
        #[command(subcommand)]
        action: DlqCommand,
    },
    /// Check that a component is a notifier tocsin will run; print what it
    /// imports and exports. Exit 0 valid, 1 invalid.
    Check {
        /// The component (`.wasm`).
        plugin: PathBuf,
    },
    /// Upload, list, show, delete, activate, read the logs of and try out
    /// notifiers, through the API of a running `tocsin serve`.
    Plugin {
        /// The API's address.
        #[arg(long, env = "TOCSIN_API", default_value = "http://127.0.0.1:8080")]
        api: String,
        /// Your bearer token.
        #[arg(long, env = "TOCSIN_TOKEN", hide_env_values = true)]
        token: String,
        #[command(subcommand)]
        command: PluginCommand,
    },
    /// Make a new API token: prints the token (give it to the tenant or
    /// operator) and its SHA-256 (put it in the configuration as
    /// `api.operator_token_sha256` or `tenants.<name>.token_sha256`).
    Token,
    /// Compile one uploaded component (the service runs this as a child
    /// process, with the component on stdin).
    #[command(hide = true, name = "compile-component")]
    CompileComponent {
        /// CPU seconds this process may use.
        #[arg(long)]
        cpu_seconds: u64,
        /// Address space this process may use, in bytes.
        #[arg(long)]
        memory_bytes: u64,
        /// Threads Cranelift may compile on.
        #[arg(long, default_value_t = 1)]
        threads: u32,
        /// The service engine's WebAssembly stack size.
        #[arg(long)]
        max_wasm_stack_bytes: usize,
        /// The memory limit of the calls the component is for, in bytes.
        #[arg(long)]
        memory_limit_bytes: u64,
        /// Confine this process, switching to this uid if run as root.
        #[arg(long, requires = "confine_gid", conflicts_with = "unconfined")]
        confine_uid: Option<u32>,
        /// The gid that goes with `--confine-uid`.
        #[arg(long, requires = "confine_uid")]
        confine_gid: Option<u32>,
        /// Do not confine this process (the operator opted out).
        #[arg(long, required_unless_present = "confine_uid")]
        unconfined: bool,
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

/// What `dlq` does.
#[derive(Debug, Subcommand)]
enum DlqCommand {
    /// Print dead letters, one JSON line each, leaving them in place.
    List {
        /// At most this many.
        #[arg(long)]
        limit: Option<u32>,
    },
    /// Deliver dead letters again: deliveries with a fresh retry budget,
    /// messages to where they were first published.
    Replay {
        /// At most this many.
        #[arg(long)]
        limit: Option<u32>,
    },
    /// Remove every dead letter.
    Purge,
}

/// The wire formats `publish` writes.
#[derive(Debug, Clone, Copy, ValueEnum)]
enum Format {
    Rpc,
    Notification,
}

fn main() -> ExitCode {
    let huge_pages = process::disable_transparent_huge_pages();
    let cli = Cli::parse();
    let writer = match cli.command {
        Command::CompileComponent { .. } => LogWriter::Direct,
        _ => LogWriter::Batched,
    };
    let log = telemetry::init(cli.log_format, writer);
    if let Err(error) = huge_pages {
        tracing::info!(
            %error,
            "process: Cannot opt out of transparent huge pages; the heap may be faulted in 2 MiB at a time."
        );
    }
    let result = match cli.command {
        // The compiler process limits itself before anything else runs: no
        // async runtime, no worker threads.
        Command::CompileComponent {
            cpu_seconds,
            memory_bytes,
            threads,
            max_wasm_stack_bytes,
            memory_limit_bytes,
            confine_uid,
            confine_gid,
            unconfined: _,
        } => commands::compile::run(commands::compile::CompileArgs {
            cpu_seconds,
            memory_bytes,
            threads,
            target: CompileTarget { max_wasm_stack_bytes },
            memory_limit_bytes,
            confine: confine_uid.zip(confine_gid).map(|(uid, gid)| Identity { uid, gid }),
        }),
        Command::Token => Ok(commands::token::run()),
        command => tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .map_err(anyhow::Error::new)
            .and_then(|runtime| runtime.block_on(run(cli.config.as_deref(), command))),
    };
    // The queued log lines first, then the reason the command failed.
    drop(log);
    match result {
        Ok(exit) => exit.into(),
        Err(error) => {
            eprintln!("tocsin: {error:#}");
            Exit::Usage.into()
        }
    }
}

/// Runs a command that needs the async runtime (and, but for `plugin`,
/// the configuration).
async fn run(config: Option<&std::path::Path>, command: Command) -> anyhow::Result<Exit> {
    if let Command::Plugin { api, token, command } = command {
        return commands::plugin::run(&ApiTarget { api, token }, command).await;
    }
    match Config::load(config) {
        Err(error) => Err(anyhow::Error::new(error).context("cannot load the configuration")),
        Ok(config) => match command {
            Command::Serve => commands::serve::run(config).await,
            Command::Dlq { action } => {
                let (action, limit) = match action {
                    DlqCommand::List { limit } => (DlqAction::List, limit),
                    DlqCommand::Replay { limit } => (DlqAction::Replay, limit),
                    DlqCommand::Purge => (DlqAction::Purge, None),
                };
                commands::dlq::run(&config, action, limit).await
            }
            Command::Publish { format, alarm, actions, count } => {
                let format = match format {
                    Format::Rpc => WireFormat::Rpc,
                    Format::Notification => WireFormat::Notification,
                };
                commands::publish::run(&config, PublishArgs { format, alarm, actions, count }).await
            }
            Command::Check { plugin } => commands::check::run(&config, &plugin).await,
            Command::Notify { plugin, action, alarm, allow_hosts } => {
                commands::notify::run(config, NotifyArgs { plugin, action, alarm, allow_hosts }).await
            }
            Command::Token | Command::CompileComponent { .. } | Command::Plugin { .. } => {
                unreachable!("run without configuration")
            }
        },
    }
}
