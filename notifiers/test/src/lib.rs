//! The built-in `test` notifier: Aodh's `test://` action.
//!
//! Records each notification as one `info` line whose message is a JSON
//! object of what it received, so tests and operators can read it back from
//! the plugin's log buffer.

use tocsin_guest_sdk::log::{self, Level};
use tocsin_guest_sdk::{Alarm, Delivery, Notifier, NotifyError, action, export_notifier};

/// The `test` notifier.
#[derive(Debug)]
pub struct TestNotifier;

impl Notifier for TestNotifier {
    fn notify(action: String, alarm: Alarm, delivery: Delivery) -> Result<(), NotifyError> {
        log::log_with(Level::Info, record(&action, &alarm, &delivery), &[("recorded", "true")]);
        Ok(())
    }
}

export_notifier!(TestNotifier);

/// The recorded notification: Aodh's test notifier keeps the same fields.
/// The action is recorded as log lines show it, credentials redacted.
pub fn record(action: &str, alarm: &Alarm, delivery: &Delivery) -> String {
    let reason_data = alarm
        .reason_data
        .as_deref()
        .map(|text| serde_json::from_str(text).unwrap_or(serde_json::Value::String(text.to_owned())));
    serde_json::json!({
        "action": action::display(action),
        "alarm_id": alarm.alarm_id,
        "alarm_name": alarm.alarm_name,
        "severity": alarm.severity,
        "previous": alarm.previous,
        "current": alarm.current,
        "reason": alarm.reason,
        "reason_data": reason_data,
        "delivery_id": delivery.id,
        "request_id": delivery.request_id,
        "attempt": delivery.attempt,
    })
    .to_string()
}
