//! Signed webhooks checked by an independent implementation: the
//! `standardwebhooks` package from PyPI (`scripts/pypi-venv`) verifies what
//! the built-in `http` notifier delivered to a real receiver on 127.0.0.1,
//! with either secret of a key rotation; a tenant plugin calling the same
//! host gets no signature.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed test

use std::process::Command;
use std::sync::Arc;

use tocsin::capabilities::signing::WebhookSecret;
use tocsin::config::SigningKeys;
use tocsin_core::alarm::Delivery;
use tocsin_tests::webhook::{Received, Reply, Webhook};
use tocsin_tests::{TestHost, plugins, pypi_python, sample_alarm};

const NEW_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const OLD_SECRET: &str = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";
const OTHER_SECRET: &str = "whsec_JQsKTfo3RWNs08gnsZXi9xIy4JWwvyDA";

/// Loopback allowed and granted to the built-in `http` notifier and to
/// `fetch`, and the rotation's two secrets for 127.0.0.1.
fn signing_operator() -> TestHost {
    TestHost::loopback(|config| {
        config.plugins.entry("fetch".into()).or_default().allow_hosts = vec!["127.0.0.1".into()];
        let secrets = [NEW_SECRET, OLD_SECRET].iter().map(|s| WebhookSecret::parse(s).unwrap()).collect();
        config.http.signing.insert("127.0.0.1".into(), SigningKeys { secrets });
    })
}

/// What `standardwebhooks.Webhook(secret).verify(body, headers)` says of
/// `request`: `Ok` when it verifies, else the library's last error line.
fn verify(secret: &str, request: &Received) -> Result<(), String> {
    let dir = tempfile::tempdir().unwrap();
    let body = dir.path().join("body");
    let headers = dir.path().join("headers.json");
    std::fs::write(&body, &request.body).unwrap();
    let map: serde_json::Map<String, serde_json::Value> =
        request.headers.iter().map(|(k, v)| (k.to_ascii_lowercase(), v.clone().into())).collect();
    std::fs::write(&headers, serde_json::Value::Object(map).to_string()).unwrap();
    let script = "import json, sys\n\
                  from standardwebhooks import Webhook\n\
                  body = open(sys.argv[2], 'rb').read()\n\
                  headers = json.load(open(sys.argv[3]))\n\
                  Webhook(sys.argv[1]).verify(body, headers)\n";
    let output =
        Command::new(pypi_python()).args(["-c", script, secret]).arg(&body).arg(&headers).output().unwrap();
    match output.status.success() {
        true => Ok(()),
        false => {
            Err(String::from_utf8_lossy(&output.stderr).trim().lines().last().unwrap_or_default().to_owned())
        }
    }
}

#[tokio::test]
async fn the_rest_notifiers_deliveries_verify_with_the_standard_webhooks_library() {
    let sink = Webhook::start(Reply::status(200)).await.unwrap();
    let host = signing_operator();
    let plugin = host.builtin("http");
    let delivery = Delivery { id: "5f0c1d2e3a4b5c6d7e8f90a1b2c3d4e5.0".into(), attempt: 1, tenant: None };
    let run = host.sandbox.invoke(&plugin, &sink.url("/signed"), &Arc::new(sample_alarm()), &delivery).await;
    assert_eq!(run.result, Ok(()));

    let received = sink.received();
    let request = &received[0];
    assert_eq!(request.header("webhook-id"), Some(delivery.id.as_str()), "webhook-id is the delivery id");
    let signature = request.header("webhook-signature").unwrap();
    assert_eq!(signature.split(' ').count(), 2, "one signature per secret of the rotation: {signature}");
    assert_eq!(verify(NEW_SECRET, request), Ok(()), "verified with the new secret");
    assert_eq!(verify(OLD_SECRET, request), Ok(()), "verified with the old secret");
    let refused =
        Err("standardwebhooks.webhooks.WebhookVerificationError: No matching signature found".into());
    assert_eq!(verify(OTHER_SECRET, request), refused, "another secret must not verify");
    let mut tampered = request.clone();
    tampered.body.push(b' ');
    assert_eq!(verify(NEW_SECRET, &tampered), refused, "a changed body must not verify");
}

#[tokio::test]
async fn a_tenant_plugin_calling_the_same_host_is_not_signed() {
    let sink = Webhook::start(Reply::status(200)).await.unwrap();
    let host = signing_operator();
    let plugin = host.load("fetch", plugins::FETCH).unwrap();
    let action = format!("fetch://probe/?target={}&header=webhook-id", sink.url("/tenant"));
    let run = host.notify(&plugin, &action).await;
    assert_eq!(run.result, Ok(()));
    let received = sink.received();
    assert_eq!(received.len(), 1);
    assert_eq!(received[0].header("webhook-signature"), None, "no signature for a tenant's request");
    assert_eq!(received[0].header("webhook-timestamp"), None);
    assert_eq!(
        received[0].header("webhook-id"),
        Some("x"),
        "the plugin's own header goes through as it set it"
    );
}
