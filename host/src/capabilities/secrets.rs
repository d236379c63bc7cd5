//! Secrets by handle: a tenant stores named secrets with a notifier (the
//! API key of its pager, say); its plugin writes a placeholder,
//! `{{secret:NAME}}`, in a header value, and the host puts the secret in
//! its place when the request goes to a host granted to the plugin (by the
//! operator, or asked for at upload), never merely the action URL's host,
//! which an alarm's author chooses. The plugin never reads a secret; logs,
//! metrics and API answers never show one; at rest each is encrypted
//! (ChaCha20-Poly1305, its notifier and name as associated data) under a
//! key kept outside the database.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;
use std::sync::Arc;

use arc_swap::ArcSwap;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use reqwest::header::{HeaderMap, HeaderValue};

use crate::sandbox::bindings::tocsin::notifier::http::HttpError;

/// Opens a placeholder in a header value.
const OPEN: &str = "{{secret:";
/// Closes it.
const CLOSE: &str = "}}";
/// Longest secret value, in bytes.
pub const MAX_SECRET_BYTES: usize = 8 << 10;
/// Secrets one notifier may have.
pub const MAX_SECRETS: usize = 32;

/// One secret's value; never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretValue(String);

impl fmt::Debug for SecretValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretValue(<redacted>)")
    }
}

impl SecretValue {
    /// Checks `value`: at most [`MAX_SECRET_BYTES`], and a valid header
    /// value (visible ASCII and spaces), since that is where it goes.
    ///
    /// # Errors
    /// What is wrong, without the value.
    pub fn new(value: String) -> Result<Self, String> {
        if value.is_empty() || value.len() > MAX_SECRET_BYTES {
            return Err(format!("a secret has 1 to {MAX_SECRET_BYTES} bytes"));
        }
        if !value.bytes().all(|b| b == b' ' || b == b'\t' || (0x21..0x7f).contains(&b)) {
            return Err("a secret goes into a header value: visible ASCII characters and spaces only".into());
        }
        Ok(SecretValue(value))
    }
}

/// The secrets of one notifier, by name, swapped whole when they change so
/// that the next request sees the new ones.
pub type SharedSecrets = Arc<ArcSwap<BTreeMap<String, SecretValue>>>;

/// Whether `name` can name a secret: 1 to 64 of `a-z`, `0-9`, `_`, `-`.
pub fn is_secret_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

/// Puts the secrets in place of the placeholders of `headers`.
///
/// # Errors
/// [`HttpError::Denied`] when a placeholder is in a request to a host that
/// is not granted (`granted` false); [`HttpError::InvalidRequest`] for a
/// malformed placeholder or a secret that is not stored.
pub fn substitute(
    headers: &mut HeaderMap,
    secrets: &BTreeMap<String, SecretValue>,
    granted: bool,
) -> Result<(), HttpError> {
    for value in headers.values_mut() {
        let Ok(text) = value.to_str() else { continue };
        if !text.contains(OPEN) {
            continue;
        }
        if !granted {
            return Err(HttpError::Denied(
                "secret placeholders are filled in only for hosts granted to the plugin, not for the action URL's host"
                    .into(),
            ));
        }
        let mut filled = String::with_capacity(text.len());
        let mut rest = text;
        while let Some(start) = rest.find(OPEN) {
            filled.push_str(&rest[..start]);
            let after = &rest[start + OPEN.len()..];
            let end = after.find(CLOSE).ok_or_else(|| {
                HttpError::InvalidRequest("a secret placeholder is not closed with }}".into())
            })?;
            let name = &after[..end];
            let secret = secrets.get(name).ok_or_else(|| {
                HttpError::InvalidRequest(format!("no secret {name:?} is stored for this notifier"))
            })?;
            filled.push_str(&secret.0);
            rest = &after[end + CLOSE.len()..];
        }
        filled.push_str(rest);
        let mut replaced = HeaderValue::from_str(&filled).map_err(|_| {
            HttpError::InvalidRequest("the header with the secret is not a valid header value".into())
        })?;
        replaced.set_sensitive(true);
        *value = replaced;
    }
    Ok(())
}

/// Encrypts and decrypts secrets at rest.
pub struct SecretBox {
    cipher: ChaCha20Poly1305,
}

impl fmt::Debug for SecretBox {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretBox(<key>)")
    }
}

impl SecretBox {
    /// A box with the key in `path` (32 bytes, made when missing, mode
    /// 0600). Hosts that share a database must share this file.
    ///
    /// # Errors
    /// The file cannot be read or written, or is not a 32-byte key.
    pub fn open(path: &Path) -> std::io::Result<Self> {
        let key = crate::store::key_file(path)?;
        Ok(SecretBox { cipher: ChaCha20Poly1305::new(Key::from_slice(&key)) })
    }

