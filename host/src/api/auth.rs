//! Who is calling: bearer tokens, compared as SHA-256 hashes.
//!
//! The configuration holds only the hashes of the operator's and the
//! tenants' tokens (`tocsin token` makes a token and its hash), so neither
//! the file nor a memory dump of the service gives a usable token away.
//! A presented token is hashed and compared with every configured hash in
//! constant time.

use std::fmt;

use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq as _;

use super::AppState;
use super::error::ApiError;
use crate::config::Config;
use crate::registry::ownership::Owner;

/// The SHA-256 of a bearer token, written as 64 hex digits in the
/// configuration.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct TokenHash([u8; 32]);

impl TokenHash {
    /// The hash of `token`.
    pub fn of(token: &str) -> TokenHash {
        TokenHash(Sha256::digest(token.as_bytes()).into())
    }

    /// Whether `self` and `other` are equal, in time independent of where
    /// they differ.
    fn matches(&self, other: &TokenHash) -> bool {
        self.0.ct_eq(&other.0).into()
    }

    /// The hash as hex.
    pub fn to_hex(&self) -> String {
        self.0.iter().map(|byte| format!("{byte:02x}")).collect()
    }
}

impl fmt::Debug for TokenHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", self.to_hex())
    }
}

impl Serialize for TokenHash {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.to_hex())
    }
}

impl<'de> Deserialize<'de> for TokenHash {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        let invalid = || {
            serde::de::Error::custom(
                "a token hash is the SHA-256 of the token as 64 hex digits (`tocsin token` prints one)",
            )
        };
        if text.len() != 64 || !text.is_ascii() {
            return Err(invalid());
        }
        let mut bytes = [0u8; 32];
        for (byte, pair) in bytes.iter_mut().zip(text.as_bytes().chunks(2)) {
            let pair = std::str::from_utf8(pair).map_err(|_| invalid())?;
            *byte = u8::from_str_radix(pair, 16).map_err(|_| invalid())?;
        }
        Ok(TokenHash(bytes))
    }
}

/// The caller a request's token identifies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// The operator: every notifier.
    Operator,
    /// A tenant: only its own notifiers.
    Tenant(String),
}

impl Caller {
    /// Identifies the holder of `token` in `config`; none when no
    /// configured hash matches.
    pub fn identify(config: &Config, token: &str) -> Option<Caller> {
        let presented = TokenHash::of(token);
        // Compare with every hash, matched or not, so the time taken does
        // not tell which one matched.
        let mut found = None;
        if config.api.operator_token_sha256.as_ref().is_some_and(|hash| hash.matches(&presented)) {
            found = Some(Caller::Operator);
        }
        for (name, tenant) in &config.tenants {
            if tenant.token_sha256.matches(&presented) && found.is_none() {
                found = Some(Caller::Tenant(name.clone()));
            }
        }
        found
    }

    /// Whether the caller may see and change what `owner` owns.
    pub fn may_manage(&self, owner: &Owner) -> bool {
        match (self, owner) {
            (Caller::Operator, _) => true,
            (Caller::Tenant(caller), Owner::Tenant(tenant)) => caller == tenant,
            (Caller::Tenant(_), Owner::Operator) => false,
        }
    }

    /// The tenant named in logs (`-` for the operator).
    pub fn tenant(&self) -> Option<&str> {
        match self {
            Caller::Operator => None,
            Caller::Tenant(name) => Some(name),
        }
    }
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let header = parts.headers.get(AUTHORIZATION).ok_or(ApiError::Unauthenticated)?;
        let token = header
            .to_str()
            .ok()
            .and_then(|value| value.strip_prefix("Bearer "))
            .map(str::trim)
            .filter(|token| !token.is_empty())
            .ok_or(ApiError::Unauthenticated)?;
        Caller::identify(&state.config, token).ok_or(ApiError::Unauthenticated)
    }
}

/// A new random token (256 bits, URL-safe base64) for `tocsin token`.
pub fn new_token() -> String {
    use base64::Engine as _;
    let bytes: [u8; 32] = rand::random();
    format!("tocsin_{}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hash_round_trips_through_its_hex_form_and_only_its_token_matches() {
        let hash = TokenHash::of("s3cret");
        let hex = hash.to_hex();
        assert_eq!(hex.len(), 64);
        let parsed: TokenHash =
            serde_json::from_value(serde_json::Value::String(hex.to_uppercase())).unwrap();
        assert!(parsed.matches(&TokenHash::of("s3cret")));
        assert!(!parsed.matches(&TokenHash::of("s3cret ")));
        for bad in ["", "abc", &"g".repeat(64), &"é".repeat(32)] {
            let error =
                serde_json::from_value::<TokenHash>(serde_json::Value::String(bad.into())).unwrap_err();
            assert!(error.to_string().contains("64 hex digits"), "{bad}: {error}");
        }
    }

    #[test]
    fn new_tokens_differ() {
        assert_ne!(new_token(), new_token());
        assert!(new_token().starts_with("tocsin_"));
    }
}
