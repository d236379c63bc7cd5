//! The `log` capability: a plugin's lines become `tracing` events tagged
//! with its identity, and land in its bounded ring buffer.
//!
//! Per call, lines, bytes and line length are capped ([`Limits`]): excess
//! lines are dropped and counted, long lines truncated and counted, so a
//! log flood costs the host little and never fails the call. A line's
//! bytes count the identity fields it carries (plugin, tenant, alarm id)
//! too: they are written with every line. Control
//! characters are escaped so a plugin cannot forge log lines or terminal
//! sequences. A plugin's line is never logged above WARN.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use serde::Serialize;
use tocsin_core::bindings::tocsin::notifier::log::{self as contract, Host, Level};
use tocsin_core::caps::MAX_LOG_FIELDS;
use tocsin_core::limits::{Limit, Limits};
use tocsin_core::logtext::{PLUGIN_TARGET, bounded};
use wasmtime::component::{HasData, Linker};

use super::CallReport;

/// Who is logging: the fields every plugin line carries.
#[derive(Debug, Clone)]
pub(crate) struct CallIdentity {
    /// Plugin name.
    pub plugin: Arc<str>,
    /// Tenant owning the plugin; none for the platform's.
    pub tenant: Option<Arc<str>>,
    /// Alarm being delivered.
    pub alarm_id: String,
}

/// One line a plugin wrote.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LogLine {
    /// `trace`, `debug`, `info`, `warn` or `error`.
    pub level: &'static str,
    /// The message, control characters escaped, possibly truncated.
    pub message: String,
    /// The plugin's `key=value` fields, escaped the same way.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub fields: Vec<(String, String)>,
}

/// The recent lines of one plugin, across calls, for its owner to read.
#[derive(Debug)]
pub(crate) struct LogBuffer {
    lines: Mutex<VecDeque<LogLine>>,
    capacity: usize,
}

impl LogBuffer {
    /// A buffer keeping the last `capacity` lines.
    pub fn new(capacity: usize) -> Self {
        LogBuffer { lines: Mutex::new(VecDeque::with_capacity(capacity.min(1024))), capacity }
    }

    /// The kept lines, oldest first.
    pub(crate) fn recent(&self) -> Vec<LogLine> {
        self.lock().iter().cloned().collect()
    }

