//! The decoder on every captured OpenStack message, the publisher's bytes
//! against oslo.messaging's, and the decoder on arbitrary and mutated
//! bytes (it must never panic).

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed test

use proptest::prelude::*;
use serde_json::Value;
use tocsin::message::{
    self, AlarmNotification, DecodeError, Decoded, MessageKind, Properties, Stamps, WireFormat,
};
use tocsin_tests::{PYTHON_JSON_FIXTURES, fixture, python_json_fixture};

const MAX: usize = 1 << 20;

/// Every captured message: (file stem, kind).
const FIXTURES: &[(&str, MessageKind)] = &[
    ("cast-1", MessageKind::Cast),
    ("cast-2", MessageKind::Cast),
    ("juno-no-name/cast-1", MessageKind::Cast),
    ("oslo-context/cast-1", MessageKind::Cast),
    ("call-1", MessageKind::Call),
    ("call-2", MessageKind::Call),
    ("fanout-cast-1", MessageKind::Cast),
    ("fanout-cast-2", MessageKind::Cast),
    ("notification-1", MessageKind::Notification),
    ("notification-2", MessageKind::Notification),
    ("notification-v1-1", MessageKind::Notification),
    ("notification-v1-2", MessageKind::Notification),
];

struct Captured {
    body: Vec<u8>,
    meta: Value,
    /// The inner message, parsed.
    inner: Value,
}

fn captured(stem: &str) -> Captured {
    let body = std::fs::read(fixture(&format!("{stem}.body.bin"))).unwrap();
    let meta: Value =
        serde_json::from_str(&std::fs::read_to_string(fixture(&format!("{stem}.meta.json"))).unwrap())
            .unwrap();
    let outer: Value = serde_json::from_slice(&body).unwrap();
    let inner = match outer.get("oslo.message") {
        Some(Value::String(text)) => serde_json::from_str(text).unwrap(),
        _ => outer,
    };
    Captured { body, meta, inner }
}

fn decode_captured(captured: &Captured) -> Result<Decoded, DecodeError> {
    let properties = &captured.meta["properties"];
    message::decode(
        Properties {
            content_type: properties["content_type"].as_str(),
            content_encoding: properties["content_encoding"].as_str(),
        },
        &captured.body,
        MAX,
    )
}

fn alarm_of(decoded: Decoded) -> AlarmNotification {
    match decoded {
        Decoded::Alarm(notification) => *notification,
        other => panic!("expected an alarm, got {other:?}"),
    }
}

#[test]
fn every_captured_message_decodes_to_its_alarm_and_actions() {
    for (stem, kind) in FIXTURES {
        let captured = captured(stem);
        let notification = alarm_of(decode_captured(&captured).unwrap_or_else(|e| panic!("{stem}: {e}")));
        let data = match kind {
            MessageKind::Notification => &captured.inner["payload"],
            _ => &captured.inner["args"]["data"],
        };
        assert_eq!(notification.kind, *kind, "{stem}");
        assert_eq!(notification.message_id, captured.inner["_unique_id"].as_str().unwrap(), "{stem}");
        assert_eq!(notification.actions, ["http://127.0.0.1:8080/alarm", "log://"], "{stem}");
        let alarm = &notification.alarm;
        assert_eq!(alarm.alarm_id, data["alarm_id"].as_str().unwrap(), "{stem}");
        assert_eq!(alarm.alarm_name.as_deref(), data["alarm_name"].as_str(), "{stem}");
        assert_eq!(alarm.severity.as_deref(), data["severity"].as_str(), "{stem}");
        assert_eq!((alarm.previous.as_str(), alarm.current.as_str()), ("ok", "alarm"), "{stem}");
        assert_eq!(alarm.reason, data["reason"].as_str().unwrap(), "{stem}");
        let reason_data =
            alarm.reason_data.as_ref().map(|data| serde_json::from_str::<Value>(data.as_str()).unwrap());
        assert_eq!(reason_data.as_ref(), Some(&data["reason_data"]), "{stem}");
        match kind {
            MessageKind::Notification => {
                let stamp = captured.inner["timestamp"].as_str().unwrap();
                let micros = notification.changed_at_us.unwrap_or_else(|| panic!("{stem}: no timestamp"));
                assert_eq!(
                    message::oslo_timestamp(jiff::Timestamp::from_microsecond(micros).unwrap()),
                    stamp
                );
            }
            _ => {
                assert_eq!(notification.changed_at_us, None);
                let request_id = captured.inner["_context_request_id"].as_str();
                assert_eq!(notification.request_id.as_deref(), request_id, "{stem}");
            }
        }
    }
}

