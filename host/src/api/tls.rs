//! The API over TLS (`api.tls_cert_file`, `api.tls_key_file`): bearer
//! tokens and secret values cross the network, so anywhere but loopback
//! they should not cross it in clear text.
//!
//! rustls with the aws-lc-rs provider, TLS 1.2 and 1.3, no client
//! certificates. Each connection's handshake runs in its own task with a
//! timeout (axum-server), so a client that never finishes one holds no
//! other.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// Why the API's TLS cannot be set up; the service does not start.
#[derive(Debug, thiserror::Error)]
pub enum TlsSetupError {
    /// The certificate chain file cannot be read or holds no certificate.
    #[error("api.tls_cert_file {path}: {why}")]
    Certificate {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        why: String,
    },
    /// The key file cannot be read or holds no private key.
    #[error("api.tls_key_file {path}: {why}")]
    Key {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        why: String,
    },
    /// The key does not fit the certificate, or rustls refuses them.
    #[error("api.tls_cert_file and api.tls_key_file do not make a TLS server: {0}")]
    Mismatch(String),
}

/// The rustls server configuration of `cert_file` (a PEM chain, leaf
/// first) and `key_file` (a PEM private key: PKCS#8, PKCS#1 or SEC1).
///
/// # Errors
/// [`TlsSetupError`] naming the file and what is wrong with it.
pub fn server_config(cert_file: &Path, key_file: &Path) -> Result<Arc<ServerConfig>, TlsSetupError> {
    let certificate = |why: String| TlsSetupError::Certificate { path: cert_file.to_owned(), why };
    let chain = CertificateDer::pem_file_iter(cert_file)
        .map_err(|error| certificate(error.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| certificate(error.to_string()))?;
    if chain.is_empty() {
        return Err(certificate("no PEM certificate in it".into()));
    }
    let key = PrivateKeyDer::from_pem_file(key_file)
        .map_err(|error| TlsSetupError::Key { path: key_file.to_owned(), why: error.to_string() })?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|error| TlsSetupError::Mismatch(error.to_string()))?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|error| TlsSetupError::Mismatch(error.to_string()))?;
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unusable_files_are_named_with_what_is_wrong() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
        let missing = server_config(&cert, &key).unwrap_err().to_string();
        assert!(missing.starts_with("api.tls_cert_file ") && missing.contains("cert.pem"), "{missing}");
        std::fs::write(&cert, "not a certificate").unwrap();
        let empty = server_config(&cert, &key).unwrap_err().to_string();
        assert!(empty.contains("no PEM certificate"), "{empty}");
    }
}
