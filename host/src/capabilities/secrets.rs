//! Secrets by handle: a tenant stores named secrets with a notifier (the
//! API key of its pager, say), each bound to the URL prefix it is for
//! (`https://events.pager.example/v2/`); its plugin writes a placeholder,
//! `{{secret:NAME}}`, in a header value, and the host puts the secret in
//! its place only when the request goes to a URL under that prefix, on a
//! host granted to the plugin (by the operator, or asked for at upload),
//! never merely the action URL's host, which an alarm's author chooses. A
//! placeholder that an alarm's author slipped into a header through a
//! careless plugin can so only send the secret where it was meant to go.
//! The plugin never reads a secret; logs, metrics and API answers never
//! show one; at rest each is encrypted (ChaCha20-Poly1305, its notifier,
//! name and URL prefix as associated data) under a key kept outside the
//! database.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;
use std::sync::Arc;

use arc_swap::ArcSwap;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use reqwest::Url;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use tocsin_core::bindings::tocsin::notifier::http::HttpError;
use tocsin_core::caps::{MAX_PLACEHOLDERS_PER_VALUE, MAX_SECRET_BYTES};
use tocsin_core::hosts::url_host_key;

/// Opens a placeholder in a header value.
const OPEN: &str = "{{secret:";
/// Closes it.
const CLOSE: &str = "}}";
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

/// A secret and the URLs it is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BoundSecret {
    /// The value.
    pub value: SecretValue,
    /// It is filled in only for URLs under this prefix.
    pub prefix: SecretPrefix,
}

/// The URLs a secret is for: a scheme, host and port, and a path prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretPrefix(Url);

impl SecretPrefix {
    /// Parses `text`: an `http` or `https` URL with a host, no user info,
    /// query or fragment.
    ///
    /// # Errors
    /// What is wrong.
    pub fn parse(text: &str) -> Result<Self, String> {
        let url = Url::parse(text).map_err(|e| format!("the secret's url {text:?}: {e}"))?;
        let plain = matches!(url.scheme(), "http" | "https")
            && url.host().is_some()
            && url.username().is_empty()
            && url.password().is_none()
            && url.query().is_none()
            && url.fragment().is_none();
        if !plain {
            return Err(format!(
                "the secret's url {text:?} must be http(s)://host[:port]/path, without user info, query or fragment"
            ));
        }
        Ok(SecretPrefix(url))
    }

    /// The prefix as text (stored beside the secret).
    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }

    /// Whether `url` is under this prefix: same scheme, host and port, and
    /// a path that continues the prefix's at a segment boundary, with no
    /// encoded dot, slash or backslash after it (`/v2/..%2fadmin`), which a
    /// server that decodes before it normalises would read as outside.
    pub(crate) fn covers(&self, url: &Url) -> bool {
        let same_origin = url.scheme() == self.0.scheme()
            && url.host().map(|h| url_host_key(&h)) == self.0.host().map(|h| url_host_key(&h))
            && url.port_or_known_default() == self.0.port_or_known_default();
        let prefix = self.0.path();
        let path = url.path();
        let rest = if prefix.ends_with('/') {
            path.strip_prefix(prefix)
        } else {
            path.strip_prefix(prefix).filter(|rest| rest.is_empty() || rest.starts_with('/'))
        };
        let encoded_separator = |rest: &str| {
            let rest = rest.to_ascii_lowercase();
            ["%2e", "%2f", "%5c"].iter().any(|escape| rest.contains(escape))
        };
        same_origin && rest.is_some_and(|rest| !encoded_separator(rest))
    }
}

/// A header a secret was filled into, and the prefixes of its secrets: a
/// redirect may take it only where every one of them still covers the URL.
#[derive(Debug, Clone)]
pub(crate) struct FilledHeader {
    /// The header's name.
    pub name: HeaderName,
    /// The prefixes of the secrets in its value.
    pub prefixes: Vec<SecretPrefix>,
}

impl FilledHeader {
    /// Whether the header may go with a request to `url`.
    pub(crate) fn may_go_to(&self, url: &Url) -> bool {
        self.prefixes.iter().all(|prefix| prefix.covers(url))
    }
}

