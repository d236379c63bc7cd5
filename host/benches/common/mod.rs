//! The native baseline the benchmarks measure the sandbox against: the
//! built-in notifiers' own code (their lines, body and request) compiled
//! natively into the host, behind the same [`Notifiers`] trait the sandbox
//! implements.

use std::sync::Arc;

use tocsin::alarm::{Alarm, Delivery};
use tocsin::dispatch::Notifiers;
use tocsin::registry::{self, ResolveError};
use tocsin::sandbox::CallError;

/// The built-in notifiers' own code (their lines, body and request),
/// compiled natively: no sandbox. Their lines carry the fields the
/// service's plugin lines carry (`plugin`, `alarm_id`), so both variants
/// write the same log.
pub struct Native {
    /// The HTTP client, configured as the sandbox's.
    pub client: reqwest::Client,
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
        alarm: &Alarm,
        delivery: &Delivery,
    ) -> Result<(), CallError> {
        let alarm = alarm.to_sdk();
        if *plugin == "log" {
            let line = tocsin_notifier_log::aodh_line(action, &alarm);
            tracing::info!(target: "tocsin::plugin", plugin = "log", alarm_id = alarm.alarm_id, "{line}");
            return Ok(());
        }
        let split =
            tocsin_guest_sdk::action::split(action).map_err(|e| CallError::Permanent(e.to_string()))?;
        let request_id = delivery.request_id();
        let line = tocsin_notifier_http::sending_line(&split, &alarm, &request_id);
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
