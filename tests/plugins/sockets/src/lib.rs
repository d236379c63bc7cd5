//! Opens a TCP connection with `std::net`, which imports `wasi:sockets`:
//! the host must refuse to load it, naming the import.

use tocsin_guest_sdk::{Alarm, Delivery, Notifier, NotifyError, export_notifier};

struct Sockets;

impl Notifier for Sockets {
    fn notify(_action: String, _alarm: Alarm, _delivery: Delivery) -> Result<(), NotifyError> {
        std::net::TcpStream::connect("127.0.0.1:22")
            .map(drop)
            .map_err(|e| NotifyError::permanent(e.to_string()))
    }
}

export_notifier!(Sockets);
