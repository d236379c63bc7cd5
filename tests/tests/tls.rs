//! The REST notifier's TLS options, as Aodh has them, against real TLS
//! receivers on 127.0.0.1 whose certificates come from a CA made in the
//! test: verification on and off by configuration (`rest_notifier_ssl_verify`)
//! and by URL (`aodh-alarm-ssl-verify`, `ceilometer-alarm-ssl-verify`), a CA
//! bundle (`rest_notifier_ca_bundle_certificate_path`), and a client
//! certificate (`rest_notifier_certificate_file`, with the key in its own
//! file or in the same one) for a receiver that requires one — which tenant
//! plugins never present.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed test

use std::path::PathBuf;

use tocsin::config::Config;
use tocsin::sandbox::CallError;
use tocsin_tests::tls::TestCa;
use tocsin_tests::webhook::{Reply, Webhook};
use tocsin_tests::{TestHost, plugins};

/// The TLS material of one test, written to files as an operator would.
struct Material {
    _dir: tempfile::TempDir,
    ca: PathBuf,
    cert: PathBuf,
    key: PathBuf,
    cert_and_key: PathBuf,
}

fn material(ca: &TestCa) -> Material {
    let dir = tempfile::tempdir().unwrap();
    let client = ca.client("aodh-notifier");
    let write = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path
    };
    Material {
        ca: write("ca.pem", ca.pem()),
        cert: write("client.pem", &client.cert_pem),
        key: write("client.key", &client.key_pem),
        cert_and_key: write("client-and-key.pem", &format!("{}{}", client.cert_pem, client.key_pem)),
        _dir: dir,
    }
}

/// A fresh CA, the operator's files, and a TLS receiver on 127.0.0.1 with
/// a certificate from that CA (requiring one from clients when
/// `require_client_certificate`).
async fn receiver(require_client_certificate: bool) -> (Material, Webhook) {
    let ca = TestCa::new();
    let config = ca.server_config(&ca.server("127.0.0.1"), require_client_certificate);
    let hook = Webhook::start_tls(Reply::status(200), config).await.unwrap();
    (material(&ca), hook)
}

/// Runs the built-in `http` notifier for `url` with loopback granted and
/// `configure` applied.
async fn deliver(url: &str, configure: impl FnOnce(&mut Config)) -> Result<(), CallError> {
    let host = TestHost::loopback(configure);
    host.notify(&host.builtin("http"), url).await.result
}

/// Asserts a TLS refusal: permanent, and the reason says TLS.
fn tls_refused(case: &str, result: Result<(), CallError>) {
    match result {
        Err(CallError::Permanent(reason)) if reason.contains("Tls(") => {}
        other => panic!("{case}: expected a TLS failure, got {other:?}"),
    }
}

#[tokio::test]
async fn verification_follows_the_configuration_the_url_and_the_ca_bundle() {
    let (files, hook) = receiver(false).await;

    tls_refused("verification on by default, CA unknown", deliver(&hook.url("/default"), |_| {}).await);
    let off_by_config = |config: &mut Config| config.http.rest_notifier_ssl_verify = false;
    assert_eq!(
        deliver(&hook.url("/config-off"), off_by_config).await,
        Ok(()),
        "rest_notifier_ssl_verify = false"
    );
    assert_eq!(
        deliver(&hook.url("/url-off?aodh-alarm-ssl-verify=0"), |_| {}).await,
        Ok(()),
        "aodh-alarm-ssl-verify=0"
    );
    assert_eq!(
        deliver(&hook.url("/old-off?ceilometer-alarm-ssl-verify=0"), |_| {}).await,
        Ok(()),
        "ceilometer-alarm-ssl-verify=0"
    );
    tls_refused(
        "aodh-alarm-ssl-verify=1 overrides rest_notifier_ssl_verify = false",
        deliver(&hook.url("/url-on?aodh-alarm-ssl-verify=1"), off_by_config).await,
    );
    let bundle = files.ca.clone();
    let trusting =
        move |config: &mut Config| config.http.rest_notifier_ca_bundle_certificate_path = Some(bundle);
    assert_eq!(deliver(&hook.url("/bundle"), trusting).await, Ok(()), "the CA bundle is trusted");

    let targets: Vec<String> = hook.received().iter().map(|r| r.target.clone()).collect();
    assert_eq!(
        targets,
        [
            "/config-off",
            "/url-off?aodh-alarm-ssl-verify=0",
            "/old-off?ceilometer-alarm-ssl-verify=0",
            "/bundle"
        ],
        "refused handshakes send nothing"
    );
}

#[tokio::test]
async fn a_receiver_requiring_a_client_certificate_gets_the_operators_and_only_from_the_rest_notifier() {
    let (files, hook) = receiver(true).await;
    let with = |cert: Option<PathBuf>, key: Option<PathBuf>| {
        let bundle = files.ca.clone();
        move |config: &mut Config| {
            config.http.rest_notifier_ca_bundle_certificate_path = Some(bundle);
            config.http.rest_notifier_certificate_file = cert;
            config.http.rest_notifier_certificate_key = key;
        }
    };

    tls_refused("no client certificate", deliver(&hook.url("/none"), with(None, None)).await);
    let separate = with(Some(files.cert.clone()), Some(files.key.clone()));
    assert_eq!(deliver(&hook.url("/cert-key"), separate).await, Ok(()), "certificate and key files");
    let combined = with(Some(files.cert_and_key.clone()), None);
    assert_eq!(deliver(&hook.url("/combined"), combined).await, Ok(()), "certificate file holding the key");

    // A tenant plugin allowed to skip verification still presents no
    // certificate: the operator's is the REST notifier's alone.
    let host = TestHost::new(|config| {
        config.egress.allow_networks = vec!["127.0.0.1/32".parse().unwrap()];
        let fetch = config.plugins.entry("fetch".into()).or_default();
        fetch.allow_hosts = vec!["127.0.0.1".into()];
        fetch.allow_insecure_tls = Some(true);
        with(Some(files.cert.clone()), Some(files.key.clone()))(config);
    });
    let fetch = host.load("fetch", plugins::FETCH).unwrap();
    let run = host.notify(&fetch, &format!("fetch://probe/?insecure=1&target={}", hook.url("/tenant"))).await;
    tls_refused("a tenant plugin", run.result);

    let targets: Vec<String> = hook.received().iter().map(|r| r.target.clone()).collect();
    assert_eq!(targets, ["/cert-key", "/combined"]);
}
