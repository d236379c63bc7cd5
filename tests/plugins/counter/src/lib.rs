//! Counts its calls in a `static` and logs the count: in a fresh instance
//! per call it must log 1 every time.

use std::sync::atomic::{AtomicU32, Ordering};

use tocsin_guest_sdk::{Alarm, Delivery, Notifier, NotifyError, export_notifier, log};

static CALLS: AtomicU32 = AtomicU32::new(0);

struct Counter;

impl Notifier for Counter {
    fn notify(_action: String, _alarm: Alarm, _delivery: Delivery) -> Result<(), NotifyError> {
        let calls = CALLS.fetch_add(1, Ordering::SeqCst) + 1;
        log::info(format!("calls={calls}"));
        Ok(())
    }
}

export_notifier!(Counter);
