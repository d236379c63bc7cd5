//! The fast path of [`decode`](super::decode): the shapes real evaluators
//! write, read straight into their types.
//!
//! The general decoder scans each text for what only Python's `json`
//! reads, then reads one object at a time into a hashed, order-keeping map
//! of raw values and picks fields out. This path reads the fields it needs
//! straight from the text and skips the rest without keeping them;
//! `reason_data` is borrowed raw, as plugins receive it. When it was
//! written it took a quarter off decoding an `alarm.update` (52,700 →
//! 40,700 instructions, `scripts/profile log`); the alarm and its actions
//! are now read in one pass over the payload ([`TakeActions`]).
//!
//! It declines ([`None`]) anything it does not recognise exactly: a field
//! of another type (null included), a duplicate key, a list where an
//! object is expected, an action that is not a string, and what serde_json
//! does not read but Python does (`NaN`, a lone surrogate in a field it
//! reads as text). The general decoder then decides, and explains its
//! error. Where both decode a message they give the same result (the unit
//! tests check it on every captured message and on mutated ones).

use std::borrow::Cow;

use serde::de::{
    Deserialize, DeserializeSeed, Deserializer, Error as _, IgnoredAny, IntoDeserializer as _, MapAccess,
    Visitor,
};
use serde_json::de::StrRead;
use serde_json::value::RawValue;
use tocsin_contract::json::opens_object;
use tocsin_core::alarm::{Alarm, AlarmFields, ReasonData};

use super::{ALARM_EVENT_TYPE, ALARM_PRIORITY, AlarmNotification, Decoded, MessageKind, RPC_METHOD};

/// oslo's "2.0" envelope; both absent is a "1.0" message.
#[derive(serde::Deserialize)]
struct Envelope<'a> {
    #[serde(rename = "oslo.version", default, borrow, deserialize_with = "string")]
    version: Option<Cow<'a, str>>,
    #[serde(rename = "oslo.message", default, borrow, deserialize_with = "string")]
    message: Option<Cow<'a, str>>,
}

/// The inner message's fields that either kind of message uses.
#[derive(serde::Deserialize)]
struct Message<'a> {
    #[serde(default, borrow, deserialize_with = "string")]
    method: Option<Cow<'a, str>>,
    /// Present (whatever its value) in an RPC call, absent in a cast.
    #[serde(rename = "_msg_id", default, deserialize_with = "present")]
    msg_id: bool,
    #[serde(default, borrow)]
    args: Option<&'a RawValue>,
    #[serde(default, borrow, deserialize_with = "string")]
    event_type: Option<Cow<'a, str>>,
    #[serde(default, borrow, deserialize_with = "string")]
    priority: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    payload: Option<&'a RawValue>,
    #[serde(rename = "_unique_id", default, borrow, deserialize_with = "string")]
    unique_id: Option<Cow<'a, str>>,
    #[serde(default, borrow, deserialize_with = "string")]
    message_id: Option<Cow<'a, str>>,
    #[serde(rename = "_context_request_id", default, borrow, deserialize_with = "string")]
    request_id: Option<Cow<'a, str>>,
    #[serde(default, borrow, deserialize_with = "string")]
    timestamp: Option<Cow<'a, str>>,
}

/// An RPC message's `args`.
#[derive(serde::Deserialize)]
struct Args<'a> {
    #[serde(borrow)]
    data: &'a RawValue,
}

/// The message, when it has one of the shapes this path reads; `fallback_id`
/// names a message that carries no id.
pub(super) fn decode(body: &[u8], fallback_id: impl FnOnce() -> String) -> Option<Decoded> {
    // Validated once here: the parses below read text, and skip what they
    // do not keep without looking at its bytes again.
    let body = std::str::from_utf8(body).ok()?;
    let envelope: Envelope<'_> = object(body)?;
    let inner: Cow<'_, str> = match envelope {
        Envelope { version: Some(version), message: Some(inner) } => {
            if version.split('.').next() != Some("2") {
                return None;
            }
            inner
        }
        _ => Cow::Borrowed(body),
    };
    if super::may_hold_long_integer(&inner) {
        return None;
    }
    let message: Message<'_> = object(&inner)?;
    if message.method.is_some() {
        rpc(message, fallback_id)
    } else if message.event_type.is_some() {
        notification(message, fallback_id)
    } else {
        None
    }
}

fn rpc(message: Message<'_>, fallback_id: impl FnOnce() -> String) -> Option<Decoded> {
    if message.method.as_deref() != Some(RPC_METHOD) {
        return None;
    }
    let args: Args<'_> = object(message.args?.get())?;
    let (alarm, actions) = alarm_and_actions(args.data)?;
    Some(Decoded::Alarm(Box::new(AlarmNotification {
        alarm,
        actions,
        message_id: text(message.unique_id).unwrap_or_else(fallback_id),
        kind: if message.msg_id { MessageKind::Call } else { MessageKind::Cast },
        changed_at_us: None,
        request_id: text(message.request_id),
        lone_surrogates: 0,
    })))
}

