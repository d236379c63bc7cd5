//! `tocsin serve` against the real RabbitMQ and real HTTP sinks on
//! 127.0.0.1: captured OpenStack messages delivered, retries that keep the
//! delivery id, dead letters with reasons, poison messages, competing
//! consumers, shutdown. Each test runs in its own virtual host.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed test

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use lapin::BasicProperties;
use lapin::types::{AMQPValue, FieldTable, ShortString};
use serde_json::Value;
use tocsin_core::alarm::Delivery;
use tocsin_tests::broker::{TestVhost, eventually, rabbitmqctl};
use tocsin_tests::service::{Service, cli, test_config};
use tocsin_tests::tls::{TestCa, TlsFront};
use tocsin_tests::webhook::{Received, Reply, Webhook};
use tocsin_tests::{PYTHON_JSON_FIXTURES, aodh_python, fixture, pypi_python, python_json_fixture};

const TOCSIN: &str = env!("CARGO_BIN_EXE_tocsin");

/// Every captured message with an action to `http://127.0.0.1:8080/alarm`.
const FIXTURES: &[&str] = &[
    "cast-1",
    "cast-2",
    "juno-no-name/cast-1",
    "oslo-context/cast-1",
    "call-1",
    "call-2",
    "fanout-cast-1",
    "fanout-cast-2",
    "notification-1",
    "notification-2",
    "notification-v1-1",
    "notification-v1-2",
];

async fn serve(vhost: &TestVhost, extra: &str) -> Service {
    Service::start(TOCSIN, &test_config(&vhost.transport_url(), "test-host", extra)).await
}

/// The captured properties of a fixture, as lapin properties.
fn properties(meta: &Value) -> BasicProperties {
    let captured = &meta["properties"];
    let mut properties = BasicProperties::default()
        .with_content_type(captured["content_type"].as_str().unwrap().into())
        .with_content_encoding(captured["content_encoding"].as_str().unwrap().into())
        .with_delivery_mode(u8::try_from(captured["delivery_mode"].as_u64().unwrap()).unwrap())
        .with_priority(0)
        .with_headers(FieldTable::default());
    if let Some(expiration) = captured["expiration"].as_str() {
        properties = properties.with_expiration(expiration.into());
    }
    properties
}

/// Publishes a captured message as it was captured, its action pointed at
/// `sink` instead of the capture's `127.0.0.1:8080`. Returns the inner
/// message's `_unique_id`.
async fn publish_fixture(vhost: &TestVhost, stem: &str, sink: &Webhook) -> String {
    publish_captured(
        vhost,
        &fixture(&format!("{stem}.body.bin")),
        &fixture(&format!("{stem}.meta.json")),
        sink,
    )
    .await
}

/// [`publish_fixture`] of the message captured in `body` and `meta`.
async fn publish_captured(vhost: &TestVhost, body: &Path, meta: &Path, sink: &Webhook) -> String {
    let meta: Value = serde_json::from_str(&std::fs::read_to_string(meta).unwrap()).unwrap();
    let body = std::fs::read_to_string(body).unwrap();
    let body = body.replace("127.0.0.1:8080", &sink.addr.to_string());
    let exchange = meta["exchange"].as_str().unwrap();
    let routing_key = meta["routing_key"].as_str().unwrap();
    vhost.publish(exchange, routing_key, properties(&meta), body.as_bytes()).await;
    let unique = body.split("_unique_id\\\": \\\"").nth(1).or_else(|| body.split("_unique_id\": \"").nth(1));
    unique.unwrap().chars().take(32).collect()
}

/// The body aodh's REST notifier sends for a captured message: its seven
/// alarm fields in aodh's order (absent ones null), as `json.dumps` writes
/// them.
fn aodh_body(stem: &str) -> Vec<u8> {
    let decoded: Value =
        serde_json::from_str(&std::fs::read_to_string(fixture(&format!("{stem}.decoded.json"))).unwrap())
            .unwrap();
    let inner = decoded.get("oslo.message(parsed)").unwrap_or(&decoded);
    let data = inner.get("payload").unwrap_or(&inner["args"]["data"]);
    let mut body = serde_json::Map::new();
    for key in ["alarm_name", "alarm_id", "severity", "previous", "current", "reason", "reason_data"] {
        body.insert(key.into(), data.get(key).cloned().unwrap_or(Value::Null));
    }
    tocsin_contract::json::to_python_json(&Value::Object(body))
}

fn header_text(headers: &FieldTable, key: &str) -> String {
    match headers.inner().get(&ShortString::from(key)) {
        Some(AMQPValue::LongString(text)) => text.to_string(),
        other => panic!("header {key}: {other:?}"),
    }
}

async fn wait_for_requests(sink: &Webhook, count: usize) -> Vec<Received> {
    let arrived = eventually(Duration::from_secs(30), async || sink.received().len() >= count).await;
    assert!(arrived, "{} of {count} requests arrived", sink.received().len());
    sink.received()
}

#[tokio::test]
async fn every_captured_message_is_delivered_with_aodhs_body_and_headers() {
    let vhost = TestVhost::create();
    let sink = Webhook::start(Reply::status(200)).await.unwrap();
    let service = serve(&vhost, "").await;
    let mut unique_ids = Vec::new();
    for stem in FIXTURES {
        unique_ids.push(publish_fixture(&vhost, stem, &sink).await);
    }
    let received = wait_for_requests(&sink, FIXTURES.len()).await;
    let aodh = std::fs::read(fixture("http-post-200.raw")).unwrap();
    let aodh_body_200 = &aodh[aodh.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4..];
    let by_request_id: HashMap<&str, &Received> =
        received.iter().map(|r| (r.header("x-openstack-request-id").unwrap(), r)).collect();
    for (stem, unique_id) in FIXTURES.iter().zip(&unique_ids) {
        let request_id = Delivery { id: format!("{unique_id}.0"), attempt: 1, tenant: None }.request_id();
        let request = by_request_id
            .get(request_id.as_str())
            .unwrap_or_else(|| panic!("{stem}: no request {request_id}"));
        assert_eq!((request.method.as_str(), request.target.as_str()), ("POST", "/alarm"), "{stem}");
        assert_eq!(request.header("content-type"), Some("application/json"), "{stem}");
        let expected = aodh_body(stem);
        assert_eq!(String::from_utf8_lossy(&request.body), String::from_utf8_lossy(&expected), "{stem}");
        if *stem == "cast-1" {
            assert_eq!(request.body, aodh_body_200, "the body of aodh's captured request, byte for byte");
        }
    }
    let log_lines = eventually(Duration::from_secs(10), async || {
        service
            .logs()
            .iter()
            .filter(|l| {
                l["plugin"] == "log"
                    && l["message"].as_str().is_some_and(|m| m.starts_with("Notifying alarm"))
            })
            .count()
            == FIXTURES.len()
    })
    .await;
    assert!(log_lines, "one log:// line per message: {}", service.log_text());
    assert_eq!(sink.received().len(), FIXTURES.len(), "each message delivered once");
}

