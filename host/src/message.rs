//! OpenStack's alarm messages, as they arrive from the broker and as
//! oslo.messaging writes them.
//!
//! [`decode`] is a pure function from one AMQP message (properties, body)
//! to an [`AlarmNotification`], a message to ignore, or a typed
//! [`DecodeError`] that says why it cannot be used. It accepts what real
//! evaluators send: the oslo "2.0" envelope whose
//! `oslo.message` is JSON text, un-enveloped "1.0" messages, RPC casts
//! (`notify_alarm`; calls tolerated) and `alarm.update` notifications, all
//! as Python's `json` reads them: `NaN` and `Infinity` where JSON has no
//! word, integers of any size up to Python's limit, lone surrogate
//! escapes (`docs/python-json.md`). `reason_data` is kept as the sender's
//! text, byte for byte.
//! [`encode`] writes the same bytes oslo.messaging would, for
//! `tocsin publish`.

use indexmap::IndexMap;
use jiff::Timestamp;
use jiff::civil::DateTime;
use jiff::tz::Offset;
use serde::Deserialize;
use serde::de::value::MapDeserializer;
use serde_json::value::RawValue;
use sha2::{Digest, Sha256};
use tocsin_contract::json::{
    MAX_INT_DIGITS, PythonJson, to_python_json, write_python_object, write_python_str,
};
use tocsin_core::alarm::{Alarm, AlarmFields, FieldTooLong, ReasonData, check_field_size};

mod typed;

/// The RPC method Ceilometer's and Aodh's evaluators cast.
pub(crate) const RPC_METHOD: &str = "notify_alarm";
/// The event type of Aodh's notifications.
pub(crate) const ALARM_EVENT_TYPE: &str = "alarm.update";
/// The only notification priority that carries alarms.
pub(crate) const ALARM_PRIORITY: &str = "SAMPLE";

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
    /// How many lone surrogate escapes (`"\ud800"`, which Python reads
    /// and a WIT string cannot carry) the alarm's text fields and actions
    /// had, each read as U+FFFD. Those in `reason_data` are kept as they
    /// came.
    pub lone_surrogates: usize,
}

/// What a decoded alarm message may hold at most: past either bound it is
/// dead-lettered whole.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bounds {
    /// Longest identity field or action URL, in bytes.
    pub max_field_bytes: usize,
    /// Most actions.
    pub max_actions: usize,
    /// Most bytes of the message times its actions.
    pub max_fanout_bytes: usize,
}

impl AlarmNotification {
    /// Checks the message, of `bytes` bytes, against `bounds`: its actions
    /// and its size times them, then the fields that name it in every log
    /// line of its deliveries (the alarm's, the message and request ids,
    /// each action URL).
    ///
    /// # Errors
    /// [`DecodeError::TooManyActions`], [`DecodeError::FanoutTooLarge`] or
    /// [`DecodeError::FieldTooLong`].
    pub(crate) fn check_bounds(&self, bytes: usize, bounds: Bounds) -> Result<(), DecodeError> {
        let limit = bounds.max_field_bytes;
        let actions = self.actions.len();
        if actions > bounds.max_actions {
            return Err(DecodeError::TooManyActions { count: actions, limit: bounds.max_actions });
        }
        if bytes.saturating_mul(actions) > bounds.max_fanout_bytes {
            return Err(DecodeError::FanoutTooLarge { bytes, actions, limit: bounds.max_fanout_bytes });
        }
        self.alarm.check_field_sizes(limit)?;
        check_field_size("message_id", &self.message_id, limit)?;
        check_field_size("request_id", self.request_id.as_deref().unwrap_or_default(), limit)?;
        for action in &self.actions {
            check_field_size("action", action, limit)?;
        }
        Ok(())
    }
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
    /// A field that names the alarm or the message (an id, the alarm's
    /// name or states, an action URL) is longer than
    /// `intake.max_field_bytes`.
    #[error(transparent)]
    FieldTooLong(#[from] FieldTooLong),
    /// The message's size times its actions is more than
    /// `intake.max_fanout_bytes`: each action's retries and dead letters
    /// carry the whole alarm.
    #[error(
        "the message has {bytes} bytes and {actions} actions, more than the {limit} bytes allowed in all \
         (intake.max_fanout_bytes)"
    )]
    FanoutTooLarge {
        /// The message's size.
        bytes: usize,
        /// Its actions.
        actions: usize,
        /// The configured limit.
        limit: usize,
    },
    /// More actions than `intake.max_actions`: the message is refused
    /// whole, never half delivered.
    #[error("the alarm has {count} actions, more than the {limit} allowed (intake.max_actions)")]
    TooManyActions {
        /// Actions in the message.
        count: usize,
        /// The configured limit.
        limit: usize,
    },
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
            DecodeError::FieldTooLong(_) => "field-too-long",
            DecodeError::TooManyActions { .. } => "too-many-actions",
            DecodeError::FanoutTooLarge { .. } => "too-large-fanout",
        }
    }
}

