//! OpenStack's alarm messages, as they arrive from the broker and as
//! oslo.messaging writes them.
//!
//! [`decode`] is a pure function from one AMQP message (properties, body) to an [`AlarmNotification`], a message to ignore, or a typed
//! [`DecodeError`] that says why it cannot be used. It accepts what real
//! evaluators send (`../shared/docs/wire-formats.md` §3–4): the oslo "2.0"
//! envelope whose `oslo.message` is JSON text, un-enveloped "1.0"
//! messages, RPC casts (`notify_alarm`; calls tolerated) and `alarm.update`
//! notifications. [`encode`] writes the same bytes oslo.messaging would,
//! for `tocsin publish`.

use jiff::Timestamp;
use jiff::civil::DateTime;
use jiff::tz::Offset;
use serde::Deserialize;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use tocsin_guest_sdk::json::to_python_json;

use crate::alarm::Alarm;

mod typed;

/// The RPC method Ceilometer's and Aodh's evaluators cast.
pub const RPC_METHOD: &str = "notify_alarm";
/// The event type of Aodh's notifications.
pub const ALARM_EVENT_TYPE: &str = "alarm.update";
/// The only notification priority that carries alarms.
pub const ALARM_PRIORITY: &str = "SAMPLE";

/// oslo's notification timestamps, for parsing: the fraction is optional.
const OSLO_TIMESTAMP: &str = "%Y-%m-%d %H:%M:%S%.f";

/// The AMQP properties the decoder looks at.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Properties<'a> {
    /// `application/json` from oslo; absent is tolerated.
    pub content_type: Option<&'a str>,
    /// `utf-8` from oslo; absent is tolerated.
    pub content_encoding: Option<&'a str>,
}

/// What kind of OpenStack message carried the alarm.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageKind {
    /// An RPC cast of `notify_alarm` (Ceilometer, Aodh 1.x).
    Cast,
    /// An RPC call of `notify_alarm`: no reply is sent, as no evaluator
    /// waits for one.
    Call,
    /// An `alarm.update` notification (Aodh 2.x and later).
    Notification,
}

impl MessageKind {
    /// Name for log lines and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            MessageKind::Cast => "cast",
            MessageKind::Call => "call",
            MessageKind::Notification => "notification",
        }
    }
}

/// One alarm state change to deliver to each of its actions.
#[derive(Debug, Clone, PartialEq)]
pub struct AlarmNotification {
    /// The alarm, as the notifier plugins receive it.
    pub alarm: Alarm,
    /// The action URLs in the order given. An entry that is not a string
    /// is kept as its JSON text; dispatch reports it as unparsable, as
    /// Aodh does.
    pub actions: Vec<String>,
    /// Identity of the message: its `_unique_id`, else its `message_id`,
    /// else a digest of the body. Stable across redeliveries: delivery ids
    /// derive from it.
    pub message_id: String,
    /// Cast, call or notification.
    pub kind: MessageKind,
    /// When the evaluator saw the change (notifications only), in
    /// microseconds since the Unix epoch.
    pub changed_at_us: Option<i64>,
    /// The context's `request_id`, when the sender gave one.
    pub request_id: Option<String>,
}

/// What a message turned out to be.
#[derive(Debug, Clone, PartialEq)]
pub enum Decoded {
    /// An alarm to deliver.
    Alarm(Box<AlarmNotification>),
    /// A well-formed notification that is not an alarm change (another
    /// event type or priority): acknowledged and ignored, as oslo's
    /// listener does.
    Ignored {
        /// Its `event_type`.
        event_type: String,
        /// Its `priority`.
        priority: String,
    },
}

/// Why a message cannot be used. Each goes to the dead-letter queue with
/// its [`code`](DecodeError::code) and text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// Bigger than `intake.max_message_bytes`.
    #[error("message of {size} bytes exceeds the limit of {limit} bytes")]
    TooLarge {
        /// Body size.
        size: usize,
        /// The configured limit.
        limit: usize,
    },
    /// A content type other than JSON (oslo only sends JSON; a pickle or
    /// anything else is refused, never interpreted).
    #[error("content type {0:?} is not application/json")]
    ContentType(String),
    /// A content encoding other than UTF-8.
    #[error("content encoding {0:?} is not utf-8")]
    ContentEncoding(String),
    /// The body, or the envelope's inner message, is not JSON.
    #[error("not JSON: {0}")]
    NotJson(String),
    /// An oslo envelope whose version's major is not 2.
    #[error("unsupported oslo envelope version {0:?}")]
    EnvelopeVersion(String),
    /// Neither an RPC message nor a notification.
    #[error("not an OpenStack RPC message or notification: {0}")]
    Unrecognised(String),
    /// An RPC method other than `notify_alarm`.
    #[error("unsupported RPC method {0:?}")]
    Method(String),
    /// A required field is missing or has the wrong type.
    #[error("invalid {field}: {detail}")]
    Field {
        /// Dotted path of the field (`args.data.alarm_id`).
        field: &'static str,
        /// What is wrong with it.
        detail: String,
    },
}

