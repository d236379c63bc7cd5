//! What the benchmarks share: the native baseline they measure the
//! sandbox against (the built-in notifiers' own code — their lines, body
//! and request — compiled natively into the host, behind the same
//! [`Notifiers`] trait the sandbox implements), the loopback grant their
//! `http` notifier needs, and the sink it posts to.

use std::sync::Arc;
use std::time::Duration;

use tocsin::config::Config;
use tocsin::dispatch::Notifiers;
use tocsin::registry::{self, ResolveError};
use tocsin::sandbox::CallError;
use tocsin_core::alarm::{Alarm, Delivery};

/// The built-in notifiers' own code (their lines, body and request),
/// compiled natively: no sandbox. Their lines carry the fields the
/// service's plugin lines carry (`plugin`, `alarm_id`), so both variants
/// write the same log.
pub struct Native {
    client: reqwest::Client,
}

impl Native {
    /// The native notifiers with a client configured as the sandbox's:
    /// no proxy, the per-attempt timeout of the delivery policy.
    pub fn new(config: &Config) -> Self {
        let client = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_millis(config.http.timeout_ms))
            .build()
            .expect("HTTP client");
        Native { client }
    }
}

/// Lets the built-in `http` notifier reach 127.0.0.1, where the sink is
/// (tocsin's egress policy refuses loopback by default).
pub fn allow_loopback(config: &mut Config) {
    config.egress.allow_networks = vec!["127.0.0.1/32".parse().expect("network")];
    config.plugins.entry("http".into()).or_default().allow_hosts = vec!["127.0.0.1".into()];
}

/// A keep-alive HTTP sink on 127.0.0.1 that answers 200; its URL.
pub async fn start_sink() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind the sink");
    let addr = listener.local_addr().expect("sink address");
    let app = axum::Router::new().route("/hook", axum::routing::post(|| async { "" }));
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}/hook")
}

impl Notifiers for Native {
    type Plugin = &'static str;

    fn resolve(&self, action: &str) -> Result<Arc<&'static str>, ResolveError> {
        registry::builtin_for_action(action).map(Arc::new)
    }

    fn identity<'a>(plugin: &'a &'static str) -> (&'a str, Option<&'a str>) {
        (plugin, None)
    }

    async fn invoke(
        &self,
        plugin: &&'static str,
        action: &str,
        alarm: &Arc<Alarm>,
        delivery: &Delivery,
    ) -> Result<(), CallError> {
        let alarm = sdk_alarm(alarm);
        if *plugin == "log" {
            let line = tocsin_notifier_log::aodh_line(action, &alarm);
            tracing::info!(target: "tocsin::plugin", plugin = "log", alarm_id = alarm.alarm_id, "{line}");
            return Ok(());
        }
        let split =
            tocsin_contract::action::split(action).map_err(|e| CallError::Permanent(e.to_string()))?;
        let request_id = delivery.request_id();
        let line = tocsin_notifier_http::sending_line(action, &alarm, &request_id);
        tracing::info!(target: "tocsin::plugin", plugin = "http", alarm_id = alarm.alarm_id, "{line}");
        let response = self
            .client
            .post(split.without_credentials())
            .header("x-openstack-request-id", request_id)
            .header("content-type", "application/json")
            .body(tocsin_notifier_http::aodh_body(&alarm))
            .send()
            .await
            .map_err(|e| CallError::Retryable { reason: e.to_string(), retry_after: None })?;
        let status = response.status().as_u16();
        let line = tocsin_notifier_http::response_line(&alarm.alarm_id, status);
        tracing::info!(target: "tocsin::plugin", plugin = "http", alarm_id = alarm.alarm_id, "{line}");
        match response.status().is_success() {
            true => Ok(()),
            false => Err(CallError::Permanent(status.to_string())),
        }
    }
}

/// The alarm as the guest SDK types it, to run a notifier's own code
/// natively (the benchmarks' baseline).
pub fn sdk_alarm(alarm: &Alarm) -> tocsin_guest_sdk::Alarm {
    tocsin_guest_sdk::Alarm {
        alarm_id: alarm.alarm_id.clone(),
        alarm_name: alarm.alarm_name.clone(),
        severity: alarm.severity.clone(),
        previous: alarm.previous.clone(),
        current: alarm.current.clone(),
        reason: alarm.reason.clone(),
        reason_data: alarm.reason_data.as_ref().map(|data| data.as_str().to_owned()),
    }
}