    /// Encrypts `value` for `scheme`'s secret `name`: (nonce, ciphertext).
    pub fn seal(&self, scheme: &str, name: &str, value: &SecretValue) -> (Vec<u8>, Vec<u8>) {
        let nonce: [u8; 12] = rand::random();
        let aad = associated_data(scheme, name);
        let payload = Payload { msg: value.0.as_bytes(), aad: &aad };
        // Encryption with a valid key and nonce does not fail.
        let sealed = self.cipher.encrypt(Nonce::from_slice(&nonce), payload).unwrap_or_default();
        (nonce.to_vec(), sealed)
    }

    /// Decrypts what [`SecretBox::seal`] made for `scheme` and `name`.
    ///
    /// # Errors
    /// Another key, another notifier or name, or altered bytes.
    pub fn unseal(
        &self,
        scheme: &str,
        name: &str,
        nonce: &[u8],
        sealed: &[u8],
    ) -> Result<SecretValue, String> {
        let nonce: [u8; 12] = nonce.try_into().map_err(|_| "the nonce is not 12 bytes".to_owned())?;
        let aad = associated_data(scheme, name);
        let plain = self
            .cipher
            .decrypt(Nonce::from_slice(&nonce), Payload { msg: sealed, aad: &aad })
            .map_err(|_| "cannot decrypt (another key, or altered)".to_owned())?;
        String::from_utf8(plain).map_err(|_| "not text".to_owned()).and_then(SecretValue::new)
    }
}

fn associated_data(scheme: &str, name: &str) -> Vec<u8> {
    format!("tocsin-secret\0{scheme}\0{name}").into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secrets() -> BTreeMap<String, SecretValue> {
        BTreeMap::from([("pager".to_owned(), SecretValue::new("k3y-123".into()).unwrap())])
    }

    fn headers(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert("authorization", HeaderValue::from_str(value).unwrap());
        headers.insert("accept", HeaderValue::from_static("application/json"));
        headers
    }

    #[test]
    fn placeholders_are_filled_only_for_granted_hosts_and_only_with_stored_secrets() {
        let mut filled = headers("Token {{secret:pager}}, again {{secret:pager}}");
        substitute(&mut filled, &secrets(), true).unwrap();
        assert_eq!(filled["authorization"], "Token k3y-123, again k3y-123");
        assert!(filled["authorization"].is_sensitive());
        assert_eq!(filled["accept"], "application/json");

        let denied = substitute(&mut headers("Token {{secret:pager}}"), &secrets(), false).unwrap_err();
        assert!(matches!(denied, HttpError::Denied(_)), "{denied:?}");
        let unknown = substitute(&mut headers("{{secret:other}}"), &secrets(), true).unwrap_err();
        assert!(
            matches!(&unknown, HttpError::InvalidRequest(why) if why == "no secret \"other\" is stored for this notifier"),
            "{unknown:?}"
        );
        let open = substitute(&mut headers("{{secret:pager"), &secrets(), true).unwrap_err();
        assert!(matches!(open, HttpError::InvalidRequest(_)));
        let mut plain = headers("Bearer abc");
        substitute(&mut plain, &BTreeMap::new(), false).unwrap();
        assert_eq!(plain["authorization"], "Bearer abc");
    }

    #[test]
    fn a_sealed_secret_opens_only_with_its_key_notifier_and_name() {
        let dir = tempfile::tempdir().unwrap();
        let sealer = SecretBox::open(&dir.path().join("key")).unwrap();
        let value = SecretValue::new("k3y-123".into()).unwrap();
        let (nonce, sealed) = sealer.seal("acme-pager", "pager", &value);
        assert!(!sealed.windows(7).any(|w| w == b"k3y-123"), "encrypted at rest");
        assert_eq!(sealer.unseal("acme-pager", "pager", &nonce, &sealed), Ok(value));
        assert!(sealer.unseal("acme-pager", "other", &nonce, &sealed).is_err());
        assert!(sealer.unseal("globex-pager", "pager", &nonce, &sealed).is_err());
        let mut altered = sealed.clone();
        altered[0] ^= 1;
        assert!(sealer.unseal("acme-pager", "pager", &nonce, &altered).is_err());
        let other = SecretBox::open(&dir.path().join("other-key")).unwrap();
        assert!(other.unseal("acme-pager", "pager", &nonce, &sealed).is_err());
        let again = SecretBox::open(&dir.path().join("key")).unwrap();
        assert!(again.unseal("acme-pager", "pager", &nonce, &sealed).is_ok(), "the key file is reused");
        assert_eq!(format!("{:?}", SecretValue::new("k3y-123".into()).unwrap()), "SecretValue(<redacted>)");
    }

    #[test]
    fn secret_values_and_names_are_checked() {
        assert!(SecretValue::new(String::new()).is_err());
        assert!(SecretValue::new("a\nb".into()).is_err());
        assert!(SecretValue::new("x".repeat(MAX_SECRET_BYTES + 1)).is_err());
        assert!(is_secret_name("pager_key-2"));
        assert!(!is_secret_name("Pager") && !is_secret_name("") && !is_secret_name("a b"));
    }
}
