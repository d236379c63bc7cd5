//! Logging setup: `tracing` events to stderr, as text or JSON, filtered by
//! `TOCSIN_LOG` (an `EnvFilter` directive, default `info`). Nothing else.

use std::io::{BufWriter, IsTerminal as _};

use tracing_appender::non_blocking::{NonBlockingBuilder, WorkerGuard};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::writer::BoxMakeWriter;

/// Output format of the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per event, for log shippers.
    Json,
}

/// How lines reach stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogWriter {
    /// Written by the thread that logs, one write per line: for a process
    /// that must start no thread (the compiler child).
    Direct,
    /// Handed to a writer thread that writes them in batches, as many as
    /// queued up, one `write` for each batch: a busy service logs a line or
    /// more per delivery, and a `write` per line cost more CPU than the rest
    /// of the line's work. Not lossy while the process runs: a full queue
    /// makes the logging thread wait. Dropping the returned guard writes
    /// what is queued, waiting up to a second for it (tracing-appender's
    /// bound): drop it before the process exits.
    Background,
}

/// Installs the global subscriber. Stdout stays free for command output.
/// Keep the guard until the process ends: dropping it writes what is queued.
pub fn init(format: LogFormat, writer: LogWriter) -> Option<WorkerGuard> {
    let filter = EnvFilter::try_from_env("TOCSIN_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let (make_writer, guard) = match writer {
        LogWriter::Direct => (BoxMakeWriter::new(std::io::stderr), None),
        LogWriter::Background => {
            // The writer thread flushes its buffer whenever the queue is empty.
            let (queue, guard) = NonBlockingBuilder::default()
                .lossy(false)
                .thread_name("tocsin-log")
                .finish(BufWriter::with_capacity(64 << 10, std::io::stderr()));
            (BoxMakeWriter::new(queue), Some(guard))
        }
    };
    // Colours only for a person at a terminal: escape codes in a log file
    // or a journal are noise to its readers and shippers (and cost a
    // tenth of a line's formatting).
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(make_writer);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
    guard
}
