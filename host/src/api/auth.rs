//! Who is calling: bearer tokens, compared as SHA-256 hashes.
//!
//! The configuration holds only the hashes of the operator's and the
//! tenants' tokens (`tocsin token` makes a token and its hash), so neither
//! the file nor a memory dump of the service gives a usable token away.
//! A presented token is hashed and compared with every configured hash in
//! constant time.

use axum::extract::FromRequestParts;
use axum::http::HeaderMap;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use tocsin_core::tenancy::Caller;

use super::error::ApiError;
use super::{AppState, Callers};

/// Who a request's token identified, if anyone, kept in its extensions by
/// whatever identified it first (the request limits), so that the token
/// is hashed and compared once per request.
#[derive(Debug, Clone)]
pub(crate) struct Identified(pub Option<Caller>);

impl Identified {
    /// Identifies the caller of a request with `headers` among `callers`.
    pub(crate) fn of(headers: &HeaderMap, callers: &Callers) -> Identified {
        Identified(
            bearer(headers)
                .and_then(|token| Caller::identify(token, callers.operator.as_ref(), &callers.tenants)),
        )
    }
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let identified = match parts.extensions.remove::<Identified>() {
            Some(identified) => identified,
            None => Identified::of(&parts.headers, &state.callers),
        };
        identified.0.ok_or(ApiError::Unauthenticated)
    }
}

/// The bearer token of a request's `Authorization` header, if it has one.
pub(crate) fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
        .map(str::trim)
        .filter(|token| !token.is_empty())
}

/// A new random token (256 bits, URL-safe base64) for `tocsin token`.
pub(crate) fn new_token() -> String {
    use base64::Engine as _;
    let bytes: [u8; 32] = rand::random();
    format!("tocsin_{}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_tokens_differ() {
        assert_ne!(new_token(), new_token());
        assert!(new_token().starts_with("tocsin_"));
    }
}
