//! The SSRF corpus: alarm actions (and redirects) that try to reach the
//! operator's network through the built-in `http` notifier, the path any
//! alarm author controls. Every case must be refused as a `denied`
//! http-error before anything is sent; the allowed cases (hosts the
//! operator granted by name and networks it allowed) must still deliver.
//!
//! Loopback cases aim at a real listener on 127.0.0.1 that must receive
//! nothing; names resolve through a fixed table ([`StaticNames`]) standing
//! in for DNS records that point at internal addresses.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed test

use std::net::IpAddr;
use std::sync::Arc;

use tocsin::capabilities::egress::EgressPolicy;
use tocsin::capabilities::http::{EGRESS_DENIAL, NAME_UNREACHABLE};
use tocsin::config::Config;
use tocsin::sandbox::CallError;
use tocsin_tests::TestHost;
use tocsin_tests::logs::CapturedLogs;
use tocsin_tests::names::StaticNames;
use tocsin_tests::webhook::{Reply, Webhook};

/// Names as a hostile or careless DNS would answer them.
fn names() -> Arc<StaticNames> {
    Arc::new(StaticNames::new(&[
        ("localhost", &["127.0.0.1", "::1"]),
        ("internal.test", &["10.1.2.3"]),
        ("metadata.google.internal", &["169.254.169.254"]),
        ("metadata.test", &["169.254.169.254"]),
        ("rebind.test", &["93.184.216.34", "127.0.0.1"]),
        ("mapped.test", &["::ffff:127.0.0.1"]),
        ("nat64.test", &["64:ff9b::a9fe:a9fe"]),
        ("cgnat.test", &["100.64.0.7"]),
        ("ula.test", &["fd00::7"]),
        ("loop.test", &["127.0.0.1"]),
        ("gateway.test", &["127.0.0.1"]),
    ]))
}

/// Action URLs aimed at internal addresses; `{P}` is the port of a
/// listener on 127.0.0.1 that must never be reached.
const DIRECT: &[&str] = &[
    // IPv4 loopback in every spelling URL parsers accept.
    "http://127.0.0.1:{P}/",
    "http://127.1:{P}/",
    "http://127.0.1:{P}/",
    "http://2130706433:{P}/",
    "http://0x7f000001:{P}/",
    "http://0x7f.0x0.0x0.0x1:{P}/",
    "http://0x7f.1:{P}/",
    "http://0177.0.0.1:{P}/",
    "http://0177.0000.0000.0001:{P}/",
    "http://017700000001:{P}/",
    "http://127.000.000.001:{P}/",
    "http://127.0.0.1.:{P}/",
    "http://127.255.255.254:{P}/",
    "https://127.0.0.1:{P}/",
    "HTTP://127.0.0.1:{P}/",
    "http://127。0。0。1:{P}/",
    "http://①②⑦.⓪.⓪.①:{P}/",
    "http://allowed.example@127.0.0.1:{P}/",
    "http://user:pass@127.0.0.1:{P}/?aodh-alarm-ssl-verify=0",
    "http://127.0.0.1:{P}/#@allowed.example",
    // Names that resolve to loopback.
    "http://localhost:{P}/",
    "http://LOCALHOST:{P}/",
    "http://localhost.:{P}/",
    "http://loop.test:{P}/",
    "http://rebind.test:{P}/",
    "http://mapped.test:{P}/",
    // IPv6 loopback, and IPv6 forms that carry 127.0.0.1.
    "http://[::1]:{P}/",
    "http://[0:0:0:0:0:0:0:1]:{P}/",
    "http://[::ffff:127.0.0.1]:{P}/",
    "http://[::ffff:7f00:1]:{P}/",
    "http://[::127.0.0.1]:{P}/",
    "http://[64:ff9b::7f00:1]:{P}/",
    "http://[2002:7f00:1::]:{P}/",
    "http://[2001:0:4136:e378:8000:63bf:80ff:fffe]:{P}/",
    // The unspecified address, which Linux routes to the local host.
    "http://0.0.0.0:{P}/",
    "http://0:{P}/",
    "http://[::]:{P}/",
    // Cloud metadata.
    "http://169.254.169.254/latest/meta-data/",
    "http://169.254.169.254.:80/latest/meta-data/",
    "http://2852039166/latest/meta-data/",
    "http://0xa9fea9fe/latest/meta-data/",
    "http://0251.0376.0251.0376/latest/meta-data/",
    "http://[::ffff:a9fe:a9fe]/latest/meta-data/",
    "http://[fd00:ec2::254]/latest/meta-data/",
    "http://metadata.google.internal/computeMetadata/v1/",
    "http://metadata.test/",
    "http://nat64.test/",
    // Private, shared, multicast, broadcast and reserved ranges.
    "http://10.0.0.1/",
    "http://172.16.0.1/",
    "http://172.31.255.255/",
    "http://192.168.1.1/",
    "http://internal.test/",
    "http://100.64.0.1/",
    "http://cgnat.test/",
    "http://224.0.0.1/",
    "http://255.255.255.255/",
    "http://198.18.0.1/",
    "http://240.0.0.1/",
    "http://[fe80::1]/",
    "http://[fec0::1]/",
    "http://[fc00::1]/",
    "http://[64:ff9b:1::a9fe:a9fe]/",
    // A host the operator trusts, named by an alarm author: not granted.
    "http://gateway.test:{P}/",
    "http://ula.test/",
    "http://[ff02::1]/",
];