/// Decodes one message. Never panics, whatever the
/// bytes; `max_bytes` bounds the body it will parse. The shapes real
/// evaluators write take a typed fast path; anything else (Python's
/// additions to JSON among it), and every error, goes through the general
/// decoder ([`decode_reference`]).
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

/// Whether `text` has a run of digits longer than Python reads as an
/// integer: the fast path does not look inside what it skips, so such a
/// message goes to the general decoder, which refuses it as Python does.
/// A shorter text cannot.
fn may_hold_long_integer(text: &str) -> bool {
    text.len() > MAX_INT_DIGITS
        && text.as_bytes().split(|b| !b.is_ascii_digit()).any(|run| run.len() > MAX_INT_DIGITS)
}

/// One JSON object of the general decoder: each key's last value, raw, in
/// the order of first appearance (as Python's `dict` and serde_json's
/// `Map` keep them).
type Object<'a> = IndexMap<String, &'a RawValue>;

/// The general decoder: reads what Python's `json` reads (its additions
/// through [`PythonJson`]), one object at a time with each value raw, and
/// picks fields out. It reads every message [`typed::decode`] reads, the
/// same way, and the rest, and says what is wrong with a message it cannot
/// use.
fn decode_tree(body: &[u8], fallback_id: impl FnOnce() -> String) -> Result<Decoded, DecodeError> {
    let text = std::str::from_utf8(body).map_err(|e| DecodeError::NotJson(e.to_string()))?;
    let outer = PythonJson::scan(text).map_err(|e| DecodeError::NotJson(e.to_string()))?;
    let root: &RawValue =
        serde_json::from_str(outer.readable()).map_err(|e| DecodeError::NotJson(e.to_string()))?;
    match envelope_message(&outer, root)? {
        Some(inner) => {
            let json =
                PythonJson::scan(&inner).map_err(|e| DecodeError::NotJson(format!("oslo.message: {e}")))?;
            let message: &RawValue = serde_json::from_str(json.readable())
                .map_err(|e| DecodeError::NotJson(format!("oslo.message: {e}")))?;
            decode_message(&json, message, fallback_id)
        }
        None => decode_message(&outer, root, fallback_id),
    }
}

/// oslo's rule: a body that is an object holding both `oslo.version` and
/// `oslo.message` is a 2.x envelope whose message is JSON text (returned);
/// anything else is a "1.0" message used as is (none).
fn envelope_message(json: &PythonJson<'_>, root: &RawValue) -> Result<Option<String>, DecodeError> {
    if json_kind(json, root) != "an object" {
        return Ok(None);
    }
    let object = object(root)?;
    let (Some(version), Some(message)) = (object.get("oslo.version"), object.get("oslo.message")) else {
        return Ok(None);
    };
    match string(version) {
        Some(version) if version.split('.').next() == Some("2") => {}
        Some(version) => return Err(DecodeError::EnvelopeVersion(version)),
        None => return Err(DecodeError::EnvelopeVersion(version.get().to_owned())),
    }
    match string(message) {
        Some(inner) => Ok(Some(inner)),
        None => Err(DecodeError::Field {
            field: "oslo.message",
            detail: format!("expected JSON text, found {}", json_kind(json, message)),
        }),
    }
}

/// The message (of `json`'s text): an RPC message or a notification.
fn decode_message(
    json: &PythonJson<'_>,
    message: &RawValue,
    fallback_id: impl FnOnce() -> String,
) -> Result<Decoded, DecodeError> {
    if json_kind(json, message) != "an object" {
        return Err(DecodeError::Unrecognised(format!("the message is {}", json_kind(json, message))));
    }
    let message = object(message)?;
    if message.contains_key("method") {
        decode_rpc(json, &message, fallback_id)
    } else if message.contains_key("event_type") {
        decode_notification(json, &message, fallback_id)
    } else {
        Err(DecodeError::Unrecognised("neither `method` (RPC) nor `event_type` (notification)".into()))
    }
}

