//! The JSON body of Aodh's REST notifier, formatted as Python's
//! `json.dumps` formats it (see [`tocsin_guest_sdk::json`]).

use tocsin_guest_sdk::Alarm;
use tocsin_guest_sdk::json::write_python_str;

/// The body: `alarm_name, alarm_id, severity, previous, current, reason,
/// reason_data` in that order (not `actions`), absent fields as `null`.
/// Written field by field: the host hands `reason_data` over already in
/// Python's `json.dumps` form (see the WIT `alarm` record), so it goes in as
/// it is, with no parse and no re-serialization inside the sandbox.
pub fn aodh_body(alarm: &Alarm) -> Vec<u8> {
    let texts = [
        ("alarm_name", alarm.alarm_name.as_deref()),
        ("alarm_id", Some(alarm.alarm_id.as_str())),
        ("severity", alarm.severity.as_deref()),
        ("previous", Some(alarm.previous.as_str())),
        ("current", Some(alarm.current.as_str())),
        ("reason", Some(alarm.reason.as_str())),
    ];
    let reason_data = alarm.reason_data.as_deref();
    let mut body = Vec::with_capacity(200 + alarm.reason.len() + reason_data.map_or(0, str::len));
    body.push(b'{');
    for (key, value) in texts {
        write_python_str(&mut body, key);
        body.extend_from_slice(b": ");
        match value {
            Some(value) => write_python_str(&mut body, value),
            None => body.extend_from_slice(b"null"),
        }
        body.extend_from_slice(b", ");
    }
    body.extend_from_slice(b"\"reason_data\": ");
    body.extend_from_slice(reason_data.unwrap_or("null").as_bytes());
    body.push(b'}');
    body
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The body of `tests/fixtures/openstack/http-post-200.raw`.
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
                r#"{"type": "threshold", "disposition": "outside", "count": 3, "most_recent": 97.0}"#.into(),
            ),
        };
        assert_eq!(String::from_utf8(aodh_body(&alarm)).unwrap(), AODH_BODY);
    }
}
