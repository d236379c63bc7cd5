//! Panics: the call ends in a trap, and the panic message reaches the log.

use tocsin_guest_sdk::{Alarm, Delivery, Notifier, NotifyError, export_notifier};

struct Panic;

impl Notifier for Panic {
    fn notify(_action: String, alarm: Alarm, _delivery: Delivery) -> Result<(), NotifyError> {
        panic!("plugin gave up on alarm {}", alarm.alarm_id);
    }
}

export_notifier!(Panic);
