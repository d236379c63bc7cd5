//! Reads environment variables, arguments and the working directory, and
//! logs what it saw: the host gives it an empty environment.

use tocsin_guest_sdk::{Alarm, Delivery, Notifier, NotifyError, export_notifier, log};

struct Env;

impl Notifier for Env {
    fn notify(_action: String, _alarm: Alarm, _delivery: Delivery) -> Result<(), NotifyError> {
        let vars: Vec<String> = std::env::vars().map(|(k, _)| k).collect();
        let args: Vec<String> = std::env::args().collect();
        log::info(format!(
            "env: vars={} args={} home={:?} names={vars:?}",
            vars.len(),
            args.len(),
            std::env::var("HOME").ok()
        ));
        Ok(())
    }
}

export_notifier!(Env);