impl DecodeError {
    /// A stable short code for metrics and dead-letter headers.
    pub fn code(&self) -> &'static str {
        match self {
            DecodeError::TooLarge { .. } => "too-large",
            DecodeError::ContentType(_) => "content-type",
            DecodeError::ContentEncoding(_) => "content-encoding",
            DecodeError::NotJson(_) => "not-json",
            DecodeError::EnvelopeVersion(_) => "envelope-version",
            DecodeError::Unrecognised(_) => "unrecognised",
            DecodeError::Method(_) => "method",
            DecodeError::Field { .. } => "invalid-field",
        }
    }
}

/// Decodes one message. Never panics, whatever the
/// bytes; `max_bytes` bounds the body it will parse. The shapes real
/// evaluators write take a typed fast path; anything else, and every
/// error, goes through the general decoder ([`decode_reference`]).
///
/// # Errors
/// [`DecodeError`] saying why the message cannot be delivered.
pub fn decode(properties: Properties<'_>, body: &[u8], max_bytes: usize) -> Result<Decoded, DecodeError> {
    check(properties, body, max_bytes)?;
    let fallback_id = || body_digest(body);
    typed::decode(body, fallback_id).map_or_else(|| decode_tree(body, fallback_id), Ok)
}

/// [`decode`] without its fast path: every message through the general
/// decoder. The reference the fast path is tested against (it must give
/// the same result wherever it gives one).
///
/// # Errors
/// As [`decode`].
pub fn decode_reference(
    properties: Properties<'_>,
    body: &[u8],
    max_bytes: usize,
) -> Result<Decoded, DecodeError> {
    check(properties, body, max_bytes)?;
    decode_tree(body, || body_digest(body))
}

/// The checks before any parsing: size and the AMQP properties.
fn check(properties: Properties<'_>, body: &[u8], max_bytes: usize) -> Result<(), DecodeError> {
    if body.len() > max_bytes {
        return Err(DecodeError::TooLarge { size: body.len(), limit: max_bytes });
    }
    if let Some(content_type) =
        properties.content_type.filter(|t| !t.eq_ignore_ascii_case("application/json"))
    {
        return Err(DecodeError::ContentType(content_type.to_owned()));
    }
    if let Some(encoding) = properties
        .content_encoding
        .filter(|e| !e.eq_ignore_ascii_case("utf-8") && !e.eq_ignore_ascii_case("utf8"))
    {
        return Err(DecodeError::ContentEncoding(encoding.to_owned()));
    }
    Ok(())
}

/// The general decoder: the body as a JSON tree, fields picked out of it.
/// It reads every message [`typed::decode`] reads, the same way, and the
/// rest, and says what is wrong with a message it cannot use.
fn decode_tree(body: &[u8], fallback_id: impl FnOnce() -> String) -> Result<Decoded, DecodeError> {
    let outer: Value = serde_json::from_slice(body).map_err(|e| DecodeError::NotJson(e.to_string()))?;
    let message = unwrap_envelope(outer)?;
    let Value::Object(message) = message else {
        return Err(DecodeError::Unrecognised(format!("the message is {}", json_kind(&message))));
    };
    if message.contains_key("method") {
        decode_rpc(message, fallback_id)
    } else if message.contains_key("event_type") {
        decode_notification(message, fallback_id)
    } else {
        Err(DecodeError::Unrecognised("neither `method` (RPC) nor `event_type` (notification)".into()))
    }
}

/// oslo's rule: a body that is an object holding both `oslo.version` and
/// `oslo.message` is a 2.x envelope whose message is JSON text; anything
/// else is a "1.0" message used as is.
fn unwrap_envelope(outer: Value) -> Result<Value, DecodeError> {
    let Value::Object(mut object) = outer else { return Ok(outer) };
    if !(object.contains_key("oslo.version") && object.contains_key("oslo.message")) {
        return Ok(Value::Object(object));
    }
    let version = match object.remove("oslo.version") {
        Some(Value::String(version)) => version,
        other => return Err(DecodeError::EnvelopeVersion(other.map(|v| v.to_string()).unwrap_or_default())),
    };
    if version.split('.').next() != Some("2") {
        return Err(DecodeError::EnvelopeVersion(version));
    }
    match object.remove("oslo.message") {
        Some(Value::String(inner)) => {
            serde_json::from_str(&inner).map_err(|e| DecodeError::NotJson(format!("oslo.message: {e}")))
        }
        other => Err(DecodeError::Field {
            field: "oslo.message",
            detail: format!("expected JSON text, found {}", other.as_ref().map_or("nothing", json_kind)),
        }),
    }
}

