//! Tries to read host files and list the root directory, and logs what it
//! saw: with no preopened directory there is nothing to see.

use tocsin_guest_sdk::{Alarm, Delivery, Notifier, NotifyError, export_notifier, log};

struct ReadFile;

impl Notifier for ReadFile {
    fn notify(_action: String, _alarm: Alarm, _delivery: Delivery) -> Result<(), NotifyError> {
        for path in ["/etc/passwd", "/proc/self/environ", "secret.txt"] {
            match std::fs::read(path) {
                Ok(bytes) => log::error(format!("read-file: {path} read {} bytes", bytes.len())),
                Err(error) => log::info(format!("read-file: {path} error={:?}", error.kind())),
            }
        }
        match std::fs::read_dir("/") {
            Ok(entries) => log::error(format!("read-file: / has {} entries", entries.count())),
            Err(error) => log::info(format!("read-file: / error={:?}", error.kind())),
        }
        Ok(())
    }
}

export_notifier!(ReadFile);
