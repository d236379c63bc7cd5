//! Errors of the API, as JSON with a stable code and a message for people:
//! `{"error": {"code": "scheme_unavailable", "message": "…"}}`.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use tocsin_core::tenancy::ClaimError;

use crate::registry::catalog::CatalogError;

/// What an API request can fail with.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// No token, or one that no configured hash matches.
    #[error("a valid bearer token is required (Authorization: Bearer <token>)")]
    Unauthenticated,
    /// The request itself is malformed.
    #[error("{0}")]
    BadRequest(String),
    /// The notifier catalog refused or failed.
    #[error(transparent)]
    Catalog(#[from] CatalogError),
}

impl ApiError {
    /// The HTTP status and the stable code.
    fn status_and_code(&self) -> (StatusCode, &'static str) {
        match self {
            ApiError::Unauthenticated => (StatusCode::UNAUTHORIZED, "unauthenticated"),
            ApiError::BadRequest(_) => (StatusCode::BAD_REQUEST, "invalid_request"),
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
                CatalogError::Refused(_) => (StatusCode::UNPROCESSABLE_ENTITY, "component_refused"),
                CatalogError::NotLive(_) => (StatusCode::CONFLICT, "not_live"),
                CatalogError::Quota(_) => (StatusCode::FORBIDDEN, "quota_exceeded"),
                CatalogError::Busy => (StatusCode::TOO_MANY_REQUESTS, "busy"),
                CatalogError::Conflict(_) => (StatusCode::CONFLICT, "conflict"),
                CatalogError::Store(_) => (StatusCode::SERVICE_UNAVAILABLE, "storage_unavailable"),
            },
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = self.status_and_code();
        if let ApiError::Catalog(CatalogError::Store(error)) = &self {
            tracing::error!(error = %error, outcome = "failed", "api: The notifier store failed.");
        }
        let mut body = json!({"error": {"code": code, "message": self.to_string()}});
        if let ApiError::Catalog(CatalogError::Refused(refused)) = &self {
            // The kind of refusal (`forbidden_import`, `not_a_component`, …).
            body["error"]["reason"] = serde_json::to_value(refused).unwrap_or_default()["kind"].clone();
        }
        let mut response = (status, Json(body)).into_response();
        if status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}
