//! The built-in `http` notifier, registered for `http://` and `https://`:
//! Aodh's REST notifier.
//!
//! `POST`s the alarm to the action URL as given (query included) with
//! `content-type: application/json`, `x-openstack-request-id` set to the
//! delivery's request id, and the body Aodh sends, byte for byte (the same
//! seven keys in the same order, formatted as Python's `json.dumps`).
//! `user:pass@` in the URL becomes `Authorization: Basic`; for `https`,
//! `aodh-alarm-ssl-verify=0|1` (or the older `ceilometer-alarm-ssl-verify`)
//! switches certificate verification for this action. The response status
//! decides through the SDK's classifier.

mod body;

use base64::Engine as _;
use tocsin_guest_sdk::action::{self, SplitAction};
use tocsin_guest_sdk::http::Request;
use tocsin_guest_sdk::log::{self, Level};
use tocsin_guest_sdk::{Alarm, Delivery, Notifier, NotifyError, export_notifier};

pub use body::aodh_body;

/// The `http` notifier.
#[derive(Debug)]
pub struct HttpNotifier;

impl Notifier for HttpNotifier {
    fn notify(action: String, alarm: Alarm, delivery: Delivery) -> Result<(), NotifyError> {
        let split = action::split(&action).map_err(|error| {
            NotifyError::permanent(format!(
                "Unable to parse action {} for alarm {}: {error}",
                log::shown_action(&action),
                alarm.alarm_id
            ))
        })?;
        let request = build_request(&split, &alarm, &delivery)?;
        log::log_with(Level::Info, sending_line(&action, &alarm, &delivery.request_id), &[]);
        let response = request.send()?;
        log::log_with(Level::Info, response_line(&alarm.alarm_id, response.status), &[]);
        if response.status == 410 {
            log::log_with(
                Level::Warn,
                "Endpoint gone (HTTP 410): the receiver no longer accepts notifications.",
                &[],
            );
        }
        response.into_delivery_result()
    }
}

export_notifier!(HttpNotifier);

/// Aodh's line before the request: `Notifying alarm <name> <id> with
/// severity <severity> from <previous> to <current> with action <action>
/// because <reason>. request-id: <id>`, the action shown as
/// [`log::shown_action`] shows it.
pub fn sending_line(action: &str, alarm: &Alarm, request_id: &str) -> String {
    format!(
        "Notifying alarm {} {} with severity {} from {} to {} with action {} because {}. request-id: {}",
        alarm.alarm_name.as_deref().unwrap_or("None"),
        alarm.alarm_id,
        alarm.severity.as_deref().unwrap_or("None"),
        alarm.previous,
        alarm.current,
        log::shown_action(action),
        alarm.reason,
        request_id,
    )
}

/// Aodh's line after the response: `Notifying alarm <<id>> gets response:
/// <status> <reason>.`
pub fn response_line(alarm_id: &str, status: u16) -> String {
    let reason = http::StatusCode::from_u16(status).ok().and_then(|s| s.canonical_reason()).unwrap_or("");
    format!("Notifying alarm <{alarm_id}> gets response: {status} {reason}.")
}

/// The request Aodh's REST notifier sends for this action and alarm.
///
/// # Errors
/// A permanent error when the action's TLS option is not an integer (Aodh
/// fails the same way, on `int()`).
pub fn build_request(
    split: &SplitAction<'_>,
    alarm: &Alarm,
    delivery: &Delivery,
) -> Result<Request, NotifyError> {
    let mut request = Request::post(split.without_credentials())
        .header("x-openstack-request-id", delivery.request_id.as_str())
        .header("content-type", "application/json")
        .body(aodh_body(alarm));
    if let Some((user, password)) = split.credentials() {
        let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        request = request.header("authorization", format!("Basic {token}"));
    }
    if split.scheme == "https"
        && let Some(verify) = ssl_verify_option(split)?
    {
        request = request.verify_tls(verify);
    }
    Ok(request)
}

/// Aodh's per-action switch: `aodh-alarm-ssl-verify`, else the older
/// `ceilometer-alarm-ssl-verify`, read as `bool(int(value))`.
fn ssl_verify_option(split: &SplitAction<'_>) -> Result<Option<bool>, NotifyError> {
    let Some(value) = split
        .query_value("aodh-alarm-ssl-verify")
        .or_else(|| split.query_value("ceilometer-alarm-ssl-verify"))
    else {
        return Ok(None);
    };
    value.trim().parse::<i64>().map(|flag| Some(flag != 0)).map_err(|_| {
        NotifyError::permanent(format!("invalid aodh-alarm-ssl-verify value {value:?}: expected 0 or 1"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(url: &str) -> SplitAction<'_> {
        action::split(url).unwrap()
    }

    #[test]
    fn ssl_verify_follows_the_last_value_and_the_old_name() {
        assert_eq!(ssl_verify_option(&split("https://h/?aodh-alarm-ssl-verify=0")).unwrap(), Some(false));
        assert_eq!(
            ssl_verify_option(&split("https://h/?aodh-alarm-ssl-verify=0&aodh-alarm-ssl-verify=1")).unwrap(),
            Some(true)
        );
        assert_eq!(
            ssl_verify_option(&split("https://h/?ceilometer-alarm-ssl-verify=0")).unwrap(),
            Some(false)
        );
        assert_eq!(ssl_verify_option(&split("https://h/?x=1")).unwrap(), None);
        assert!(matches!(
            ssl_verify_option(&split("https://h/?aodh-alarm-ssl-verify=no")),
            Err(NotifyError::Permanent(_))
        ));
    }
}
