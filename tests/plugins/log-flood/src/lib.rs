//! Writes 100,000 log lines of 10 KiB each, then succeeds: the log limits
//! drop and count the excess; the call itself completes.

use tocsin_guest_sdk::{Alarm, Delivery, Notifier, NotifyError, export_notifier, log};

struct LogFlood;

impl Notifier for LogFlood {
    fn notify(_action: String, _alarm: Alarm, _delivery: Delivery) -> Result<(), NotifyError> {
        let line = "x".repeat(10 * 1024);
        for i in 0..100_000 {
            log::info(format!("{i} {line}\u{1b}[31m"));
        }
        Ok(())
    }
}

export_notifier!(LogFlood);
