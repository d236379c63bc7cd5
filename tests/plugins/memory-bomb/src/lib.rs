//! Allocates 1 MiB blocks until memory runs out: the memory limit stops it.

use tocsin_guest_sdk::{Alarm, Delivery, Notifier, NotifyError, export_notifier};

struct MemoryBomb;

impl Notifier for MemoryBomb {
    fn notify(_action: String, _alarm: Alarm, _delivery: Delivery) -> Result<(), NotifyError> {
        let mut blocks = Vec::new();
        loop {
            blocks.push(std::hint::black_box(vec![7u8; 1 << 20]));
        }
    }
}

export_notifier!(MemoryBomb);
