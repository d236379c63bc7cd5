//! The built-in `test` notifier: Aodh's `test://` action.
//!
//! Records each notification as one `info` line whose message is a JSON
//! object of what it received, so tests and operators can read it back from
//! the plugin's log buffer.

use tocsin_guest_sdk::log::{self, Level};
use tocsin_guest_sdk::{Alarm, Delivery, Notifier, NotifyError, export_notifier};

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
/// The action is recorded as log lines show it ([`log::shown_action`]);
/// `reason_data` as a tree, its `NaN` and infinities as `null`.
pub fn record(action: &str, alarm: &Alarm, delivery: &Delivery) -> String {
    // The host hands over what Python's `json` reads; anything else (never
    // sent) is recorded as the text it was.
    let reason_data = alarm.reason_data_value().map(|value| {
        value.unwrap_or_else(|_| serde_json::Value::String(alarm.reason_data.clone().unwrap_or_default()))
    });
    serde_json::json!({
        "action": log::shown_action(action),
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
