//! The notifier API of `tocsin serve`, with real components built from
//! source, the real RabbitMQ and loopback HTTP sinks: uploads that go
//! live, who may do what, what is refused and why, hot swap, restarts.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed test

use std::time::Duration;

use serde_json::Value;
use tocsin::api::auth::TokenHash;
use tocsin_tests::broker::{TestVhost, eventually};
use tocsin_tests::plugins;
use tocsin_tests::service::{Service, cli, test_config};
use tocsin_tests::webhook::{Reply, Webhook};

const TOCSIN: &str = env!("CARGO_BIN_EXE_tocsin");
const OPERATOR: &str = "operator-token";
const ACME: &str = "acme-token";
const GLOBEX: &str = "globex-token";

/// Tenants `acme` and `globex` and an operator token; `acme-chat` may
/// reach the loopback sinks (the operator's grant).
fn tenants_config(vhost: &TestVhost, extra: &str) -> String {
    let hash = |token| TokenHash::of(token).to_hex();
    let config = test_config(&vhost.transport_url(), "test-host", extra);
    let config =
        config.replacen("[api]\n", &format!("[api]\noperator_token_sha256 = \"{}\"\n", hash(OPERATOR)), 1);
    format!(
        "{config}\n[tenants.acme]\ntoken_sha256 = \"{}\"\n\n[tenants.globex]\ntoken_sha256 = \"{}\"\n\n\
         [plugins.acme-chat]\nallow_hosts = [\"127.0.0.1\"]\n",
        hash(ACME),
        hash(GLOBEX)
    )
}

fn component(path: &str) -> Vec<u8> {
    std::fs::read(path).unwrap()
}

async fn upload(service: &Service, scheme: &str, token: &str, bytes: Vec<u8>) -> (u16, Value) {
    service.call("PUT", &format!("/v1/notifiers/{scheme}"), Some(token), bytes).await
}

async fn publish(vhost: &TestVhost, action: &str, count: u32) {
    let count = count.to_string();
    cli(TOCSIN, &vhost.transport_url(), &["publish", "--action", action, "--count", &count], &[]).await;
}

#[tokio::test]
async fn an_uploaded_notifier_is_live_at_once_and_serves_its_scheme() {
    let vhost = TestVhost::create();
    let sink = Webhook::start(Reply::status(200)).await.unwrap();
    let service = Service::start(TOCSIN, &tenants_config(&vhost, "")).await;

    let (status, answer) = upload(&service, "acme-chat", ACME, component(plugins::FETCH)).await;
    assert_eq!(status, 201, "{answer}");
    assert_eq!(answer["version"]["version"], 1);
    assert_eq!(answer["notifier"]["tenant"], "acme");
    assert_eq!(answer["notifier"]["live"], serde_json::json!({"state": "live", "version": 1}));
    assert_eq!(answer["host"], "test-host");
    let imports = answer["version"]["imports"].as_array().unwrap();
    assert!(imports.iter().any(|i| i == "tocsin:notifier/http@0.1.0"), "{imports:?}");

    publish(&vhost, &format!("acme-chat://chat.example/room?target={}", sink.url("/room")), 1).await;
    let delivered = eventually(Duration::from_secs(20), async || sink.received().len() == 1).await;
    assert!(delivered, "{}", service.log_text());
    assert_eq!(sink.received()[0].target, "/room");

    let (status, logs) = service.call("GET", "/v1/notifiers/acme-chat/logs", Some(ACME), vec![]).await;
    assert_eq!(status, 200);
    let lines = logs["lines"].as_array().unwrap();
    assert!(lines.iter().any(|line| line["message"] == "fetch: status=200 bytes=0"), "{logs}");
}

/// Every endpoint × {no token, wrong token, other tenant, owner, operator}.
#[tokio::test]
async fn every_endpoint_answers_each_caller_as_its_rights_say() {
    let vhost = TestVhost::create();
    let service = Service::start(TOCSIN, &tenants_config(&vhost, "")).await;
    let (status, answer) = upload(&service, "acme-chat", ACME, component(plugins::COUNTER)).await;
    assert_eq!(status, 201, "{answer}");

    let counter = component(plugins::COUNTER);
    let activate = br#"{"version": 1}"#.to_vec();
    // (method, path, body, expected for: none, wrong, other tenant, owner, operator)
    let matrix: Vec<(&str, &str, Vec<u8>, [u16; 5])> = vec![
        ("GET", "/v1/notifiers", vec![], [401, 401, 200, 200, 200]),
        ("GET", "/v1/notifiers/acme-chat", vec![], [401, 401, 404, 200, 200]),
        ("GET", "/v1/notifiers/acme-chat/logs", vec![], [401, 401, 404, 200, 200]),
        ("POST", "/v1/notifiers/acme-chat/activate", activate, [401, 401, 404, 200, 200]),
        ("PUT", "/v1/notifiers/acme-chat", counter, [401, 401, 409, 201, 201]),
        ("DELETE", "/v1/notifiers/acme-chat", vec![], [401, 401, 404, 204, 404]),
    ];
    let callers = [None, Some("wrong-token"), Some(GLOBEX), Some(ACME), Some(OPERATOR)];
    for (method, path, body, expected) in matrix {
        for (caller, want) in callers.iter().zip(expected) {
            let (status, answer) = service.call(method, path, *caller, body.clone()).await;
            assert_eq!(status, want, "{method} {path} as {caller:?}: {answer}");
            if status >= 400 {
                assert!(answer["error"]["code"].is_string(), "{method} {path}: {answer}");
                assert!(answer["error"]["message"].is_string(), "{method} {path}: {answer}");
            }
        }
    }

    // What each one sees in the list.
    upload(&service, "globex-pager", GLOBEX, component(plugins::COUNTER)).await;
    upload(&service, "acme-chat", ACME, component(plugins::COUNTER)).await;
    let schemes = async |token| {
        let (_, list) = service.call("GET", "/v1/notifiers", Some(token), vec![]).await;
        let schemes: Vec<String> = list["notifiers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n["scheme"].as_str().unwrap().to_owned())
            .collect();
        schemes
    };
    assert_eq!(schemes(ACME).await, ["acme-chat"]);
    assert_eq!(schemes(GLOBEX).await, ["globex-pager"]);
    assert_eq!(schemes(OPERATOR).await, ["acme-chat", "globex-pager"]);

    // Claims: reserved, taken and foreign schemes answer alike.
    let unavailable =
        [("http", ACME), ("trust+heat", ACME), ("globex-pager", ACME), ("pager", ACME), ("log", OPERATOR)];
    let mut messages = Vec::new();
    for (scheme, token) in unavailable {
        let (status, answer) = upload(&service, scheme, token, component(plugins::COUNTER)).await;
        assert_eq!((status, answer["error"]["code"].as_str()), (409, Some("scheme_unavailable")), "{scheme}");
        messages.push(answer["error"]["message"].as_str().unwrap().replace(scheme, "<scheme>"));
    }
    messages.dedup();
    assert_eq!(messages.len(), 1, "one answer whatever the reason: {messages:?}");
    let (status, answer) = upload(&service, "Acme_Chat", ACME, component(plugins::COUNTER)).await;
    assert_eq!((status, answer["error"]["code"].as_str()), (400, Some("invalid_scheme")), "{answer}");
    // The operator's unprefixed scheme is the operator's.
    let (status, answer) = upload(&service, "pager", OPERATOR, component(plugins::COUNTER)).await;
    assert_eq!((status, &answer["notifier"]["tenant"]), (201, &Value::Null), "{answer}");
}
