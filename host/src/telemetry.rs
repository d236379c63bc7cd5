//! Logging setup: `tracing` events to stderr, as text or JSON, filtered by
//! `TOCSIN_LOG` (an `EnvFilter` directive, default `info`), batched for
//! up to `TOCSIN_LOG_FLUSH_MS` (default 5) under load; the text log's
//! fields escaped. Nothing else.

use std::fmt::Write as _;
use std::io::{IsTerminal as _, Write};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use tocsin_core::logtext::{PLUGIN_TARGET, write_escaped};
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::field::RecordFields;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::time::FormatTime;
use tracing_subscriber::fmt::writer::BoxMakeWriter;
use tracing_subscriber::fmt::{FmtContext, FormatEvent};
use tracing_subscriber::fmt::{FormatFields, MakeWriter};
use tracing_subscriber::registry::LookupSpan;

/// How long, after a write, lines gather before the next one, unless
/// `TOCSIN_LOG_FLUSH_MS` says otherwise (0: every line as it comes).
const FLUSH_INTERVAL: Duration = Duration::from_millis(5);
/// A batch this big is written at once by the thread that filled it.
const BATCH_BYTES: usize = 64 << 10;

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
    /// Appended to a batch in memory, written with one `write` per batch by
    /// a flusher thread: at once when the log was quiet, else at most every
    /// [`FLUSH_INTERVAL`] (lines wait that long at most), or by the logging
    /// thread once the batch holds [`BATCH_BYTES`]. A busy service logs a
    /// line or more per delivery; a `write`, or a wake-up of a writer
    /// thread, per line cost more CPU than the rest of the line's work.
    /// Nothing is dropped: the returned guard writes the batch when dropped
    /// (drop it before the process exits), and a panic writes it before the
    /// panic's message.
    Batched,
}

/// Writes what is batched when dropped, and stops the flusher.
#[derive(Debug)]
pub struct LogGuard {
    batch: Arc<Batch>,
    flusher: Option<JoinHandle<()>>,
}

impl Drop for LogGuard {
    fn drop(&mut self) {
        self.batch.lock().stopping = true;
        self.batch.filled.notify_one();
        if let Some(flusher) = self.flusher.take() {
            let _ = flusher.join();
        }
        self.batch.write_out();
    }
}

/// The lines not yet written, shared by every logging thread and the
/// flusher.
struct Batch {
    state: Mutex<BatchState>,
    /// Signalled when a line lands in an empty batch, and at stop.
    /// (The flusher, gathering, wakes for the first only to wait again.)
    filled: Condvar,
}

struct BatchState {
    lines: Vec<u8>,
    stopping: bool,
    /// Stderr, but for tests.
    out: Box<dyn Write + Send>,
}

impl BatchState {
    /// One `write` of the lines, which it empties. A failed write (stderr
    /// closed) drops them: there is nowhere else to log to.
    fn write_lines(&mut self) {
        if !self.lines.is_empty() {
            let _ = self.out.write_all(&self.lines);
            let _ = self.out.flush();
            self.lines.clear();
        }
    }
}

impl std::fmt::Debug for Batch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Batch").finish_non_exhaustive()
    }
}

