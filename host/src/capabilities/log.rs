//! The `log` capability: a plugin's lines become `tracing` events tagged
//! with its identity, and land in its bounded ring buffer.
//!
//! Per call, lines, bytes and line length are capped ([`Limits`]): excess
//! lines are dropped and counted, long lines truncated and counted, so a
//! log flood costs the host little and never fails the call. Control
//! characters are escaped so a plugin cannot forge log lines or terminal
//! sequences. A plugin's line is never logged above WARN.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use serde::Serialize;

use crate::sandbox::bindings::tocsin::notifier::log::{Host, Level};
use crate::sandbox::limits::Limits;

/// Who is logging: the fields every plugin line carries.
#[derive(Debug, Clone)]
pub struct CallIdentity {
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
pub struct LogBuffer {
    lines: Mutex<VecDeque<LogLine>>,
    capacity: usize,
}

impl LogBuffer {
    /// A buffer keeping the last `capacity` lines.
    pub fn new(capacity: usize) -> Self {
        LogBuffer { lines: Mutex::new(VecDeque::with_capacity(capacity.min(1024))), capacity }
    }

    /// The kept lines, oldest first.
    pub fn recent(&self) -> Vec<LogLine> {
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
pub struct CallLog {
    identity: CallIdentity,
    buffer: Arc<LogBuffer>,
    max_lines: u32,
    max_bytes: u64,
    max_line_bytes: usize,
    bytes: u64,
    /// Lines kept in this call, in order.
    pub lines: Vec<LogLine>,
    /// Lines dropped because a cap was reached.
    pub dropped: u64,
    /// Lines cut to the maximum length.
    pub truncated: u64,
}

impl CallLog {
    /// Log state for one call of the plugin owning `buffer`.
    pub fn new(identity: CallIdentity, buffer: Arc<LogBuffer>, limits: &Limits) -> Self {
        CallLog {
            identity,
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
    pub fn hit_limit(&self) -> bool {
        self.dropped > 0 || self.truncated > 0
    }

    /// Records one line, within the caps: past the line count or the byte
    /// budget it is dropped, past the line length it is cut.
    pub fn record(&mut self, level: Level, message: &str, fields: &[(String, String)]) {
        if self.lines.len() >= self.max_lines as usize {
            self.dropped += 1;
            return;
        }
        let mut message = escape(message);
        if message.len() > self.max_line_bytes {
            let mut end = self.max_line_bytes;
            while !message.is_char_boundary(end) {
                end -= 1;
            }
            message.truncate(end);
            message.push('…');
            self.truncated += 1;
        }
        let fields: Vec<(String, String)> = fields.iter().map(|(k, v)| (escape(k), escape(v))).collect();
        let size = message.len() + fields.iter().map(|(k, v)| k.len() + v.len()).sum::<usize>();
        if self.bytes + size as u64 > self.max_bytes {
            self.dropped += 1;
            return;
        }
        self.bytes += size as u64;
        let line = LogLine { level: level_name(level), message, fields };
        self.emit(level, &line);
        self.buffer.push(line.clone());
        self.lines.push(line);
    }

    fn emit(&self, level: Level, line: &LogLine) {
        let plugin = &*self.identity.plugin;
        let tenant = self.identity.tenant.as_deref().unwrap_or("");
        let alarm_id = self.identity.alarm_id.as_str();
        let fields = line.fields.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(" ");
        let message = line.message.as_str();
        macro_rules! event {
            ($level:expr) => {
                tracing::event!(target: "tocsin::plugin", $level, plugin, tenant, alarm_id,
                    plugin_level = line.level, fields = fields.as_str(), "{message}")
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

/// Escapes control characters (`\n`, `\u{1b}`…) so one plugin line stays
/// one log line and cannot carry terminal sequences.
pub fn escape(text: &str) -> String {
    if !text.chars().any(char::is_control) {
        return text.to_owned();
    }
    text.chars()
        .flat_map(|c| {
            let escaped: Vec<char> = if c.is_control() { c.escape_default().collect() } else { vec![c] };
            escaped
        })
        .collect()
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
    fn control_characters_are_escaped() {
        assert_eq!(escape("a\nb\u{1b}[31m"), "a\\nb\\u{1b}[31m");
        assert_eq!(escape("plain é"), "plain é");
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
        let limits = Limits { log_line_bytes: 8, log_bytes: 25, ..Limits::default() };
        let (mut log, _) = call_log(limits);
        log.record(Level::Warn, "ééééééééé", &[]);
        assert_eq!(log.lines[0].message, "éééé…");
        assert_eq!(log.truncated, 1);
        log.record(Level::Info, "0123456789", &[]);
        log.record(Level::Info, "0123456789", &[]);
        assert_eq!(log.dropped, 1, "11 + 10 bytes fit in 25, a third line would not");
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
