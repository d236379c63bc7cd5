//! Intake: the broker side of `tocsin serve`.
//!
//! Connects to the first broker of `transport_url` that answers, declares
//! the [`topology`], consumes the intake queues and tocsin's work queue
//! with manual acks and a bounded prefetch, and hands each message to the
//! [`handler`]; each channel's [`crate::amqp::settle::Settler`] acks what the handlers
//! finished, a run of them at a time. A lost connection is retried with
//! capped exponential backoff and everything is declared and consumed
//! again; unacknowledged
//! messages come back from the broker, so nothing is lost. On shutdown
//! the consumers are cancelled, in-flight messages get a grace period to
//! finish, and whatever is left is redelivered by the broker.

pub mod config;
pub mod handler;
pub mod topology;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use futures_util::StreamExt as _;
use lapin::options::{BasicCancelOptions, BasicConsumeOptions, BasicQosOptions};
use lapin::types::FieldTable;
use lapin::{Channel, Connection, Consumer};
use tocsin_core::time::millis;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::amqp::publisher::Publisher;
use crate::amqp::settle::{SettleHandle, Settler};
use crate::amqp::transport::{self, Broker, BrokerError};
use crate::delivery::memory::{CompletedIds, NewestChanges, RequeuedMessages};
use crate::delivery::policy::RetryPolicy;
use crate::dispatch::{Dispatcher, Notifiers};
use crate::metrics::{Metrics, QueueLabels};
use topology::{QueueSpec, Source, Topology, TopologyError};

pub use config::{IntakeConfig, IntakeSettings};

