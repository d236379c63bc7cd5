//! What one delivery is about: the [`Alarm`] (as Aodh's notifier receives
//! it) and the [`Delivery`] (which attempt of which action).

use std::collections::HashMap;

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::value::RawValue;
use tocsin_contract::json::{
    PythonJson, PythonJsonError, normalize, opens_object, write_python_object, write_python_str,
};
use uuid::Uuid;

/// Namespace of request ids: `req-<uuid v5 of the delivery id in this
/// namespace>`. Fixed forever, so a request id never changes for a
/// delivery across versions, retries and redeliveries.
const REQUEST_ID_NAMESPACE: Uuid = Uuid::from_u128(0x6f1c_2a4e_9b3d_5c7a_8e10_f2d4_b6a8_c0e2);

/// The sample alarm (`examples/alarm.json`): what `tocsin notify`,
/// `tocsin publish` and a dry run send when given no alarm.
pub const SAMPLE_ALARM: &str = include_str!("../../examples/alarm.json");

/// An alarm state change, with the fields Aodh's notifier receives (the
/// `data` of an RPC cast, the `payload` of a notification). Its serde form
/// is the delivery record's, `reason_data` as a string; senders' JSON is
/// read by [`Alarm::from_json`] and the decoder.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
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
    pub reason: String,
    /// Absent (or null) in Havana.
    #[serde(default)]
    pub reason_data: Option<ReasonData>,
}

/// Why a sender's alarm JSON cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AlarmError {
    /// Not what Python's `json` reads.
    #[error("not JSON: {0}")]
    Json(#[from] PythonJsonError),
    /// A field missing or of the wrong type.
    #[error("{0}")]
    Fields(String),
}

/// A field that names an alarm or a delivery, longer than allowed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field} has {size} bytes, more than the {limit} allowed (intake.max_field_bytes)")]
pub struct FieldTooLong {
    /// The field's name (`alarm_id`, `action`, …).
    pub field: &'static str,
    /// Its length in bytes.
    pub size: usize,
    /// The limit.
    pub limit: usize,
}

/// Checks that `value`, the field `field`, has at most `limit` bytes.
///
/// # Errors
/// [`FieldTooLong`] naming the field.
pub fn check_field_size(field: &'static str, value: &str, limit: usize) -> Result<(), FieldTooLong> {
    if value.len() > limit { Err(FieldTooLong { field, size: value.len(), limit }) } else { Ok(()) }
}

impl Alarm {
    /// Checks that the fields that name the alarm (its id, name, severity
    /// and states) have at most `limit` bytes each: its id is in every log
    /// line of its deliveries, and all of them reach the plugins.
    ///
    /// # Errors
    /// [`FieldTooLong`] naming the first field past it.
    pub fn check_field_sizes(&self, limit: usize) -> Result<(), FieldTooLong> {
        check_field_size("alarm_id", &self.alarm_id, limit)?;
        check_field_size("alarm_name", self.alarm_name.as_deref().unwrap_or_default(), limit)?;
        check_field_size("severity", self.severity.as_deref().unwrap_or_default(), limit)?;
        check_field_size("previous", &self.previous, limit)?;
        check_field_size("current", &self.current, limit)
    }

    /// Reads an alarm as senders write it (Aodh's fields; others, such as
    /// `actions`, ignored), from a file, the command line or the API:
    /// `reason_data` is rewritten as Python's `json.dumps` would write it
    /// (`1E5` is `100000.0`), so that what reaches a receiver is what Aodh
    /// would send for the same alarm.
    ///
    /// # Errors
    /// [`AlarmError`] naming what is wrong.
    pub fn from_json(text: &str) -> Result<Alarm, AlarmError> {
        let json = PythonJson::scan(text)?;
        // serde reads a struct from a list too; an alarm is an object.
        if !opens_object(json.readable()) {
            return Err(AlarmError::Fields("an alarm is a JSON object".into()));
        }
        let fields: AlarmFields<'_> =
            serde_json::from_str(json.readable()).map_err(|e| AlarmError::Fields(e.to_string()))?;
        fields.into_alarm(|raw| {
            let text = json.original_of(raw.get()).unwrap_or_default();
            Ok(ReasonData(normalize(text)?.into()))
        })
    }

