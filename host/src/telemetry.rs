//! Logging setup: `tracing` events to stderr, as text or JSON, filtered by
//! `TOCSIN_LOG` (an `EnvFilter` directive, default `info`). Nothing else.

use tracing_subscriber::EnvFilter;

/// Output format of the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per event, for log shippers.
    Json,
}

/// Installs the global subscriber. Stdout stays free for command output.
pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_env("TOCSIN_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
}