fn decode_rpc(
    mut message: Map<String, Value>,
    fallback_id: impl FnOnce() -> String,
) -> Result<Decoded, DecodeError> {
    match message.get("method") {
        Some(Value::String(method)) if method == RPC_METHOD => {}
        Some(Value::String(method)) => return Err(DecodeError::Method(method.clone())),
        Some(other) => return Err(DecodeError::Method(other.to_string())),
        None => return Err(field("method", "missing".into())),
    }
    let kind = if message.contains_key("_msg_id") { MessageKind::Call } else { MessageKind::Cast };
    let data = match message.get_mut("args").and_then(|args| args.get_mut("data")) {
        Some(Value::Object(data)) => std::mem::take(data),
        Some(other) => {
            return Err(field("args.data", format!("expected an object, found {}", json_kind(other))));
        }
        None => return Err(field("args.data", "missing".into())),
    };
    let (alarm, actions) = alarm_and_actions(data, "args.data")?;
    Ok(Decoded::Alarm(Box::new(AlarmNotification {
        alarm,
        actions,
        message_id: text(&message, "_unique_id").unwrap_or_else(fallback_id),
        kind,
        changed_at_us: None,
        request_id: text(&message, "_context_request_id"),
    })))
}

fn decode_notification(
    mut message: Map<String, Value>,
    fallback_id: impl FnOnce() -> String,
) -> Result<Decoded, DecodeError> {
    let event_type = match message.get("event_type") {
        Some(Value::String(event_type)) => event_type.clone(),
        other => {
            return Err(field(
                "event_type",
                format!("expected a string, found {}", other.map_or("nothing", json_kind)),
            ));
        }
    };
    let priority = text(&message, "priority").unwrap_or_default();
    if event_type != ALARM_EVENT_TYPE || !priority.eq_ignore_ascii_case(ALARM_PRIORITY) {
        return Ok(Decoded::Ignored { event_type, priority });
    }
    let payload = match message.get_mut("payload") {
        Some(Value::Object(payload)) => std::mem::take(payload),
        Some(other) => {
            return Err(field("payload", format!("expected an object, found {}", json_kind(other))));
        }
        None => return Err(field("payload", "missing".into())),
    };
    let (alarm, actions) = alarm_and_actions(payload, "payload")?;
    let message_id =
        text(&message, "_unique_id").or_else(|| text(&message, "message_id")).unwrap_or_else(fallback_id);
    Ok(Decoded::Alarm(Box::new(AlarmNotification {
        alarm,
        actions,
        message_id,
        kind: MessageKind::Notification,
        changed_at_us: text(&message, "timestamp").as_deref().and_then(parse_oslo_timestamp),
        request_id: None,
    })))
}

/// The alarm fields and the action list of `data`/`payload`. Absent or
/// null `actions` is an empty list (Aodh logs "no action" and moves on).
fn alarm_and_actions(
    mut data: Map<String, Value>,
    path: &'static str,
) -> Result<(Alarm, Vec<String>), DecodeError> {
    let actions = match data.remove("actions") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(actions)) => actions
            .into_iter()
            .map(|action| match action {
                Value::String(url) => url,
                other => other.to_string(),
            })
            .collect(),
        Some(other) => {
            return Err(DecodeError::Field {
                field: if path == "payload" { "payload.actions" } else { "args.data.actions" },
                detail: format!("expected a list, found {}", json_kind(&other)),
            });
        }
    };
    let alarm = Alarm::deserialize(Value::Object(data)).map_err(|e| field(path, e.to_string()))?;
    Ok((alarm, actions))
}

/// oslo's notification timestamp: naive UTC `YYYY-MM-DD HH:MM:SS[.ffffff]`,
/// as microseconds since the Unix epoch.
pub fn parse_oslo_timestamp(text: &str) -> Option<i64> {
    let civil = DateTime::strptime(OSLO_TIMESTAMP, text).ok()?;
    Some(Offset::UTC.to_timestamp(civil).ok()?.as_microsecond())
}

/// The string at `key`; absent, not a string and empty are all none.
fn text(message: &Map<String, Value>, key: &str) -> Option<String> {
    message.get(key).and_then(Value::as_str).filter(|text| !text.is_empty()).map(str::to_owned)
}

fn field(field: &'static str, detail: String) -> DecodeError {
    DecodeError::Field { field, detail }
}

fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

/// Identity of a message that carries no id: the first 16 bytes of the
/// SHA-256 of its body, in hex. A redelivery has the same body, so the
/// same id.
fn body_digest(body: &[u8]) -> String {
    Sha256::digest(body)[..16].iter().map(|b| format!("{b:02x}")).collect()
}