    fn push(&self, line: LogLine) {
        if self.capacity == 0 {
            return;
        }
        let mut lines = self.lock();
        if lines.len() == self.capacity {
            lines.pop_front();
        }
        lines.push_back(line);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<LogLine>> {
        // A panic while holding this lock cannot leave the deque invalid.
        self.lines.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Log state of one call: the per-call caps and what was kept and dropped.
#[derive(Debug)]
pub(crate) struct CallLog {
    identity: CallIdentity,
    buffer: Arc<LogBuffer>,
    max_lines: u32,
    max_bytes: u64,
    max_line_bytes: usize,
    /// Bytes of the identity fields, written with every line.
    identity_bytes: usize,
    bytes: u64,
    /// Lines kept in this call, in order.
    pub lines: Vec<LogLine>,
    /// Lines dropped because a cap was reached.
    pub dropped: u64,
    /// Lines cut to the maximum length (or with fields dropped).
    pub truncated: u64,
}

impl CallLog {
    /// Log state for one call of the plugin owning `buffer`.
    pub fn new(identity: CallIdentity, buffer: Arc<LogBuffer>, limits: &Limits) -> Self {
        let identity_bytes =
            identity.plugin.len() + identity.tenant.as_deref().map_or(0, str::len) + identity.alarm_id.len();
        CallLog {
            identity,
            identity_bytes,
            buffer,
            max_lines: limits.log_lines,
            max_bytes: limits.log_bytes,
            max_line_bytes: usize::try_from(limits.log_line_bytes).unwrap_or(usize::MAX),
            bytes: 0,
            lines: Vec::new(),
            dropped: 0,
            truncated: 0,
        }
    }

    /// Whether a cap dropped or cut anything in this call.
    pub(crate) fn hit_limit(&self) -> bool {
        self.dropped > 0 || self.truncated > 0
    }

    /// Ends the call: its lines and counts go to `report`, and lines the
    /// caps dropped are reported to the operator once.
    pub fn finish(&mut self, report: &mut CallReport) {
        if self.hit_limit() {
            report.limits_hit.push(Limit::Log);
        }
        if self.dropped > 0 {
            tracing::warn!(
                plugin = &*self.identity.plugin,
                tenant = self.identity.tenant.as_deref().unwrap_or(""),
                alarm_id = self.identity.alarm_id,
                dropped = self.dropped,
                "sandbox: Plugin log lines dropped by the log limits."
            );
        }
        report.logs = std::mem::take(&mut self.lines);
        report.log_dropped = self.dropped;
        report.log_truncated = self.truncated;
    }

    /// Records one line, within the caps: past the line count or the byte
    /// budget it is dropped, past the line length it is cut.
    pub fn record(&mut self, level: Level, message: &str, fields: &[(String, String)]) {
        if self.lines.len() >= self.max_lines as usize {
            self.dropped += 1;
            return;
        }
        self.record_within_bytes(level, message, fields);
    }

    /// Records what the guest wrote to stdout or stderr (a panic message,
    /// typically) even when the line count is reached: it is the one line
    /// that explains a trap. The byte budget and line length still apply.
    pub(crate) fn record_output(&mut self, level: Level, text: &str, stream: &str) {
        self.record_within_bytes(level, text, &[("stream".to_owned(), stream.to_owned())]);
    }

    fn record_within_bytes(&mut self, level: Level, message: &str, fields: &[(String, String)]) {
        let mut cut = false;
        let message = bounded(message, self.max_line_bytes, &mut cut);
        cut |= fields.len() > MAX_LOG_FIELDS;
        let fields: Vec<(String, String)> = fields
            .iter()
            .take(MAX_LOG_FIELDS)
            .map(|(k, v)| {
                (bounded(k, self.max_line_bytes, &mut cut), bounded(v, self.max_line_bytes, &mut cut))
            })
            .collect();
        let size = self.identity_bytes
            + message.len()
            + fields.iter().map(|(k, v)| k.len() + v.len()).sum::<usize>();
        if self.bytes + size as u64 > self.max_bytes {
            self.dropped += 1;
            return;
        }
        self.truncated += u64::from(cut);
        self.bytes += size as u64;
        let line = LogLine { level: level_name(level), message, fields };
        self.emit(level, &line);
        self.buffer.push(line.clone());
        self.lines.push(line);
    }

    /// Emits `line` as a `tracing` event. Fields without information are
    /// left out: `tenant` for the platform's plugins, `plugin_level` where
    /// the event's own level says it (only `error` is logged as WARN), and
    /// `fields` when the plugin gave none.
    fn emit(&self, level: Level, line: &LogLine) {
        let plugin = &*self.identity.plugin;
        let tenant = self.identity.tenant.as_deref();
        let alarm_id = self.identity.alarm_id.as_str();
        let plugin_level = matches!(level, Level::Error).then_some(line.level);
        let fields = (!line.fields.is_empty())
            .then(|| line.fields.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(" "));
        let message = line.message.as_str();
        macro_rules! event {
            ($level:expr) => {
                tracing::event!(target: PLUGIN_TARGET, $level, plugin, tenant, alarm_id,
                    plugin_level, fields = fields.as_deref(), "{message}")
            };
        }
        match level {
            Level::Trace => event!(tracing::Level::TRACE),
            Level::Debug => event!(tracing::Level::DEBUG),
            Level::Info => event!(tracing::Level::INFO),
            Level::Warn | Level::Error => event!(tracing::Level::WARN),
        }
    }
}

/// The interface of `tocsin:notifier` this capability serves.
pub(crate) const INTERFACE: &str = "log";

/// Links `log` into `linker`, with each call's state found by `state`.
///
/// # Errors
/// Only if it is linked twice: a bug.
pub(crate) fn add_to_linker<T: 'static>(
    linker: &mut Linker<T>,
    state: fn(&mut T) -> &mut CallLog,
) -> wasmtime::Result<()> {
    struct Data;
    impl HasData for Data {
        type Data<'a> = &'a mut CallLog;
    }
    contract::add_to_linker::<T, Data>(linker, state)
}

impl Host for CallLog {
    fn log(&mut self, level: Level, message: String, fields: Vec<(String, String)>) -> wasmtime::Result<()> {
        self.record(level, &message, &fields);
        Ok(())
    }
}

fn level_name(level: Level) -> &'static str {
    match level {
        Level::Trace => "trace",
        Level::Debug => "debug",
        Level::Info => "info",
        Level::Warn => "warn",
        Level::Error => "error",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call_log(limits: Limits) -> (CallLog, Arc<LogBuffer>) {
        let buffer = Arc::new(LogBuffer::new(3));
        let identity = CallIdentity { plugin: "p".into(), tenant: None, alarm_id: "a".into() };
        (CallLog::new(identity, Arc::clone(&buffer), &limits), buffer)
    }

    #[test]
    fn bounded_output_stays_within_the_cap_and_marks_the_cut() {
        let mut cut = false;
        assert_eq!(bounded("short", 10, &mut cut), "short");
        assert!(!cut);
        assert_eq!(bounded(&"\n".repeat(1_000_000), 8, &mut cut), "\\n\\n\\n\\n…");
        assert!(cut);
    }

    #[test]
    fn fields_are_capped_in_number_and_length() {
        let (mut log, _) = call_log(Limits { log_line_bytes: 4, ..Limits::default() });
        let fields: Vec<(String, String)> = (0..20).map(|i| (format!("k{i}"), "value".to_owned())).collect();
        log.record(Level::Info, "m", &fields);
        assert_eq!(log.lines[0].fields.len(), 16);
        assert_eq!(log.lines[0].fields[0], ("k0".to_owned(), "valu…".to_owned()));
        assert_eq!(log.truncated, 1);
    }

    #[test]
    fn output_is_recorded_past_the_line_cap() {
        let (mut log, _) = call_log(Limits { log_lines: 1, ..Limits::default() });
        log.record(Level::Info, "one", &[]);
        log.record(Level::Info, "two", &[]);
        log.record_output(Level::Warn, "panicked at x", "stderr");
        assert_eq!(log.lines.len(), 2);
        assert_eq!(log.lines[1].message, "panicked at x");
        assert_eq!(log.dropped, 1);
    }

    #[test]
    fn lines_past_the_caps_are_dropped_and_counted() {
        let (mut log, buffer) = call_log(Limits { log_lines: 2, ..Limits::default() });
        for i in 0..5 {
            log.record(Level::Info, &format!("line {i}"), &[]);
        }
        assert_eq!(log.lines.len(), 2);
        assert_eq!(log.dropped, 3);
        assert_eq!(buffer.recent().len(), 2);
    }

    #[test]
    fn long_lines_are_truncated_and_bytes_capped() {
        let limits = Limits { log_line_bytes: 8, log_bytes: 27, ..Limits::default() };
        let (mut log, _) = call_log(limits);
        log.record(Level::Warn, "ééééééééé", &[]);
        assert_eq!(log.lines[0].message, "éééé…");
        assert_eq!(log.truncated, 1);
        log.record(Level::Info, "0123456789", &[]);
        log.record(Level::Info, "0123456789", &[]);
        assert_eq!(log.dropped, 1, "two cut lines of 11 bytes and the identity's 2 fit in 27, a third not");
    }

    #[test]
    fn the_identity_written_with_each_line_counts_toward_the_byte_cap() {
        let identity =
            CallIdentity { plugin: "p".into(), tenant: Some("t".into()), alarm_id: "a".repeat(998) };
        let limits = Limits { log_bytes: 2_010, ..Limits::default() };
        let mut log = CallLog::new(identity, Arc::new(LogBuffer::new(3)), &limits);
        for _ in 0..3 {
            log.record(Level::Info, "12345", &[]);
        }
        assert_eq!((log.lines.len(), log.dropped), (2, 1), "1,005 bytes a line: two fit in 2,010");
    }

    #[test]
    fn the_ring_buffer_keeps_the_most_recent_lines() {
        let (mut log, buffer) = call_log(Limits::default());
        for i in 0..5 {
            log.record(Level::Info, &i.to_string(), &[]);
        }
        let kept: Vec<String> = buffer.recent().into_iter().map(|l| l.message).collect();
        assert_eq!(kept, ["2", "3", "4"]);
    }
}