#[test]
fn juno_messages_have_no_name_and_no_severity() {
    let notification = alarm_of(decode_captured(&captured("juno-no-name/cast-1")).unwrap());
    assert_eq!((notification.alarm.alarm_name, notification.alarm.severity), (None, None));
}

#[test]
fn publisher_writes_oslo_messagings_bytes() {
    for (stem, format) in [("cast-1", WireFormat::Rpc), ("notification-1", WireFormat::Notification)] {
        let captured = captured(stem);
        let notification = alarm_of(decode_captured(&captured).unwrap());
        let inner = &captured.inner;
        let text = |key: &str| inner[key].as_str().unwrap_or_default().to_owned();
        let stamps = Stamps {
            unique_id: text("_unique_id"),
            message_id: text("message_id"),
            request_id: text("_context_request_id"),
            timestamp: text("timestamp"),
        };
        let bytes = message::encode(format, &notification.alarm, &notification.actions, &stamps);
        assert_eq!(String::from_utf8(bytes).unwrap(), String::from_utf8(captured.body).unwrap(), "{stem}");
    }
}

#[test]
fn other_notifications_are_ignored_not_errors() {
    let body = br#"{"message_id": "m", "event_type": "alarm.creation", "priority": "INFO", "payload": {}}"#;
    assert_eq!(
        message::decode(Properties::default(), body, MAX),
        Ok(Decoded::Ignored { event_type: "alarm.creation".into(), priority: "INFO".into() })
    );
    let body = br#"{"event_type": "alarm.update", "priority": "ERROR", "payload": {}}"#;
    assert!(matches!(message::decode(Properties::default(), body, MAX), Ok(Decoded::Ignored { .. })));
}