fn decode_rpc(
    json: &PythonJson<'_>,
    message: &Object<'_>,
    fallback_id: impl FnOnce() -> String,
) -> Result<Decoded, DecodeError> {
    match message.get("method") {
        Some(method) => match string(method) {
            Some(method) if method == RPC_METHOD => {}
            Some(method) => return Err(DecodeError::Method(method)),
            None => return Err(DecodeError::Method(method.get().to_owned())),
        },
        None => return Err(field("method", "missing".into())),
    }
    let kind = if message.contains_key("_msg_id") { MessageKind::Call } else { MessageKind::Cast };
    let args =
        message.get("args").filter(|args| json_kind(json, args) == "an object").map(|args| object(args));
    let data = match args.transpose()?.as_ref().and_then(|args| args.get("data")) {
        Some(data) if json_kind(json, data) == "an object" => *data,
        Some(other) => {
            return Err(field("args.data", format!("expected an object, found {}", json_kind(json, other))));
        }
        None => return Err(field("args.data", "missing".into())),
    };
    let (alarm, actions, lone_surrogates) = alarm_and_actions(json, data, "args.data")?;
    Ok(Decoded::Alarm(Box::new(AlarmNotification {
        alarm,
        actions,
        message_id: text(message, "_unique_id").unwrap_or_else(fallback_id),
        kind,
        changed_at_us: None,
        request_id: text(message, "_context_request_id"),
        lone_surrogates,
    })))
}

fn decode_notification(
    json: &PythonJson<'_>,
    message: &Object<'_>,
    fallback_id: impl FnOnce() -> String,
) -> Result<Decoded, DecodeError> {
    let event_type = match message.get("event_type").map(|raw| (raw, string(raw))) {
        Some((_, Some(event_type))) => event_type,
        other => {
            return Err(field(
                "event_type",
                format!(
                    "expected a string, found {}",
                    other.map_or("nothing", |(raw, _)| json_kind(json, raw))
                ),
            ));
        }
    };
    let priority = message.get("priority").and_then(|raw| string(raw)).unwrap_or_default();
    if event_type != ALARM_EVENT_TYPE || !priority.eq_ignore_ascii_case(ALARM_PRIORITY) {
        return Ok(Decoded::Ignored { event_type, priority });
    }
    let payload = match message.get("payload") {
        Some(payload) if json_kind(json, payload) == "an object" => *payload,
        Some(other) => {
            return Err(field("payload", format!("expected an object, found {}", json_kind(json, other))));
        }
        None => return Err(field("payload", "missing".into())),
    };
    let (alarm, actions, lone_surrogates) = alarm_and_actions(json, payload, "payload")?;
    let message_id =
        text(message, "_unique_id").or_else(|| text(message, "message_id")).unwrap_or_else(fallback_id);
    Ok(Decoded::Alarm(Box::new(AlarmNotification {
        alarm,
        actions,
        message_id,
        kind: MessageKind::Notification,
        changed_at_us: text(message, "timestamp").as_deref().and_then(parse_oslo_timestamp),
        request_id: None,
        lone_surrogates,
    })))
}

/// The alarm fields and the action list of `data`/`payload` (an object),
/// and how many lone surrogate escapes they had. Absent or null `actions`
/// is an empty list (Aodh logs "no action" and moves on); an action that
/// is not a string is kept as the sender wrote it.
fn alarm_and_actions(
    json: &PythonJson<'_>,
    data: &RawValue,
    path: &'static str,
) -> Result<(Alarm, Vec<String>, usize), DecodeError> {
    let mut data = object(data)?;

    let actions = data.shift_remove("actions");
    // Those in the fields that are read as text: they reach plugins and logs.
    let lone_surrogates = ["alarm_id", "alarm_name", "severity", "previous", "current", "reason"]
        .iter()
        .filter_map(|key| data.get(*key))
        .chain(&actions)
        .map(|raw| json.lone_surrogates_in(raw.get()))
        .sum();
    let actions = match actions {
        None => Vec::new(),
        Some(actions) => match json_kind(json, actions) {
            "null" => Vec::new(),
            "a list" => serde_json::from_str::<Vec<&RawValue>>(actions.get())
                .map_err(|e| DecodeError::NotJson(e.to_string()))?
                .into_iter()
                .map(|action| string(action).map_or_else(|| as_sent(json, action).map(str::to_owned), Ok))
                .collect::<Result<_, _>>()?,
            other => {
                return Err(DecodeError::Field {
                    field: if path == "payload" { "payload.actions" } else { "args.data.actions" },
                    detail: format!("expected a list, found {other}"),
                });
            }
        },
    };
    let fields = AlarmFields::deserialize(MapDeserializer::new(data.into_iter()))
        .map_err(|e| field(path, e.to_string()))?;
    let alarm = fields.into_alarm(|raw| as_sent(json, raw).map(ReasonData::verbatim))?;
    Ok((alarm, actions, lone_surrogates))
}

