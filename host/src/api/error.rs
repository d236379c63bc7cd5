//! Errors of the API, as JSON with a stable code and a message for people:
//! `{"error": {"code": "scheme_unavailable", "message": "…"}}`.

use std::time::Duration;

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use tocsin_core::tenancy::ClaimError;

use crate::registry::catalog::CatalogError;
use crate::sandbox::validate::LoadError;

/// What an API request can fail with.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// No token, or one that no configured hash matches.
    #[error("a valid bearer token is required (Authorization: Bearer <token>)")]
    Unauthenticated,
    /// The request itself is malformed.
    #[error("{0}")]
    BadRequest(String),
    /// The caller made more requests than `api.requests_per_minute`
    /// allows.
    #[error("too many requests (api.requests_per_minute); try again in {} ms", retry_after.as_millis())]
    RateLimited {
        /// When the next request would be admitted.
        retry_after: Duration,
    },
    /// The caller has `api.requests_at_once` requests being answered.
    #[error("{0} of your requests are being answered (api.requests_at_once); try again when one is")]
    Busy(usize),
    /// The notifier catalog refused or failed.
    #[error(transparent)]
    Catalog(#[from] CatalogError),
}

/// When a caller told "busy" may try again: a place frees as soon as a
/// request in flight is answered.
const BUSY_RETRY_AFTER: Duration = Duration::from_secs(1);

impl ApiError {
    /// The HTTP status and the stable code.
    fn status_and_code(&self) -> (StatusCode, &'static str) {
        match self {
            ApiError::Unauthenticated => (StatusCode::UNAUTHORIZED, "unauthenticated"),
            ApiError::BadRequest(_) => (StatusCode::BAD_REQUEST, "invalid_request"),
            ApiError::RateLimited { .. } => (StatusCode::TOO_MANY_REQUESTS, "rate_limited"),
            ApiError::Busy(_) => (StatusCode::TOO_MANY_REQUESTS, "busy"),
            ApiError::Catalog(error) => match error {
                CatalogError::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
                CatalogError::NoSuchVersion { .. } => (StatusCode::NOT_FOUND, "no_such_version"),
                CatalogError::NoSuchSecret { .. } => (StatusCode::NOT_FOUND, "no_such_secret"),
                CatalogError::Claim(ClaimError::Invalid(_)) => (StatusCode::BAD_REQUEST, "invalid_scheme"),
                CatalogError::Claim(ClaimError::Unavailable(_)) => {
                    (StatusCode::CONFLICT, "scheme_unavailable")
                }
                CatalogError::TooLarge { .. } => (StatusCode::PAYLOAD_TOO_LARGE, "too_large"),
                CatalogError::Invalid(_) => (StatusCode::BAD_REQUEST, "invalid_request"),
                CatalogError::Refused(LoadError::Unconfined(_)) => {
                    (StatusCode::SERVICE_UNAVAILABLE, "compiler_unavailable")
                }
                CatalogError::Refused(_) => (StatusCode::UNPROCESSABLE_ENTITY, "component_refused"),
                CatalogError::NotLive(_) => (StatusCode::CONFLICT, "not_live"),
                CatalogError::Quota(_) => (StatusCode::FORBIDDEN, "quota_exceeded"),
                CatalogError::Busy(_) => (StatusCode::TOO_MANY_REQUESTS, "busy"),
                CatalogError::RateLimited { .. } => (StatusCode::TOO_MANY_REQUESTS, "rate_limited"),
                CatalogError::Conflict(_) => (StatusCode::CONFLICT, "conflict"),
                CatalogError::Store(_) => (StatusCode::SERVICE_UNAVAILABLE, "storage_unavailable"),
            },
        }
    }
}

impl ApiError {
    /// When a refused caller may try again: every 429 says.
    fn retry_after(&self) -> Option<Duration> {
        match self {
            ApiError::RateLimited { retry_after }
            | ApiError::Catalog(CatalogError::RateLimited { retry_after }) => Some(*retry_after),
            ApiError::Busy(_) | ApiError::Catalog(CatalogError::Busy(_)) => Some(BUSY_RETRY_AFTER),
            _ => None,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = self.status_and_code();
        // The store's own words (SQL, paths, the database's messages) go to
        // the operator's log only; the caller learns that it failed.
        let message = if let ApiError::Catalog(CatalogError::Store(error)) = &self {
            tracing::error!(error = %error, outcome = "failed", "api: The notifier store failed.");
            "the notifier store is unavailable; try again shortly".to_owned()
        } else {
            self.to_string()
        };
        let mut body = json!({"error": {"code": code, "message": message}});
        if let ApiError::Catalog(CatalogError::Refused(refused)) = &self {
            // The kind of refusal (`forbidden_import`, `not_a_component`, …).
            body["error"]["reason"] = json!(refused.kind());
        }
        let retry_after = self.retry_after();
        if let Some(retry_after) = retry_after {
            body["error"]["retry_after_ms"] =
                json!(u64::try_from(retry_after.as_millis()).unwrap_or(u64::MAX));
        }
        let mut response = (status, Json(body)).into_response();
        if status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        if let Some(retry_after) = retry_after {
            // Whole seconds, rounded up: never sooner than the next token.
            let seconds = retry_after.as_millis().div_ceil(1000).max(1);
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(u64::try_from(seconds).unwrap_or(u64::MAX)));
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 23, finding 6: at e8aba4b the database's own error text (here
    /// a table name) was the answer's message.
    #[tokio::test]
    async fn a_store_failure_answers_without_the_databases_words() {
        let failed = crate::store::StoreError::Database(sqlx::Error::Protocol(
            "no such table: notifier_versions_secret".into(),
        ));
        let response = ApiError::Catalog(CatalogError::Store(failed)).into_response();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        let body = axum::body::to_bytes(response.into_body(), 1 << 16).await.unwrap();
        let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(body["error"]["code"], "storage_unavailable");
        assert_eq!(body["error"]["message"], "the notifier store is unavailable; try again shortly");
    }

    #[test]
    fn a_rate_limited_upload_says_when_to_try_again_in_whole_seconds_rounded_up() {
        let response =
            ApiError::Catalog(CatalogError::RateLimited { retry_after: Duration::from_millis(9_100) })
                .into_response();
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(response.headers()[header::RETRY_AFTER], "10");
        for busy in [ApiError::Catalog(CatalogError::Busy("full".into())), ApiError::Busy(8)] {
            let busy = busy.into_response();
            assert_eq!(busy.status(), StatusCode::TOO_MANY_REQUESTS);
            assert_eq!(busy.headers()[header::RETRY_AFTER], "1");
        }
    }
}
