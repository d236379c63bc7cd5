//! Bypasses the `http` capability and calls `wasi:http` directly: the
//! host must refuse to load it, naming the import.

use tocsin_guest_sdk::{Alarm, Delivery, Notifier, NotifyError, export_notifier};

struct WasiHttp;

impl Notifier for WasiHttp {
    fn notify(_action: String, _alarm: Alarm, _delivery: Delivery) -> Result<(), NotifyError> {
        let headers = wasip2::http::types::Fields::new();
        let request = wasip2::http::types::OutgoingRequest::new(headers);
        wasip2::http::outgoing_handler::handle(request, None)
            .map(drop)
            .map_err(|error| NotifyError::permanent(format!("{error:?}")))
    }
}

export_notifier!(WasiHttp);