/// Which OpenStack message [`encode`] writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WireFormat {
    /// An RPC cast of `notify_alarm`, as Ceilometer and Aodh 1.x send.
    Rpc,
    /// An `alarm.update` notification, as Aodh 2.x and later send.
    Notification,
}

/// The ids and stamps oslo.messaging puts in a message: fresh ones for
/// each message it sends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stamps {
    /// `_unique_id`: uuid4 hex.
    pub unique_id: String,
    /// A notification's `message_id`: a uuid4.
    pub message_id: String,
    /// An RPC cast's `_context_request_id`: `req-<uuid4>`.
    pub request_id: String,
    /// A notification's `timestamp`, in oslo's format.
    pub timestamp: String,
}

impl Stamps {
    /// New ids, and the current time.
    pub fn fresh() -> Self {
        Stamps {
            unique_id: uuid::Uuid::new_v4().simple().to_string(),
            message_id: uuid::Uuid::new_v4().to_string(),
            request_id: format!("req-{}", uuid::Uuid::new_v4()),
            timestamp: oslo_timestamp(Timestamp::now()),
        }
    }
}

/// The oslo.messaging bytes of one alarm message: the "2.0" envelope
/// around the inner message, both written as Python's `json.dumps` writes
/// them, keys in oslo's order, an RPC cast with the evaluator's admin
/// context.
pub fn encode(format: WireFormat, alarm: &Alarm, actions: &[String], stamps: &Stamps) -> Vec<u8> {
    let mut data = Map::new();
    data.insert("actions".into(), actions.iter().cloned().map(Value::String).collect());
    if let Value::Object(fields) = serde_json::to_value(alarm).unwrap_or(Value::Null) {
        data.extend(fields.into_iter().filter(|(key, value)| {
            !value.is_null() || !matches!(key.as_str(), "alarm_name" | "severity" | "reason_data")
        }));
    }
    let mut inner = Map::new();
    match format {
        WireFormat::Rpc => {
            let mut args = Map::new();
            args.insert("data".into(), Value::Object(data));
            inner.insert("method".into(), RPC_METHOD.into());
            inner.insert("args".into(), Value::Object(args));
            inner.insert("version".into(), "1.0".into());
            inner.insert("_unique_id".into(), stamps.unique_id.clone().into());
            for (key, value) in ADMIN_CONTEXT {
                let value = match (key, value) {
                    ("request_id", _) => stamps.request_id.clone().into(),
                    (_, Some(value)) => serde_json::from_str(value).unwrap_or(Value::Null),
                    (_, None) => Value::Null,
                };
                inner.insert(format!("_context_{key}"), value);
            }
        }
        WireFormat::Notification => {
            inner.insert("message_id".into(), stamps.message_id.clone().into());
            inner.insert("publisher_id".into(), "alarming.evaluator".into());
            inner.insert("event_type".into(), ALARM_EVENT_TYPE.into());
            inner.insert("priority".into(), ALARM_PRIORITY.into());
            inner.insert("payload".into(), Value::Object(data));
            inner.insert("timestamp".into(), stamps.timestamp.clone().into());
            inner.insert("_unique_id".into(), stamps.unique_id.clone().into());
        }
    }
    let inner_text = String::from_utf8(to_python_json(&Value::Object(inner))).unwrap_or_default();
    let mut envelope = Map::new();
    envelope.insert("oslo.version".into(), "2.0".into());
    envelope.insert("oslo.message".into(), inner_text.into());
    to_python_json(&Value::Object(envelope))
}

/// The admin context the evaluator sends with RPC casts, oslo.context's
/// keys in its order, values as JSON text (`None` is null; the request
/// id comes from [`Stamps`]).
const ADMIN_CONTEXT: [(&str, Option<&str>); 12] = [
    ("user", None),
    ("tenant", None),
    ("domain", None),
    ("user_domain", None),
    ("project_domain", None),
    ("is_admin", Some("true")),
    ("read_only", Some("false")),
    ("show_deleted", Some("false")),
    ("auth_token", None),
    ("request_id", None),
    ("instance_uuid", None),
    ("user_identity", Some("\"- - - - -\"")),
];

/// oslo's notification timestamp (naive UTC, microseconds, the fraction
/// left out when zero, as Python's `str(datetime)` writes it) of `at`.
pub fn oslo_timestamp(at: Timestamp) -> String {
    let civil = Offset::UTC.to_datetime(at);
    let format =
        if civil.subsec_nanosecond() / 1000 == 0 { "%Y-%m-%d %H:%M:%S" } else { "%Y-%m-%d %H:%M:%S%.6f" };
    civil.strftime(format).to_string()
}
