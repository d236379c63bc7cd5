//! Whether a delivery that got an HTTP status is done, worth retrying, or
//! failed for good.
//!
//! This is the one place the table lives: the built-in `http` notifier uses
//! it and tenants may too. The plugin decides *whether* to retry; the host
//! decides *when* and *how often*.

use std::time::{Duration, SystemTime};

use crate::NotifyError;

/// What a status means for the delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// 2xx: the receiver has it.
    Delivered,
    /// 408, 425, 429 and 5xx except 501/505: try again, after the hint if
    /// the receiver gave one.
    Retry(Option<Duration>),
    /// Everything else: a retry would get the same answer.
    Permanent,
}

/// Classifies an HTTP status; `retry_after` is the parsed `Retry-After`
/// header, passed through as the hint of a retryable verdict.
pub fn classify(status: u16, retry_after: Option<Duration>) -> Verdict {
    match status {
        200..=299 => Verdict::Delivered,
        408 | 425 | 429 => Verdict::Retry(retry_after),
        501 | 505 => Verdict::Permanent,
        500..=599 => Verdict::Retry(retry_after),
        _ => Verdict::Permanent,
    }
}

impl Verdict {
    /// Turns the verdict into a notifier result; `what` describes the
    /// response in the error's reason (e.g. `"HTTP 503"`).
    pub fn into_result(self, what: &str) -> Result<(), NotifyError> {
        match self {
            Verdict::Delivered => Ok(()),
            Verdict::Retry(after) => Err(NotifyError::retryable(what, after)),
            Verdict::Permanent => Err(NotifyError::permanent(what)),
        }
    }
}

/// Parses a `Retry-After` value, either delay-seconds or an HTTP-date
/// (relative to `now`). A date in the past means "now": zero.
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_table_matches_the_delivery_policy() {
        let hint = Some(Duration::from_secs(7));
        let table: &[(u16, Verdict)] = &[
            (200, Verdict::Delivered),
            (201, Verdict::Delivered),
            (204, Verdict::Delivered),
            (299, Verdict::Delivered),
            (301, Verdict::Permanent),
            (304, Verdict::Permanent),
            (400, Verdict::Permanent),
            (401, Verdict::Permanent),
            (403, Verdict::Permanent),
            (404, Verdict::Permanent),
            (408, Verdict::Retry(hint)),
            (410, Verdict::Permanent),
            (413, Verdict::Permanent),
            (425, Verdict::Retry(hint)),
            (429, Verdict::Retry(hint)),
            (500, Verdict::Retry(hint)),
            (501, Verdict::Permanent),
            (502, Verdict::Retry(hint)),
            (503, Verdict::Retry(hint)),
            (504, Verdict::Retry(hint)),
            (505, Verdict::Permanent),
            (599, Verdict::Retry(hint)),
            (100, Verdict::Permanent),
        ];
        for &(status, expected) in table {
            assert_eq!(classify(status, hint), expected, "status {status}");
        }
    }

    #[test]
    fn retry_after_parses_seconds_and_http_dates() {
        let now = httpdate::parse_http_date("Wed, 21 Oct 2015 07:28:00 GMT").unwrap();
        assert_eq!(parse_retry_after("120", now), Some(Duration::from_secs(120)));
        assert_eq!(parse_retry_after(" 0 ", now), Some(Duration::ZERO));
        assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:29:30 GMT", now), Some(Duration::from_secs(90)));
        assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:00:00 GMT", now), Some(Duration::ZERO));
        assert_eq!(parse_retry_after("soon", now), None);
        assert_eq!(parse_retry_after("-5", now), None);
    }

    #[test]
    fn verdicts_become_notify_results() {
        assert!(Verdict::Delivered.into_result("HTTP 200").is_ok());
        match Verdict::Retry(Some(Duration::from_millis(1500))).into_result("HTTP 503") {
            Err(NotifyError::Retryable(retry)) => {
                assert_eq!(retry.retry_after_ms, Some(1500));
                assert_eq!(retry.reason, "HTTP 503");
            }
            other => panic!("unexpected {other:?}"),
        }
        assert!(matches!(
            Verdict::Permanent.into_result("HTTP 404"),
            Err(NotifyError::Permanent(reason)) if reason == "HTTP 404"
        ));
    }
}