/// Where a redirect from a granted, allowed host tries to go next.
const REDIRECTS: &[&str] = &[
    "http://169.254.169.254/latest/meta-data/",
    "http://metadata.test/latest/meta-data/",
    "http://[::ffff:127.0.0.1]:{P}/",
    "http://internal.test/",
    "http://10.0.0.1/",
    "http://localhost:{P}/",
];

/// The operator's usual test settings: loopback allowed, but only for
/// hosts it grants by name; `grants` are those names.
fn operator(grants: &[&str]) -> impl FnOnce(&mut Config) {
    let grants: Vec<String> = grants.iter().map(|g| (*g).to_owned()).collect();
    move |config: &mut Config| {
        config.egress.allow_networks = vec!["127.0.0.1/32".parse().unwrap()];
        config.egress.trusted_hosts = vec!["gateway.test".into()];
        config.http.max_redirects = 3;
        config.plugins.entry("http".into()).or_default().allow_hosts = grants;
    }
}

/// The corpus stays a corpus.
const _: () = assert!(DIRECT.len() + REDIRECTS.len() >= 50);

/// Runs the built-in `http` notifier for `action`; returns the refusal it
/// reported, or panics naming the case when it was not refused by policy:
/// an address refused or a host not granted (`denied`, permanent), or a
/// name that resolves to a refused address (told as one that does not
/// resolve, retryable).
async fn refusal(host: &TestHost, action: &str) -> String {
    let plugin = host.builtin("http");
    let run = host.notify(&plugin, action).await;
    match run.result {
        Err(CallError::Permanent(reason)) if reason.contains("Denied(") => reason,
        Err(CallError::Retryable { reason, .. }) if reason.contains(NAME_UNREACHABLE) => reason,
        other => panic!("{action}: not refused by the egress policy: {other:?}"),
    }
}

#[tokio::test]
async fn every_case_of_the_corpus_is_refused_before_anything_is_sent() {
    let trap = Webhook::start(Reply::status(200)).await.unwrap();
    let port = trap.addr.port().to_string();
    let target = |case: &str| case.replace("{P}", &port);

    // The action URL is the alarm author's: its host gets no exception.
    let host = TestHost::with_names(operator(&[]), names());
    for case in DIRECT {
        let logs = CapturedLogs::start();
        let reason = refusal(&host, &target(case)).await;
        assert!(reason.contains(EGRESS_DENIAL) || reason.contains(NAME_UNREACHABLE), "{case}: {reason}");
        // Refused by the policy, not unresolved: the operator's log says so.
        assert!(
            logs.text().contains("The egress policy refused a plugin's request"),
            "{case}: {}",
            logs.text()
        );
    }

    // A granted, allowed host that redirects: each hop is checked again,
    // grant and address. The targets are granted too (but for the mapped
    // loopback, which the grant check refuses), so that the address check
    // is what refuses them.
    let granted = ["127.0.0.1", "metadata.test", "169.254.169.254", "internal.test", "10.0.0.1", "localhost"];
    let host = TestHost::with_names(operator(&granted), names());
    for case in REDIRECTS {
        let bouncer = Webhook::start(Reply::Status(302, vec![("location".into(), target(case))], Vec::new()))
            .await
            .unwrap();
        let reason = refusal(&host, &bouncer.url("/hook")).await;
        assert_eq!(bouncer.received().len(), 1, "{case}: the first hop was sent: {reason}");
        let by = if case.contains("::ffff") { "is not granted" } else { EGRESS_DENIAL };
        assert!(reason.contains(by) || reason.contains(NAME_UNREACHABLE), "{case}: {reason}");
    }

    assert!(trap.received().is_empty(), "a refused case reached 127.0.0.1:{port}: {:?}", trap.received());
    let total = DIRECT.len() + REDIRECTS.len();
    println!("SSRF corpus: {total} cases, {total} refused, 0 requests reached the listener");
}