/// oslo's notification timestamp: naive UTC `YYYY-MM-DD HH:MM:SS[.ffffff]`,
/// as microseconds since the Unix epoch.
pub(crate) fn parse_oslo_timestamp(text: &str) -> Option<i64> {
    let civil = DateTime::strptime(OSLO_TIMESTAMP, text).ok()?;
    Some(Offset::UTC.to_timestamp(civil).ok()?.as_microsecond())
}

/// The string at `key`; absent, not a string and empty are all none.
fn text(message: &Object<'_>, key: &str) -> Option<String> {
    message.get(key).and_then(|raw| string(raw)).filter(|text| !text.is_empty())
}

/// The string `raw` is, if it is one.
fn string(raw: &RawValue) -> Option<String> {
    serde_json::from_str(raw.get()).ok()
}

/// The sender's text of `raw`, a part of `json`'s readable text.
fn as_sent<'a>(json: &PythonJson<'a>, raw: &RawValue) -> Result<&'a str, DecodeError> {
    json.original_of(raw.get()).ok_or_else(|| DecodeError::NotJson("a value outside the message".into()))
}

/// The object `raw` is (checked by the caller: serde_json has read it).
fn object<'a>(raw: &'a RawValue) -> Result<Object<'a>, DecodeError> {
    serde_json::from_str(raw.get()).map_err(|e| DecodeError::NotJson(e.to_string()))
}

fn field(field: &'static str, detail: String) -> DecodeError {
    DecodeError::Field { field, detail }
}

/// What kind of JSON value `raw` (a part of `json`'s text) is, from its
/// first byte: serde_json has read it.
fn json_kind(json: &PythonJson<'_>, raw: &RawValue) -> &'static str {
    if json.literal_at(raw.get()).is_some() {
        return "a number";
    }
    match raw.get().as_bytes().first() {
        Some(b'n') => "null",
        Some(b't' | b'f') => "a boolean",
        Some(b'"') => "a string",
        Some(b'[') => "a list",
        Some(b'{') => "an object",
        _ => "a number",
    }
}

/// Identity of a message that carries no id: the first 16 bytes of the
/// SHA-256 of its body, in hex. A redelivery has the same body, so the
/// same id.
pub(crate) fn body_digest(body: &[u8]) -> String {
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
    let text = |text: &str| {
        let mut json = Vec::with_capacity(text.len() + 2);
        write_python_str(&mut json, text);
        json
    };
    let data = alarm.to_json_after(vec![("actions", to_python_json(actions))]);
    let mut inner: Vec<(String, Vec<u8>)> = Vec::with_capacity(20);
    match format {
        WireFormat::Rpc => {
            let mut args = Vec::with_capacity(data.len() + 12);
            write_python_object(&mut args, [("data", data.as_slice())]);
            inner.push(("method".into(), text(RPC_METHOD)));
            inner.push(("args".into(), args));
            inner.push(("version".into(), text("1.0")));
            inner.push(("_unique_id".into(), text(&stamps.unique_id)));
            for (key, value) in ADMIN_CONTEXT {
                let value = match (key, value) {
                    ("request_id", _) => text(&stamps.request_id),
                    (_, Some(value)) => value.as_bytes().to_vec(),
                    (_, None) => b"null".to_vec(),
                };
                inner.push((format!("_context_{key}"), value));
            }
        }
        WireFormat::Notification => {
            inner.push(("message_id".into(), text(&stamps.message_id)));
            inner.push(("publisher_id".into(), text("alarming.evaluator")));
            inner.push(("event_type".into(), text(ALARM_EVENT_TYPE)));
            inner.push(("priority".into(), text(ALARM_PRIORITY)));
            inner.push(("payload".into(), data));
            inner.push(("timestamp".into(), text(&stamps.timestamp)));
            inner.push(("_unique_id".into(), text(&stamps.unique_id)));
        }
    }
    let mut inner_text = Vec::with_capacity(1024);
    write_python_object(&mut inner_text, inner.iter().map(|(key, value)| (key.as_str(), value.as_slice())));
    let inner_text = text(&String::from_utf8(inner_text).unwrap_or_default());
    let mut envelope = Vec::with_capacity(inner_text.len() + 40);
    write_python_object(
        &mut envelope,
        [("oslo.version", text("2.0").as_slice()), ("oslo.message", &inner_text)],
    );
    envelope
}

/// The admin context the evaluator sends with RPC casts, oslo.context's
/// keys in its order, values as JSON text in `json.dumps` form (`None` is
/// null; the request id comes from [`Stamps`]).
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
