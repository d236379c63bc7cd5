//! Outbound HTTP through the host's `http` capability.
//!
//! The host sends the request: a plugin never gets a socket. It may reach
//! the host of the action URL it was invoked for plus the hosts its grant
//! lists; anything else comes back as [`HttpError::Denied`], never a trap.
//!
//! ```ignore
//! let response = Request::post("https://chat.example/hook")
//!     .header("x-request-id", &delivery.request_id)
//!     .json(&serde_json::json!({"text": "cpu_high is alarm"}))
//!     .send()?;
//! ```

use std::time::{Duration, SystemTime};

use serde::Serialize;

use crate::NotifyError;
use crate::bindings::tocsin::notifier::http::{self as host, RequestOptions};
pub use crate::bindings::tocsin::notifier::http::{HttpError, Response};
use crate::status::{self, Verdict};

/// A request being built; [`Request::send`] hands it to the host.
#[derive(Debug, Clone)]
pub struct Request {
    inner: host::Request,
}

impl Request {
    /// A request with `method` to `url`, no headers, an empty body and the
    /// host's default options.
    pub fn new(method: impl Into<String>, url: impl Into<String>) -> Self {
        Request {
            inner: host::Request {
                method: method.into(),
                url: url.into(),
                headers: Vec::new(),
                body: Vec::new(),
                options: RequestOptions { timeout_ms: None, verify_tls: None },
            },
        }
    }

    /// A `GET` request.
    pub fn get(url: impl Into<String>) -> Self {
        Self::new("GET", url)
    }

    /// A `POST` request.
    pub fn post(url: impl Into<String>) -> Self {
        Self::new("POST", url)
    }

    /// Appends a header.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.inner.headers.push((name.into(), value.into()));
        self
    }

    /// Sets the body.
    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.inner.body = body.into();
        self
    }

    /// Sets the body to `value` as JSON and `content-type: application/json`.
    ///
    /// # Errors
    /// When `value` cannot be serialized (a map with non-string keys).
    pub fn json<T: Serialize + ?Sized>(self, value: &T) -> Result<Self, serde_json::Error> {
        let body = serde_json::to_vec(value)?;
        Ok(self.header("content-type", "application/json").body(body))
    }

    /// Sets this attempt's timeout (the host lowers it to its maximum).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.inner.options.timeout_ms = Some(u32::try_from(timeout.as_millis()).unwrap_or(u32::MAX));
        self
    }

    /// Asks the host to verify TLS certificates or not. Only plugins whose
    /// grant allows it may switch verification off.
    pub fn verify_tls(mut self, verify: bool) -> Self {
        self.inner.options.verify_tls = Some(verify);
        self
    }

    /// Sends the request and waits for the whole response.
    ///
    /// # Errors
    /// [`HttpError`] says why there is no response: denied by the egress
    /// policy, timeout, connection, TLS, size or request limits.
    pub fn send(&self) -> Result<Response, HttpError> {
        host::send(&self.inner)
    }
}

impl Response {
    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(key, _)| key.eq_ignore_ascii_case(name)).map(|(_, value)| value.as_str())
    }

    /// The body parsed as JSON.
    ///
    /// # Errors
    /// When the body is not JSON of type `T`.
    pub fn json<T: serde::de::DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        serde_json::from_slice(&self.body)
    }

    /// The `Retry-After` header as a delay, if present and valid.
    pub fn retry_after(&self) -> Option<Duration> {
        status::parse_retry_after(self.header("retry-after")?, SystemTime::now())
    }

    /// What the status means for the delivery ([`status::classify`]).
    pub fn verdict(&self) -> Verdict {
        status::classify(self.status, self.retry_after())
    }

    /// The delivery's result for this response: `Ok` on 2xx, a retryable
    /// error (with `Retry-After` as the hint) or a permanent one.
    pub fn into_delivery_result(self) -> Result<(), NotifyError> {
        self.verdict().into_result(&format!("HTTP {}", self.status))
    }
}

impl From<HttpError> for NotifyError {
    /// Connection failures and timeouts are worth retrying; a refusal by
    /// policy, a TLS failure, an oversized body or a bad request are not.
    fn from(error: HttpError) -> Self {
        let reason = error.to_string();
        match error {
            HttpError::Timeout | HttpError::Connect(_) => NotifyError::retryable(reason, None),
            HttpError::Denied(_)
            | HttpError::Tls(_)
            | HttpError::TooLarge(_)
            | HttpError::InvalidRequest(_)
            | HttpError::LimitExceeded(_) => NotifyError::permanent(reason),
        }
    }
}
