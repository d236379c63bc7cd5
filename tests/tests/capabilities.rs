//! The `http` capability behind the egress policy, probed by the `fetch`
//! plugin (built from source): refusals reach the plugin as `http-error`
//! values, never traps, and nothing is sent to a refused destination.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed test

use std::collections::BTreeMap;
use std::sync::Arc;

use arc_swap::ArcSwap;
use tocsin::capabilities::http::{EGRESS_DENIAL, NAME_UNREACHABLE};
use tocsin::capabilities::secrets::{BoundSecret, SecretPrefix, SecretValue};
use tocsin::config::Config;
use tocsin::registry::{self, Origin};
use tocsin::sandbox::{CallError, Invocation};
use tocsin_core::limits::Limit;
use tocsin_core::tenancy::Owner;
use tocsin_tests::logs::CapturedLogs;
use tocsin_tests::names::StaticNames;
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

/// Runs `fetch` with the action's query `query` (`target=…&…`).
async fn fetch(host: &TestHost, query: &str) -> Invocation {
    let plugin = host.load("fetch", plugins::FETCH).unwrap();
    host.notify(&plugin, &format!("fetch://probe/?{query}")).await
}

/// The one line `fetch` logged, after checking that the call failed
/// permanently (a refusal is a value the plugin handles, not a trap).
fn refused(run: &Invocation) -> String {
    assert!(
        matches!(run.result, Err(CallError::Permanent(_))),
        "expected a permanent failure: {:?}",
        run.result
    );
    let lines = messages(run);
    assert_eq!(lines.len(), 1, "{lines:?}");
    lines[0].to_owned()
}

/// Runs `fetch` against `target` and returns the refusal the plugin saw.
async fn fetch_error(host: &TestHost, target: &str) -> String {
    refused(&fetch(host, &format!("target={target}")).await)
}

/// Asserts that `seen` is the egress policy's refusal of an address the
/// plugin named, which says nothing more.
fn assert_policy_denial(seen: &str) {
    assert_eq!(seen, format!("fetch: error=HttpError::Denied({EGRESS_DENIAL:?})"));
}

/// Runs `fetch` against `target`, a name, and returns what the plugin
/// saw, after checking it is the one answer for a name that does not
/// resolve and one that resolves to a refused address (retryable).
async fn fetch_unreachable(host: &TestHost, target: &str) -> String {
    let run = fetch(host, &format!("target={target}")).await;
    assert!(matches!(run.result, Err(CallError::Retryable { .. })), "{target}: {:?}", run.result);
    let seen = messages(&run)[0].to_owned();
    assert_eq!(seen, format!("fetch: error=HttpError::Connect({NAME_UNREACHABLE:?})"), "{target}");
    seen
}

/// The operator's log lines of egress refusals, at WARN (the first of a
/// plugin's minute) or DEBUG (the others): `(host, ip, class)`.
fn logged_denials(logs: &CapturedLogs) -> Vec<(String, String, String)> {
    let lines: Vec<serde_json::Value> = logs
        .text()
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|line| {
            line["fields"]["message"]
                .as_str()
                .is_some_and(|message| message.starts_with("capability.http: The egress policy refused"))
        })
        .collect();
    let levels: Vec<&str> = lines.iter().filter_map(|line| line["level"].as_str()).collect();
    let warned = levels.iter().filter(|level| **level == "WARN").count();
    assert_eq!(
        (warned, levels.len() - warned),
        (1.min(levels.len()), levels.len().saturating_sub(1)),
        "{levels:?}"
    );
    lines
        .iter()
        .map(|line| {
            let field = |name: &str| line["fields"][name].as_str().unwrap_or_default().to_owned();
            assert_eq!((field("plugin"), field("outcome")), ("fetch".to_owned(), "denied".to_owned()));
            (field("host"), field("ip"), field("class"))
        })
        .collect()
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
    assert_policy_denial(&seen);
}

