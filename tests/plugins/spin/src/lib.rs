//! Loops forever without calling the host: the CPU (fuel) limit stops it.

use tocsin_guest_sdk::{Alarm, Delivery, Notifier, NotifyError, export_notifier};

struct Spin;

impl Notifier for Spin {
    fn notify(_action: String, _alarm: Alarm, _delivery: Delivery) -> Result<(), NotifyError> {
        let mut counter: u64 = 0;
        loop {
            counter = std::hint::black_box(counter.wrapping_add(1));
        }
    }
}

export_notifier!(Spin);
