//! Writes 100,000 log lines of 1 KiB each (or `lines=N` lines of `kib=N`
//! KiB, from the action's query), then succeeds: the log limits drop and
//! count the excess. With huge lines each call is cheap for the guest and
//! costly for the host: the host's work, charged to the call's fuel, stops
//! it.

use tocsin_guest_sdk::{Alarm, Delivery, Notifier, NotifyError, action, export_notifier, log};

struct LogFlood;

impl Notifier for LogFlood {
    fn notify(action: String, _alarm: Alarm, _delivery: Delivery) -> Result<(), NotifyError> {
        let query = |name: &str| {
            action::split(&action).ok().and_then(|split| split.query_value(name)).and_then(|n| n.parse().ok())
        };
        let kib: usize = query("kib").unwrap_or(1);
        let lines: usize = query("lines").unwrap_or(100_000);
        // Built in place, by doubling copies: a 24 MiB line fits a 32 MiB
        // memory limit once, and costs about 25 M fuel.
        const RED: &str = "\u{1b}[31m";
        let length = RED.len() + kib * 1024;
        let mut line = String::with_capacity(length);
        line.push_str(RED);
        line.push('x');
        while line.len() < length {
            let more = (line.len() - RED.len()).min(length - line.len());
            line.extend_from_within(RED.len()..RED.len() + more);
        }
        for _ in 0..lines {
            log::info(&line);
        }
        Ok(())
    }
}

export_notifier!(LogFlood);
