//! AMQP, as tocsin speaks it to RabbitMQ: the broker connection from
//! oslo.messaging's options ([`transport`]), publishing with confirms
//! ([`publisher`]), acknowledgements gathered per channel ([`settle`]), and
//! the wait between reconnections ([`Backoff`]). It knows nothing of alarms
//! or deliveries: the intake, the change feed between hosts and the `dlq`
//! and `publish` commands build on it.

pub mod publisher;
pub mod settle;
pub mod transport;

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The broker connection and the declarations of the intake queues, with
/// the names and meanings of oslo.messaging's `transport_url` and
/// `[oslo_messaging_rabbit]` options.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BrokerConfig {
    /// oslo's `transport_url`:
    /// `rabbit://user:pass@host1:5672,user:pass@host2:5672/vhost`; hosts
    /// are tried in order; `?ssl=1` turns TLS on.
    pub transport_url: String,
    /// Declare the intake exchanges and queues durable (oslo default false:
    /// a broker restart then loses queued alarms).
    pub amqp_durable_queues: bool,
    /// Declare the intake exchanges and queues auto-delete.
    pub amqp_auto_delete: bool,
    /// Mirrored queues of old RabbitMQ (`x-ha-policy: all`).
    pub rabbit_ha_queues: bool,
    /// Quorum queues (`x-queue-type: quorum`, always durable).
    pub rabbit_quorum_queue: bool,
    /// `x-expires` of the per-host fanout queue, in seconds.
    pub rabbit_transient_queues_ttl: u32,
    /// Unacknowledged messages per consumer (oslo's name). Must not exceed
    /// `dispatch.concurrency`.
    pub rabbit_qos_prefetch_count: u16,
    /// Connect with TLS (`amqps`).
    pub ssl: bool,
    /// PEM CA bundle that signs the broker's certificate.
    pub ssl_ca_file: Option<PathBuf>,
    /// Client certificate (PEM) for brokers that require one.
    pub ssl_cert_file: Option<PathBuf>,
    /// Its private key (PEM, PKCS#8).
    pub ssl_key_file: Option<PathBuf>,
    /// Heartbeat timeout in seconds (oslo's name); 0 turns heartbeats off.
    pub heartbeat_timeout_threshold: u16,
    /// Check the intake queues exist (passive declares) instead of
    /// declaring them: for brokers whose queues an operator manages.
    pub passive_declare: bool,
    /// First wait before reconnecting, in ms; it doubles up to
    /// `reconnect_max_ms`.
    pub reconnect_initial_ms: u64,
    /// Longest wait between reconnection attempts, in ms.
    pub reconnect_max_ms: u64,
}

impl Default for BrokerConfig {
    fn default() -> Self {
        BrokerConfig {
            transport_url: "rabbit://guest:guest@127.0.0.1:5672/".into(),
            amqp_durable_queues: false,
            amqp_auto_delete: false,
            rabbit_ha_queues: false,
            rabbit_quorum_queue: false,
            rabbit_transient_queues_ttl: 1800,
            rabbit_qos_prefetch_count: 64,
            ssl: false,
            ssl_ca_file: None,
            ssl_cert_file: None,
            ssl_key_file: None,
            heartbeat_timeout_threshold: 60,
            passive_declare: false,
            reconnect_initial_ms: 250,
            reconnect_max_ms: 30_000,
        }
    }
}

impl BrokerConfig {
    /// Checks the section's own rules: a usable URL, TLS files in pairs.
    ///
    /// # Errors
    /// What is wrong, naming the option.
    pub fn validate(&self) -> Result<(), String> {
        if self.ssl_cert_file.is_some() != self.ssl_key_file.is_some() {
            return Err("broker.ssl_cert_file and broker.ssl_key_file go together".into());
        }
        if let Err(error) = transport::TransportUrl::parse(&self.transport_url) {
            return Err(format!("broker.transport_url: {error}"));
        }
        Ok(())
    }

    /// The waits between reconnection attempts.
    pub(crate) fn reconnect_backoff(&self) -> Backoff {
        Backoff::new(
            Duration::from_millis(self.reconnect_initial_ms),
            Duration::from_millis(self.reconnect_max_ms),
        )
    }
}

/// Capped exponential backoff: the wait before each retry of something
/// that keeps failing (a connection, a requeue), doubling from the first.
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    initial: Duration,
    longest: Duration,
}

impl Backoff {
    /// Waits from `initial` (at least 1 ms), doubling up to `longest`.
    pub fn new(initial: Duration, longest: Duration) -> Self {
        let initial = initial.max(Duration::from_millis(1));
        Backoff { initial, longest: longest.max(initial) }
    }

    /// The wait before retry `retry` (1 for the first): `initial`, doubled
    /// for each retry before it, at most `longest`.
    pub(crate) fn delay(&self, retry: u32) -> Duration {
        self.initial.saturating_mul(1 << retry.saturating_sub(1).min(30)).min(self.longest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_wait_doubles_from_the_first_up_to_the_longest() {
        let backoff = Backoff::new(Duration::from_millis(250), Duration::from_secs(1));
        let waits: Vec<u128> = (1..=5).map(|retry| backoff.delay(retry).as_millis()).collect();
        assert_eq!(waits, [250, 500, 1000, 1000, 1000]);
        assert_eq!(backoff.delay(u32::MAX), Duration::from_secs(1));
        let zero = Backoff::new(Duration::ZERO, Duration::ZERO);
        assert_eq!(zero.delay(1), Duration::from_millis(1), "never a busy loop");
    }
}
