//! Logging through the host's `log` capability.
//!
//! Lines become `tracing` events tagged with the plugin, tenant and alarm,
//! and land in the plugin's log buffer that its owner can read. The host
//! caps lines, bytes and line length per call: excess is dropped and
//! counted, so logging never fails.

use crate::action;
pub use crate::bindings::tocsin::notifier::log::Level;
use crate::bindings::tocsin::notifier::log::log as host_log;

/// `url` as a log line shows an action URL: scheme, host and port, the
/// rest as `/***` ([`action::display`]), since a webhook's path is often
/// its token. The built-in notifiers show it whole, as Aodh does, with
/// credentials and secret-named parameters hidden
/// ([`action::display_whole`]), when the operator sets
/// `notifiers.whole_action_urls`.
pub fn shown_action(url: &str) -> String {
    if std::env::var_os(action::WHOLE_URLS_ENV).is_some_and(|value| value == "1") {
        action::display_whole(url)
    } else {
        action::display(url)
    }
}

/// Writes one line at `level` with `key=value` fields.
pub fn log_with(level: Level, message: impl AsRef<str>, fields: &[(&str, &str)]) {
    let fields: Vec<(String, String)> =
        fields.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
    host_log(level, message.as_ref(), &fields);
}

/// Writes one `trace` line.
pub fn trace(message: impl AsRef<str>) {
    log_with(Level::Trace, message, &[]);
}

/// Writes one `debug` line.
pub fn debug(message: impl AsRef<str>) {
    log_with(Level::Debug, message, &[]);
}

/// Writes one `info` line.
pub fn info(message: impl AsRef<str>) {
    log_with(Level::Info, message, &[]);
}

/// Writes one `warn` line.
pub fn warn(message: impl AsRef<str>) {
    log_with(Level::Warn, message, &[]);
}

/// Writes one `error` line.
pub fn error(message: impl AsRef<str>) {
    log_with(Level::Error, message, &[]);
}