    /// The sample alarm ([`SAMPLE_ALARM`]).
    pub fn sample() -> Alarm {
        // The sample is checked by a unit test; a failure would be a bug.
        Alarm::from_json(SAMPLE_ALARM).unwrap_or_else(|error| unreachable!("examples/alarm.json: {error}"))
    }

    /// The alarm as senders write it (the form [`Alarm::from_json`] reads),
    /// in `json.dumps` form, `reason_data` as it is.
    pub fn to_json(&self) -> String {
        String::from_utf8(self.to_json_after(Vec::new())).unwrap_or_default()
    }

    /// The alarm as its sender writes it, after `before`'s fields (JSON
    /// already). Absent optional fields are left out, as Aodh before Kilo
    /// did.
    pub fn to_json_after<'a>(&'a self, mut fields: Vec<(&'a str, Vec<u8>)>) -> Vec<u8> {
        let texts = [
            ("alarm_id", Some(self.alarm_id.as_str())),
            ("alarm_name", self.alarm_name.as_deref()),
            ("severity", self.severity.as_deref()),
            ("previous", Some(self.previous.as_str())),
            ("current", Some(self.current.as_str())),
            ("reason", Some(self.reason.as_str())),
        ];
        for (name, text) in texts {
            if let Some(text) = text {
                let mut value = Vec::with_capacity(text.len() + 2);
                write_python_str(&mut value, text);
                fields.push((name, value));
            }
        }
        if let Some(reason_data) = &self.reason_data {
            fields.push(("reason_data", reason_data.as_str().as_bytes().to_vec()));
        }
        let mut out = Vec::with_capacity(256);
        write_python_object(&mut out, fields.iter().map(|(name, value)| (*name, value.as_slice())));
        out
    }

    /// Whether this is an event alarm's (`reason_data.type` is `event`):
    /// each of its messages is another occurrence, never a newer state of
    /// an earlier one.
    pub fn is_event(&self) -> bool {
        self.reason_data.as_ref().is_some_and(ReasonData::is_event)
    }
}

/// An alarm's `reason_data`: JSON text as Python's `json` writes it, kept
/// from end to end as text. From oslo.messaging it is the sender's
/// `json.dumps` output, byte for byte (`NaN`, integers beyond 64 bits, lone
/// surrogate escapes included); what the plugins and the REST body receive.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ReasonData(Box<str>);

impl ReasonData {
    /// Text a sender wrote with `json.dumps`, kept byte for byte: only for
    /// text the caller has already read as Python's `json` (the message
    /// decoder, which reads the whole message once).
    pub fn verbatim(text: &str) -> Self {
        ReasonData(text.into())
    }

    /// The JSON text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether it is an object whose `type` is `event` (the last `type`,
    /// as Python reads a repeated key).
    fn is_event(&self) -> bool {
        let Ok(json) = PythonJson::scan(&self.0) else { return false };
        let Ok(fields) = serde_json::from_str::<HashMap<String, &RawValue>>(json.readable()) else {
            return false;
        };
        fields
            .get("type")
            .is_some_and(|kind| serde_json::from_str::<String>(kind.get()).is_ok_and(|k| k == "event"))
    }
}

/// A record's text: kept as it is once Python's `json` would read it.
impl TryFrom<String> for ReasonData {
    type Error = String;

    fn try_from(text: String) -> Result<Self, String> {
        let json = PythonJson::scan(&text).map_err(|e| e.to_string())?;
        serde_json::from_str::<serde::de::IgnoredAny>(json.readable()).map_err(|e| e.to_string())?;
        Ok(ReasonData(text.into()))
    }
}

