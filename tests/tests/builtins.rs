//! The built-in notifiers against Aodh's real output: the `log` line word
//! for word, the REST request against the captured `http-post-*.raw`, and
//! the status table.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed test

use std::sync::Arc;
use std::time::Duration;

use tocsin::sandbox::CallError;
use tocsin_core::alarm::{Alarm, Delivery};
use tocsin_tests::webhook::{self, Received, Reply, Webhook};
use tocsin_tests::{TestHost, fixture, messages, plugins, sample_alarm};

/// A host whose `http` notifier may reach 127.0.0.1, as `--allow-host
/// 127.0.0.1` grants it.
fn loopback_host() -> TestHost {
    TestHost::loopback(|_| {})
}

/// A captured raw request, parsed.
fn captured(name: &str) -> Received {
    let raw = std::fs::read(fixture(name)).unwrap();
    webhook::parse(&raw).unwrap_or_else(|| panic!("{name} is not a complete request"))
}

fn json_keys(body: &[u8]) -> Vec<String> {
    let value: serde_json::Value = serde_json::from_slice(body).unwrap();
    value.as_object().unwrap().keys().cloned().collect()
}

#[tokio::test]
async fn log_writes_aodhs_line_word_for_word() {
    let lines = std::fs::read_to_string(fixture("aodh-notifier-log-lines.txt")).unwrap();
    let aodh = lines.lines().find_map(|l| l.strip_prefix("INFO aodh.notifier.log ")).unwrap();
    let host = TestHost::new(|_| {});
    let plugin = host.builtin("log");
    let run = host.notify(&plugin, "log://").await;
    assert_eq!(run.result, Ok(()));
    assert_eq!(messages(&run), [aodh]);
    assert_eq!(run.logs[0].level, "info");
}

#[tokio::test]
async fn log_prints_none_for_a_juno_alarm_and_hides_credentials() {
    let juno: serde_json::Value =
        serde_json::from_slice(&std::fs::read(fixture("juno-no-name/cast-1.decoded.json")).unwrap()).unwrap();
    let text = serde_json::from_str::<serde_json::Value>(juno["oslo.message"].as_str().unwrap()).unwrap();
    let alarm = Arc::new(Alarm::from_json(&text["args"]["data"].to_string()).unwrap());
    let host = TestHost::new(|_| {});
    let plugin = host.builtin("log");
    let run = host.sandbox.invoke(&plugin, "log://ops:pw@sink/x", &alarm, &Delivery::one_off()).await;
    let line = messages(&run)[0].to_owned();
    assert!(line.starts_with(&format!("Notifying alarm None {} of None priority", alarm.alarm_id)), "{line}");
    assert!(line.contains("with action log://sink/*** because"), "{line}");
}

/// Issue 23, finding 3: at e8aba4b the built-in `http` notifier's INFO
/// line, on every delivery, printed a Slack-style webhook's token (its
/// path) and `;`-separated or percent-encoded secret parameters.
#[tokio::test]
async fn the_notifiers_log_lines_hide_webhook_tokens_unless_the_operator_asks_for_whole_urls() {
    let hook = Webhook::start(Reply::Status(200, Vec::new(), Vec::new())).await.unwrap();
    let action = hook.url("/services/T0A1B2C3D/B0A1B2C3D/SLACKsecret?x=1;token=SEMIsecret&%73ig=PCTsecret");
    let secrets = ["SLACKsecret", "SEMIsecret", "PCTsecret"];
    let line_of = |run: &tocsin::sandbox::Invocation| {
        let lines = messages(run);
        lines.iter().find(|line| line.contains("with action")).map(|line| (*line).to_owned()).unwrap()
    };

    let host = loopback_host();
    for name in ["http", "log"] {
        let run = host.notify(&host.builtin(name), &action).await;
        assert_eq!(run.result, Ok(()), "{name}");
        let line = line_of(&run);
        assert!(line.contains(&format!("with action http://{}/*** because", hook.addr)), "{name}: {line}");
        for secret in secrets {
            assert!(!line.contains(secret), "{name} logged {secret}: {line}");
        }
    }

    // Aodh's whole URL, asked for: the path is printed, credentials and
    // secret-named parameters still are not; a tenant's plugin still sees
    // an empty environment.
    let host = TestHost::loopback(|config| config.notifiers.whole_action_urls = true);
    for name in ["http", "log"] {
        let run = host.notify(&host.builtin(name), &action).await;
        let line = line_of(&run);
        let shown = "/services/T0A1B2C3D/B0A1B2C3D/SLACKsecret?x=1;token=***&%73ig=*** because";
        assert!(line.contains(shown), "{name}: {line}");
        assert!(!line.contains("SEMIsecret") && !line.contains("PCTsecret"), "{name}: {line}");
    }
    let env = host.load("env", plugins::ENV).unwrap();
    assert_eq!(messages(&host.notify(&env, "env://").await), ["env: vars=0 args=0 home=None names=[]"]);
    assert_eq!(hook.received().len(), 2, "the http notifier delivered twice");
}

