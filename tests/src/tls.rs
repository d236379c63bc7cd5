//! Real TLS on 127.0.0.1 with certificates made in the test: a private
//! certificate authority that issues server and client certificates, and
//! a TLS front that relays to a plaintext service (RabbitMQ's TLS
//! listener, without reconfiguring the broker every test shares).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::server::WebPkiClientVerifier;
use tokio_rustls::rustls::{RootCertStore, ServerConfig};

/// A certificate and its private key, PEM-encoded.
#[derive(Debug, Clone)]
pub struct Issued {
    /// The certificate.
    pub cert_pem: String,
    /// Its PKCS#8 private key.
    pub key_pem: String,
}

/// A certificate authority that exists only for one test.
pub struct TestCa {
    issuer: Issuer<'static, KeyPair>,
    pem: String,
}

impl std::fmt::Debug for TestCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestCa").finish_non_exhaustive()
    }
}

impl Default for TestCa {
    fn default() -> Self {
        Self::new()
    }
}

impl TestCa {
    /// A fresh CA with its own key.
    pub fn new() -> TestCa {
        let mut params = CertificateParams::new(Vec::new()).unwrap_or_else(|e| panic!("CA params: {e}"));
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, "tocsin test CA");
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::DigitalSignature];
        let key = KeyPair::generate().unwrap_or_else(|e| panic!("CA key: {e}"));
        let certificate = params.self_signed(&key).unwrap_or_else(|e| panic!("CA certificate: {e}"));
        TestCa { pem: certificate.pem(), issuer: Issuer::new(params, key) }
    }

    /// The CA certificate, as clients are told to trust it.
    pub fn pem(&self) -> &str {
        &self.pem
    }

    /// A server certificate for `host` (a name or an IP address).
    pub fn server(&self, host: &str) -> Issued {
        self.issue(host, ExtendedKeyUsagePurpose::ServerAuth)
    }

    /// A client certificate with common name `name`.
    pub fn client(&self, name: &str) -> Issued {
        self.issue(name, ExtendedKeyUsagePurpose::ClientAuth)
    }

    fn issue(&self, name: &str, usage: ExtendedKeyUsagePurpose) -> Issued {
        let mut params = CertificateParams::new(vec![name.to_owned()])
            .unwrap_or_else(|e| panic!("params for {name}: {e}"));
        params.distinguished_name.push(DnType::CommonName, name);
        params.extended_key_usages = vec![usage];
        params.use_authority_key_identifier_extension = true;
        let key = KeyPair::generate().unwrap_or_else(|e| panic!("key for {name}: {e}"));
        let certificate =
            params.signed_by(&key, &self.issuer).unwrap_or_else(|e| panic!("certificate for {name}: {e}"));
        Issued { cert_pem: certificate.pem(), key_pem: key.serialize_pem() }
    }

    /// A TLS server presenting `server`; with `require_client_certificate`,
    /// only clients with a certificate from this CA get through.
    pub fn server_config(&self, server: &Issued, require_client_certificate: bool) -> ServerConfig {
        let chain = vec![der(&server.cert_pem)];
        let key = PrivateKeyDer::from_pem_slice(server.key_pem.as_bytes())
            .unwrap_or_else(|e| panic!("server key: {e}"));
        let builder = ServerConfig::builder();
        let builder = if require_client_certificate {
            let mut roots = RootCertStore::empty();
            roots.add(der(&self.pem)).unwrap_or_else(|e| panic!("CA root: {e}"));
            let verifier = WebPkiClientVerifier::builder(Arc::new(roots))
                .build()
                .unwrap_or_else(|e| panic!("client verifier: {e}"));
            builder.with_client_cert_verifier(verifier)
        } else {
            builder.with_no_client_auth()
        };
        builder.with_single_cert(chain, key).unwrap_or_else(|e| panic!("server config: {e}"))
    }
}

fn der(pem: &str) -> CertificateDer<'static> {
    CertificateDer::from_pem_slice(pem.as_bytes()).unwrap_or_else(|e| panic!("certificate PEM: {e}"))
}

/// Accepts TLS on 127.0.0.1 and relays each connection, decrypted, to a
/// plaintext upstream; counts the handshakes that succeeded. Stops when
/// dropped.
#[derive(Debug)]
pub struct TlsFront {
    /// Where it listens.
    pub addr: SocketAddr,
    handshakes: Arc<AtomicUsize>,
    task: JoinHandle<()>,
}

impl TlsFront {
    /// Listens on a free port of 127.0.0.1 with `config`, relaying to
    /// `upstream` (`host:port`).
    pub async fn start(config: ServerConfig, upstream: &str) -> std::io::Result<TlsFront> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let acceptor = TlsAcceptor::from(Arc::new(config));
        let handshakes = Arc::new(AtomicUsize::new(0));
        let counted = Arc::clone(&handshakes);
        let upstream = upstream.to_owned();
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let (acceptor, counted, upstream) =
                    (acceptor.clone(), Arc::clone(&counted), upstream.clone());
                tokio::spawn(async move {
                    let Ok(mut client) = acceptor.accept(client).await else { return };
                    counted.fetch_add(1, Ordering::SeqCst);
                    if let Ok(mut server) = TcpStream::connect(&upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                });
            }
        });
        Ok(TlsFront { addr, handshakes, task })
    }

    /// TLS handshakes completed so far.
    pub fn handshakes(&self) -> usize {
        self.handshakes.load(Ordering::SeqCst)
    }
}

impl Drop for TlsFront {
    fn drop(&mut self) {
        self.task.abort();
    }
}