impl Batch {
    fn new(out: Box<dyn Write + Send>) -> Self {
        Batch {
            state: Mutex::new(BatchState { lines: Vec::new(), stopping: false, out }),
            filled: Condvar::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, BatchState> {
        // A thread that panicked holding the lock left whole lines behind
        // (appending cannot fail halfway): keep using them.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Appends one formatted line (tracing-subscriber hands over each event
    /// whole); writes the batch out when it is full.
    fn append(&self, line: &[u8]) {
        let mut state = self.lock();
        if state.lines.is_empty() {
            self.filled.notify_one();
        }
        state.lines.extend_from_slice(line);
        // Once stopping, no flusher is left to write it.
        if state.lines.len() >= BATCH_BYTES || state.stopping {
            state.write_lines();
        }
    }

    /// Writes what is batched (under the lock, so batches keep their order).
    fn write_out(&self) {
        self.lock().write_lines();
    }

    /// Writes what is batched unless another thread holds the batch (a
    /// panic while appending): a panic hook must not wait on it.
    fn write_out_unless_busy(&self) {
        match self.state.try_lock() {
            Ok(mut state) => state.write_lines(),
            Err(std::sync::TryLockError::Poisoned(poisoned)) => poisoned.into_inner().write_lines(),
            Err(std::sync::TryLockError::WouldBlock) => {}
        }
    }

    /// The flusher: sleeps until a line arrives, writes the batch, lets
    /// the next one gather for `interval`; until the guard is dropped.
    fn flush_until_stopped(&self, interval: Duration) {
        let mut state = self.lock();
        loop {
            while state.lines.is_empty() && !state.stopping {
                state = self.filled.wait(state).unwrap_or_else(PoisonError::into_inner);
            }
            if state.stopping {
                return;
            }
            state.write_lines();
            // Lines gather for `interval`, unless the guard stops it first.
            state = match self.filled.wait_timeout_while(state, interval, |state| !state.stopping) {
                Ok((state, _)) => state,
                Err(poisoned) => poisoned.into_inner().0,
            };
        }
    }
}

/// A [`Batch`] as tracing-subscriber's writer.
#[derive(Debug, Clone)]
struct BatchWriter(Arc<Batch>);

impl Write for BatchWriter {
    fn write(&mut self, line: &[u8]) -> std::io::Result<usize> {
        self.0.append(line);
        Ok(line.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for BatchWriter {
    type Writer = BatchWriter;

    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

/// The text log's fields, every control character in them escaped
/// (`\u{1b}`, `\n`) as the log capability escapes plugins' lines: an alarm's
/// id or an action from the broker cannot move the cursor of a terminal
/// showing the log, nor split its line. tracing-subscriber's own
/// sanitising covers only the message and errors, and formats them a
/// character at a time. (JSON lines are the JSON encoder's: it escapes the
/// C0 controls, not DEL, C1 or bidirectional overrides.)
struct EscapedFields;

impl<'writer> FormatFields<'writer> for EscapedFields {
    fn format_fields<R: RecordFields>(&self, writer: Writer<'writer>, fields: R) -> std::fmt::Result {
        let mut visitor = EscapingVisitor { out: Escaping(writer), first: true, result: Ok(()) };
        fields.record(&mut visitor);
        visitor.result
    }
}

/// Writes fields in the shape of tracing-subscriber's default (`name=value`
/// apart by spaces, the message bare, strings quoted), leaving out the
/// `log.*` metadata of records from the `log` crate. Unlike the default:
/// no colours for field names at a terminal, and an error is its `Display`
/// (no list of sources; tocsin logs errors with `%` anyway).
struct EscapingVisitor<'writer> {
    out: Escaping<'writer>,
    first: bool,
    result: std::fmt::Result,
}

impl Visit for EscapingVisitor<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.record_debug(field, &format_args!("{value}"));
        } else {
            // A string's `Debug` is quoted: it reads as one value.
            self.write_field(field, |out, pad, name| write!(out, "{pad}{name}={value:?}"));
        }
    }

    /// A message, or a value logged with its `Display` (`%`) or `Debug`
    /// (`?`): written as it is, unless it could read as more than one
    /// token (a message with a `=` in it, a value with a space, `=` or
    /// `"`, an empty value), then quoted; a plugin's message always. Such
    /// text may hold what the broker or a plugin sent (an alarm's id, a
    /// failure's reason): it must not pose as the line's own fields.
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        SCRATCH.with_borrow_mut(|text| {
            text.clear();
            if write!(text, "{value:?}").is_err() {
                return;
            }
            let is_message = field.name() == "message";
            let quoted = if is_message {
                QUOTE_MESSAGE.get() || text.contains('=')
            } else {
                text.is_empty() || text.contains(|c: char| c.is_whitespace() || c == '=' || c == '"')
            };
            self.write_field(field, |out, pad, name| match (is_message, quoted) {
                (true, true) => write!(out, "{pad}{text:?}"),
                (true, false) => write!(out, "{pad}{text}"),
                (false, true) => write!(out, "{pad}{name}={text:?}"),
                (false, false) => write!(out, "{pad}{name}={text}"),
            });
        });
    }
}

impl EscapingVisitor<'_> {
    /// Writes one field with `write(out, padding, name)`, unless an earlier
    /// write failed or it is `log` crate metadata.
    fn write_field(
        &mut self,
        field: &Field,
        write: impl FnOnce(&mut Escaping<'_>, &str, &str) -> std::fmt::Result,
    ) {
        let name = field.name();
        if self.result.is_err() || name.starts_with("log.") {
            return;
        }
        let pad = if std::mem::take(&mut self.first) { "" } else { " " };
        self.result = write(&mut self.out, pad, name.strip_prefix("r#").unwrap_or(name));
    }
}

thread_local! {
    /// Whether the event being formatted on this thread is a plugin's line,
    /// whose message [`EscapingVisitor`] quotes: set by [`TextLines`].
    static QUOTE_MESSAGE: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    /// Where [`EscapingVisitor`] writes a value first, to see whether it
    /// needs quotes: reused, so a line costs no allocation for it.
    static SCRATCH: std::cell::RefCell<String> = const { std::cell::RefCell::new(String::new()) };
}

/// The text log's lines: `F`'s (tracing-subscriber's default shape), with
/// a plugin's line ([`PLUGIN_TARGET`]) quoted, so that a plugin that
/// writes `x plugin="log" alarm_id=…` cannot pass its text off as the
/// line's own fields.
struct TextLines<F>(F);

impl<S, N, F> FormatEvent<S, N> for TextLines<F>
where
    F: FormatEvent<S, N>,
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        writer: Writer<'_>,
        event: &Event<'_>,
    ) -> std::fmt::Result {
        QUOTE_MESSAGE.set(event.metadata().target() == PLUGIN_TARGET);
        let written = self.0.format_event(ctx, writer, event);
        QUOTE_MESSAGE.set(false);
        written
    }
}

