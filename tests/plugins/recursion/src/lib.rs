//! Recurses without bound: the wasm stack limit stops it.

use tocsin_guest_sdk::{Alarm, Delivery, Notifier, NotifyError, export_notifier};

struct Recursion;

#[allow(unconditional_recursion)] // the point of this plugin
fn descend(depth: u64, frame: [u64; 16]) -> u64 {
    let frame = std::hint::black_box(frame);
    frame[(depth % 16) as usize] + descend(depth + 1, frame) + 1
}

impl Notifier for Recursion {
    fn notify(_action: String, _alarm: Alarm, _delivery: Delivery) -> Result<(), NotifyError> {
        let depth = descend(0, [1; 16]);
        Err(NotifyError::permanent(format!("returned from depth {depth}")))
    }
}

export_notifier!(Recursion);