#[tokio::test]
async fn http_sends_aodhs_request() {
    let hook = Webhook::start(Reply::Status(200, Vec::new(), Vec::new())).await.unwrap();
    let host = loopback_host();
    let plugin = host.builtin("http");
    let delivery = Delivery::one_off();
    let run =
        host.sandbox.invoke(&plugin, &hook.url("/alarm?x=1"), &Arc::new(sample_alarm()), &delivery).await;
    assert_eq!(run.result, Ok(()));
    let aodh = captured("http-post-200.raw");
    let ours = &hook.received()[0];
    assert_eq!(ours.method, aodh.method);
    assert_eq!(ours.target, aodh.target);
    assert_eq!(ours.header("content-type"), aodh.header("content-type"));
    let request_id = ours.header("x-openstack-request-id").unwrap();
    let aodh_id = aodh.header("x-openstack-request-id").unwrap();
    assert_eq!(request_id.len(), aodh_id.len());
    assert!(request_id.starts_with("req-") && uuid_like(&request_id[4..]), "{request_id}");
    assert_eq!(request_id, delivery.request_id());
    assert_eq!(json_keys(&ours.body), json_keys(&aodh.body));
    assert_eq!(String::from_utf8_lossy(&ours.body), String::from_utf8_lossy(&aodh.body), "byte for byte");
    assert_eq!(ours.header("content-length"), aodh.header("content-length"));
    assert_eq!(ours.header("authorization"), None);
    let logged = messages(&run);
    assert!(logged[0].ends_with(&format!("request-id: {request_id}")), "{logged:?}");
    assert_eq!(logged[1], format!("Notifying alarm <{}> gets response: 200 OK.", sample_alarm().alarm_id));
}

fn uuid_like(text: &str) -> bool {
    text.len() == 36
        && text
            .chars()
            .enumerate()
            .all(|(i, c)| if [8, 13, 18, 23].contains(&i) { c == '-' } else { c.is_ascii_hexdigit() })
}

#[tokio::test]
async fn http_turns_url_credentials_into_basic_auth() {
    let hook = Webhook::start(Reply::Status(200, Vec::new(), Vec::new())).await.unwrap();
    let host = loopback_host();
    let plugin = host.builtin("http");
    let action = format!("http://user:s3cret@{}/hook", hook.addr);
    let run = host.notify(&plugin, &action).await;
    assert_eq!(run.result, Ok(()));
    let aodh = captured("http-post-basic-auth.raw");
    let ours = &hook.received()[0];
    assert_eq!(ours.target, aodh.target);
    assert_eq!(ours.header("authorization"), aodh.header("authorization"));
    assert_eq!(ours.body, aodh.body);
    assert!(messages(&run).iter().all(|line| !line.contains("s3cret")), "credentials never logged");
}

async fn status_result(status: u16, headers: Vec<(String, String)>) -> (Result<(), CallError>, Vec<String>) {
    let hook = Webhook::start(Reply::Status(status, headers, Vec::new())).await.unwrap();
    let host = loopback_host();
    let plugin = host.builtin("http");
    let run = host.notify(&plugin, &hook.url("/x")).await;
    (run.result.clone(), messages(&run).into_iter().map(str::to_owned).collect())
}

#[tokio::test]
async fn http_statuses_decide_through_the_sdk_classifier() {
    let (result, _) = status_result(503, vec![("Retry-After".into(), "7".into())]).await;
    assert_eq!(
        result,
        Err(CallError::Retryable { reason: "HTTP 503".into(), retry_after: Some(Duration::from_secs(7)) })
    );
    let (result, _) = status_result(429, Vec::new()).await;
    assert_eq!(result, Err(CallError::Retryable { reason: "HTTP 429".into(), retry_after: None }));
    for status in [400, 404, 501, 505] {
        let (result, _) = status_result(status, Vec::new()).await;
        assert_eq!(result, Err(CallError::Permanent(format!("HTTP {status}"))));
    }
    let (result, lines) = status_result(410, Vec::new()).await;
    assert_eq!(result, Err(CallError::Permanent("HTTP 410".into())));
    assert!(lines.iter().any(|l| l.contains("Endpoint gone")), "{lines:?}");
    let (result, _) = status_result(204, Vec::new()).await;
    assert_eq!(result, Ok(()));
}