/// A [`Writer`] through [`write_escaped`].
struct Escaping<'writer>(Writer<'writer>);

impl std::fmt::Write for Escaping<'_> {
    fn write_str(&mut self, text: &str) -> std::fmt::Result {
        write_escaped(&mut self.0, text)
    }
}

/// The default timer's timestamps (RFC 3339 in UTC, microseconds:
/// `2026-12-03T12:10:46.975229Z`), the date and time of day written once
/// per second and thread: the default formats the whole date for every
/// line, a tenth of a plugin's line's cost.
#[derive(Debug, Clone, Copy, Default)]
struct SecondCachedTime;

impl FormatTime for SecondCachedTime {
    fn format_time(&self, w: &mut Writer<'_>) -> std::fmt::Result {
        thread_local! {
            static SECOND: std::cell::RefCell<SecondText> = const { std::cell::RefCell::new((0, String::new())) };
        }
        SECOND.with_borrow_mut(|cache| write_timestamp(w, jiff::Timestamp::now(), cache))
    }
}

/// A second since the Unix epoch, and its date and time of day as text.
type SecondText = (i64, String);

/// Writes `at` as [`SecondCachedTime`] does, the part up to the second
/// taken from `cache` when it is of the same second.
fn write_timestamp(
    w: &mut impl std::fmt::Write,
    at: jiff::Timestamp,
    cache: &mut SecondText,
) -> std::fmt::Result {
    let (second, micros) = (at.as_second(), at.subsec_microsecond());
    if micros < 0 {
        // Before 1970 (a clock set wrong): the second is rounded toward zero.
        return write!(w, "{at:.6}");
    }
    let (cached, text) = cache;
    if *cached != second || text.is_empty() {
        let whole = jiff::Timestamp::from_second(second).map_err(|_| std::fmt::Error)?;
        text.clear();
        write!(text, "{}", whole.strftime("%Y-%m-%dT%H:%M:%S"))?;
        *cached = second;
    }
    write!(w, "{text}.{micros:06}Z")
}

/// A batch writing to `out` every `interval`, and the guard that stops
/// its flusher.
fn batched(out: Box<dyn Write + Send>, interval: Duration) -> std::io::Result<(BatchWriter, LogGuard)> {
    let batch = Arc::new(Batch::new(out));
    let flusher = std::thread::Builder::new().name("tocsin-log".into()).spawn({
        let batch = Arc::clone(&batch);
        move || batch.flush_until_stopped(interval)
    })?;
    Ok((BatchWriter(Arc::clone(&batch)), LogGuard { batch, flusher: Some(flusher) }))
}

