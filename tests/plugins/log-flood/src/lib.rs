//! Writes 100,000 log lines of 1 KiB each (or of `kib=N` KiB, from the
//! action's query), then succeeds: the log limits drop and count the
//! excess; the call itself completes. With huge lines each call is cheap
//! for the guest and costly for the host, which the deadline must bound.

use tocsin_guest_sdk::{Alarm, Delivery, Notifier, NotifyError, action, export_notifier, log};

struct LogFlood;

impl Notifier for LogFlood {
    fn notify(action: String, _alarm: Alarm, _delivery: Delivery) -> Result<(), NotifyError> {
        let kib = action::split(&action)
            .ok()
            .and_then(|split| split.query_value("kib"))
            .and_then(|kib| kib.parse::<usize>().ok())
            .unwrap_or(1);
        let line = format!("\u{1b}[31m{}", "x".repeat(kib * 1024));
        for _ in 0..100_000 {
            log::info(&line);
        }
        Ok(())
    }
}

export_notifier!(LogFlood);
