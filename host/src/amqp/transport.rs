//! oslo.messaging's `transport_url`, turned into the broker addresses
//! tocsin connects to.
//!
//! `rabbit://user:pass@host1:5672,user:pass@host2:5672/vhost?ssl=1`: one
//! or more hosts, each with its own credentials (guest/guest when absent,
//! as kombu defaults), tried in order for failover; the path is the
//! virtual host (empty means `/`), percent-encoded. [`Broker`] connects
//! to the first of them that answers, with the TLS settings of
//! `[broker]`.

use std::fmt;
use std::path::Path;
use std::time::Duration;

use futures_util::future::join_all;
use lapin::tcp::{OwnedIdentity, OwnedTLSConfig};
use lapin::uri::{AMQPAuthority, AMQPQueryString, AMQPScheme, AMQPUri, AMQPUserInfo};
use lapin::{Channel, Connection, ConnectionProperties};
use percent_encoding::percent_decode_str;

use super::BrokerConfig;

/// AMQP's port without TLS.
const AMQP_PORT: u16 = 5672;
/// AMQP's port with TLS.
const AMQPS_PORT: u16 = 5671;

/// Why a transport URL cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransportUrlError {
    /// Not `rabbit://…` (or `amqp://`, `amqps://`).
    #[error("unsupported scheme {0:?}: use rabbit://")]
    Scheme(String),
    /// No host, or a malformed one.
    #[error("invalid host {0:?}")]
    Host(String),
    /// A port that is not a number.
    #[error("invalid port in {0:?}")]
    Port(String),
    /// Percent-encoding that is not UTF-8.
    #[error("{0} is not valid percent-encoded UTF-8")]
    Encoding(&'static str),
}

/// One broker of the list.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct BrokerHost {
    /// Host name or address (IPv6 without brackets).
    pub host: String,
    /// Port.
    pub port: u16,
    /// User name.
    pub username: String,
    /// Password.
    pub password: String,
}

impl fmt::Debug for BrokerHost {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self}")
    }
}

/// `user@host:port`: never the password.
impl fmt::Display for BrokerHost {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "{}@[{}]:{}", self.username, self.host, self.port)
        } else {
            write!(f, "{}@{}:{}", self.username, self.host, self.port)
        }
    }
}

/// A parsed `transport_url`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TransportUrl {
    /// The brokers, in the order to try them.
    pub hosts: Vec<BrokerHost>,
    /// The virtual host.
    pub vhost: String,
    /// TLS asked for in the URL (`?ssl=1`, or `amqps://`).
    pub ssl: bool,
}

impl TransportUrl {
    /// Parses oslo's syntax.
    ///
    /// # Errors
    /// [`TransportUrlError`] naming what is wrong (never the password).
    pub fn parse(text: &str) -> Result<Self, TransportUrlError> {
        let (scheme, rest) = text.split_once("://").ok_or_else(|| TransportUrlError::Scheme(text.into()))?;
        let scheme_ssl = match scheme.to_ascii_lowercase().as_str() {
            "rabbit" | "kombu" | "amqp" => false,
            "amqps" => true,
            other => return Err(TransportUrlError::Scheme(other.to_owned())),
        };
        let end = rest.find(['/', '?']).unwrap_or(rest.len());
        let (netloc, tail) = rest.split_at(end);
        let (path, query) = tail.split_once('?').unwrap_or((tail, ""));
        let vhost = decode(path.strip_prefix('/').unwrap_or(path), "the virtual host")?;
        let ssl = scheme_ssl
            || query.split('&').filter_map(|pair| pair.split_once('=')).any(|(key, value)| {
                key == "ssl" && matches!(value.to_ascii_lowercase().as_str(), "1" | "true" | "yes" | "on")
            });
        let default_port = if ssl { AMQPS_PORT } else { AMQP_PORT };
        let hosts =
            netloc.split(',').map(|entry| parse_host(entry, default_port)).collect::<Result<Vec<_>, _>>()?;
        Ok(TransportUrl { hosts, vhost: if vhost.is_empty() { "/".into() } else { vhost }, ssl })
    }

