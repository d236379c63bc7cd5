//! What one delivery is about: the [`Alarm`] (as Aodh's notifier receives
//! it) and the [`Delivery`] (which attempt of which action).

use serde::{Deserialize, Deserializer, Serialize};
use uuid::Uuid;

/// Namespace of request ids: `req-<uuid v5 of the delivery id in this
/// namespace>`. Fixed forever, so a request id never changes for a
/// delivery across versions, retries and redeliveries.
const REQUEST_ID_NAMESPACE: Uuid = Uuid::from_u128(0x6f1c_2a4e_9b3d_5c7a_8e10_f2d4_b6a8_c0e2);

/// The sample alarm (`examples/alarm.json`): what `tocsin notify`,
/// `tocsin publish` and a dry run send when given no alarm.
pub const SAMPLE_ALARM: &str = include_str!("../../examples/alarm.json");

/// An alarm state change, with the fields Aodh's notifier receives (the
/// `data` of an RPC cast, the `payload` of a notification). Unknown keys
/// (`actions`, `condition`…) are ignored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Alarm {
    /// The alarm's UUID.
    pub alarm_id: String,
    /// Absent before Kilo.
    #[serde(default)]
    pub alarm_name: Option<String>,
    /// Absent before Kilo.
    #[serde(default)]
    pub severity: Option<String>,
    /// State before the change.
    pub previous: String,
    /// State after the change.
    pub current: String,
    /// Always text: very old senders send a number, converted here.
    #[serde(deserialize_with = "text_or_number")]
    pub reason: String,
    /// Any JSON; absent in Havana.
    #[serde(default)]
    pub reason_data: Option<serde_json::Value>,
}

impl Alarm {
    /// `reason_data` as the WIT contract hands it to plugins: JSON text as
    /// Python's `json.dumps` writes it, so the REST notifier embeds it in
    /// Aodh's body as it is.
    pub fn reason_data_text(&self) -> Option<String> {
        let data = self.reason_data.as_ref()?;
        String::from_utf8(tocsin_guest_sdk::json::to_python_json(data)).ok()
    }

    /// The alarm as the guest SDK types it, to run a notifier's own code
    /// natively (the benchmarks' baseline).
    pub fn to_sdk(&self) -> tocsin_guest_sdk::Alarm {
        tocsin_guest_sdk::Alarm {
            alarm_id: self.alarm_id.clone(),
            alarm_name: self.alarm_name.clone(),
            severity: self.severity.clone(),
            previous: self.previous.clone(),
            current: self.current.clone(),
            reason: self.reason.clone(),
            reason_data: self.reason_data_text(),
        }
    }
}

fn text_or_number<'de, D: Deserializer<'de>>(deserializer: D) -> Result<String, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum TextOrNumber {
        Text(String),
        Number(serde_json::Number),
    }
    Ok(match TextOrNumber::deserialize(deserializer)? {
        TextOrNumber::Text(text) => text,
        TextOrNumber::Number(number) => number.to_string(),
    })
}

/// One attempt to deliver one action of one alarm.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Delivery {
    /// Stable across retries and redeliveries: receivers de-duplicate on it.
    pub id: String,
    /// 1 for the first attempt.
    pub attempt: u32,
    /// The tenant owning the plugin; none for the platform's.
    pub tenant: Option<String>,
}

impl Delivery {
    /// A first attempt with a fresh random id (a one-off run, e.g.
    /// `tocsin notify`).
    pub fn one_off() -> Self {
        Delivery { id: Uuid::new_v4().to_string(), attempt: 1, tenant: None }
    }

    /// `req-<uuid v5 of the id>`: the `x-openstack-request-id`, the same
    /// for every attempt of this delivery.
    pub fn request_id(&self) -> String {
        format!("req-{}", Uuid::new_v5(&REQUEST_ID_NAMESPACE, self.id.as_bytes()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_id_is_derived_from_the_delivery_id_alone() {
        let first = Delivery { id: "msg-1/0".into(), attempt: 1, tenant: None };
        let retry = Delivery { attempt: 4, ..first.clone() };
        assert_eq!(first.request_id(), retry.request_id());
        assert_ne!(first.request_id(), Delivery { id: "msg-1/1".into(), ..first.clone() }.request_id());
        let id = first.request_id();
        assert!(id.starts_with("req-"));
        assert_eq!(Uuid::parse_str(&id[4..]).unwrap().get_version_num(), 5);
    }

    #[test]
    fn old_senders_numeric_reason_becomes_text_and_absent_fields_none() {
        let alarm: Alarm = serde_json::from_str(
            r#"{"alarm_id":"a","previous":"ok","current":"alarm","reason":97.5,"actions":["log://"]}"#,
        )
        .unwrap();
        assert_eq!(alarm.reason, "97.5");
        assert_eq!(alarm.alarm_name, None);
        assert_eq!(alarm.reason_data, None);
    }
}