#[tokio::test]
async fn http_to_a_refused_port_is_retryable() {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let host = loopback_host();
    let plugin = host.builtin("http");
    let run = host.notify(&plugin, &format!("http://127.0.0.1:{port}/x")).await;
    match run.result {
        Err(CallError::Retryable { reason, .. }) => assert!(reason.contains("connect"), "{reason}"),
        other => panic!("expected retryable, got {other:?}"),
    }
}

#[tokio::test]
async fn test_records_the_notification_for_reading_back() {
    let host = TestHost::new(|_| {});
    let plugin = host.builtin("test");
    let delivery = Delivery::one_off();
    let run =
        host.sandbox.invoke(&plugin, "test://ops:pw@sink/x", &Arc::new(sample_alarm()), &delivery).await;
    assert_eq!(run.result, Ok(()));
    let recorded: serde_json::Value = serde_json::from_str(&plugin.recent_logs()[0].message).unwrap();
    assert_eq!(recorded["action"], "test://sink/***", "recorded as logged, credentials and path hidden");
    assert_eq!(recorded["alarm_id"], sample_alarm().alarm_id);
    assert_eq!(recorded["reason_data"]["most_recent"], 97.0);
    assert_eq!(recorded["delivery_id"], delivery.id);
    assert_eq!(recorded["request_id"], delivery.request_id());

    // Reason data with what only Python's `json` writes is read, not kept as a string.
    let mut alarm = sample_alarm();
    alarm.reason_data =
        Some(r#"{"most_recent": NaN, "max": Infinity, "count": 3}"#.to_owned().try_into().unwrap());
    let run = host.sandbox.invoke(&plugin, "test://", &Arc::new(alarm), &delivery).await;
    assert_eq!(run.result, Ok(()));
    let recorded: serde_json::Value = serde_json::from_str(&run.logs[0].message).unwrap();
    assert_eq!(recorded["reason_data"], serde_json::json!({"most_recent": null, "max": null, "count": 3}));
}

#[tokio::test]
async fn http_refuses_a_request_body_past_the_cap() {
    let hook = Webhook::start(Reply::Status(200, Vec::new(), Vec::new())).await.unwrap();
    let host = TestHost::loopback(|config| config.limits.http_request_body_bytes = 100);
    let plugin = host.builtin("http");
    let run = host.notify(&plugin, &hook.url("/x")).await;
    match run.result {
        Err(CallError::Permanent(reason)) => {
            assert!(reason.contains("exceeds the limit of 100 bytes"), "{reason}")
        }
        other => panic!("expected a permanent failure, got {other:?}"),
    }
    assert!(hook.received().is_empty());
}

#[tokio::test]
async fn the_registry_serves_builtins_and_refuses_reserved_and_unknown_schemes() {
    use tocsin::registry::{Registry, ResolveError};
    let host = TestHost::new(|_| {});
    let registry = Registry::with_builtins(&host.sandbox, &host.config.grants()).unwrap();
    for (action, plugin) in
        [("log://", "log"), ("test://", "test"), ("http://h/", "http"), ("HTTPS://h/", "http")]
    {
        assert_eq!(registry.resolve_action(action).unwrap().name(), plugin, "{action}");
    }
    for scheme in ["trust+http", "trust+https", "zaqar", "trust+zaqar", "trust+heat"] {
        let action = format!("{scheme}://trust@h/");
        assert_eq!(
            registry.resolve_action(&action).unwrap_err(),
            ResolveError::NotImplemented(scheme.into())
        );
    }
    assert_eq!(
        registry.resolve_action("nosuchscheme://x").unwrap_err(),
        ResolveError::Unknown("nosuchscheme".into())
    );
    assert!(matches!(registry.resolve_action("http://[::1/x"), Err(ResolveError::Unparsable(_))));
}

#[tokio::test]
async fn a_burst_to_one_webhook_reuses_one_connection() {
    for (reuse, expected) in [(32, 1), (0, 20)] {
        let sink = Webhook::start_keep_alive(Reply::status(200)).await.unwrap();
        let host = TestHost::loopback(|config| config.http.pool_max_idle_per_host = reuse);
        let plugin = host.builtin("http");
        for i in 0..20 {
            let run = host.notify(&plugin, &sink.url(&format!("/burst/{i}"))).await;
            assert_eq!(run.result, Ok(()));
        }
        assert_eq!(sink.received().len(), 20);
        assert_eq!(sink.connections(), expected, "pool_max_idle_per_host = {reuse}");
    }
}