fn notification(message: Message<'_>, fallback_id: impl FnOnce() -> String) -> Option<Decoded> {
    let event_type = message.event_type?.into_owned();
    let priority = message.priority.map(Cow::into_owned).unwrap_or_default();
    if event_type != ALARM_EVENT_TYPE || !priority.eq_ignore_ascii_case(ALARM_PRIORITY) {
        return Some(Decoded::Ignored { event_type, priority });
    }
    let (alarm, actions) = alarm_and_actions(message.payload?)?;
    let message_id = text(message.unique_id).or_else(|| text(message.message_id)).unwrap_or_else(fallback_id);
    Some(Decoded::Alarm(Box::new(AlarmNotification {
        alarm,
        actions,
        message_id,
        kind: MessageKind::Notification,
        changed_at_us: text(message.timestamp).as_deref().and_then(super::parse_oslo_timestamp),
        request_id: None,
        lone_surrogates: 0,
    })))
}

/// The alarm and its actions (absent or null is none), in one pass over
/// `data`: [`AlarmFields`]' own reading of the object, with the `actions`
/// key taken out on the way ([`TakeActions`]); `reason_data` as it came.
fn alarm_and_actions(data: &RawValue) -> Option<(Alarm, Vec<String>)> {
    let mut actions = None;
    let fields = object_with(data.get(), |deserializer| {
        AlarmFields::deserialize(TakeActions { deserializer, actions: &mut actions })
    })?;
    let alarm = fields.into_alarm(|raw| Ok::<_, ()>(ReasonData::verbatim(raw.get()))).ok()?;
    Some((alarm, actions.flatten().unwrap_or_default()))
}

/// `T` read from `text` when it is a JSON object: serde also reads a
/// struct from a list, which no sender writes and the general decoder
/// refuses.
fn object<'a, T: Deserialize<'a>>(text: &'a str) -> Option<T> {
    object_with(text, |deserializer| T::deserialize(deserializer))
}

/// What `read` makes of `text` when it is a JSON object and nothing but
/// whitespace follows it.
fn object_with<'a, T>(
    text: &'a str,
    read: impl FnOnce(&mut serde_json::Deserializer<StrRead<'a>>) -> serde_json::Result<T>,
) -> Option<T> {
    if !opens_object(text) {
        return None;
    }
    let mut deserializer = serde_json::Deserializer::from_str(text);
    let value = read(&mut deserializer).ok()?;
    deserializer.end().ok()?;
    Some(value)
}

/// A JSON object's deserializer that hands every key but `actions` to the
/// visitor, and reads `actions` (a list of strings, or null) into its
/// slot: the slot is `Some` once the key was seen, so a second one is the
/// error a derived struct gives a duplicate field.
struct TakeActions<'s, D> {
    deserializer: D,
    actions: &'s mut Option<Option<Vec<String>>>,
}

impl<'de, D: Deserializer<'de>> Deserializer<'de> for TakeActions<'_, D> {
    type Error = D::Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, D::Error> {
        self.deserializer.deserialize_any(TakeActions { deserializer: visitor, actions: self.actions })
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf option unit
        unit_struct newtype_struct seq tuple tuple_struct map struct enum identifier ignored_any
    }
}

/// The visitor side of [`TakeActions`]: only an object is read.
impl<'de, V: Visitor<'de>> Visitor<'de> for TakeActions<'_, V> {
    type Value = V::Value;

    fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.deserializer.expecting(formatter)
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<V::Value, A::Error> {
        self.deserializer.visit_map(TakeActions { deserializer: map, actions: self.actions })
    }
}

/// The map side of [`TakeActions`].
impl<'de, A: MapAccess<'de>> MapAccess<'de> for TakeActions<'_, A> {
    type Error = A::Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(&mut self, seed: K) -> Result<Option<K::Value>, A::Error> {
        while let Some(Text(key)) = self.deserializer.next_key::<Text<'de>>()? {
            if key != "actions" {
                return seed.deserialize(key.into_deserializer()).map(Some);
            }
            if self.actions.is_some() {
                return Err(A::Error::duplicate_field("actions"));
            }
            *self.actions = Some(self.deserializer.next_value()?);
        }
        Ok(None)
    }

    fn next_value_seed<S: DeserializeSeed<'de>>(&mut self, seed: S) -> Result<S::Value, A::Error> {
        self.deserializer.next_value_seed(seed)
    }

    fn size_hint(&self) -> Option<usize> {
        self.deserializer.size_hint()
    }
}

