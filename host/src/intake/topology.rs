//! What `tocsin serve` declares on the broker: the intake exchanges and
//! queues exactly as oslo.messaging declares them (so evaluators, aodh
//! and tocsin can share a broker), and tocsin's own durable queues: the
//! work queue, the retry tiers and the dead letters.

use std::time::Duration;

use lapin::options::{ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{Channel, ExchangeKind};

use super::config::{IntakeConfig, IntakeSettings};
use crate::delivery::DeliveryConfig;
use crate::delivery::policy::tier_label;
use crate::message::WireFormat;

/// What a consumed queue carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// OpenStack alarm messages (RPC or notifications).
    OpenStack,
    /// tocsin's delivery records (retries come back here).
    Work,
}

/// An exchange to declare.
#[derive(Debug, Clone, PartialEq)]
pub struct ExchangeSpec {
    /// Its name.
    pub name: String,
    /// `topic` or `fanout`.
    pub kind: ExchangeKind,
    /// Survives a broker restart.
    pub durable: bool,
    /// Deleted when its last binding goes.
    pub auto_delete: bool,
}

/// A queue to declare, bind and maybe consume.
#[derive(Debug, Clone, PartialEq)]
pub struct QueueSpec {
    /// Its name.
    pub name: String,
    /// Survives a broker restart.
    pub durable: bool,
    /// Deleted when its last consumer goes.
    pub auto_delete: bool,
    /// `x-` arguments.
    pub arguments: Vec<(&'static str, AMQPValue)>,
    /// (exchange, routing key) bindings.
    pub bindings: Vec<(String, String)>,
    /// Consumed, and what it carries; `None` for queues only published to.
    pub consume: Option<Source>,
    /// One of the OpenStack intake queues (whose declaration must match
    /// what oslo.messaging declares, and may be passive).
    pub intake: bool,
}

impl QueueSpec {
    /// The arguments as an AMQP table.
    pub(crate) fn argument_table(&self) -> FieldTable {
        let mut table = FieldTable::default();
        for (key, value) in &self.arguments {
            table.insert(ShortString::from(*key), value.clone());
        }
        table
    }
}

/// Names of tocsin's own queues.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnQueues {
    /// The work queue: delivery records to run (retries dead-letter here).
    pub work: String,
    /// The retry tiers, shortest first.
    pub tiers: Vec<String>,
    /// Dead letters.
    pub dead_letters: String,
}

impl OwnQueues {
    /// The names `delivery` gives.
    pub fn new(delivery: &DeliveryConfig) -> Self {
        let prefix = &delivery.queue_prefix;
        OwnQueues {
            work: format!("{prefix}.deliveries"),
            tiers: delivery
                .retry_tiers_ms
                .iter()
                .map(|ms| format!("{prefix}.retry.{}", tier_label(Duration::from_millis(*ms))))
                .collect(),
            dead_letters: format!("{prefix}.dead-letters"),
        }
    }
}

/// Why the declarations failed.
#[derive(Debug, thiserror::Error)]
pub enum TopologyError {
    /// The queue or exchange exists with other settings (406).
    #[error(
        "{what} {name} exists on the broker with other settings: {detail}. Set broker.amqp_durable_queues, \
         rabbit_ha_queues, rabbit_quorum_queue and amqp_auto_delete to what it was declared with (aodh's \
         [oslo_messaging_rabbit] values), or broker.passive_declare = true"
    )]
    Mismatch {
        /// `queue` or `exchange`.
        what: &'static str,
        /// Its name.
        name: String,
        /// The broker's words, naming the differing argument.
        detail: String,
    },
    /// A passive declare found no such queue (404).
    #[error("queue {name} does not exist and broker.passive_declare forbids creating it: {detail}")]
    Missing {
        /// Its name.
        name: String,
        /// The broker's words.
        detail: String,
    },
    /// Anything else (connection lost…).
    #[error("cannot declare {what} {name}: {source}")]
    Broker {
        /// `queue`, `exchange` or `binding`.
        what: &'static str,
        /// Its name.
        name: String,
        /// lapin's error.
        source: lapin::Error,
    },
}

impl TopologyError {
    /// A mismatch or a missing queue needs an operator; anything else may
    /// pass with a reconnection.
    pub(crate) fn is_fatal(&self) -> bool {
        !matches!(self, TopologyError::Broker { .. })
    }
}

/// Everything to declare, in order.
#[derive(Debug, Clone, PartialEq)]
pub struct Topology {
    /// Exchanges.
    pub exchanges: Vec<ExchangeSpec>,
    /// Queues, with their bindings.
    pub queues: Vec<QueueSpec>,
    /// tocsin's own queue names.
    pub own: OwnQueues,
}

