//! Polls one always-ready pollable listed `n` times (from the action's
//! query; default 150,000, about what 2 MiB of host-call data allows at 12
//! bytes a handle), `rounds` times (default 1,000): cheap for the guest,
//! while the host looks up and answers every entry inside one host call.

use tocsin_guest_sdk::{Alarm, Delivery, Notifier, NotifyError, action, export_notifier, log};
use wasip2::io::poll::Pollable;

struct PollFlood;

impl Notifier for PollFlood {
    fn notify(action: String, _alarm: Alarm, _delivery: Delivery) -> Result<(), NotifyError> {
        let query = |name: &str| {
            action::split(&action).ok().and_then(|split| split.query_value(name)).and_then(|n| n.parse().ok())
        };
        let n: usize = query("n").unwrap_or(150_000);
        let rounds: usize = query("rounds").unwrap_or(1_000);
        let ready = wasip2::clocks::monotonic_clock::subscribe_duration(0);
        let listed: Vec<&Pollable> = vec![&ready; n];
        let answered: usize = (0..rounds).map(|_| wasip2::io::poll::poll(&listed).len()).sum();
        log::info(format!("answered={answered}"));
        Ok(())
    }
}

export_notifier!(PollFlood);