/// Installs the global subscriber. Stdout stays free for command output.
/// Keep the guard until the process ends: dropping it writes what is
/// batched.
pub fn init(format: LogFormat, writer: LogWriter) -> Option<LogGuard> {
    let filter = EnvFilter::try_from_env("TOCSIN_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let (interval, unreadable) = match std::env::var("TOCSIN_LOG_FLUSH_MS").ok().map(|ms| ms.parse()) {
        Some(Ok(ms)) => (Duration::from_millis(ms), None),
        Some(Err(error)) => (FLUSH_INTERVAL, Some(error)),
        None => (FLUSH_INTERVAL, None),
    };
    let (make_writer, guard) = match writer {
        LogWriter::Batched if !interval.is_zero() => match batched(Box::new(std::io::stderr()), interval) {
            Ok((writer, guard)) => {
                let hook = std::panic::take_hook();
                let batch = Arc::clone(&writer.0);
                std::panic::set_hook(Box::new(move |panic| {
                    batch.write_out_unless_busy();
                    hook(panic);
                }));
                (BoxMakeWriter::new(writer), Some(guard))
            }
            // No thread to flush a batch: each line is written as it comes.
            Err(_) => (BoxMakeWriter::new(std::io::stderr), None),
        },
        LogWriter::Batched | LogWriter::Direct => (BoxMakeWriter::new(std::io::stderr), None),
    };
    // Colours only for a person at a terminal: escape codes in a log file
    // or a journal are noise to its readers and shippers (and cost a
    // tenth of a line's formatting).
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_timer(SecondCachedTime)
        .with_writer(make_writer);
    match format {
        LogFormat::Text => {
            let lines = tracing_subscriber::fmt::format().with_timer(SecondCachedTime);
            builder.fmt_fields(EscapedFields).event_format(TextLines(lines)).init();
        }
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
    if let Some(error) = unreadable {
        tracing::warn!(
            error = %error, default_ms = FLUSH_INTERVAL.as_millis(),
            "TOCSIN_LOG_FLUSH_MS is not a number of milliseconds; using the default."
        );
    }
    guard
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed test

    use std::time::Instant;

    use super::*;

    /// An output that records each `write` apart.
    #[derive(Clone, Default)]
    struct Recorder(Arc<Mutex<Vec<Vec<u8>>>>);

    impl Write for Recorder {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().push(bytes.to_vec());
            Ok(bytes.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl Recorder {
        fn written(&self) -> Vec<u8> {
            self.0.lock().unwrap().concat()
        }
    }

    #[test]
    fn the_text_log_escapes_every_field_and_span_in_the_default_shape() {
        let recorder = Recorder::default();
        let sink = recorder.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || sink.clone())
            .with_ansi(false)
            .without_time()
            .with_target(false)
            .fmt_fields(EscapedFields)
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            let span = tracing::info_span!("call", alarm_id = %"a\u{1b}[2J", later = tracing::field::Empty);
            span.record("later", "x\ny");
            let _entered = span.enter();
            tracing::info!(r#type = "t", action = %"log://\u{202e}", count = 3, "text\u{7}");
            tracing::info!(message = "a str message\u{9b}");
        });
        let written = String::from_utf8(recorder.written()).unwrap();
        let lines: Vec<&str> = written.lines().collect();
        assert_eq!(lines.len(), 2, "{written:?}");
        let expected =
            r#"call{alarm_id=a\u{1b}[2J later="x\ny"}: text\u{7} type="t" action=log://\u{202e} count=3"#;
        assert!(lines[0].ends_with(expected), "{:?}", lines[0]);
        assert!(lines[1].ends_with(r"}: a str message\u{9b}"), "{:?}", lines[1]);
        assert!(!lines.concat().contains(char::is_control), "{written:?}");
    }

    #[test]
    fn a_plugins_line_is_quoted_in_the_text_log_so_it_cannot_pose_as_fields() {
        let recorder = Recorder::default();
        let sink = recorder.clone();
        let lines = tracing_subscriber::fmt::format().without_time().with_target(false);
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || sink.clone())
            .with_ansi(false)
            .fmt_fields(EscapedFields)
            .event_format(TextLines(lines))
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            let forged = "ok\" plugin=\"log\" alarm_id=\"other\u{1b}";
            tracing::info!(target: PLUGIN_TARGET, plugin = "evil", "{forged}");
            tracing::info!(plugin = "evil", "host: Own line.");
            let id = r#"x" tenant="victim"#;
            tracing::info!(error = %format_args!("reason {id}"), alarm_id = %id, "Unable to notify alarm {id}");
            tracing::info!(count = 3, action = %"log://", empty = %"", "plain");
        });
        let written = String::from_utf8(recorder.written()).unwrap();
        let lines: Vec<&str> = written.lines().collect();
        assert_eq!(
            lines[0], r#" INFO "ok\" plugin=\"log\" alarm_id=\"other\u{1b}" plugin="evil""#,
            "the plugin's text is one quoted string"
        );
        assert_eq!(lines[1], r#" INFO host: Own line. plugin="evil""#, "the host's own lines are not quoted");
        assert_eq!(
            lines[2],
            r#" INFO "Unable to notify alarm x\" tenant=\"victim" error="reason x\" tenant=\"victim" alarm_id="x\" tenant=\"victim""#,
            "a host line with text from the broker or a plugin cannot pose as fields either"
        );
        assert_eq!(lines[3], r#" INFO plain count=3 action=log:// empty="""#, "one-token values stay bare");
    }

    #[test]
    fn timestamps_are_rfc_3339_with_microseconds_across_seconds() {
        let mut cache = SecondText::default();
        for micros in [
            1_764_763_846_975_229,
            1_764_763_846_000_001,
            1_764_763_847_000_000,
            1_764_763_846_999_999,
            -1_500_000,
        ] {
            let at = jiff::Timestamp::from_microsecond(micros).unwrap();
            let mut written = String::new();
            write_timestamp(&mut written, at, &mut cache).unwrap();
            assert_eq!(written, format!("{at:.6}"));
        }
        // The shape of tracing-subscriber's default timer, which this replaces.
        let (mut ours, mut default) = (String::new(), String::new());
        SecondCachedTime.format_time(&mut Writer::new(&mut ours)).unwrap();
        tracing_subscriber::fmt::time::SystemTime.format_time(&mut Writer::new(&mut default)).unwrap();
        let shape =
            |text: &str| text.chars().map(|c| if c.is_ascii_digit() { '0' } else { c }).collect::<String>();
        assert_eq!(shape(&ours), shape(&default));
        assert_eq!(shape(&ours), "0000-00-00T00:00:00.000000Z");
    }

    #[test]
    fn the_flusher_writes_lines_in_order_without_being_asked() {
        let recorder = Recorder::default();
        let (mut writer, _guard) = batched(Box::new(recorder.clone()), FLUSH_INTERVAL).unwrap();
        for line in ["one\n", "two\n", "three\n"] {
            writer.write_all(line.as_bytes()).unwrap();
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while recorder.written().len() < 14 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(recorder.written(), b"one\ntwo\nthree\n");
    }

    #[test]
    fn a_full_batch_is_written_at_once_and_the_rest_when_the_guard_drops() {
        let recorder = Recorder::default();
        let batch = Batch::new(Box::new(recorder.clone()));
        let line = [b'x'; 1000];
        for _ in 0..BATCH_BYTES / line.len() {
            batch.append(&line);
        }
        assert!(recorder.0.lock().unwrap().is_empty(), "below a full batch, nothing is written yet");
        batch.append(&line);
        assert_eq!(recorder.0.lock().unwrap().len(), 1, "one write for the full batch");
        assert_eq!(recorder.written().len(), (BATCH_BYTES / line.len() + 1) * line.len());

        let recorder = Recorder::default();
        let (mut writer, guard) = batched(Box::new(recorder.clone()), FLUSH_INTERVAL).unwrap();
        writer.write_all(b"last words\n").unwrap();
        drop(guard);
        assert_eq!(recorder.written(), b"last words\n", "written when the guard drops, not lost");
    }
}