impl From<ReasonData> for String {
    fn from(data: ReasonData) -> String {
        data.0.into()
    }
}

/// The alarm fields as a sender writes them, `reason_data` borrowed raw:
/// what the message decoder reads before it checks `reason_data`.
#[derive(Debug, Deserialize)]
pub struct AlarmFields<'a> {
    alarm_id: String,
    #[serde(default)]
    alarm_name: Option<String>,
    #[serde(default)]
    severity: Option<String>,
    previous: String,
    current: String,
    #[serde(deserialize_with = "text_or_number")]
    reason: String,
    #[serde(default, borrow)]
    reason_data: Option<&'a RawValue>,
}

impl<'a> AlarmFields<'a> {
    /// The alarm, with `reason_data` as `reason_data` makes it of the raw
    /// value (null is none).
    pub fn into_alarm<E>(
        self,
        reason_data: impl FnOnce(&'a RawValue) -> Result<ReasonData, E>,
    ) -> Result<Alarm, E> {
        Ok(Alarm {
            alarm_id: self.alarm_id,
            alarm_name: self.alarm_name,
            severity: self.severity,
            previous: self.previous,
            current: self.current,
            reason: self.reason,
            reason_data: self.reason_data.map(reason_data).transpose()?,
        })
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
        let alarm = Alarm::from_json(
            r#"{"alarm_id":"a","previous":"ok","current":"alarm","reason":97.5,"actions":["log://"]}"#,
        )
        .unwrap();
        assert_eq!(alarm.reason, "97.5");
        assert_eq!(alarm.alarm_name, None);
        assert_eq!(alarm.reason_data, None);
        let null = Alarm::from_json(
            r#"{"alarm_id":"a","previous":"ok","current":"alarm","reason":"r","reason_data":null}"#,
        );
        assert_eq!(null.unwrap().reason_data, None);
    }

    #[test]
    fn a_senders_reason_data_is_written_as_json_dumps_writes_it_and_kept() {
        let text = r#"{"alarm_id": "a", "previous": "ok", "current": "alarm", "reason": "r",
            "reason_data": {"type":"event", "v": [1E5, -0, 1.10, NaN, 18446744073709551616, "\ud800"]}}"#;
        let alarm = Alarm::from_json(text).unwrap();
        let data = r#"{"type": "event", "v": [100000.0, 0, 1.1, NaN, 18446744073709551616, "\ud800"]}"#;
        assert_eq!(alarm.reason_data.as_ref().unwrap().as_str(), data);
        assert!(alarm.is_event());
        assert!(!Alarm::sample().is_event());
        let event = |data: &str| ReasonData::try_from(data.to_owned()).unwrap().is_event();
        assert!(event(r#"{"type": "threshold", "type": "event"}"#), "the last type, as Python reads it");
        assert!(!event(r#"["event"]"#) && !event(r#"{"type": ["event"]}"#) && !event("NaN"));
        assert!(matches!(
            Alarm::from_json(r#"["a", null, null, "ok", "alarm", "r"]"#),
            Err(AlarmError::Fields(_))
        ));
        // Read back from its own JSON and from a record, unchanged.
        assert_eq!(Alarm::from_json(&alarm.to_json()).unwrap(), alarm);
        let record: Alarm = serde_json::from_str(&serde_json::to_string(&alarm).unwrap()).unwrap();
        assert_eq!(record, alarm);
        let forged = serde_json::json!({"alarm_id": "a", "previous": "ok", "current": "alarm", "reason": "r",
            "reason_data": "{not json"});
        assert!(serde_json::from_value::<Alarm>(forged).is_err(), "a record's reason_data must be JSON");
        assert!(matches!(Alarm::from_json(r#"{"alarm_id": "a"}"#), Err(AlarmError::Fields(_))));
        assert!(matches!(Alarm::from_json("{\"reason_data\": [1,]}"), Err(AlarmError::Fields(_))));
    }
}