/// Why the intake stopped for good.
#[derive(Debug, thiserror::Error)]
pub enum IntakeError {
    /// The broker settings are unusable.
    #[error(transparent)]
    Broker(#[from] BrokerError),
    /// The broker's queues do not match the configuration.
    #[error(transparent)]
    Topology(#[from] TopologyError),
}

/// What the health endpoints report about the intake.
#[derive(Debug, Default)]
pub struct Status {
    connected: AtomicBool,
    consumers: AtomicUsize,
}

impl Status {
    /// Connected to the broker, with every consumer running.
    pub(crate) fn is_consuming(&self) -> bool {
        self.connected.load(Ordering::Relaxed) && self.consumers.load(Ordering::Relaxed) > 0
    }
}

/// How a connection's session ended.
enum Ended {
    Shutdown,
    Lost(String),
}

/// The intake and the state its handlers share.
#[derive(Debug)]
pub struct Intake<N: Notifiers> {
    config: IntakeSettings,
    topology: Topology,
    broker: Broker,
    dispatcher: Arc<Dispatcher<N>>,
    policy: RetryPolicy,
    completed: CompletedIds,
    newest: NewestChanges,
    requeued: RequeuedMessages,
    metrics: Arc<Metrics>,
    status: Arc<Status>,
}

impl<N: Notifiers> Intake<N> {
    /// An intake configured by `config`, delivering through `dispatcher`.
    ///
    /// # Errors
    /// [`IntakeError`]: bad URL, unreadable TLS file.
    pub fn new(
        config: IntakeSettings,
        dispatcher: Arc<Dispatcher<N>>,
        metrics: Arc<Metrics>,
        status: Arc<Status>,
    ) -> Result<Self, IntakeError> {
        let broker = Broker::new(&config.broker)?;
        Ok(Intake {
            topology: Topology::new(&config),
            broker,
            dispatcher,
            policy: RetryPolicy::new(&config.delivery, &config.http),
            completed: CompletedIds::new(config.intake.completed_ids),
            newest: NewestChanges::new(config.delivery.supersede_window),
            requeued: RequeuedMessages::new(config.intake.completed_ids),
            metrics,
            status,
            config,
        })
    }

    /// The brokers it connects to, for other connections of the service to
    /// the same brokers (the notifier change feed).
    pub fn broker(&self) -> &Broker {
        &self.broker
    }

    /// Runs until `shutdown` is cancelled (then waits up to `grace` for
    /// in-flight messages) or a configuration problem makes going on
    /// pointless.
    ///
    /// # Errors
    /// [`IntakeError::Topology`] when the broker's queues do not match.
    pub async fn run(
        self: Arc<Self>,
        shutdown: CancellationToken,
        grace: Duration,
    ) -> Result<(), IntakeError> {
        let transient = self.topology.transient_intake_queues();
        if !transient.is_empty() {
            tracing::warn!(
                queues = ?transient,
                "intake: The intake queues are not durable (oslo's default amqp_durable_queues = false): a broker \
                 restart loses the alarms queued in them. Set broker.amqp_durable_queues = true here and in the \
                 evaluator's configuration."
            );
        }
        let backoff = self.config.broker.reconnect_backoff();
        let mut failures = 0;
        loop {
            let connected = tokio::select! {
                () = shutdown.cancelled() => return Ok(()),
                connected = self.connect() => connected,
            };
            match connected {
                Ok(connection) => {
                    failures = 0;
                    match Arc::clone(&self).session(connection, &shutdown, grace).await {
                        Ok(Ended::Shutdown) => return Ok(()),
                        Ok(Ended::Lost(why)) => {
                            tracing::warn!(error = %why, "intake: Lost the broker; reconnecting.");
                        }
                        Err(error) if error.is_fatal() => return Err(error.into()),
                        Err(error) => tracing::warn!(error = %error, "intake: Setup failed; reconnecting."),
                    }
                }
                Err(error) => {
                    tracing::warn!(
                        error = %error, retry_in_ms = millis(backoff.delay(failures + 1)),
                        "intake: Cannot reach any broker of transport_url; retrying."
                    );
                }
            }
            failures += 1;
            tokio::select! {
                () = shutdown.cancelled() => return Ok(()),
                () = tokio::time::sleep(backoff.delay(failures)) => {}
            }
        }
    }

    async fn connect(&self) -> Result<Connection, String> {
        let connection = self.broker.connect(&format!("tocsin@{}", self.config.intake.host)).await?;
        self.metrics.broker_connections.inc();
        Ok(connection)
    }

    /// Declares, consumes and handles messages on one connection until it
    /// is lost or the service stops.
    async fn session(
        self: Arc<Self>,
        connection: Connection,
        shutdown: &CancellationToken,
        grace: Duration,
    ) -> Result<Ended, TopologyError> {
        let setup = connection.create_channel().await.map_err(|source| broker_error("channel", source))?;
        self.topology.declare(&setup, self.config.broker.passive_declare).await?;
        let publisher = Arc::new(Publisher::open(&connection).await.map_err(|e| broker_error("channel", e))?);
        let tracker = TaskTracker::new();
        let settlers = TaskTracker::new();
        let consumers = TaskTracker::new();
        let mut channels = vec![setup.clone(), publisher.channel().clone()];
        let stop = shutdown.child_token();
        let (lost, mut lost_rx) = mpsc::channel::<String>(1);
        let consumed: Vec<&QueueSpec> = self.topology.queues.iter().filter(|q| q.consume.is_some()).collect();
        for queue in consumed {
            let (channel, consumer) = self.consume(&connection, queue).await?;
            let source = queue.consume.unwrap_or(Source::OpenStack);
            channels.push(channel.clone());
            let (settler, settle) =
                Settler::new(channel.clone(), self.config.broker.rabbit_qos_prefetch_count);
            settlers.spawn(settler.run());
            let run = ConsumerLoop {
                intake: Arc::clone(&self),
                queue: queue.name.clone(),
                channel,
                consumer,
                source,
                publisher: Arc::clone(&publisher),
                tracker: tracker.clone(),
                stop: stop.clone(),
                lost: lost.clone(),
            };
            consumers.spawn(run.run(settle));
        }
        drop(lost);
        self.status.connected.store(true, Ordering::Relaxed);
        self.metrics.broker_connected.set(1);
        let ended = tokio::select! {
            () = shutdown.cancelled() => Ended::Shutdown,
            why = lost_rx.recv() => Ended::Lost(why.unwrap_or_else(|| "every consumer stopped".into())),
        };
        stop.cancel();
        self.status.connected.store(false, Ordering::Relaxed);
        self.metrics.broker_connected.set(0);
        settlers.close();
        consumers.close();
        if let Ended::Shutdown = ended {
            tracker.close();
            let in_flight = tracker.len();
            tracing::info!(
                in_flight,
                grace_ms = millis(grace),
                "intake: Stopped consuming; finishing the messages in flight."
            );
            // The settlers end once the handlers are done and what they
            // finished is acked; the consumers once cancelled.
            let finished = async {
                tracker.wait().await;
                settlers.wait().await;
                consumers.wait().await;
            };
            if tokio::time::timeout(grace, finished).await.is_err() {
                tracing::warn!(
                    unfinished = tracker.len(),
                    "intake: Grace period over; the broker redelivers the unfinished messages."
                );
            }
            let channels: Vec<&Channel> = channels.iter().collect();
            if let Err(error) = transport::close_in_order(&channels, &connection).await {
                tracing::warn!(error = %error, "intake: The broker did not confirm every close; leaving it.");
            }
        }
        Ok(ended)
    }

    /// Opens a channel with the configured prefetch and consumes `queue`.
    async fn consume(
        &self,
        connection: &Connection,
        queue: &QueueSpec,
    ) -> Result<(Channel, Consumer), TopologyError> {
        let channel = connection.create_channel().await.map_err(|e| broker_error("channel", e))?;
        channel
            .basic_qos(self.config.broker.rabbit_qos_prefetch_count, BasicQosOptions::default())
            .await
            .map_err(|e| broker_error("qos", e))?;
        let tag = format!("tocsin-{}-{}", self.config.intake.host, uuid::Uuid::new_v4().simple());
        let consumer = channel
            .basic_consume(
                queue.name.as_str().into(),
                tag.into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await
            .map_err(|source| TopologyError::Broker { what: "consumer", name: queue.name.clone(), source })?;
        Ok((channel, consumer))
    }
}

fn broker_error(what: &'static str, source: lapin::Error) -> TopologyError {
    TopologyError::Broker { what, name: String::new(), source }
}

/// One queue's consumer: hands each message to a handler task.
struct ConsumerLoop<N: Notifiers> {
    intake: Arc<Intake<N>>,
    queue: String,
    channel: Channel,
    consumer: Consumer,
    source: Source,
    publisher: Arc<Publisher>,
    tracker: TaskTracker,
    stop: CancellationToken,
    lost: mpsc::Sender<String>,
}

impl<N: Notifiers> ConsumerLoop<N> {
    /// Consumes until stopped or the consumer fails; each message's handler
    /// tells `settle` when it is done.
    async fn run(mut self, settle: SettleHandle) {
        let metrics = Arc::clone(&self.intake.metrics);
        let labels = QueueLabels { queue: self.queue.clone() };
        metrics.consumers.get_or_create(&labels).set(1);
        self.intake.status.consumers.fetch_add(1, Ordering::Relaxed);
        tracing::info!(queue = %self.queue, "intake: Consuming.");
        let why = loop {
            let next = tokio::select! {
                () = self.stop.cancelled() => break None,
                next = self.consumer.next() => next,
            };
            match next {
                Some(Ok(message)) => {
                    let tag = message.delivery_tag;
                    settle.received(tag);
                    let (intake, publisher, source, settle, stop) = (
                        Arc::clone(&self.intake),
                        Arc::clone(&self.publisher),
                        self.source,
                        settle.clone(),
                        self.stop.clone(),
                    );
                    // A handler that panics (a bug) settles nothing: its
                    // message stays unacked until the connection closes, and
                    // the messages after it are acked each on its own.
                    // Boxed: the handler's future is large (4.5 KiB), and a
                    // task's future is moved more than once as it is spawned.
                    self.tracker.spawn(Box::pin(async move {
                        settle.settle(tag, intake.handle(source, message, &publisher, &stop).await);
                    }));
                }
                Some(Err(error)) => break Some(format!("consumer of {}: {error}", self.queue)),
                None => break Some(format!("the broker cancelled the consumer of {}", self.queue)),
            }
        };
        // The settler ends once the handlers are done: it must not wait for
        // the broker's answer to the cancel below.
        drop(settle);
        self.intake.status.consumers.fetch_sub(1, Ordering::Relaxed);
        metrics.consumers.get_or_create(&labels).set(0);
        match why {
            Some(why) => {
                let _ = self.lost.try_send(why);
            }
            None => {
                let tag = self.consumer.tag();
                if let Err(error) = self.channel.basic_cancel(tag, BasicCancelOptions::default()).await {
                    tracing::debug!(queue = %self.queue, error = %error, "intake: Cancelling the consumer failed.");
                }
            }
        }
    }
}
