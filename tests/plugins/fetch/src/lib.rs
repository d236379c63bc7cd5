//! Fetches the URL in the action's `target` query parameter and logs what
//! it got (`fetch: status=… bytes=…` or `fetch: error=…`). Used to probe
//! the egress policy: denied hosts, metadata and loopback addresses,
//! redirects, an endpoint that never answers, a huge response body.
//! Options: `insecure=1` asks to skip TLS verification, `auth=1` sends an
//! `authorization` header, `header=NAME` sets header NAME (to `value=…`,
//! or `x`).

use tocsin_guest_sdk::http::Request;
use tocsin_guest_sdk::{Alarm, Delivery, Notifier, NotifyError, action, export_notifier, log};

struct Fetch;

impl Notifier for Fetch {
    fn notify(action: String, _alarm: Alarm, _delivery: Delivery) -> Result<(), NotifyError> {
        let split = action::split(&action).map_err(|e| NotifyError::permanent(e.to_string()))?;
        let target =
            split.query_value("target").ok_or_else(|| NotifyError::permanent("no target= in the action"))?;
        let mut request = Request::get(target);
        if split.query_value("insecure").is_some() {
            request = request.verify_tls(false);
        }
        if split.query_value("auth").is_some() {
            request = request.header("authorization", "Bearer s3cret");
        }
        if let Some(name) = split.query_value("header") {
            request = request.header(name, split.query_value("value").unwrap_or_else(|| "x".into()));
        }
        match request.send() {
            Ok(response) => {
                log::info(format!("fetch: status={} bytes={}", response.status, response.body.len()));
                Ok(())
            }
            Err(error) => {
                log::warn(format!("fetch: error={error:?}"));
                Err(error.into())
            }
        }
    }
}

export_notifier!(Fetch);
