//! Signed webhooks, as the Standard Webhooks specification has them: the
//! host signs what the built-in `http` notifier sends to a host the
//! operator configured a secret for, so the receiver can check that the
//! delivery came from this deployment and de-duplicate it.
//!
//! Headers: `webhook-id` (the delivery id: the same on every attempt),
//! `webhook-timestamp` (Unix seconds of this attempt) and
//! `webhook-signature`: `v1,<base64 HMAC-SHA256 of "id.timestamp.body">`,
//! one per configured secret, space-separated, so a receiver accepts the
//! delivery with the old or the new secret during a key rotation.
//!
//! Tenant plugins are never signed for: signing what a tenant's code
//! chose to send would hand tenants a signing oracle for the operator's
//! key.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::Sha256;

/// The prefix Standard Webhooks secrets carry.
const SECRET_PREFIX: &str = "whsec_";

/// The headers of a signed delivery, as Standard Webhooks names them.
pub(crate) const SIGNATURE_HEADERS: [&str; 3] = ["webhook-id", "webhook-timestamp", "webhook-signature"];

/// A signing key: `whsec_` followed by the base64 of its bytes. Never
/// printed: its `Debug` and serialized forms are redacted.
#[derive(Clone, PartialEq, Eq)]
pub struct WebhookSecret(Vec<u8>);

/// Why a secret cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretError {
    /// It does not start with `whsec_`.
    #[error("a webhook secret starts with {SECRET_PREFIX}")]
    Prefix,
    /// What follows the prefix is not base64, or too short.
    #[error("a webhook secret is {SECRET_PREFIX} followed by the base64 of 24 to 64 bytes")]
    Encoding,
}

impl WebhookSecret {
    /// Parses `whsec_<base64>`.
    ///
    /// # Errors
    /// [`SecretError`]: no prefix, not base64, or not 24 to 64 bytes (the
    /// specification's range).
    pub fn parse(text: &str) -> Result<Self, SecretError> {
        let encoded = text.trim().strip_prefix(SECRET_PREFIX).ok_or(SecretError::Prefix)?;
        let key = STANDARD.decode(encoded).map_err(|_| SecretError::Encoding)?;
        if !(24..=64).contains(&key.len()) {
            return Err(SecretError::Encoding);
        }
        Ok(WebhookSecret(key))
    }

    /// `v1,<base64 signature>` of `id.timestamp.body` with this key.
    fn sign(&self, id: &str, timestamp: u64, body: &[u8]) -> String {
        // HMAC takes keys of any length.
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.0).unwrap_or_else(|_| unreachable!());
        mac.update(id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
    }
}

impl std::fmt::Debug for WebhookSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WebhookSecret(***)")
    }
}

impl Serialize for WebhookSecret {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str("***")
    }
}

impl<'de> Deserialize<'de> for WebhookSecret {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        WebhookSecret::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// Deserializes one secret or a list of them, never repeating a value in
/// an error (a type error would otherwise quote the secret).
///
/// # Errors
/// When the value is neither a string nor a list of strings, or a secret
/// is malformed.
pub(crate) fn one_or_more<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Vec<WebhookSecret>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMore {
        One(WebhookSecret),
        More(Vec<WebhookSecret>),
    }
    match OneOrMore::deserialize(deserializer) {
        Ok(OneOrMore::One(secret)) => Ok(vec![secret]),
        Ok(OneOrMore::More(secrets)) => Ok(secrets),
        Err(_) => Err(serde::de::Error::custom(
            "secrets is a whsec_ secret or a list of them (the value is not repeated here)",
        )),
    }
}

/// The signature headers of one delivery attempt: `(name, value)` in the
/// order of [`SIGNATURE_HEADERS`].
pub(crate) fn signature_headers(
    secrets: &[WebhookSecret],
    id: &str,
    timestamp: u64,
    body: &[u8],
) -> [(&'static str, String); 3] {
    let signatures: Vec<String> = secrets.iter().map(|secret| secret.sign(id, timestamp, body)).collect();
    [
        (SIGNATURE_HEADERS[0], id.to_owned()),
        (SIGNATURE_HEADERS[1], timestamp.to_string()),
        (SIGNATURE_HEADERS[2], signatures.join(" ")),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example of the Standard Webhooks specification (its reference
    /// libraries produce this signature for this message).
    #[test]
    fn the_specification_example_signs_alike() {
        let secret = WebhookSecret::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let headers = signature_headers(
            &[secret],
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1_614_265_330,
            br#"{"test": 2432232314}"#,
        );
        assert_eq!(headers[2].1, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
        assert_eq!(headers[0], ("webhook-id", "msg_p5jXN8AQM9LWM0D4loKWxJek".to_owned()));
        assert_eq!(headers[1], ("webhook-timestamp", "1614265330".to_owned()));
    }

    #[test]
    fn a_rotation_sends_one_signature_per_secret() {
        let new = WebhookSecret::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let old = WebhookSecret::parse(&format!("whsec_{}", STANDARD.encode([7u8; 24]))).unwrap();
        let [_, _, (_, value)] = signature_headers(&[new, old], "id", 1, b"{}");
        let parts: Vec<&str> = value.split(' ').collect();
        assert_eq!(parts.len(), 2);
        assert!(parts.iter().all(|part| part.starts_with("v1,")) && parts[0] != parts[1]);
    }

    #[test]
    fn malformed_secrets_are_refused_and_secrets_never_print() {
        assert_eq!(WebhookSecret::parse("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"), Err(SecretError::Prefix));
        assert_eq!(WebhookSecret::parse("whsec_not base64!"), Err(SecretError::Encoding));
        assert_eq!(WebhookSecret::parse("whsec_c2hvcnQ="), Err(SecretError::Encoding));
        let too_long = format!("whsec_{}", STANDARD.encode([1u8; 65]));
        assert_eq!(WebhookSecret::parse(&too_long), Err(SecretError::Encoding));
        let secret = WebhookSecret::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        assert_eq!(format!("{secret:?}"), "WebhookSecret(***)");
        assert_eq!(serde_json::to_string(&secret).unwrap(), r#""***""#);
    }
}