/// The secrets of one notifier, by name, swapped whole when they change so
/// that the next request sees the new ones.
pub(crate) type SharedSecrets = Arc<ArcSwap<BTreeMap<String, BoundSecret>>>;

/// Whether `name` can name a secret: 1 to 64 of `a-z`, `0-9`, `_`, `-`.
pub(crate) fn is_secret_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

/// Puts the secrets in place of the placeholders of `headers`, for a
/// request to `url`, as long as the headers stay within `max_bytes`
/// (names and values) once they are in: the caller's cap checked the
/// placeholders, and a secret is longer than its placeholder. Returns the
/// headers it filled, for redirects to check again.
///
/// # Errors
/// [`HttpError::TooLarge`] for headers past `max_bytes` once filled in,
/// checked before each secret is copied; [`HttpError::InvalidRequest`] for
/// a value with more than [`MAX_PLACEHOLDERS_PER_VALUE`] placeholders;
/// [`HttpError::Denied`] when a placeholder is in a request to a host that
/// is not granted (`granted` false), or names a secret that is not stored
/// or not for `url` (one answer for both: a plugin cannot probe which
/// secrets exist); [`HttpError::InvalidRequest`] for a malformed one.
pub(crate) fn substitute(
    headers: &mut HeaderMap,
    secrets: &BTreeMap<String, BoundSecret>,
    url: &Url,
    granted: bool,
    max_bytes: usize,
) -> Result<Vec<FilledHeader>, HttpError> {
    let mut total: usize = headers.iter().map(|(name, value)| name.as_str().len() + value.len()).sum();
    let mut filled_headers = Vec::new();
    for (header, value) in headers.iter_mut() {
        let Ok(text) = value.to_str() else { continue };
        if !text.contains(OPEN) {
            continue;
        }
        if text.matches(OPEN).count() > MAX_PLACEHOLDERS_PER_VALUE {
            return Err(HttpError::InvalidRequest(format!(
                "a header value may hold at most {MAX_PLACEHOLDERS_PER_VALUE} secret placeholders"
            )));
        }
        if !granted {
            return Err(HttpError::Denied(
                "secret placeholders are filled in only for hosts granted to the plugin, not for the action URL's host"
                    .into(),
            ));
        }
        let mut filled = String::with_capacity(text.len());
        let mut prefixes = Vec::new();
        let mut rest = text;
        while let Some(start) = rest.find(OPEN) {
            filled.push_str(&rest[..start]);
            let after = &rest[start + OPEN.len()..];
            let end = after.find(CLOSE).ok_or_else(|| {
                HttpError::InvalidRequest("a secret placeholder is not closed with }}".into())
            })?;
            let name = &after[..end];
            let secret = secrets
                .get(name)
                .filter(|secret| secret.prefix.covers(url))
                .ok_or_else(|| HttpError::Denied(format!("secret {name:?} is not available for this URL")))?;
            total = (total + secret.value.0.len()).saturating_sub(OPEN.len() + name.len() + CLOSE.len());
            if total > max_bytes {
                return Err(HttpError::TooLarge(format!(
                    "the headers would have more than {max_bytes} bytes once secrets are filled in"
                )));
            }
            filled.push_str(&secret.value.0);
            prefixes.push(secret.prefix.clone());
            rest = &after[end + CLOSE.len()..];
        }
        filled.push_str(rest);
        let mut replaced = HeaderValue::from_str(&filled).map_err(|_| {
            HttpError::InvalidRequest("the header with the secret is not a valid header value".into())
        })?;
        replaced.set_sensitive(true);
        *value = replaced;
        filled_headers.push(FilledHeader { name: header.clone(), prefixes });
    }
    Ok(filled_headers)
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
        let key = tocsin_core::keys::key_file(path)?;
        Ok(SecretBox { cipher: ChaCha20Poly1305::new(Key::from_slice(&key)) })
    }

    /// Encrypts `value` for `scheme`'s secret `name`, for URLs under
    /// `prefix`: (nonce, ciphertext).
    pub(crate) fn seal(
        &self,
        scheme: &str,
        name: &str,
        prefix: &SecretPrefix,
        value: &SecretValue,
    ) -> (Vec<u8>, Vec<u8>) {
        let nonce: [u8; 12] = rand::random();
        let aad = associated_data(scheme, name, prefix);
        let payload = Payload { msg: value.0.as_bytes(), aad: &aad };
        // Encryption with a valid key and nonce does not fail.
        let sealed = self.cipher.encrypt(Nonce::from_slice(&nonce), payload).unwrap_or_default();
        (nonce.to_vec(), sealed)
    }

    /// Decrypts what [`SecretBox::seal`] made for `scheme`, `name` and
    /// `prefix`.
    ///
    /// # Errors
    /// Another key, another notifier, name or prefix, or altered bytes.
    pub(crate) fn unseal(
        &self,
        scheme: &str,
        name: &str,
        prefix: &SecretPrefix,
        nonce: &[u8],
        sealed: &[u8],
    ) -> Result<SecretValue, String> {
        let nonce: [u8; 12] = nonce.try_into().map_err(|_| "the nonce is not 12 bytes".to_owned())?;
        let aad = associated_data(scheme, name, prefix);
        let plain = self
            .cipher
            .decrypt(Nonce::from_slice(&nonce), Payload { msg: sealed, aad: &aad })
            .map_err(|_| "cannot decrypt (another key, or altered)".to_owned())?;
        String::from_utf8(plain).map_err(|_| "not text".to_owned()).and_then(SecretValue::new)
    }
}

