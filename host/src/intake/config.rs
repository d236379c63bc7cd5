//! The `[intake]` section, and the sections of other parts the intake
//! reads as well.

use serde::{Deserialize, Serialize};

use crate::amqp::BrokerConfig;
use crate::capabilities::http::HttpConfig;
use crate::delivery::DeliveryConfig;
use crate::dispatch::DispatchConfig;
use crate::message::Bounds;

/// The sections of the configuration the intake reads.
#[derive(Debug, Clone, Default)]
pub struct IntakeSettings {
    /// The broker and the declarations of the intake queues.
    pub broker: BrokerConfig,
    /// The messages consumed.
    pub intake: IntakeConfig,
    /// Retries, dead letters and tocsin's own queues.
    pub delivery: DeliveryConfig,
    /// For Aodh's `rest_notifier_max_retries` (the retries of `http`
    /// actions).
    pub http: HttpConfig,
    /// For `dispatch.per_message` (the actions of one message at once).
    pub dispatch: DispatchConfig,
}

/// The OpenStack messages consumed.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IntakeConfig {
    /// This host's name, oslo's `host`: it names the `<topic>.<host>`
    /// queue and the per-host fanout queue. Defaults to the hostname.
    pub host: String,
    /// Largest message body decoded, in bytes; bigger ones are dead-lettered.
    pub max_message_bytes: usize,
    /// Longest field naming an alarm or a message (the alarm's id, name,
    /// severity and states, the message and request ids, each action URL),
    /// in bytes: they are in every log line of the alarm's deliveries. A
    /// message with a longer one is dead-lettered (`field-too-long`); a
    /// dry run with one is refused.
    pub max_field_bytes: usize,
    /// Most actions one alarm message may carry (Aodh's own
    /// `alarm_max_actions` is unlimited by default; an alarm has a
    /// handful). A message with more is dead-lettered whole
    /// (`too-many-actions`), never half delivered.
    pub max_actions: usize,
    /// Most bytes of a message times its actions: each action's retries
    /// and dead letters carry the whole alarm. A message past it is
    /// dead-lettered whole (`too-large-fanout`).
    pub max_fanout_bytes: usize,
    /// Completed message ids remembered to skip repeats (oslo keeps 16).
    pub completed_ids: usize,
    /// On SIGTERM/SIGINT, how long messages in flight may take to finish,
    /// in ms; the broker redelivers what is left.
    pub shutdown_grace_ms: u64,
    /// RPC casts (Ceilometer, Aodh 1.x).
    pub rpc: RpcIntakeConfig,
    /// `alarm.update` notifications (Aodh 2.x and later).
    pub notification: NotificationIntakeConfig,
}

impl IntakeConfig {
    /// What a decoded alarm message may hold.
    pub fn bounds(&self) -> Bounds {
        Bounds {
            max_field_bytes: self.max_field_bytes,
            max_actions: self.max_actions,
            max_fanout_bytes: self.max_fanout_bytes,
        }
    }
}

impl Default for IntakeConfig {
    fn default() -> Self {
        IntakeConfig {
            host: gethostname::gethostname().to_string_lossy().into_owned(),
            max_message_bytes: 1 << 20,
            max_field_bytes: 4096,
            max_actions: 100,
            max_fanout_bytes: 16 << 20,
            completed_ids: 4096,
            shutdown_grace_ms: 35_000,
            rpc: RpcIntakeConfig::default(),
            notification: NotificationIntakeConfig::default(),
        }
    }
}

/// The RPC intake: queues `<topic>` (shared by all hosts), `<topic>.<host>`
/// and the fanout queue `<topic>_fanout_<host>`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RpcIntakeConfig {
    /// Consume RPC casts.
    pub enabled: bool,
    /// oslo's `control_exchange` of the evaluator (`ceilometer`; `aodh`
    /// for Aodh 1.x).
    pub exchange: String,
    /// `notifier_rpc_topic`.
    pub topic: String,
}

impl Default for RpcIntakeConfig {
    fn default() -> Self {
        RpcIntakeConfig { enabled: true, exchange: "ceilometer".into(), topic: "alarm_notifier".into() }
    }
}

/// The notification intake: queue `<topic>.sample` on the exchange.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NotificationIntakeConfig {
    /// Consume `alarm.update` notifications.
    pub enabled: bool,
    /// oslo's `control_exchange` of Aodh.
    pub exchange: String,
    /// Aodh's `notifier_topic`.
    pub topic: String,
}

impl Default for NotificationIntakeConfig {
    fn default() -> Self {
        NotificationIntakeConfig { enabled: true, exchange: "aodh".into(), topic: "alarming".into() }
    }
}

impl NotificationIntakeConfig {
    /// The queue, and routing key, of alarm notifications: `<topic>.sample`
    /// (oslo's notification topic at priority `sample`).
    pub fn queue(&self) -> String {
        format!("{}.sample", self.topic)
    }
}

impl IntakeConfig {
    /// Checks the section's own rules.
    ///
    /// # Errors
    /// What is wrong, naming the option.
    pub fn validate(&self) -> Result<(), String> {
        if self.max_field_bytes == 0 || self.max_actions == 0 {
            return Err("intake.max_field_bytes and intake.max_actions must be at least 1".into());
        }
        if self.host.is_empty() {
            return Err("intake.host is empty and the hostname could not be read: set it".into());
        }
        Ok(())
    }
}