impl Topology {
    /// What `config` asks for (`docs/wire-formats.md` §2 for the intake).
    pub fn new(config: &IntakeSettings) -> Self {
        let broker = &config.broker;
        let durable = broker.amqp_durable_queues || broker.rabbit_quorum_queue;
        let mut intake_arguments: Vec<(&'static str, AMQPValue)> = Vec::new();
        if broker.rabbit_quorum_queue {
            intake_arguments.push(("x-queue-type", AMQPValue::LongString(LongString::from("quorum"))));
        } else if broker.rabbit_ha_queues {
            intake_arguments.push(("x-ha-policy", AMQPValue::LongString(LongString::from("all"))));
        }
        let mut exchanges = Vec::new();
        let mut queues = Vec::new();
        let intake_queue = |name: String, bindings: Vec<(String, String)>| QueueSpec {
            name,
            durable,
            auto_delete: broker.amqp_auto_delete,
            arguments: intake_arguments.clone(),
            bindings,
            consume: Some(Source::OpenStack),
            intake: true,
        };
        let topic_exchange = |name: &str| ExchangeSpec {
            name: name.to_owned(),
            kind: ExchangeKind::Topic,
            durable,
            auto_delete: broker.amqp_auto_delete,
        };
        let rpc = &config.intake.rpc;
        if rpc.enabled {
            let (topic, host) = (&rpc.topic, &config.intake.host);
            let fanout = format!("{topic}_fanout");
            exchanges.push(topic_exchange(&rpc.exchange));
            exchanges.push(ExchangeSpec {
                name: fanout.clone(),
                kind: ExchangeKind::Fanout,
                durable: false,
                auto_delete: true,
            });
            queues.push(intake_queue(topic.clone(), vec![(rpc.exchange.clone(), topic.clone())]));
            let per_host = format!("{topic}.{host}");
            queues.push(intake_queue(per_host.clone(), vec![(rpc.exchange.clone(), per_host)]));
            let mut fanout_arguments = intake_arguments.clone();
            fanout_arguments.retain(|(key, _)| *key == "x-ha-policy");
            fanout_arguments.push((
                "x-expires",
                AMQPValue::LongUInt(broker.rabbit_transient_queues_ttl.saturating_mul(1000)),
            ));
            queues.push(QueueSpec {
                name: format!("{topic}_fanout_{host}"),
                durable: false,
                auto_delete: false,
                arguments: fanout_arguments,
                bindings: vec![(fanout, topic.clone())],
                consume: Some(Source::OpenStack),
                intake: true,
            });
        }
        let notification = &config.intake.notification;
        if notification.enabled {
            if !exchanges.iter().any(|exchange| exchange.name == notification.exchange) {
                exchanges.push(topic_exchange(&notification.exchange));
            }
            let name = notification.queue();
            queues.push(intake_queue(name.clone(), vec![(notification.exchange.clone(), name)]));
        }
        let own = OwnQueues::new(&config.delivery);
        let own_queue =
            |name: &str, arguments: Vec<(&'static str, AMQPValue)>, consume: Option<Source>| QueueSpec {
                name: name.to_owned(),
                durable: true,
                auto_delete: false,
                arguments,
                bindings: Vec::new(),
                consume,
                intake: false,
            };
        queues.push(own_queue(&own.work, Vec::new(), Some(Source::Work)));
        for (name, ms) in own.tiers.iter().zip(&config.delivery.retry_tiers_ms) {
            queues.push(own_queue(
                name,
                vec![
                    ("x-message-ttl", AMQPValue::LongLongInt(i64::try_from(*ms).unwrap_or(i64::MAX))),
                    ("x-dead-letter-exchange", AMQPValue::LongString(LongString::from(""))),
                    ("x-dead-letter-routing-key", AMQPValue::LongString(LongString::from(own.work.as_str()))),
                ],
                None,
            ));
        }
        queues.push(own_queue(&own.dead_letters, Vec::new(), None));
        Topology { exchanges, queues, own }
    }

    /// What an oslo.messaging publisher of `format` declares: the control
    /// exchange, and for notifications the `<topic>.sample` queue too, so
    /// that notifications wait for their consumer (RPC casts declare no
    /// queue: without a consumer they are dropped).
    pub fn publisher(&self, intake: &IntakeConfig, format: WireFormat) -> Topology {
        let (exchange, queue) = match format {
            WireFormat::Rpc => (&intake.rpc.exchange, None),
            WireFormat::Notification => (&intake.notification.exchange, Some(intake.notification.queue())),
        };
        Topology {
            exchanges: self.exchanges.iter().filter(|e| &e.name == exchange).cloned().collect(),
            queues: self.queues.iter().filter(|q| Some(&q.name) == queue.as_ref()).cloned().collect(),
            own: self.own.clone(),
        }
    }

    /// Names of the intake queues that lose their messages on a broker
    /// restart (oslo's default).
    pub(crate) fn transient_intake_queues(&self) -> Vec<&str> {
        self.queues.iter().filter(|q| q.intake && !q.durable).map(|q| q.name.as_str()).collect()
    }

    /// Declares everything on `channel`; intake queues passively when
    /// `passive`. Stops at the first failure (the broker closes the
    /// channel on a mismatch).
    ///
    /// # Errors
    /// [`TopologyError`] naming the queue or exchange.
    pub async fn declare(&self, channel: &Channel, passive: bool) -> Result<(), TopologyError> {
        for exchange in &self.exchanges {
            let options = ExchangeDeclareOptions {
                passive,
                durable: exchange.durable,
                auto_delete: exchange.auto_delete,
                ..ExchangeDeclareOptions::default()
            };
            channel
                .exchange_declare(
                    exchange.name.as_str().into(),
                    exchange.kind.clone(),
                    options,
                    FieldTable::default(),
                )
                .await
                .map_err(|error| classify("exchange", &exchange.name, error))?;
        }
        for queue in &self.queues {
            let options = QueueDeclareOptions {
                passive: passive && queue.intake,
                durable: queue.durable,
                auto_delete: queue.auto_delete,
                ..QueueDeclareOptions::default()
            };
            channel
                .queue_declare(queue.name.as_str().into(), options, queue.argument_table())
                .await
                .map_err(|error| classify("queue", &queue.name, error))?;
            if passive && queue.intake {
                continue;
            }
            for (exchange, routing_key) in &queue.bindings {
                channel
                    .queue_bind(
                        queue.name.as_str().into(),
                        exchange.as_str().into(),
                        routing_key.as_str().into(),
                        QueueBindOptions::default(),
                        FieldTable::default(),
                    )
                    .await
                    .map_err(|error| classify("binding", &queue.name, error))?;
            }
        }
        Ok(())
    }
}

/// Turns the broker's 406 and 404 into errors that name what to change.
fn classify(what: &'static str, name: &str, error: lapin::Error) -> TopologyError {
    let detail = amqp_reply(&error);
    match detail {
        Some((406, text)) => TopologyError::Mismatch { what, name: name.to_owned(), detail: text },
        Some((404, text)) => TopologyError::Missing { name: name.to_owned(), detail: text },
        _ => TopologyError::Broker { what, name: name.to_owned(), source: error },
    }
}

/// The reply code and text of a channel or connection closed by the broker.
pub(crate) fn amqp_reply(error: &lapin::Error) -> Option<(u16, String)> {
    match error.kind() {
        lapin::ErrorKind::ProtocolError(amqp) => Some((amqp.get_id(), amqp.get_message().to_string())),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(topology: &Topology) -> Vec<&str> {
        topology.queues.iter().map(|q| q.name.as_str()).collect()
    }

    #[test]
    fn defaults_declare_what_oslo_declares() {
        let mut config = IntakeSettings::default();
        config.intake.host = "notifier-host-1".into();
        let topology = Topology::new(&config);
        assert_eq!(
            names(&topology),
            [
                "alarm_notifier",
                "alarm_notifier.notifier-host-1",
                "alarm_notifier_fanout_notifier-host-1",
                "alarming.sample",
                "tocsin.deliveries",
                "tocsin.retry.1s",
                "tocsin.retry.5s",
                "tocsin.retry.30s",
                "tocsin.retry.2m",
                "tocsin.retry.10m",
                "tocsin.retry.1h",
                "tocsin.dead-letters",
            ]
        );
        let intake = &topology.queues[0];
        assert!(!intake.durable && !intake.auto_delete && intake.arguments.is_empty());
        assert_eq!(intake.bindings, [("ceilometer".to_owned(), "alarm_notifier".to_owned())]);
        let fanout = &topology.queues[2];
        assert_eq!(fanout.arguments, [("x-expires", AMQPValue::LongUInt(1_800_000))]);
        assert_eq!(fanout.bindings, [("alarm_notifier_fanout".to_owned(), "alarm_notifier".to_owned())]);
        let exchanges: Vec<(&str, bool, bool)> =
            topology.exchanges.iter().map(|e| (e.name.as_str(), e.durable, e.auto_delete)).collect();
        assert_eq!(
            exchanges,
            [("ceilometer", false, false), ("alarm_notifier_fanout", false, true), ("aodh", false, false)]
        );
        assert_eq!(topology.transient_intake_queues().len(), 4);
        let tier = &topology.queues[6];
        assert!(tier.durable && tier.consume.is_none());
        assert!(tier.arguments.contains(&("x-message-ttl", AMQPValue::LongLongInt(5000))));
        assert!(tier.arguments.contains(&(
            "x-dead-letter-routing-key",
            AMQPValue::LongString(LongString::from("tocsin.deliveries"))
        )));
    }

    #[test]
    fn quorum_forces_durable_and_switches_follow_the_config() {
        let mut config = IntakeSettings::default();
        config.broker.rabbit_quorum_queue = true;
        config.intake.rpc.enabled = false;
        let topology = Topology::new(&config);
        assert_eq!(names(&topology)[0], "alarming.sample");
        assert!(topology.queues[0].durable);
        assert_eq!(
            topology.queues[0].arguments,
            [("x-queue-type", AMQPValue::LongString(LongString::from("quorum")))]
        );
        assert!(topology.transient_intake_queues().is_empty());
    }
}