/// A string, borrowed where it has no escapes; any other JSON, null
/// included, is an error (so the message goes to the general decoder).
fn string<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Cow<'de, str>>, D::Error> {
    Text::deserialize(deserializer).map(|Text(text)| Some(text))
}

/// A JSON string, borrowed where it has no escapes.
#[derive(serde::Deserialize)]
struct Text<'a>(#[serde(borrow)] Cow<'a, str>);

/// True for a key that is there, whatever its value.
fn present<'de, D: Deserializer<'de>>(deserializer: D) -> Result<bool, D::Error> {
    IgnoredAny::deserialize(deserializer).map(|_| true)
}

/// The general decoder's reading of an id-like field: empty is none.
fn text(value: Option<Cow<'_, str>>) -> Option<String> {
    value.filter(|text| !text.is_empty()).map(Cow::into_owned)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed test

    use std::path::Path;

    use super::*;

    /// The captured messages (`tests/fixtures/openstack`), each read by
    /// this path: it is the one real traffic takes.
    #[test]
    fn reads_every_captured_alarm_message() {
        let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/openstack");
        let mut read = 0;
        for stem in ["cast-1", "call-1", "fanout-cast-1", "notification-1", "notification-v1-1"] {
            let body = std::fs::read(fixtures.join(format!("{stem}.body.bin"))).unwrap();
            let decoded = decode(&body, || unreachable!("{stem} has an id"));
            assert!(matches!(decoded, Some(Decoded::Alarm(_))), "{stem}: {decoded:?}");
            read += 1;
        }
        assert_eq!(read, 5);
    }

    #[test]
    fn takes_the_actions_out_of_the_alarms_own_pass() {
        let read_data = |data: &str| {
            let body = format!(r#"{{"method": "notify_alarm", "args": {{"data": {data}}}}}"#);
            match decode(body.as_bytes(), String::new) {
                Some(Decoded::Alarm(notification)) => {
                    assert_eq!(
                        (notification.alarm.alarm_id.as_str(), notification.alarm.reason.as_str()),
                        ("a", "r")
                    );
                    Some(notification.actions)
                }
                _ => None,
            }
        };
        let read = |actions: &str| {
            read_data(&format!(
                r#"{{"alarm_id": "a", {actions} "previous": "ok", "current": "alarm", "reason": "r"}}"#
            ))
        };
        assert_eq!(read(r#""actions": ["log://", "test://"],"#).unwrap(), ["log://", "test://"]);
        assert_eq!(read(r#""act\u0069ons": ["log://"],"#).unwrap(), ["log://"]);
        assert_eq!(read(r#""actions": null,"#).unwrap(), Vec::<String>::new());
        assert_eq!(read("").unwrap(), Vec::<String>::new());
        // The last key, and only the object's own: one inside `reason_data`
        // is the plugin's to see.
        let last = r#"{"alarm_id": "a", "previous": "ok", "current": "alarm", "reason": "r", "actions": ["log://"]}"#;
        assert_eq!(read_data(last).unwrap(), ["log://"]);
        let nested = r#"{"alarm_id": "a", "previous": "ok", "current": "alarm", "reason": "r", "reason_data": {"actions": ["x://"]}}"#;
        assert_eq!(read_data(nested).unwrap(), Vec::<String>::new());
        // Declined, for the general decoder to decide.
        assert_eq!(read(r#""actions": null, "actions": ["log://"],"#), None);
        assert_eq!(read(r#""actions": "log://","#), None);
        assert_eq!(read(r#""actions": ["log://", 7],"#), None);
    }

    #[test]
    fn declines_what_it_does_not_read_exactly() {
        let alarm = r#""data": {"alarm_id": "a", "previous": "ok", "current": "alarm", "reason": "r"}"#;
        for declined in [
            r#"{"method": null, "args": {}}"#.to_owned(),
            format!(r#"{{"method": "notify_alarm", "args": [{{{alarm}}}]}}"#),
            format!(r#"{{"method": "notify_alarm", "args": {{{alarm}, {alarm}}}}}"#),
            r#"["2.0", "{}"]"#.to_owned(),
        ] {
            assert!(decode(declined.as_bytes(), String::new).is_none(), "{declined}");
        }
        // Read, and declined once a skipped field is not UTF-8.
        let good = format!(r#"{{"method": "notify_alarm", "x": "-", "args": {{{alarm}}}}}"#).into_bytes();
        assert!(decode(&good, String::new).is_some());
        let bad: Vec<u8> = good.iter().map(|&b| if b == b'-' { 0xff } else { b }).collect();
        assert!(decode(&bad, String::new).is_none());
    }
}