fn associated_data(scheme: &str, name: &str, prefix: &SecretPrefix) -> Vec<u8> {
    format!("tocsin-secret\0{scheme}\0{name}\0{}", prefix.as_str()).into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secrets() -> BTreeMap<String, BoundSecret> {
        let bound = BoundSecret {
            value: SecretValue::new("k3y-123".into()).unwrap(),
            prefix: SecretPrefix::parse("https://pager.example/v2/").unwrap(),
        };
        BTreeMap::from([("pager".to_owned(), bound)])
    }

    fn headers(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert("authorization", HeaderValue::from_str(value).unwrap());
        headers.insert("accept", HeaderValue::from_static("application/json"));
        headers
    }

    fn url(text: &str) -> Url {
        Url::parse(text).unwrap()
    }

    fn refused_as(error: &HttpError, name: &str) -> bool {
        matches!(error, HttpError::Denied(why) if *why == format!("secret {name:?} is not available for this URL"))
    }

    #[test]
    fn placeholders_are_filled_only_under_the_secrets_prefix_on_granted_hosts() {
        let to = url("https://PAGER.example./v2/enqueue");
        let mut filled = headers("Token {{secret:pager}}, again {{secret:pager}}");
        substitute(&mut filled, &secrets(), &to, true, 1024).unwrap();
        assert_eq!(filled["authorization"], "Token k3y-123, again k3y-123");
        assert!(filled["authorization"].is_sensitive());
        assert_eq!(filled["accept"], "application/json");

        let denied =
            substitute(&mut headers("Token {{secret:pager}}"), &secrets(), &to, false, 1024).unwrap_err();
        assert!(matches!(denied, HttpError::Denied(_)), "{denied:?}");
        let elsewhere = [
            "http://pager.example/v2/x",
            "https://pager.example:8443/v2/x",
            "https://pager.example/v1/x",
            "https://pager.example/v2",
            "https://other.example/v2/x",
            "https://pager.example/v2/..%2fadmin",
            "https://pager.example/v2/%2E%2E/admin",
            "https://pager.example/v2/x%5c..%5cadmin",
        ];
        for to in elsewhere {
            let refused =
                substitute(&mut headers("{{secret:pager}}"), &secrets(), &url(to), true, 1024).unwrap_err();
            assert!(refused_as(&refused, "pager"), "{to}: {refused:?}");
        }
        let unknown = substitute(&mut headers("{{secret:other}}"), &secrets(), &to, true, 1024).unwrap_err();
        assert!(refused_as(&unknown, "other"), "the same answer as for another URL: {unknown:?}");
        let open = substitute(&mut headers("{{secret:pager"), &secrets(), &to, true, 1024).unwrap_err();
        assert!(matches!(open, HttpError::InvalidRequest(_)));
        let mut plain = headers("Bearer abc");
        substitute(&mut plain, &BTreeMap::new(), &to, false, 1024).unwrap();
        assert_eq!(plain["authorization"], "Bearer abc");
    }

    #[test]
    fn filled_in_headers_stay_within_the_cap_and_placeholders_are_few() {
        let to = url("https://pager.example/v2/enqueue");
        let four = "{{secret:pager}}".repeat(MAX_PLACEHOLDERS_PER_VALUE);
        let mut filled = headers(&four);
        substitute(&mut filled, &secrets(), &to, true, 1024).unwrap();
        assert_eq!(filled["authorization"], "k3y-123".repeat(MAX_PLACEHOLDERS_PER_VALUE));
        let five = "{{secret:pager}}".repeat(MAX_PLACEHOLDERS_PER_VALUE + 1);
        let many = substitute(&mut headers(&five), &secrets(), &to, true, 1024).unwrap_err();
        assert!(matches!(&many, HttpError::InvalidRequest(why) if why.contains("at most 4")), "{many:?}");
        // A secret longer than its placeholder: the cap holds once it is in.
        let long = BoundSecret {
            value: SecretValue::new("x".repeat(MAX_SECRET_BYTES)).unwrap(),
            prefix: SecretPrefix::parse("https://pager.example/v2/").unwrap(),
        };
        let secrets = BTreeMap::from([("long".to_owned(), long)]);
        let before = headers("{{secret:long}}");
        let size: usize = before.iter().map(|(name, value)| name.as_str().len() + value.len()).sum();
        let cap = size + MAX_SECRET_BYTES - "{{secret:long}}".len();
        substitute(&mut headers("{{secret:long}}"), &secrets, &to, true, cap).unwrap();
        let over = substitute(&mut headers("{{secret:long}}"), &secrets, &to, true, cap - 1).unwrap_err();
        assert!(
            matches!(&over, HttpError::TooLarge(why) if why.contains("once secrets are filled in")),
            "{over:?}"
        );
    }

    #[test]
    fn a_prefix_without_a_slash_covers_its_path_and_what_is_below() {
        let prefix = SecretPrefix::parse("https://h.example/hook").unwrap();
        assert!(prefix.covers(&url("https://h.example/hook")));
        assert!(prefix.covers(&url("https://h.example/hook/1?x=1")));
        assert!(!prefix.covers(&url("https://h.example/hooks")));
        for bad in ["ftp://h/", "https://u:p@h/", "https://h/?q=1", "https://h/#f", "not a url"] {
            assert!(SecretPrefix::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_sealed_secret_opens_only_with_its_key_notifier_and_name() {
        let dir = tempfile::tempdir().unwrap();
        let sealer = SecretBox::open(&dir.path().join("key")).unwrap();
        let value = SecretValue::new("k3y-123".into()).unwrap();
        let prefix = SecretPrefix::parse("https://pager.example/v2/").unwrap();
        let elsewhere = SecretPrefix::parse("https://evil.example/").unwrap();
        let (nonce, sealed) = sealer.seal("acme-pager", "pager", &prefix, &value);
        assert!(!sealed.windows(7).any(|w| w == b"k3y-123"), "encrypted at rest");
        assert_eq!(sealer.unseal("acme-pager", "pager", &prefix, &nonce, &sealed), Ok(value));
        assert!(sealer.unseal("acme-pager", "other", &prefix, &nonce, &sealed).is_err());
        assert!(sealer.unseal("globex-pager", "pager", &prefix, &nonce, &sealed).is_err());
        assert!(
            sealer.unseal("acme-pager", "pager", &elsewhere, &nonce, &sealed).is_err(),
            "bound to its prefix"
        );
        let mut altered = sealed.clone();
        altered[0] ^= 1;
        assert!(sealer.unseal("acme-pager", "pager", &prefix, &nonce, &altered).is_err());
        let other = SecretBox::open(&dir.path().join("other-key")).unwrap();
        assert!(other.unseal("acme-pager", "pager", &prefix, &nonce, &sealed).is_err());
        let again = SecretBox::open(&dir.path().join("key")).unwrap();
        assert!(
            again.unseal("acme-pager", "pager", &prefix, &nonce, &sealed).is_ok(),
            "the key file is reused"
        );
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