    /// The lapin URI of each host, in order.
    pub(crate) fn uris(&self, ssl: bool, heartbeat_s: u16) -> Vec<AMQPUri> {
        self.hosts
            .iter()
            .map(|host| AMQPUri {
                scheme: if ssl || self.ssl { AMQPScheme::AMQPS } else { AMQPScheme::AMQP },
                authority: AMQPAuthority {
                    userinfo: AMQPUserInfo {
                        username: host.username.clone(),
                        password: host.password.clone(),
                    },
                    host: host.host.clone(),
                    port: host.port,
                },
                vhost: self.vhost.clone(),
                query: AMQPQueryString {
                    heartbeat: Some(heartbeat_s),
                    connection_timeout: Some(10_000),
                    ..AMQPQueryString::default()
                },
            })
            .collect()
    }
}

/// Why the broker settings cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    /// The URL is unusable.
    #[error("broker.transport_url: {0}")]
    TransportUrl(#[from] TransportUrlError),
    /// A TLS file cannot be read.
    #[error("cannot read {path}: {source}")]
    TlsFile {
        /// The configured path.
        path: String,
        /// Why.
        source: std::io::Error,
    },
}

/// The brokers of the configuration, ready to connect to.
#[derive(Debug, Clone)]
pub struct Broker {
    uris: Vec<AMQPUri>,
    tls: OwnedTLSConfig,
}

impl Broker {
    /// Parses the URL and reads the TLS files of `config`.
    ///
    /// # Errors
    /// [`BrokerError`]: bad URL, unreadable file.
    pub fn new(config: &BrokerConfig) -> Result<Self, BrokerError> {
        let url = TransportUrl::parse(&config.transport_url)?;
        let read = |path: &Path| {
            std::fs::read(path)
                .map_err(|source| BrokerError::TlsFile { path: path.display().to_string(), source })
        };
        let cert_chain = config.ssl_ca_file.as_deref().map(read).transpose()?;
        let identity = match (&config.ssl_cert_file, &config.ssl_key_file) {
            (Some(cert), Some(key)) => Some(OwnedIdentity::PKCS8 { pem: read(cert)?, key: read(key)? }),
            _ => None,
        };
        let tls = OwnedTLSConfig {
            identity,
            cert_chain: cert_chain.map(|pem| String::from_utf8_lossy(&pem).into_owned()),
        };
        Ok(Broker { uris: url.uris(config.ssl, config.heartbeat_timeout_threshold), tls })
    }

    /// Connects to the first broker that answers, in `transport_url`
    /// order, naming the connection `name` (shown by the broker).
    ///
    /// # Errors
    /// Each broker's error, in one line.
    pub async fn connect(&self, name: &str) -> Result<Connection, String> {
        let mut errors = Vec::new();
        for uri in &self.uris {
            let broker = format!("{}:{}", uri.authority.host, uri.authority.port);
            let properties = ConnectionProperties::default().with_connection_name(name.into());
            let runtime = lapin::runtime::default_runtime().map_err(|e| e.to_string())?;
            match Connection::connect_uri_with_config(uri.clone(), properties, self.tls.clone(), runtime)
                .await
            {
                Ok(connection) => {
                    tracing::info!(broker, vhost = %uri.vhost, "broker: Connected.");
                    return Ok(connection);
                }
                Err(error) => errors.push(format!("{broker}: {error}")),
            }
        }
        Err(errors.join("; "))
    }
}

fn parse_host(entry: &str, default_port: u16) -> Result<BrokerHost, TransportUrlError> {
    let (userinfo, address) = match entry.rsplit_once('@') {
        Some((userinfo, address)) => (Some(userinfo), address),
        None => (None, entry),
    };
    let (username, password) = match userinfo {
        None => ("guest".to_owned(), "guest".to_owned()),
        Some(userinfo) => {
            let (user, password) = userinfo.split_once(':').unwrap_or((userinfo, ""));
            (decode(user, "the user name")?, decode(password, "the password")?)
        }
    };
    let (host, port) = if let Some(bracketed) = address.strip_prefix('[') {
        let (host, after) =
            bracketed.split_once(']').ok_or_else(|| TransportUrlError::Host(address.into()))?;
        (host, after.strip_prefix(':'))
    } else {
        match address.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (address, None),
        }
    };
    if host.is_empty() || host.contains(['/', '@', ' ']) {
        return Err(TransportUrlError::Host(address.into()));
    }
    let port = match port {
        None | Some("") => default_port,
        Some(port) => port.parse().map_err(|_| TransportUrlError::Port(address.into()))?,
    };
    Ok(BrokerHost { host: decode(host, "the host")?, port, username, password })
}

