//! The `http` capability behind the egress policy, probed by the `fetch`
//! plugin (built from source): refusals reach the plugin as `http-error`
//! values, never traps, and nothing is sent to a refused destination.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed test

use tocsin::config::Config;
use tocsin::sandbox::CallError;
use tocsin::sandbox::limits::Limit;
use tocsin_tests::webhook::{Reply, Webhook};
use tocsin_tests::{TestHost, messages, plugins};

/// A host where the `fetch` plugin is granted `hosts`, with `configure`
/// applied after.
fn host_granting(hosts: &[&str], configure: impl FnOnce(&mut Config)) -> TestHost {
    TestHost::new(|config| {
        config.plugins.entry("fetch".into()).or_default().allow_hosts =
            hosts.iter().map(|h| h.to_string()).collect();
        configure(config);
    })
}

fn allow_loopback(config: &mut Config) {
    config.egress.allow_networks.push("127.0.0.1/32".parse().unwrap());
}

async fn ok_webhook() -> Webhook {
    Webhook::start(Reply::Status(200, Vec::new(), b"ok".to_vec())).await.unwrap()
}

/// Runs `fetch` against `target` and returns the error the plugin saw.
async fn fetch_error(host: &TestHost, target: &str) -> String {
    let plugin = host.load("fetch", plugins::FETCH).unwrap();
    let run = host.notify(&plugin, &format!("fetch://probe/?target={target}")).await;
    assert!(
        matches!(run.result, Err(CallError::Permanent(_) | CallError::Retryable { .. })),
        "a refusal is a value the plugin handles, not a trap: {:?}",
        run.result
    );
    let lines = messages(&run);
    assert_eq!(lines.len(), 1, "{lines:?}");
    lines[0].to_owned()
}

#[tokio::test]
async fn a_host_that_is_not_granted_is_denied() {
    let hook = ok_webhook().await;
    let host = host_granting(&[], allow_loopback);
    let seen = fetch_error(&host, &hook.url("/")).await;
    assert!(seen.starts_with("fetch: error=HttpError::Denied(") && seen.contains("not granted"), "{seen}");
    assert!(hook.received().is_empty());
    host.assert_healthy().await;
}

#[tokio::test]
async fn the_metadata_address_is_denied_even_when_granted() {
    let host = host_granting(&["169.254.169.254"], |_| {});
    let seen = fetch_error(&host, "http://169.254.169.254/latest/meta-data/").await;
    assert!(seen.contains("Denied(") && seen.contains("link-local"), "{seen}");
}

#[tokio::test]
async fn loopback_is_denied_unless_the_operator_allows_it() {
    let hook = ok_webhook().await;
    let host = host_granting(&["127.0.0.1"], |_| {});
    let seen = fetch_error(&host, &hook.url("/")).await;
    assert!(seen.contains("Denied(") && seen.contains("loopback"), "{seen}");
    assert!(hook.received().is_empty(), "nothing may reach a denied address");

    let allowed = host_granting(&["127.0.0.1"], allow_loopback);
    let plugin = allowed.load("fetch", plugins::FETCH).unwrap();
    let run = allowed.notify(&plugin, &format!("fetch://probe/?target={}", hook.url("/"))).await;
    assert_eq!(run.result, Ok(()));
    assert_eq!(messages(&run), ["fetch: status=200 bytes=2"]);
    assert_eq!(hook.received().len(), 1);
}

#[tokio::test]
async fn other_spellings_of_loopback_are_denied() {
    let hook = ok_webhook().await;
    let port = hook.addr.port();
    let host = host_granting(&["127.0.0.1", "[::ffff:7f00:1]", "0.0.0.0"], |_| {});
    for target in [
        format!("http://2130706433:{port}/"),
        format!("http://0x7f.1:{port}/"),
        format!("http://0177.0.0.1:{port}/"),
        format!("http://[::ffff:127.0.0.1]:{port}/"),
        format!("http://0.0.0.0:{port}/"),
    ] {
        let seen = fetch_error(&host, &target).await;
        assert!(seen.contains("Denied("), "{target}: {seen}");
    }
    assert!(hook.received().is_empty());
}

#[tokio::test]
async fn a_name_resolving_to_loopback_is_denied_by_the_resolver() {
    let hook = ok_webhook().await;
    let host = host_granting(&["localhost"], |_| {});
    let seen = fetch_error(&host, &format!("http://localhost:{}/", hook.addr.port())).await;
    assert!(seen.contains("Denied(") && seen.contains("localhost resolves to"), "{seen}");
    assert!(hook.received().is_empty());
}

#[tokio::test]
async fn an_endpoint_that_never_answers_is_cut_by_the_wall_deadline() {
    let hook = Webhook::start(Reply::Hang).await.unwrap();
    let host = host_granting(&["127.0.0.1"], |config| {
        allow_loopback(config);
        config.limits.deadline_ms = 500;
    });
    let plugin = host.load("fetch", plugins::FETCH).unwrap();
    let run = host.notify(&plugin, &format!("fetch://probe/?target={}", hook.url("/"))).await;
    match &run.result {
        Err(error @ CallError::Limit { limit: Limit::Deadline, .. }) => assert!(error.is_retryable()),
        other => panic!("expected the deadline, got {other:?}"),
    }
    assert_eq!(hook.received().len(), 1, "the request was sent, the answer never came");
    host.assert_healthy().await;
}

#[tokio::test]
async fn the_http_timeout_reaches_the_plugin_as_a_retryable_error() {
    let hook = Webhook::start(Reply::Hang).await.unwrap();
    let host = host_granting(&["127.0.0.1"], |config| {
        allow_loopback(config);
        config.http.timeout_ms = 200;
    });
    let seen = fetch_error(&host, &hook.url("/")).await;
    assert_eq!(seen, "fetch: error=HttpError::Timeout");
}

#[tokio::test]
async fn a_huge_response_body_is_refused_past_the_cap() {
    let hook = Webhook::start(Reply::Status(200, Vec::new(), vec![b'x'; 4 << 20])).await.unwrap();
    let host = host_granting(&["127.0.0.1"], allow_loopback);
    let plugin = host.load("fetch", plugins::FETCH).unwrap();
    let run = host.notify(&plugin, &format!("fetch://probe/?target={}", hook.url("/"))).await;
    assert!(matches!(run.result, Err(CallError::Permanent(_))), "{:?}", run.result);
    assert!(messages(&run)[0].starts_with("fetch: error=HttpError::TooLarge("), "{:?}", messages(&run));
    assert_eq!(run.limits_hit, [Limit::HttpResponseBody]);
    host.assert_healthy().await;
}

#[tokio::test]
async fn requests_past_the_per_call_limit_are_refused() {
    let hook = ok_webhook().await;
    let host = host_granting(&["127.0.0.1"], |config| {
        allow_loopback(config);
        config.limits.http_requests = 0;
    });
    let seen = fetch_error(&host, &hook.url("/")).await;
    assert!(seen.starts_with("fetch: error=HttpError::LimitExceeded("), "{seen}");
    assert!(hook.received().is_empty());
}