#[test]
fn poison_messages_are_typed_errors() {
    let decode = |body: &[u8]| message::decode(Properties::default(), body, MAX).map_err(|e| e.code());
    let cast = |data: &str| {
        format!(
            r#"{{"oslo.version": "2.0", "oslo.message": {}}}"#,
            serde_json::to_string(&format!(r#"{{"method": "notify_alarm", "args": {{"data": {data}}}}}"#))
                .unwrap()
        )
    };
    assert_eq!(decode(b"not json"), Err("not-json"));
    assert_eq!(decode(br#"{"oslo.version": "3.0", "oslo.message": "{}"}"#), Err("envelope-version"));
    assert_eq!(decode(br#"{"oslo.version": "2.0", "oslo.message": "{nope"}"#), Err("not-json"));
    assert_eq!(decode(br#"{"oslo.version": "2.0", "oslo.message": {}}"#), Err("invalid-field"));
    assert_eq!(decode(br#"[1, 2]"#), Err("unrecognised"));
    assert_eq!(decode(br#"{"hello": "world"}"#), Err("unrecognised"));
    assert_eq!(decode(br#"{"method": "delete_everything", "args": {}}"#), Err("method"));
    assert_eq!(decode(br#"{"method": "notify_alarm", "args": {}}"#), Err("invalid-field"));
    assert_eq!(
        decode(cast(r#"{"previous": "ok", "current": "alarm", "reason": "r"}"#).as_bytes()),
        Err("invalid-field")
    );
    assert_eq!(decode(cast(r#"{"alarm_id": "a", "previous": "ok", "current": "alarm", "reason": "r", "actions": "log://"}"#).as_bytes()), Err("invalid-field"));
    let error =
        message::decode(Properties::default(), cast(r#"{"alarm_id": "a"}"#).as_bytes(), MAX).unwrap_err();
    assert!(error.to_string().contains("args.data") && error.to_string().contains("previous"), "{error}");
    assert_eq!(
        message::decode(Properties::default(), &vec![b' '; 2048], 1024).map_err(|e| e.code()),
        Err("too-large")
    );
    let pickle = Properties { content_type: Some("application/x-python-serialize"), content_encoding: None };
    assert_eq!(message::decode(pickle, b"{}", MAX).map_err(|e| e.code()), Err("content-type"));
    let latin1 = Properties { content_type: None, content_encoding: Some("latin-1") };
    assert_eq!(message::decode(latin1, b"{}", MAX).map_err(|e| e.code()), Err("content-encoding"));
}

#[test]
fn absent_and_odd_fields_are_treated_as_aodh_treats_them() {
    let decode = |data: &str| {
        let body = format!(r#"{{"method": "notify_alarm", "args": {{"data": {data}}}, "extra": [1]}}"#);
        alarm_of(message::decode(Properties::default(), body.as_bytes(), MAX).unwrap())
    };
    // Havana: no reason_data, no actions; a numeric reason; unknown keys.
    let old = decode(
        r#"{"alarm_id": "a", "previous": "ok", "current": "insufficient data", "reason": 5, "condition": {}}"#,
    );
    assert_eq!(old.actions, Vec::<String>::new());
    assert_eq!(old.alarm.reason, "5");
    assert_eq!(old.alarm.reason_data, None);
    assert_eq!(old.alarm.current, "insufficient data");
    // An action that is not a string is kept as its JSON text, for
    // dispatch to report as unparsable.
    let odd = decode(
        r#"{"alarm_id": "a", "previous": "ok", "current": "alarm", "reason": "r", "actions": ["log://", 7, null]}"#,
    );
    assert_eq!(odd.actions, ["log://", "7", "null"]);
    // No `_unique_id`: the id is a digest of the body, the same each time.
    assert_eq!(odd.message_id.len(), 32);
    assert_eq!(odd.message_id, decode(r#"{"alarm_id": "a", "previous": "ok", "current": "alarm", "reason": "r", "actions": ["log://", 7, null]}"#).message_id);
}

/// `decode` (with its typed fast path) gives what the general decoder
/// alone gives.
fn assert_same_as_reference(body: &[u8]) -> Result<(), TestCaseError> {
    let fast = message::decode(Properties::default(), body, MAX);
    let reference = message::decode_reference(Properties::default(), body, MAX);
    prop_assert_eq!(fast, reference);
    Ok(())
}

/// The inner message's text of an oslo body, as oslo reads it.
fn inner_text(body: &[u8]) -> String {
    let outer: Value = serde_json::from_slice(body).unwrap();
    outer["oslo.message"].as_str().unwrap().to_owned()
}

#[test]
fn reason_data_that_only_python_writes_is_kept_byte_for_byte() {
    for name in PYTHON_JSON_FIXTURES {
        let body = std::fs::read(python_json_fixture(&format!("{name}.body.bin"))).unwrap();
        assert_same_as_reference(&body).unwrap_or_else(|e| panic!("{name}: {e}"));
        let notification = alarm_of(message::decode(Properties::default(), &body, MAX).unwrap());
        let inner = inner_text(&body);
        let reason_data = notification.alarm.reason_data.as_ref().unwrap().as_str();
        // The sender's text: what stands between `"reason_data": ` and the
        // payload's closing brace.
        let sent = inner.split("\"reason_data\": ").nth(1).unwrap();
        assert!(sent.starts_with(reason_data), "{name}: {reason_data} is not {sent}");
        assert!(sent[reason_data.len()..].starts_with('}'), "{name}: {sent}");
        assert_eq!(notification.actions, ["http://127.0.0.1:8080/alarm", "log://"], "{name}");
        let (name_read, lone) = (notification.alarm.alarm_name.as_deref(), notification.lone_surrogates);
        if name == "lone-surrogate-name" {
            assert_eq!((name_read, lone), (Some("cpu-\u{fffd}"), 1), "{name}");
        } else {
            assert_eq!((name_read, lone), (Some("cpu_high"), 0), "{name}");
        }
        assert_eq!(
            notification.alarm.is_event(),
            name.contains("event") || name == "lone-surrogate",
            "{name}"
        );
    }
}

#[test]
fn python_s_json_additions_are_read_where_it_reads_them_and_refused_elsewhere() {
    let decode = |inner: String| {
        let body = serde_json::json!({"oslo.version": "2.0", "oslo.message": inner}).to_string();
        message::decode(Properties::default(), body.as_bytes(), MAX)
    };
    let cast = |reason_data: &str, extra: &str| {
        format!(
            r#"{{"method": "notify_alarm", {extra} "args": {{"data": {{"alarm_id": "a", "previous": "ok", "current": "alarm", "reason": "r", "actions": ["log://"], "reason_data": {reason_data}}}}}}}"#
        )
    };
    let read =
        |inner: String| alarm_of(decode(inner).unwrap()).alarm.reason_data.unwrap().as_str().to_owned();
    assert_eq!(read(cast("[NaN, -Infinity, 1e400, 1E5]", "")), "[NaN, -Infinity, 1e400, 1E5]");
    // A whole value that is a literal, and actions that are.
    for literal in ["NaN", "Infinity", "-Infinity"] {
        assert_eq!(read(cast(literal, "")), literal);
        let inner = cast("0", "").replace(r#"["log://"]"#, &format!(r#"["log://", {literal}]"#));
        assert_eq!(alarm_of(decode(inner).unwrap()).actions, ["log://", literal]);
        let inner = cast("0", "").replace(r#"["log://"]"#, literal);
        let error = decode(inner).unwrap_err().to_string();
        assert!(error.contains("actions: expected a list, found a number"), "{error}");
    }
    // In a field the decoder skips, as Python reads it.
    assert_eq!(read(cast("0", r#""_context_x": [NaN, "\ud800"], "#)), "0");
    // Python's limit on integers, anywhere in the message.
    let at_limit = "9".repeat(4300);
    assert_eq!(read(cast(&at_limit, "")), at_limit);
    for over in [cast(&"9".repeat(4301), ""), cast("0", &format!(r#""_context_x": -{}, "#, "9".repeat(4301)))]
    {
        let error = decode(over).unwrap_err();
        assert_eq!(error.code(), "not-json");
        assert!(error.to_string().contains("4301 digits"), "{error}");
    }
    // Digits written as escapes in the envelope's text are digits all the same.
    let escaped = r#"{"oslo.version": "2.0", "oslo.message": "{\"method\": \"notify_alarm\", \"args\": {\"data\": {\"alarm_id\": \"a\", \"previous\": \"ok\", \"current\": \"alarm\", \"reason\": \"r\", \"reason_data\": DIGITS}}}"}"#;
    let escaped = escaped.replace("DIGITS", &"\\u0031".repeat(4301));
    let error = message::decode(Properties::default(), escaped.as_bytes(), MAX).unwrap_err();
    assert!(error.to_string().contains("4301 digits"), "{error}");
    // What Python refuses stays refused.
    for refused in ["[NaN1]", "[-NaN]", "nan", "[1,]", "\"\t\""] {
        assert_eq!(decode(cast(refused, "")).map_err(|e| e.code()), Err("not-json"), "{refused}");
    }
}

#[test]
fn the_fast_path_decodes_captured_and_odd_messages_as_the_reference_does() {
    for (stem, _) in FIXTURES {
        assert_same_as_reference(&captured(stem).body).unwrap();
    }
    // Null where a string or an object is expected, a list where an object
    // is, a duplicate key, a non-string action, a call's null `_msg_id`.
    let inner = r#"{"method": "notify_alarm", "args": {"data": {"alarm_id": "a", "previous": "ok", "current": "alarm", "reason": "r", "actions": ["log://"]}}}"#;
    for odd in [
        inner.to_owned(),
        inner.replace(r#""method": "notify_alarm""#, r#""method": null, "event_type": "alarm.update""#),
        inner.replace(r#""args": {"data": "#, r#""args": [{"data": "#).replace("}}}", "}]}"),
        inner.replace(r#"{"alarm_id""#, r#"[{"alarm_id""#).replace("}}}", "}]}}"),
        inner.replace(r#""alarm_id": "a""#, r#""alarm_id": "a", "alarm_id": "b""#),
        inner.replace(r#"["log://"]"#, r#"["log://", 7, null]"#),
        inner.replace(r#""actions": ["log://"]"#, r#""actions": null"#),
        // The fast path takes `actions` out of the alarm's own pass: a
        // repeated, escaped or mistyped key, and one before the alarm's.
        inner.replace(r#""actions": ["log://"]"#, r#""actions": ["log://"], "actions": ["test://"]"#),
        inner.replace(r#""actions": ["log://"]"#, r#""actions": null, "actions": ["log://"]"#),
        inner.replace(r#""actions""#, r#""act\u0069ons""#),
        inner.replace(r#"["log://"]"#, r#"{"url": "log://"}"#),
        inner.replace(
            r#""alarm_id": "a", "previous""#,
            r#""actions": ["log://"], "alarm_id": "a", "previous""#,
        ),
        inner.replace(r#"{"method""#, r#"{"_msg_id": null, "method""#),
        inner.replace(r#"{"method""#, r#"{"_unique_id": "", "_context_request_id": 5, "method""#),
        serde_json::json!({"oslo.version": "2.0", "oslo.message": inner}).to_string(),
        serde_json::json!({"oslo.version": "3.0", "oslo.message": inner}).to_string(),
        serde_json::json!({"oslo.version": null, "oslo.message": inner}).to_string(),
        serde_json::json!(["2.0", inner]).to_string(),
    ] {
        assert_same_as_reference(odd.as_bytes()).unwrap_or_else(|e| panic!("{odd}: {e}"));
    }
}

/// Mutations of a captured message: flip, insert or delete bytes, or cut it.
fn mutated_fixture() -> impl Strategy<Value = Vec<u8>> {
    let bodies: Vec<Vec<u8>> = FIXTURES.iter().map(|(stem, _)| captured(stem).body).collect();
    (proptest::sample::select(bodies), proptest::collection::vec((any::<usize>(), any::<u8>(), 0..3u8), 1..8))
        .prop_map(|(mut body, edits)| {
            for (at, byte, op) in edits {
                let at = at % (body.len() + 1);
                match op {
                    0 if at < body.len() => body[at] = byte,
                    1 => body.insert(at, byte),
                    _ => body.truncate(at),
                }
            }
            body
        })
}

/// A captured message with one inner field replaced by arbitrary JSON.
fn mutated_field() -> impl Strategy<Value = Vec<u8>> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        ".{0,20}".prop_map(Value::String),
    ];
    let json = leaf.prop_recursive(3, 16, 4, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            proptest::collection::btree_map(".{0,8}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    });
    let paths: &[&[&str]] = &[
        &["method"],
        &["args"],
        &["args", "data"],
        &["args", "data", "actions"],
        &["args", "data", "alarm_id"],
        &["args", "data", "reason"],
        &["args", "data", "reason_data"],
        &["_unique_id"],
        &["event_type"],
        &["priority"],
        &["payload"],
        &["payload", "actions"],
        &["payload", "previous"],
        &["timestamp"],
    ];
    (0..FIXTURES.len(), proptest::sample::select(paths.to_vec()), json, any::<bool>()).prop_map(
        |(index, path, value, enveloped)| {
            let mut inner = captured(FIXTURES[index].0).inner;
            let mut slot = &mut inner;
            for key in &path[..path.len() - 1] {
                slot = &mut slot[*key];
            }
            if slot.is_object() {
                slot[path[path.len() - 1]] = value;
            }
            let text = serde_json::to_string(&inner).unwrap();
            if enveloped {
                serde_json::to_vec(&serde_json::json!({"oslo.version": "2.0", "oslo.message": text})).unwrap()
            } else {
                text.into_bytes()
            }
        },
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(body in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = message::decode(Properties::default(), &body, MAX);
    }

    #[test]
    fn mutated_messages_never_panic(body in mutated_fixture()) {
        let _ = message::decode(Properties::default(), &body, MAX);
    }

    #[test]
    fn mutated_messages_decode_as_the_reference_decoder_does(body in mutated_fixture()) {
        assert_same_as_reference(&body)?;
    }

    #[test]
    fn mutated_fields_decode_as_the_reference_decoder_does(body in mutated_field()) {
        assert_same_as_reference(&body)?;
    }

    #[test]
    fn mutated_fields_never_panic_and_keep_the_contract(body in mutated_field()) {
        let decoded = message::decode(Properties::default(), &body, MAX);
        if let Ok(Decoded::Alarm(notification)) = &decoded {
            prop_assert!(!notification.message_id.is_empty());
        }
        // Pure: a redelivery of the same bytes decodes the same way, ids included.
        prop_assert_eq!(decoded, message::decode(Properties::default(), &body, MAX));
    }
}
