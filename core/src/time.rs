//! Time as the host writes it in records, headers and log fields: whole
//! milliseconds (or microseconds) since the Unix epoch, and durations in
//! milliseconds.

use std::time::Duration;

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> i64 {
    jiff::Timestamp::now().as_millisecond()
}

/// Microseconds since the Unix epoch, now.
pub fn now_us() -> i64 {
    jiff::Timestamp::now().as_microsecond()
}

/// `duration` in whole milliseconds, saturating: for log fields and JSON.
pub fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}