fn decode(text: &str, what: &'static str) -> Result<String, TransportUrlError> {
    percent_decode_str(text)
        .decode_utf8()
        .map(|text| text.into_owned())
        .map_err(|_| TransportUrlError::Encoding(what))
}

/// How long the broker gets to confirm the channels' closes, then the
/// connection's, at shutdown.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

/// Closes `channels` (together), then `connection`, once the broker
/// confirmed them: the stop an operator asked for. A channel dropped open
/// closes itself in the background, which races the connection's close and
/// makes lapin log an error although nothing went wrong. Takes at most
/// twice [`CLOSE_TIMEOUT`].
///
/// # Errors
/// What did not close, and why (the broker's error, or no answer in
/// time); the connection is closed all the same.
pub(crate) async fn close_in_order(channels: &[&Channel], connection: &Connection) -> Result<(), String> {
    let closes = join_all(channels.iter().map(|channel| channel.close(200, "tocsin stopping".into())));
    let mut failures = match tokio::time::timeout(CLOSE_TIMEOUT, closes).await {
        Ok(closed) => closed
            .iter()
            .zip(channels)
            .filter_map(|(closed, channel)| {
                closed.as_ref().err().map(|e| format!("channel {}: {e}", channel.id()))
            })
            .collect(),
        Err(_) => vec!["channels: no answer".to_owned()],
    };
    match tokio::time::timeout(CLOSE_TIMEOUT, connection.close(200, "tocsin stopping".into())).await {
        Ok(Ok(())) => {}
        Ok(Err(error)) => failures.push(format!("connection: {error}")),
        Err(_) => failures.push("connection: no answer".into()),
    }
    if failures.is_empty() { Ok(()) } else { Err(failures.join("; ")) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oslo_urls_with_failover_hosts_vhost_and_tls() {
        let url = TransportUrl::parse("rabbit://u1:p%40ss@rabbit-1:5673,u2:p2@[fd00::2]/open%2Fstack?ssl=1")
            .unwrap();
        assert_eq!(url.vhost, "open/stack");
        assert!(url.ssl);
        assert_eq!(url.hosts.len(), 2);
        assert_eq!((url.hosts[0].host.as_str(), url.hosts[0].port), ("rabbit-1", 5673));
        assert_eq!(url.hosts[0].password, "p@ss");
        assert_eq!((url.hosts[1].host.as_str(), url.hosts[1].port), ("fd00::2", 5671));
        assert_eq!(url.hosts[1].to_string(), "u2@[fd00::2]:5671");
        assert!(!format!("{url:?}").contains("p@ss"), "passwords never print");

        let plain = TransportUrl::parse("rabbit://127.0.0.1").unwrap();
        assert_eq!(plain.vhost, "/");
        assert_eq!(
            plain.hosts[0],
            BrokerHost {
                host: "127.0.0.1".into(),
                port: 5672,
                username: "guest".into(),
                password: "guest".into()
            }
        );
        let uri = &plain.uris(false, 30)[0];
        assert_eq!((uri.scheme.clone(), uri.vhost.as_str()), (AMQPScheme::AMQP, "/"));
    }

    #[test]
    fn bad_urls_say_what_is_wrong() {
        assert_eq!(TransportUrl::parse("kafka://h"), Err(TransportUrlError::Scheme("kafka".into())));
        assert!(matches!(TransportUrl::parse("rabbit://u:p@h:port/"), Err(TransportUrlError::Port(_))));
        assert!(matches!(TransportUrl::parse("rabbit:///vhost"), Err(TransportUrlError::Host(_))));
        assert!(matches!(TransportUrl::parse("rabbit://h1,,h2/"), Err(TransportUrlError::Host(_))));
        assert!(matches!(TransportUrl::parse("no-scheme"), Err(TransportUrlError::Scheme(_))));
    }
}