/// Issue 23, finding 2: at e8aba4b the plugin was told
/// `db.internal.test resolves to 10.20.30.40 (private), which the egress
/// policy does not allow`, a map of the internal network. Now it is told
/// the same for a name that resolves to a refused address and for one that
/// does not resolve, and the operator's log has what was refused.
#[tokio::test]
async fn a_refusal_tells_the_plugin_nothing_and_the_operator_everything() {
    let logs = CapturedLogs::start();
    let names =
        StaticNames::new(&[("db.internal.test", &["10.20.30.40"]), ("md.test", &["169.254.169.254"])]);
    let host = TestHost::with_names(
        |config| {
            config.plugins.entry("fetch".into()).or_default().allow_hosts = vec![
                "db.internal.test".into(),
                "md.test".into(),
                "nx.internal.test".into(),
                "172.16.9.9".into(),
            ];
        },
        Arc::new(names),
    );
    let mut told = Vec::new();
    for target in ["http://db.internal.test:5432/", "http://md.test/latest/", "http://nx.internal.test/"] {
        told.push(fetch_unreachable(&host, target).await);
    }
    assert!(told.iter().all(|seen| *seen == told[0]), "one answer, resolved or not: {told:?}");
    assert_policy_denial(&fetch_error(&host, "http://172.16.9.9:22/").await);
    let expected = [
        ("db.internal.test", "10.20.30.40", "private"),
        ("md.test", "169.254.169.254", "link-local"),
        ("172.16.9.9", "172.16.9.9", "private"),
    ]
    .map(|(host, ip, class)| (host.to_owned(), ip.to_owned(), class.to_owned()));
    assert_eq!(logged_denials(&logs), expected, "{}", logs.text());
}

#[tokio::test]
async fn loopback_is_denied_unless_the_operator_allows_it() {
    let hook = ok_webhook().await;
    let host = host_granting(&["127.0.0.1"], |_| {});
    let seen = fetch_error(&host, &hook.url("/")).await;
    assert_policy_denial(&seen);
    assert!(hook.received().is_empty(), "nothing may reach a denied address");

    let allowed = host_granting(&["127.0.0.1"], allow_loopback);
    let run = fetch(&allowed, &format!("target={}", hook.url("/"))).await;
    assert_eq!(run.result, Ok(()));
    assert_eq!(messages(&run), ["fetch: status=200 bytes=2"]);
    assert_eq!(hook.received().len(), 1);
}

#[tokio::test]
async fn other_spellings_of_loopback_are_denied() {
    let hook = ok_webhook().await;
    let port = hook.addr.port();
    let host = host_granting(&["127.0.0.1", "[::ffff:7f00:1]", "0.0.0.0", "::1", "64:ff9b::7f00:1"], |_| {});
    let logs = CapturedLogs::start();
    let mut classes = Vec::new();
    for (target, class) in [
        (format!("http://2130706433:{port}/"), "loopback"),
        (format!("http://0x7f.1:{port}/"), "loopback"),
        (format!("http://0177.0.0.1:{port}/"), "loopback"),
        (format!("http://[::ffff:127.0.0.1]:{port}/"), "loopback"),
        (format!("http://0.0.0.0:{port}/"), "unspecified"),
        (format!("http://[::1]:{port}/"), "loopback"),
        (format!("http://[64:ff9b::7f00:1]:{port}/"), "loopback"),
    ] {
        assert_policy_denial(&fetch_error(&host, &target).await);
        classes.push(class);
    }
    let logged: Vec<String> = logged_denials(&logs).into_iter().map(|(_, _, class)| class).collect();
    assert_eq!(logged, classes, "the operator's log names each class");
    assert!(hook.received().is_empty());
}

#[tokio::test]
async fn a_name_resolving_to_loopback_is_denied_by_the_resolver() {
    let hook = ok_webhook().await;
    let host = host_granting(&["localhost"], |_| {});
    let logs = CapturedLogs::start();
    fetch_unreachable(&host, &format!("http://localhost:{}/", hook.addr.port())).await;
    let (name, _, class) = logged_denials(&logs).remove(0);
    assert_eq!((name.as_str(), class.as_str()), ("localhost", "loopback"), "the resolver's refusal");
    assert!(hook.received().is_empty());
}

