//! Writes 100,000 log lines of 1 KiB each, then succeeds: the log limits
//! drop and count the excess; the call itself completes.

use tocsin_guest_sdk::{Alarm, Delivery, Notifier, NotifyError, export_notifier, log};

struct LogFlood;

impl Notifier for LogFlood {
    fn notify(_action: String, _alarm: Alarm, _delivery: Delivery) -> Result<(), NotifyError> {
        let line = format!("\u{1b}[31m{}", "x".repeat(1024));
        for _ in 0..100_000 {
            log::info(&line);
        }
        Ok(())
    }
}

export_notifier!(LogFlood);
