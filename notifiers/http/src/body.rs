//! The JSON body of Aodh's REST notifier, formatted as Python's
//! `json.dumps` formats it (see [`tocsin_guest_sdk::json`]).

use serde_json::Value;
use tocsin_guest_sdk::Alarm;
use tocsin_guest_sdk::json::to_python_json;

/// The body: `alarm_name, alarm_id, severity, previous, current, reason,
/// reason_data` in that order (not `actions`), absent fields as `null`.
pub fn aodh_body(alarm: &Alarm) -> Vec<u8> {
    let reason_data = alarm
        .reason_data
        .as_deref()
        .map(|text| serde_json::from_str::<Value>(text).unwrap_or_else(|_| Value::String(text.to_owned())));
    let mut body = serde_json::Map::new();
    body.insert("alarm_name".into(), alarm.alarm_name.clone().into());
    body.insert("alarm_id".into(), alarm.alarm_id.clone().into());
    body.insert("severity".into(), alarm.severity.clone().into());
    body.insert("previous".into(), alarm.previous.clone().into());
    body.insert("current".into(), alarm.current.clone().into());
    body.insert("reason".into(), alarm.reason.clone().into());
    body.insert("reason_data".into(), reason_data.unwrap_or(Value::Null));
    to_python_json(&Value::Object(body))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The body of `../shared/fixtures/openstack/http-post-200.raw`.
    const AODH_BODY: &str = r#"{"alarm_name": "cpu_high", "alarm_id": "0e3cd4a5-7d6a-4f4c-9b5b-6c1f2d3e4f50", "severity": "critical", "previous": "ok", "current": "alarm", "reason": "Transition to alarm due to 3 samples outside threshold, most recent: 97.0", "reason_data": {"type": "threshold", "disposition": "outside", "count": 3, "most_recent": 97.0}}"#;

    #[test]
    fn body_is_byte_for_byte_aodhs() {
        let alarm = Alarm {
            alarm_id: "0e3cd4a5-7d6a-4f4c-9b5b-6c1f2d3e4f50".into(),
            alarm_name: Some("cpu_high".into()),
            severity: Some("critical".into()),
            previous: "ok".into(),
            current: "alarm".into(),
            reason: "Transition to alarm due to 3 samples outside threshold, most recent: 97.0".into(),
            reason_data: Some(
                r#"{"type":"threshold","disposition":"outside","count":3,"most_recent":97.0}"#.into(),
            ),
        };
        assert_eq!(String::from_utf8(aodh_body(&alarm)).unwrap(), AODH_BODY);
    }
}