#[tokio::test]
async fn an_endpoint_that_never_answers_is_cut_at_the_wall_deadline() {
    // The HTTP timeout (10 s) is longer than the call's deadline (500 ms):
    // the request is cut when the deadline comes, and the plugin is told
    // `timeout` in time to report a retryable failure (had the 10 s timeout
    // run, the call would have ended as `limit: deadline` instead).
    let hook = Webhook::start(Reply::Hang).await.unwrap();
    let host = host_granting(&["127.0.0.1"], |config| {
        allow_loopback(config);
        config.plugins.entry("fetch".into()).or_default().limits.deadline_ms = Some(500);
    });
    let run = fetch(&host, &format!("target={}", hook.url("/"))).await;
    match &run.result {
        Err(error @ CallError::Retryable { .. }) => assert!(error.is_retryable()),
        other => panic!("expected a retryable failure, got {other:?}"),
    }
    assert_eq!(messages(&run), ["fetch: error=HttpError::Timeout"]);
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
    let run = fetch(&host, &format!("target={}", hook.url("/"))).await;
    assert!(matches!(run.result, Err(CallError::Retryable { .. })), "{:?}", run.result);
    assert_eq!(messages(&run), ["fetch: error=HttpError::Timeout"]);
}

#[tokio::test]
async fn a_huge_response_body_is_refused_past_the_cap() {
    let sized = Webhook::start(Reply::Status(200, Vec::new(), vec![b'x'; 4 << 20])).await.unwrap();
    let chunked = Webhook::start(Reply::Chunked(200, vec![b'x'; 4 << 20])).await.unwrap();
    let host = host_granting(&["127.0.0.1"], allow_loopback);
    for hook in [&sized, &chunked] {
        let run = fetch(&host, &format!("target={}", hook.url("/"))).await;
        assert!(refused(&run).starts_with("fetch: error=HttpError::TooLarge("));
        assert_eq!(run.limits_hit, [Limit::HttpResponseBody]);
    }
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

#[tokio::test]
async fn operator_exceptions_do_not_extend_to_the_action_host() {
    let hook = ok_webhook().await;
    // The operator opened 127.0.0.1 but did not grant it to `fetch`: an
    // alarm naming it in its action URL must not reach it.
    let host = host_granting(&[], allow_loopback);
    let plugin = host.load("fetch", plugins::FETCH).unwrap();
    let action = format!("fetch://127.0.0.1/?target={}", hook.url("/"));
    let run = host.notify(&plugin, &action).await;
    assert_policy_denial(&refused(&run));
    assert!(hook.received().is_empty());
}

#[tokio::test]
async fn a_trusted_host_granted_to_the_plugin_is_reachable() {
    let hook = ok_webhook().await;
    let host = host_granting(&["localhost"], |config| config.egress.trusted_hosts.push("localhost".into()));
    let run = fetch(&host, &format!("target=http://localhost:{}/", hook.addr.port())).await;
    assert_eq!(run.result, Ok(()));
    assert_eq!(hook.received().len(), 1);
}

#[tokio::test]
async fn a_plugin_without_the_grant_cannot_switch_tls_verification_off() {
    let host = host_granting(&["127.0.0.1"], allow_loopback);
    let seen = refused(&fetch(&host, "target=https://127.0.0.1:9/&insecure=1").await);
    assert!(seen.contains("may not switch TLS verification off"), "{seen}");
}

#[tokio::test]
async fn routing_headers_are_refused() {
    let hook = ok_webhook().await;
    let host = host_granting(&["127.0.0.1"], allow_loopback);
    let seen = refused(&fetch(&host, &format!("target={}&header=host", hook.url("/"))).await);
    assert!(seen.contains("InvalidRequest(") && seen.contains("host"), "{seen}");
    assert!(hook.received().is_empty());
}

#[tokio::test]
async fn redirects_are_not_followed_by_default() {
    let redirect =
        Reply::Status(302, vec![("location".into(), "http://169.254.169.254/".into())], Vec::new());
    let hook = Webhook::start(redirect).await.unwrap();
    let host = host_granting(&["127.0.0.1"], allow_loopback);
    let run = fetch(&host, &format!("target={}", hook.url("/"))).await;
    assert_eq!(run.result, Ok(()));
    assert_eq!(messages(&run), ["fetch: status=302 bytes=0"]);
    assert_eq!(run.http_requests, 1);
}

#[tokio::test]
async fn followed_redirects_are_checked_at_every_hop() {
    let to_metadata =
        Reply::Status(302, vec![("location".into(), "http://169.254.169.254/latest/".into())], Vec::new());
    let metadata_hop = Webhook::start(to_metadata).await.unwrap();
    let final_hook = ok_webhook().await;
    let to_final = Reply::Status(307, vec![("location".into(), final_hook.url("/final"))], Vec::new());
    let final_hop = Webhook::start(to_final).await.unwrap();
    let host = host_granting(&["127.0.0.1", "169.254.169.254"], |config| {
        allow_loopback(config);
        config.http.max_redirects = 3;
    });

    assert_policy_denial(&fetch_error(&host, &metadata_hop.url("/")).await);

    let run = fetch(&host, &format!("target={}&auth=1&header=x-api-key", final_hop.url("/start"))).await;
    assert_eq!(run.result, Ok(()));
    assert_eq!(messages(&run), ["fetch: status=200 bytes=2"]);
    assert_eq!(run.http_requests, 2, "a hop counts as a request");
    assert_eq!(final_hop.received()[0].header("authorization"), Some("Bearer s3cret"));
    let arrived = &final_hook.received()[0];
    assert_eq!(arrived.target, "/final");
    assert_eq!(
        arrived.header("authorization"),
        None,
        "credentials never follow a redirect to another origin"
    );
}

/// Issue 23, finding 4: at e8aba4b a same-origin redirect kept the header
/// a secret was filled into, wherever on that origin it led: out of the
/// path the secret is for, to whatever the receiver chose.
#[tokio::test]
async fn a_redirect_takes_a_secret_only_where_its_url_prefix_still_covers() {
    let redirect = |to: &str| Reply::Status(307, vec![("location".into(), to.into())], Vec::new());
    let hook = Webhook::start(Reply::Script(vec![
        redirect("/hook/moved"),
        Reply::status(200),
        redirect("/elsewhere"),
        Reply::status(200),
    ]))
    .await
    .unwrap();
    let host = host_granting(&["127.0.0.1"], |config| {
        allow_loopback(config);
        config.http.max_redirects = 3;
    });
    let mut spec = registry::spec_for("fetch", Origin::External, &Owner::Operator, &host.config.grants());
    let secret = BoundSecret {
        value: SecretValue::new("k3y-s3cr3t".into()).unwrap(),
        prefix: SecretPrefix::parse(&hook.url("/hook/")).unwrap(),
    };
    spec.grants.secrets = Arc::new(ArcSwap::from_pointee(BTreeMap::from([("pager".to_owned(), secret)])));
    let plugin = host.sandbox.load(spec, &std::fs::read(plugins::FETCH).unwrap()).unwrap();
    let with_secret = "header=x-api-key&value=%7B%7Bsecret:pager%7D%7D";
    for _ in 0..2 {
        let run =
            host.notify(&plugin, &format!("fetch://p/?target={}&{with_secret}", hook.url("/hook/a"))).await;
        assert_eq!(messages(&run), ["fetch: status=200 bytes=0"]);
    }
    let sent: Vec<(String, Option<String>)> = hook
        .received()
        .iter()
        .map(|request| (request.target.clone(), request.header("x-api-key").map(str::to_owned)))
        .collect();
    let secret = Some("k3y-s3cr3t".to_owned());
    assert_eq!(
        sent,
        [
            ("/hook/a".to_owned(), secret.clone()),
            ("/hook/moved".to_owned(), secret.clone()),
            ("/hook/a".to_owned(), secret),
            ("/elsewhere".to_owned(), None),
        ],
        "under the prefix the secret goes on; out of it, not"
    );
}