/// The service runs in-process ([`tocsin::service::run`]) as it runs in a
/// process of its own: it delivers a captured alarm with Aodh's body, and
/// returns, cleanly, once the future it was given to stop on completes.
#[tokio::test]
async fn the_service_runs_in_process_and_returns_when_its_shutdown_future_completes() {
    let vhost = TestVhost::create();
    let sink = Webhook::start(Reply::status(200)).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tocsin.toml");
    let state = format!("[uploads]\nstate_path = \"{}\"\n", dir.path().display());
    std::fs::write(&path, test_config(&vhost.transport_url(), "in-process-host", &state)).unwrap();
    let config = tocsin::config::Config::load(Some(&path)).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let ready = format!("http://{}/readyz", listener.local_addr().unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let service = tokio::spawn(tocsin::service::run(config, listener, async {
        let _ = stopped.await;
    }));
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let consuming = eventually(Duration::from_secs(30), async || {
        client.get(&ready).send().await.is_ok_and(|response| response.status() == 200)
    })
    .await;
    assert!(consuming, "the service became ready");
    let unique_id = publish_fixture(&vhost, "notification-1", &sink).await;
    let received = wait_for_requests(&sink, 1).await;
    let request_id = Delivery { id: format!("{unique_id}.0"), attempt: 1, tenant: None }.request_id();
    assert_eq!(received[0].header("x-openstack-request-id"), Some(request_id.as_str()));
    assert_eq!(received[0].body, aodh_body("notification-1"));
    assert!(!service.is_finished(), "the service runs until told to stop");
    stop.send(()).unwrap();
    let ended = tokio::time::timeout(Duration::from_secs(60), service).await;
    ended.expect("the service returns once its shutdown future completes").unwrap().unwrap();
}

/// The body Aodh's REST notifier sends for each captured message in
/// `bodies`, from aodh's own code (`tests/aodh/rest_body.py`), in order.
fn aodh_rest_bodies(bodies: &[PathBuf]) -> Vec<String> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/aodh/rest_body.py");
    let output = std::process::Command::new(aodh_python()).arg(script).args(bodies).output().unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let lines: Vec<String> = String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str::<Value>(line).unwrap()["body"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(lines.len(), bodies.len());
    lines
}

/// Alarms whose reason data holds `NaN`, `Infinity`, `-Infinity`, a
/// 20-digit integer and lone surrogates, as the real oslo.messaging client
/// sent them, reach the receiver with the body Aodh's own REST notifier
/// sends for the same bytes, byte for byte, the first request's retry after
/// a 503 included. The one difference: a lone surrogate in `alarm_name`,
/// which a plugin's string cannot carry, arrives as U+FFFD, and is logged.
#[tokio::test]
async fn reason_data_only_python_writes_arrives_as_aodh_sends_it() {
    let vhost = TestVhost::create();
    let sink = Webhook::start(Reply::Script(vec![Reply::status(503), Reply::status(200)])).await.unwrap();
    let service = serve(&vhost, "").await;
    let bodies: Vec<PathBuf> =
        PYTHON_JSON_FIXTURES.iter().map(|name| python_json_fixture(&format!("{name}.body.bin"))).collect();
    for (name, body) in PYTHON_JSON_FIXTURES.iter().zip(&bodies) {
        publish_captured(&vhost, body, &python_json_fixture(&format!("{name}.meta.json")), &sink).await;
    }
    let aodh = aodh_rest_bodies(&bodies);
    let received = wait_for_requests(&sink, PYTHON_JSON_FIXTURES.len() + 1).await;
    let mut retried = 0;
    for (name, expected) in PYTHON_JSON_FIXTURES.iter().zip(&aodh) {
        let expected = if *name == "lone-surrogate-name" {
            assert!(expected.contains(r#""alarm_name": "cpu-\ud800""#), "{expected}");
            expected.replace(r#""alarm_name": "cpu-\ud800""#, r#""alarm_name": "cpu-\ufffd""#)
        } else {
            expected.clone()
        };
        let alarm_id = expected.split(r#""alarm_id": ""#).nth(1).unwrap().split('"').next().unwrap();
        let requests: Vec<&Received> = received
            .iter()
            .filter(|r| String::from_utf8_lossy(&r.body).contains(&format!(r#""alarm_id": "{alarm_id}""#)))
            .collect();
        assert!(!requests.is_empty() && requests.len() <= 2, "{name}: {} requests", requests.len());
        retried += requests.len() - 1;
        for request in requests {
            assert_eq!(String::from_utf8_lossy(&request.body), expected, "{name}");
        }
    }
    assert_eq!(retried, 1, "the first request got a 503 and was sent again");
    let delivered = eventually(Duration::from_secs(10), async || {
        service.lines_with("dispatch: Delivered.").iter().any(|l| l["attempt"] == 2)
    })
    .await;
    assert!(delivered, "a retry delivered: {}", service.log_text());
    let lossy = service.lines_with(
        "intake: The alarm's text fields or actions hold lone surrogate escapes, which Python reads and a \
         plugin's string cannot carry; each is delivered as U+FFFD.",
    );
    assert_eq!(lossy.len(), 1, "{}", service.log_text());
    assert_eq!(
        (&lossy[0]["lone_surrogates"], &lossy[0]["alarm_id"]),
        (&1.into(), &"5b0c7b4e-0d4e-4c8e-9a1e-000000000007".into())
    );
    assert_eq!(vhost.depth("tocsin.dead-letters").await, 0, "{}", service.log_text());
}

#[tokio::test]
async fn a_503_is_retried_with_the_same_delivery_and_a_400_is_dead_lettered() {
    let vhost = TestVhost::create();
    let flaky =
        Webhook::start(Reply::Script(vec![Reply::status(503), Reply::status(503), Reply::status(200)]))
            .await
            .unwrap();
    let refusing = Webhook::start(Reply::status(400)).await.unwrap();
    let signing = "[http.signing.\"127.0.0.1\"]\nsecrets = [\"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\"]\n";
    let service = serve(&vhost, signing).await;
    tocsin_cli(&vhost, &["publish", "--action", &flaky.url("/hook"), "--action", &refusing.url("/hook")])
        .await;

    let attempts = wait_for_requests(&flaky, 3).await;
    let ids: Vec<&str> = attempts.iter().map(|r| r.header("x-openstack-request-id").unwrap()).collect();
    assert!(ids.iter().all(|id| *id == ids[0]), "one request id across attempts: {ids:?}");
    let webhook_ids: Vec<&str> = attempts.iter().map(|r| r.header("webhook-id").unwrap()).collect();
    assert!(
        webhook_ids.iter().all(|id| *id == webhook_ids[0]) && webhook_ids[0].ends_with(".0"),
        "one webhook-id, the delivery id, across attempts: {webhook_ids:?}"
    );
    assert_eq!(attempts.iter().map(|r| &r.body).collect::<std::collections::HashSet<_>>().len(), 1);
    let delivered = eventually(Duration::from_secs(10), async || {
        service.lines_with("dispatch: Delivered.").iter().any(|l| l["attempt"] == 3)
    })
    .await;
    assert!(delivered, "delivered on the third attempt: {}", service.log_text());
    let attempt_ids: Vec<Value> = service
        .logs()
        .into_iter()
        .filter(|l| {
            l["delivery_id"].as_str().is_some_and(|id| id.ends_with(".0")) && l["attempt"].is_number()
        })
        .map(|l| l["delivery_id"].clone())
        .collect();
    assert!(attempt_ids.len() >= 3 && attempt_ids.iter().all(|id| *id == attempt_ids[0]), "{attempt_ids:?}");

    let dead =
        eventually(Duration::from_secs(10), async || vhost.depth("tocsin.dead-letters").await == 1).await;
    assert!(dead, "the 400 is dead-lettered: {}", service.log_text());
    let letters = vhost.drain("tocsin.dead-letters").await;
    let headers = letters[0].delivery.properties.headers().clone().unwrap();
    assert_eq!(header_text(&headers, "x-tocsin-reason-code"), "permanent");
    assert!(header_text(&headers, "x-tocsin-reason").contains("400"), "{headers:?}");
    let record: Value = serde_json::from_slice(&letters[0].delivery.data).unwrap();
    assert_eq!(record["action"], refusing.url("/hook"));
    assert!(record["delivery_id"].as_str().unwrap().ends_with(".1"));
    assert_eq!(refusing.received().len(), 1, "a permanent failure is not retried");
}

#[tokio::test]
async fn a_retry_after_of_2_s_is_honoured() {
    let vhost = TestVhost::create();
    let busy = Reply::Status(503, vec![("retry-after".into(), "2".into())], Vec::new());
    let sink = Webhook::start(Reply::Script(vec![busy, Reply::status(200)])).await.unwrap();
    // A tier of at least 2 s to honour it in (the test tiers are shorter).
    let config = test_config(&vhost.transport_url(), "test-host", "")
        .replace("retry_tiers_ms = [200, 400, 800]", "retry_tiers_ms = [200, 400, 2500]");
    assert!(config.contains("2500"), "the tiers were replaced");
    let service = Service::start(TOCSIN, &config).await;
    tocsin_cli(&vhost, &["publish", "--action", &sink.url("/busy")]).await;
    let attempts = wait_for_requests(&sink, 2).await;
    let waited = attempts[1].at - attempts[0].at;
    assert!(waited >= Duration::from_secs(2), "the second attempt came {waited:?} after the first");
    let delivered = eventually(Duration::from_secs(10), async || {
        service.lines_with("dispatch: Delivered.").iter().any(|l| l["attempt"] == 2)
    })
    .await;
    assert!(delivered, "delivered on the second attempt: {}", service.log_text());
}

/// An oslo 2.0 RPC cast of `notify_alarm` carrying `data`, with a fresh
/// `_unique_id`.
fn cast(data: String) -> Vec<u8> {
    let inner = format!(
        r#"{{"method": "notify_alarm", "args": {{"data": {data}}}, "_unique_id": "{}"}}"#,
        uuid_hex()
    );
    serde_json::to_vec(&serde_json::json!({"oslo.version": "2.0", "oslo.message": inner})).unwrap()
}

/// An alarm's `data` with `alarm_id` and `actions` (JSON text).
fn alarm_data(alarm_id: &str, actions: &str) -> String {
    format!(
        r#"{{"alarm_id": "{alarm_id}", "previous": "ok", "current": "alarm", "reason": "r", "actions": {actions}}}"#
    )
}

fn json_properties() -> BasicProperties {
    BasicProperties::default().with_content_type("application/json".into())
}

#[tokio::test]
async fn poison_messages_are_dead_lettered_and_delivery_goes_on() {
    let vhost = TestVhost::create();
    let sink = Webhook::start(Reply::status(200)).await.unwrap();
    let service = serve(&vhost, "").await;
    let json = json_properties();
    let alarm = |actions: &str| alarm_data("a1", actions);
    let poison: Vec<(&str, Vec<u8>)> = vec![
        ("not-json", b"this is not json".to_vec()),
        ("envelope-version", br#"{"oslo.version": "3.0", "oslo.message": "{}"}"#.to_vec()),
        ("invalid-field", cast(r#"{"previous": "ok"}"#.into())),
        ("too-large", vec![b' '; 10 << 20]),
        ("unparsable-action", cast(alarm(r#"["http://[::1"]"#))),
        ("unknown-scheme", cast(alarm(r#"["gopher://example.com/"]"#))),
    ];
    for (_, body) in &poison {
        vhost.publish("ceilometer", "alarm_notifier", json.clone(), body).await;
    }
    vhost
        .publish(
            "ceilometer",
            "alarm_notifier",
            json.clone(),
            &cast(alarm(&format!(r#"["{}"]"#, sink.url("/ok")))),
        )
        .await;
    wait_for_requests(&sink, 1).await;
    let all_dead = eventually(Duration::from_secs(10), async || {
        vhost.depth("tocsin.dead-letters").await as usize == poison.len()
    })
    .await;
    assert!(all_dead, "{}", service.log_text());
    let letters = vhost.drain("tocsin.dead-letters").await;
    let mut codes: Vec<String> = letters
        .iter()
        .map(|m| header_text(&m.delivery.properties.headers().clone().unwrap(), "x-tocsin-reason-code"))
        .collect();
    codes.sort();
    let mut expected: Vec<&str> = poison.iter().map(|(code, _)| *code).collect();
    expected.sort();
    assert_eq!(codes, expected);
    let big = letters
        .iter()
        .find(|m| m.delivery.data.len() == 10 << 20)
        .expect("the 10 MiB body is kept as it came");
    let headers = big.delivery.properties.headers().clone().unwrap();
    assert_eq!(header_text(&headers, "x-tocsin-routing-key"), "alarm_notifier");
    assert!(service.lines_with("Action gopher for alarm a1 is unknown, cannot notify").len() == 1);
    assert_eq!(vhost.depth("alarm_notifier").await, 0, "nothing is left requeued");
}

/// Issue 20, findings 2 and 4: a message whose alarm id is longer than
/// `intake.max_field_bytes`, that carries more than `intake.max_actions`
/// actions, or whose size times its actions is more than
/// `intake.max_fanout_bytes`, is dead-lettered whole with the reason, none
/// of its actions sent; the next alarm is delivered. At e8aba4b both were delivered: the
/// 5,000-byte id written into every log line of the delivery, each of the
/// 101 actions sent, all at once, each with its own deep copy of the alarm.
#[tokio::test]
async fn an_oversized_alarm_id_or_too_many_actions_is_dead_lettered_whole() {
    let vhost = TestVhost::create();
    let sink = Webhook::start(Reply::status(200)).await.unwrap();
    let service = serve(&vhost, "").await;
    let long_id = alarm_data(&"i".repeat(5_000), &format!(r#"["{}"]"#, sink.url("/long-id")));
    let many: Vec<String> = (0..101).map(|n| format!(r#""{}""#, sink.url(&format!("/many/{n}")))).collect();
    let many = alarm_data("a-many", &format!("[{}]", many.join(", ")));
    // 200 KB times 90 actions: more than intake.max_fanout_bytes (16 MiB).
    let fanout: Vec<String> =
        (0..90).map(|n| format!(r#""{}""#, sink.url(&format!("/fanout/{n}")))).collect();
    let fanout = alarm_data("a-fanout", &format!("[{}]", fanout.join(", ")))
        .replace(r#""reason": "r""#, &format!(r#""reason": "{}""#, "r".repeat(200_000)));
    for data in [long_id, many, fanout, alarm_data("a-ok", &format!(r#"["{}"]"#, sink.url("/ok")))] {
        vhost.publish("ceilometer", "alarm_notifier", json_properties(), &cast(data)).await;
    }
    wait_for_requests(&sink, 1).await;
    let dead =
        eventually(Duration::from_secs(10), async || vhost.depth("tocsin.dead-letters").await == 3).await;
    assert!(dead, "{}", service.log_text());
    let letters = vhost.drain("tocsin.dead-letters").await;
    let reasons: HashMap<String, String> = letters
        .iter()
        .map(|m| {
            let headers = m.delivery.properties.headers().clone().unwrap();
            (header_text(&headers, "x-tocsin-reason-code"), header_text(&headers, "x-tocsin-reason"))
        })
        .collect();
    assert_eq!(
        reasons["field-too-long"],
        "alarm_id has 5000 bytes, more than the 4096 allowed (intake.max_field_bytes)"
    );
    assert_eq!(
        reasons["too-many-actions"],
        "the alarm has 101 actions, more than the 100 allowed (intake.max_actions)"
    );
    assert!(
        reasons["too-large-fanout"].contains("and 90 actions, more than the 16777216 bytes"),
        "{reasons:?}"
    );
    let targets: Vec<String> = sink.received().into_iter().map(|request| request.target).collect();
    assert_eq!(targets, ["/ok"], "nothing of the refused messages was sent");
}

/// Issue 20, finding 4: the deliveries of one message run at most
/// `dispatch.per_message` (16) at once. An alarm with 40 actions to an
/// endpoint that never answers (`per_host` and the concurrency raised
/// above 16) has 16 requests open while a later alarm is delivered. At
/// e8aba4b it took every delivery slot (32), and the later alarm waited.
#[tokio::test]
async fn the_deliveries_of_one_message_run_at_most_per_message_at_once() {
    let vhost = TestVhost::create();
    let hanging = Webhook::start(Reply::Hang).await.unwrap();
    let healthy = Webhook::start(Reply::status(200)).await.unwrap();
    let config = test_config(&vhost.transport_url(), "test-host", "")
        .replace("instances = 16", "instances = 32")
        .replace("concurrency = 16", "concurrency = 32\nper_host = 64");
    let service = Service::start(TOCSIN, &config).await;
    let mut args = vec!["publish".to_owned()];
    for n in 0..40 {
        args.extend(["--action".to_owned(), hanging.url(&format!("/hang/{n}"))]);
    }
    tocsin_cli(&vhost, &args.iter().map(String::as_str).collect::<Vec<_>>()).await;
    let open = eventually(Duration::from_secs(10), async || hanging.received().len() >= 16).await;
    assert!(open, "{}", service.log_text());
    tocsin_cli(&vhost, &["publish", "--action", &healthy.url("/ok")]).await;
    wait_for_requests(&healthy, 1).await;
    assert_eq!(hanging.received().len(), 16, "{}", service.log_text());
}

/// Issue 20, finding 5: when the broker refuses a retry (here a policy
/// rejects every publish to the retry tiers), the message is requeued
/// after a backoff (100, 200, 400, 800, 1,600 ms from
/// `backoff_initial_ms`), its delivered action is not sent again, and
/// after `delivery.max_redeliveries` (5) requeues what is left of it is
/// dead-lettered. At e8aba4b it was requeued at once, in a tight loop,
/// and both actions were sent each time, without end.
#[tokio::test]
async fn a_refused_retry_backs_off_sends_nothing_twice_and_ends_as_a_dead_letter() {
    let vhost = TestVhost::create();
    let refuse = r#"{"max-length": 0, "overflow": "reject-publish"}"#;
    rabbitmqctl(&["-q", "set_policy", "-p", &vhost.name, "refuse-retries", r"^tocsin\.retry\.", refuse]);
    let ok = Webhook::start(Reply::status(200)).await.unwrap();
    let failing = Webhook::start(Reply::status(503)).await.unwrap();
    let service = serve(&vhost, "").await;
    tocsin_cli(&vhost, &["publish", "--action", &ok.url("/ok"), "--action", &failing.url("/fail")]).await;
    let dead =
        eventually(Duration::from_secs(30), async || vhost.depth("tocsin.dead-letters").await == 1).await;
    assert!(dead, "{}", service.log_text());
    let letters = vhost.drain("tocsin.dead-letters").await;
    let headers = letters[0].delivery.properties.headers().clone().unwrap();
    assert_eq!(header_text(&headers, "x-tocsin-reason-code"), "too-many-redeliveries");
    let record: Value = serde_json::from_slice(&letters[0].delivery.data).unwrap();
    assert_eq!(record["action"], failing.url("/fail"), "only what was left: {record}");
    assert_eq!(ok.received().len(), 1, "the delivered action is not sent again");
    assert_eq!(failing.received().len(), 5, "one attempt per requeue");
    let requeues: Vec<u64> = service
        .lines_with(
            "intake: A retry or dead letter was not confirmed by the broker; the message is requeued after a backoff.",
        )
        .iter()
        .map(|line| line["requeue_in_ms"].as_u64().unwrap())
        .collect();
    assert_eq!(requeues, [100, 200, 400, 800, 1_600]);
    assert_eq!(service.lines_with("intake: The message came back after a requeue; its actions settled before are not sent again.").len(), 4);
}

#[tokio::test]
async fn two_services_share_the_queue_and_handle_each_message_once() {
    let vhost = TestVhost::create();
    let sink = Webhook::start(Reply::status(200)).await.unwrap();
    let config = |host: &str| test_config(&vhost.transport_url(), host, "");
    let first = Service::start(TOCSIN, &config("host-a")).await;
    let second = Service::start(TOCSIN, &config("host-b")).await;
    let count = 200;
    tocsin_cli(&vhost, &["publish", "--count", &count.to_string(), "--action", &sink.url("/shared")]).await;
    let received = wait_for_requests(&sink, count).await;
    let ids: std::collections::HashSet<&str> =
        received.iter().map(|r| r.header("x-openstack-request-id").unwrap()).collect();
    assert_eq!(ids.len(), count, "every message handled once");
    let sample = r#"tocsin_deliveries_total{plugin="http",tenant="",outcome="delivered"}"#;
    let (a, b) = (first.metric(sample).await, second.metric(sample).await);
    assert_eq!(a + b, count as f64);
    assert!(a > 0.0 && b > 0.0, "both hosts did work: {a} and {b}");
}

/// `?ssl=1` with `ssl_ca_file`, `ssl_cert_file` and `ssl_key_file`, as oslo
/// has them: the service reaches the broker through a TLS listener that
/// presents a certificate from the test's CA and requires one from the
/// client, and delivers. A service that does not trust the CA, or presents
/// no client certificate, never connects and says why.
#[tokio::test]
async fn the_broker_is_reached_over_tls_with_the_configured_ca_and_client_certificate() {
    let vhost = TestVhost::create();
    let ca = TestCa::new();
    let front =
        TlsFront::start(ca.server_config(&ca.server("127.0.0.1"), true), "127.0.0.1:5672").await.unwrap();
    let files = tempfile::tempdir().unwrap();
    let client = ca.client("tocsin");
    let ca_file = files.path().join("ca.pem");
    let cert_file = files.path().join("client.pem");
    let key_file = files.path().join("client.key");
    std::fs::write(&ca_file, ca.pem()).unwrap();
    std::fs::write(&cert_file, &client.cert_pem).unwrap();
    std::fs::write(&key_file, &client.key_pem).unwrap();
    let url = format!("{}?ssl=1", vhost.transport_url().replace("127.0.0.1:5672", &front.addr.to_string()));
    let config =
        |tls: &str| test_config(&url, "tls-host", "").replacen("[broker]\n", &format!("[broker]\n{tls}"), 1);
    let option = |name: &str, path: &std::path::Path| format!("{name} = {:?}\n", path.display().to_string());

    let sink = Webhook::start(Reply::status(200)).await.unwrap();
    let trusted = [
        option("ssl_ca_file", &ca_file),
        option("ssl_cert_file", &cert_file),
        option("ssl_key_file", &key_file),
    ];
    let service = Service::start(TOCSIN, &config(&trusted.concat())).await;
    assert!(front.handshakes() >= 1, "the service connected through the TLS listener");
    tocsin_cli(&vhost, &["publish", "--action", &sink.url("/over-tls")]).await;
    assert_eq!(wait_for_requests(&sink, 1).await.len(), 1, "delivered: {}", service.log_text());
    drop(service);

    for (tls, cause) in [
        (trusted[1..].concat(), "invalid peer certificate: UnknownIssuer"),
        (trusted[0].clone(), "received fatal alert: CertificateRequired"),
    ] {
        let refused = Service::launch(TOCSIN, &config(&tls)).await;
        let unreachable = "intake: Cannot reach any broker of transport_url; retrying.";
        let said =
            eventually(Duration::from_secs(20), async || !refused.lines_with(unreachable).is_empty()).await;
        assert!(said, "no line saying the broker cannot be reached: {}", refused.log_text());
        let error = refused.lines_with(unreachable)[0]["error"].as_str().unwrap_or_default().to_owned();
        assert!(error.contains(&front.addr.to_string()) && error.contains(cause), "{cause}: {error}");
        assert_eq!(refused.get("/readyz").await.0, 503, "{cause}: not ready");
    }
}

/// A service whose retries wait 2 s, and a sink that answers its first
/// request with a 503: time to send a second alarm while the first waits.
async fn retrying_after_2_s() -> (TestVhost, Webhook, Service) {
    let vhost = TestVhost::create();
    let sink = Webhook::start(Reply::Script(vec![Reply::status(503), Reply::status(200)])).await.unwrap();
    let config = test_config(&vhost.transport_url(), "test-host", "")
        .replace("retry_tiers_ms = [200, 400, 800]", "retry_tiers_ms = [2000]");
    let service = Service::start(TOCSIN, &config).await;
    (vhost, sink, service)
}

#[tokio::test]
async fn a_newer_state_change_supersedes_a_pending_retry() {
    let (vhost, sink, service) = retrying_after_2_s().await;
    tocsin_cli(&vhost, &["publish", "--action", &sink.url("/state")]).await;
    wait_for_requests(&sink, 1).await;
    let mut newer = tocsin_tests::sample_alarm();
    (newer.previous, newer.current) = ("alarm".into(), "ok".into());
    let file = write_temp(&newer.to_json());
    tocsin_cli(
        &vhost,
        &["publish", "--alarm", file.path().to_str().unwrap(), "--action", &sink.url("/state")],
    )
    .await;
    let superseded = eventually(Duration::from_secs(20), async || {
        !service
            .lines_with(
                "intake: A newer state change of this alarm went to this action; the stale retry is dropped.",
            )
            .is_empty()
    })
    .await;
    assert!(superseded, "{}", service.log_text());
    let states: Vec<String> = sink
        .received()
        .iter()
        .map(|r| serde_json::from_slice::<Value>(&r.body).unwrap()["current"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(states, ["alarm", "ok"], "the receiver ends on the newest state, the stale retry never sent");
    assert_eq!(service.metric(r#"tocsin_messages_total{kind="retry",outcome="superseded"}"#).await, 1.0);
}

/// An event alarm fires twice while its first delivery waits for a retry:
/// each message is another event, so both are delivered, the first on its
/// retry after the second.
#[tokio::test]
async fn an_event_alarms_pending_retry_is_never_superseded() {
    let (vhost, sink, service) = retrying_after_2_s().await;
    let event = |instance: &str| {
        let mut alarm = tocsin_tests::sample_alarm();
        alarm.reason = format!("Event <compute.instance.delete.end> of {instance} hit the query <query>.");
        let reason_data = format!(
            r#"{{"type": "event", "event": {{"event_type": "compute.instance.delete.end", "traits": [["instance_id", 1, "{instance}"]]}}}}"#
        );
        alarm.reason_data = Some(reason_data.try_into().unwrap());
        assert!(alarm.is_event());
        write_temp(&alarm.to_json())
    };
    let publish = async |file: &tempfile::NamedTempFile| {
        let path = file.path().to_str().unwrap();
        tocsin_cli(&vhost, &["publish", "--alarm", path, "--action", &sink.url("/event")]).await;
    };
    publish(&event("vm-1")).await;
    wait_for_requests(&sink, 1).await;
    publish(&event("vm-2")).await;
    let instances = |count: usize| async move {
        wait_for_requests(&sink, count)
            .await
            .iter()
            .map(|r| {
                let body = String::from_utf8_lossy(&r.body).into_owned();
                if body.contains("vm-1") { "vm-1" } else { "vm-2" }
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(instances(3).await, ["vm-1", "vm-2", "vm-1"], "{}", service.log_text());
    let delivered = eventually(Duration::from_secs(10), async || {
        service.lines_with("dispatch: Delivered.").iter().any(|l| l["attempt"] == 2)
    })
    .await;
    assert!(delivered, "the first event delivered on its retry: {}", service.log_text());
    assert_eq!(service.metric(r#"tocsin_messages_total{kind="retry",outcome="superseded"}"#).await, 0.0);
}

#[tokio::test]
async fn a_hanging_webhook_does_not_hold_up_other_alarms() {
    let vhost = TestVhost::create();
    let hanging = Webhook::start(Reply::Hang).await.unwrap();
    let healthy = Webhook::start(Reply::status(200)).await.unwrap();
    let config = test_config(&vhost.transport_url(), "test-host", "")
        .replace("[dispatch]\n", "[dispatch]\nper_host = 2\nslot_wait_ms = 100\n");
    let service = Service::start(TOCSIN, &config).await;
    let alarms = 40;
    tocsin_cli(
        &vhost,
        &[
            "publish",
            "--count",
            &alarms.to_string(),
            "--action",
            &hanging.url("/slow"),
            "--action",
            &healthy.url("/fast"),
        ],
    )
    .await;
    // Each healthy action arrives, or, when the healthy webhook's own two
    // slots were busy and its delivery went to a retry tier, is dropped
    // there because a newer change of the same alarm (all 40 are one
    // alarm) reached that action meanwhile, as designed.
    let superseded = || {
        service
            .lines_with(
                "intake: A newer state change of this alarm went to this action; the stale retry is dropped.",
            )
            .iter()
            .filter(|line| line["action"] == format!("http://{}/***", healthy.addr))
            .count()
    };
    let http =
        |outcome: &str| format!(r#"tocsin_deliveries_total{{plugin="http",tenant="",outcome="{outcome}"}}"#);
    let settled = eventually(Duration::from_secs(30), async || {
        let arrived = healthy.received().len();
        arrived + superseded() >= alarms && service.metric(&http("delivered")).await == arrived as f64
    })
    .await;
    assert!(
        settled,
        "{} arrived, {} superseded: {}",
        healthy.received().len(),
        superseded(),
        service.log_text()
    );
    // All that happened while no hanging request had ended (each would end
    // as a retryable timeout after http.timeout_ms = 10 s): none waited for
    // the hanging webhook.
    assert_eq!(service.metric(&http("retryable")).await, 0.0, "{}", service.log_text());
    assert!(healthy.received().len() >= alarms / 2, "most healthy actions were delivered at once");
    assert!(
        service.metric(&http("deferred")).await >= 1.0,
        "the busy destination's deliveries were deferred"
    );
    assert!(hanging.received().len() <= 2 + 2, "at most per_host requests hang at once (+ retries)");
}

/// Acks are coalesced (one `basic.ack multiple` for a run of finished
/// messages), and a message finished above one still in progress is acked
/// on its own soon after. The first request hangs until the HTTP timeout
/// and every fourth is answered 300 ms late: while the first hangs, the
/// broker counts just it unacknowledged; once its retry is scheduled, none.
/// Nothing comes back, and stopping leaves the queue empty.
#[tokio::test]
async fn every_message_is_acked_whatever_order_its_deliveries_finish_in() {
    let vhost = TestVhost::create();
    let alarms = 60;
    let slow = Reply::Delayed(Duration::from_millis(300), Box::new(Reply::status(200)));
    let script = std::iter::once(Reply::Hang)
        .chain((1..alarms).map(|n| if n % 4 == 0 { slow.clone() } else { Reply::status(200) }))
        .collect();
    let sink = Webhook::start(Reply::Script(script)).await.unwrap();
    let mut service = serve(&vhost, "[http]\ntimeout_ms = 8000\n").await;
    tocsin_cli(&vhost, &["publish", "--count", &alarms.to_string(), "--action", &sink.url("/mixed")]).await;
    let queue = "alarming.sample";
    let delivered = r#"tocsin_deliveries_total{plugin="http",tenant="",outcome="delivered"}"#;
    let all_but_the_hanging = eventually(Duration::from_secs(6), async || {
        service.metric(delivered).await == (alarms - 1) as f64 && vhost.unacknowledged(queue).await == 1
    })
    .await;
    assert!(
        all_but_the_hanging,
        "{} delivered, {} unacknowledged while one request hangs: {}",
        service.metric(delivered).await,
        vhost.unacknowledged(queue).await,
        service.log_text()
    );
    // The hanging delivery times out and goes to a retry tier (where the
    // newer changes of the same alarm supersede it): its message is acked.
    let settled = eventually(Duration::from_secs(30), async || {
        !service.lines_with("intake: Retry scheduled.").is_empty() && vhost.unacknowledged(queue).await == 0
    })
    .await;
    assert!(settled, "{} unacknowledged: {}", vhost.unacknowledged(queue).await, service.log_text());
    assert_eq!(service.metric("tocsin_redeliveries_total").await, 0.0);
    let status = service.terminate(Duration::from_secs(20)).await;
    assert_eq!(status.and_then(|s| s.code()), Some(0), "{}", service.log_text());
    assert_eq!(vhost.depth(queue).await, 0, "nothing came back when the consumer left");
    assert_eq!(sink.received().len(), alarms, "each alarm's request made once");
    assert!(service.lines_with("intake: Cannot settle messages; the broker will redeliver them.").is_empty());
}

async fn tocsin_cli(vhost: &TestVhost, args: &[&str]) -> String {
    cli(TOCSIN, &vhost.transport_url(), args, &[]).await
}

/// URL user info, webhook tokens in paths, secret-looking query values,
/// trust ids and webhook signing secrets reach the receivers that need them and nothing else: not
/// the service's log, its metrics, or the dead-letter listing.
#[tokio::test]
async fn secrets_never_reach_logs_metrics_or_the_dead_letter_listing() {
    let vhost = TestVhost::create();
    let ok = Webhook::start(Reply::status(200)).await.unwrap();
    let flaky = Webhook::start(Reply::Script(vec![Reply::status(503), Reply::status(200)])).await.unwrap();
    let refusing = Webhook::start(Reply::status(400)).await.unwrap();
    let signing_key = "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    let signing = format!("[http.signing.\"127.0.0.1\"]\nsecrets = [\"whsec_{signing_key}\"]\n");
    // Every level of tocsin's own lines, so that debug ones (a request's failure, say) are read too.
    let config = test_config(&vhost.transport_url(), "test-host", &signing);
    let service = Service::start_logging(TOCSIN, &config, "info,tocsin=trace").await;
    let with_secrets = |sink: &Webhook| {
        format!(
            "http://alice-user:S3cretPass@{}/services/PathT0kenValue?token=Tok3nValue&api_key=Ap1KeyValue&x=1",
            sink.addr
        )
    };
    let trust = format!("trust+http://TrustId987:TrustPass@{}/hook", ok.addr);
    let actions = [with_secrets(&ok), with_secrets(&flaky), with_secrets(&refusing), trust];
    let mut args = vec!["publish"];
    for action in &actions {
        args.extend(["--action", action.as_str()]);
    }
    tocsin_cli(&vhost, &args).await;

    wait_for_requests(&flaky, 2).await;
    let basic = wait_for_requests(&ok, 1).await[0].header("authorization").unwrap().to_owned();
    assert!(basic.starts_with("Basic "), "the receiver gets the credentials: {basic}");
    let dead =
        eventually(Duration::from_secs(10), async || vhost.depth("tocsin.dead-letters").await >= 2).await;
    assert!(dead, "the 400 and the trust action are dead-lettered: {}", service.log_text());
    let listing = tocsin_cli(&vhost, &["dlq", "list"]).await;
    let (_, metrics) = service.get("/metrics").await;
    let log = service.log_text();
    let shown = format!("with action http://{}/*** because", ok.addr);
    assert!(log.contains(&shown), "actions are logged as scheme, host and port: {log}");

    let secrets = [
        "S3cretPass",
        "alice-user",
        "PathT0kenValue",
        "Tok3nValue",
        "Ap1KeyValue",
        "TrustId987",
        "TrustPass",
    ]
    .into_iter()
    .chain([signing_key]);
    for (what, text) in [("log", &log), ("metrics", &metrics), ("dlq list", &listing)] {
        for secret in secrets.clone().chain([basic.trim_start_matches("Basic ")]) {
            assert!(!text.contains(secret), "{secret} appears in the {what}: {text}");
        }
    }
}

#[tokio::test]
async fn dead_letters_can_be_listed_replayed_and_purged() {
    let vhost = TestVhost::create();
    let refusing = Webhook::start(Reply::status(400)).await.unwrap();
    let service = serve(&vhost, "").await;
    // Reason data only Python's `json` writes, kept through the dead letter
    // and its replay.
    let reason_data =
        r#"{"type": "threshold", "most_recent": NaN, "count": 18446744073709551616, "q": "\ud800"}"#;
    let mut alarm = tocsin_tests::sample_alarm();
    alarm.reason_data = Some(reason_data.to_owned().try_into().unwrap());
    let file = write_temp(&alarm.to_json());
    let path = file.path().to_str().unwrap();
    tocsin_cli(&vhost, &["publish", "--format", "rpc", "--alarm", path, "--action", &refusing.url("/no")])
        .await;
    let json = BasicProperties::default().with_content_type("application/json".into());
    vhost.publish("aodh", "alarming.sample", json, b"{not json").await;
    let both =
        eventually(Duration::from_secs(10), async || vhost.depth("tocsin.dead-letters").await == 2).await;
    assert!(both, "{}", service.log_text());

    let listed: Vec<Value> = tocsin_cli(&vhost, &["dlq", "list"])
        .await
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert_eq!(listed.len(), 2);
    let delivery = listed.iter().find(|l| l["kind"] == "delivery").unwrap();
    assert_eq!(delivery["reason_code"], "permanent");
    assert!(delivery["reason"].as_str().unwrap().contains("400"), "{delivery}");
    assert_eq!(delivery["action"], format!("http://{}/***", refusing.addr), "shown as log lines show it");
    let message = listed.iter().find(|l| l["kind"] == "message").unwrap();
    assert_eq!(
        (&message["reason_code"], &message["exchange"], &message["routing_key"]),
        (&"not-json".into(), &"aodh".into(), &"alarming.sample".into())
    );
    assert_eq!(vhost.depth("tocsin.dead-letters").await, 2, "listing leaves them in place");

    let letters = vhost.drain("tocsin.dead-letters").await;
    let record = letters.iter().find_map(|m| serde_json::from_slice::<Value>(&m.delivery.data).ok()).unwrap();
    assert_eq!(record["alarm"]["reason_data"], reason_data, "the record keeps the text");
    for letter in &letters {
        let properties = letter.delivery.properties.clone();
        vhost.publish("", "tocsin.dead-letters", properties, &letter.delivery.data).await;
    }
    let replayed: Value = serde_json::from_str(&tocsin_cli(&vhost, &["dlq", "replay"]).await).unwrap();
    assert_eq!((&replayed["replayed_deliveries"], &replayed["replayed_messages"]), (&1.into(), &1.into()));
    let again = eventually(Duration::from_secs(10), async || refusing.received().len() == 2).await;
    assert!(again, "the replayed delivery is attempted again: {}", service.log_text());
    let back =
        eventually(Duration::from_secs(10), async || vhost.depth("tocsin.dead-letters").await == 2).await;
    assert!(back, "both fail again and are dead-lettered again");
    let bodies: Vec<String> =
        refusing.received().iter().map(|r| String::from_utf8_lossy(&r.body).into_owned()).collect();
    assert!(bodies[0].ends_with(&format!(r#""reason_data": {reason_data}}}"#)), "{}", bodies[0]);
    assert_eq!(bodies[0], bodies[1], "the replay sends the same body");

    let purged: Value = serde_json::from_str(&tocsin_cli(&vhost, &["dlq", "purge"]).await).unwrap();
    assert_eq!(purged["purged"], 2);
    assert_eq!(vhost.depth("tocsin.dead-letters").await, 0);
}

#[tokio::test]
async fn the_real_oslo_messaging_client_casts_fanouts_and_notifies() {
    let vhost = TestVhost::create();
    let sink = Webhook::start(Reply::status(200)).await.unwrap();
    let _service = serve(&vhost, "").await;
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/oslo/send_alarms.py");
    let sent = tokio::time::timeout(
        Duration::from_secs(60),
        tokio::process::Command::new(pypi_python())
            .arg(script)
            .args([&vhost.transport_url(), &sink.url("/oslo"), "test-host"])
            .output(),
    )
    .await
    .expect("the oslo.messaging sender finishes")
    .unwrap();
    assert!(sent.status.success(), "{}", String::from_utf8_lossy(&sent.stderr));
    let received = wait_for_requests(&sink, 4).await;
    let mut alarm_ids: Vec<String> = received
        .iter()
        .map(|r| serde_json::from_slice::<Value>(&r.body).unwrap()["alarm_id"].as_str().unwrap().to_owned())
        .collect();
    alarm_ids.sort();
    assert_eq!(alarm_ids, ["oslo-cast", "oslo-fanout", "oslo-host", "oslo-notification"]);
}

#[tokio::test]
async fn serve_runs_without_huge_pages_sigterm_stops_it_quietly_and_a_declaration_mismatch_is_named() {
    let vhost = TestVhost::create();
    let sink = Webhook::start(Reply::status(200)).await.unwrap();
    let mut service = serve(&vhost, "").await;
    // Every channel has been used (consumers, publisher, settlers) when it stops.
    tocsin_cli(&vhost, &["publish", "--count", "20", "--action", &sink.url("/before-stop")]).await;
    wait_for_requests(&sink, 20).await;
    // Opted out of transparent huge pages (`tocsin::process`), whatever the
    // machine's setting.
    assert_eq!(service.proc_status("THP_enabled").as_deref(), Some("0"), "{}", service.log_text());
    let status = service.terminate(Duration::from_secs(20)).await;
    let status = status.unwrap_or_else(|| panic!("no exit 20 s after SIGTERM: {}", service.log_text()));
    assert_eq!(status.code(), Some(0), "{}", service.log_text());
    assert_eq!(service.lines_with("serve: Stopped.").len(), 1);
    // A stop the operator asked for is not an error: operators alert on those.
    let errors: Vec<Value> = service.logs().into_iter().filter(|l| l["level"] == "ERROR").collect();
    assert!(errors.is_empty(), "ERROR lines on a clean stop: {errors:?}");

    // The queues now exist non-durable: a durable declaration must fail
    // with the queue and the argument named.
    let config = test_config(&vhost.transport_url(), "test-host", "");
    let config = config.replace("[broker]\n", "[broker]\namqp_durable_queues = true\n");
    let state = tempfile::tempdir().unwrap();
    let output = tokio::time::timeout(
        Duration::from_secs(30),
        tokio::process::Command::new(TOCSIN)
            .arg("serve")
            .env("TOCSIN_CONFIG", write_temp(&config).path())
            .env("TOCSIN_UPLOADS__STATE_PATH", state.path())
            .output(),
    )
    .await
    .expect("serve exits on a mismatch")
    .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("exchange ceilometer") || stderr.contains("queue alarm_notifier"), "{stderr}");
    assert!(stderr.contains("durable"), "the argument is named: {stderr}");
}

fn write_temp(text: &str) -> tempfile::NamedTempFile {
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), text).unwrap();
    file
}

fn uuid_hex() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}