#[tokio::test]
async fn hosts_the_operator_granted_by_name_are_still_delivered() {
    let sink = Webhook::start(Reply::status(200)).await.unwrap();
    let port = sink.addr.port();
    let delivers = async |host: &TestHost, action: String| {
        let plugin = host.builtin("http");
        let run = host.notify(&plugin, &action).await;
        assert_eq!(run.result, Ok(()), "{action}");
    };

    let host = TestHost::with_names(operator(&["127.0.0.1", "loop.test"]), names());
    delivers(&host, format!("http://127.0.0.1:{port}/granted")).await;
    delivers(&host, format!("http://loop.test:{port}/named")).await;
    let bouncer = Webhook::start(Reply::Status(
        302,
        vec![("location".into(), format!("http://127.0.0.1:{port}/after-redirect"))],
        Vec::new(),
    ))
    .await
    .unwrap();
    delivers(&host, bouncer.url("/hook")).await;

    // A trusted host needs no allowed network, only the grant.
    let host = TestHost::with_names(
        |config| {
            config.egress.trusted_hosts = vec!["gateway.test".into()];
            config.plugins.entry("http".into()).or_default().allow_hosts = vec!["gateway.test".into()];
        },
        names(),
    );
    delivers(&host, format!("http://gateway.test:{port}/trusted")).await;

    let paths: Vec<String> = sink.received().iter().map(|r| r.target.clone()).collect();
    assert_eq!(paths, ["/granted", "/named", "/after-redirect", "/trusted"]);
}

#[tokio::test]
async fn report_only_lets_granted_hosts_through_with_a_warning_and_nothing_else() {
    // What an allowlist rollout needs: a granted internal host is let
    // through, logged as what enforcement would refuse.
    let logs = CapturedLogs::start();
    let policy = EgressPolicy::default().report_only(true);
    let internal: IpAddr = "10.1.2.3".parse().unwrap();
    assert!(policy.check_ip("internal.test", internal, true).is_ok());
    let reported = logs.lines_with(
        "egress: The policy would refuse this address; allowed because egress.report_only is set.",
    );
    assert_eq!(reported.len(), 1, "{}", logs.text());
    let fields = &reported[0]["fields"];
    assert_eq!((fields["ip"].as_str(), fields["class"].as_str()), (Some("10.1.2.3"), Some("private")));
    assert_eq!(reported[0]["level"], "WARN");
    // Never for a host only an action URL names, nor for the host itself
    // or the metadata service.
    assert!(policy.check_ip("internal.test", internal, false).is_err());
    for address in ["127.0.0.1", "169.254.169.254", "0.0.0.0", "::1"] {
        assert!(policy.check_ip("granted.test", address.parse().unwrap(), true).is_err(), "{address}");
    }

    // The whole corpus is still refused with report-only on.
    let trap = Webhook::start(Reply::status(200)).await.unwrap();
    let port = trap.addr.port().to_string();
    let host = TestHost::with_names(
        |config| {
            operator(&[])(config);
            config.egress.report_only = true;
        },
        names(),
    );
    for case in DIRECT {
        refusal(&host, &case.replace("{P}", &port)).await;
    }
    assert!(trap.received().is_empty());
}
