//! Notifier changes between hosts that share one store.
//!
//! Every host binds its own exclusive, auto-deleted queue to the fanout
//! exchange `<delivery.queue_prefix>.notifier-changes`. A host that
//! uploads, activates or deletes a notifier publishes its scheme there
//! (with publisher confirms) after the store has committed; every other
//! host then reads that scheme back from the store and makes the live
//! plugin match, so an upload goes live everywhere within the broker's
//! round trip. A message is only a hint to look at the store: every host
//! brings every notifier (and its secrets) in line with the store when it
//! connects, and every minute, so nothing depends on a message that was
//! lost or a change that could not be applied at once.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt as _;
use lapin::options::{BasicConsumeOptions, ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Connection, ExchangeKind};
use serde::{Deserialize, Serialize};
use tocsin_core::time::millis;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::catalog::Catalog;
use crate::amqp::Backoff;
use crate::amqp::publisher::{PublishError, Publisher};
use crate::amqp::transport::{Broker, close_in_order};

/// How often every notifier is brought in line with the store, besides
/// the changes announced.
const RESYNC_INTERVAL: Duration = Duration::from_secs(60);

/// One change, as published.
#[derive(Debug, Serialize, Deserialize)]
struct Change {
    /// The notifier that changed.
    scheme: String,
    /// The host that changed it (which applied it already).
    host: String,
}

/// Why the feed's connection ended.
#[derive(Debug, thiserror::Error)]
enum FeedError {
    #[error("{0}")]
    Broker(#[from] lapin::Error),
    #[error("{0}")]
    Publish(#[from] PublishError),
    #[error("the broker cancelled the change consumer")]
    Cancelled,
}

/// Where the feed runs: its exchange, this host's name and the wait
/// between reconnections.
#[derive(Debug, Clone)]
pub struct FeedSettings {
    /// The fanout exchange (`<delivery.queue_prefix>.notifier-changes`).
    pub exchange: String,
    /// This host's name (`intake.host`).
    pub host: String,
    /// The waits between reconnections (`broker.reconnect_*`).
    pub backoff: Backoff,
}

/// Publishes this host's changes and applies the other hosts', until
/// `shutdown`; reconnects with capped backoff.
pub async fn run(
    settings: FeedSettings,
    broker: Broker,
    catalog: Arc<Catalog>,
    mut outbox: mpsc::UnboundedReceiver<String>,
    shutdown: CancellationToken,
) {
    let FeedSettings { exchange, host, backoff } = settings;
    let mut failures = 0;
    let mut pending = VecDeque::new();
    let name = format!("tocsin-changes@{host}");
    loop {
        let connected = tokio::select! {
            () = shutdown.cancelled() => return,
            connected = broker.connect(&name) => connected,
        };
        let ended = match connected {
            Ok(connection) => {
                failures = 0;
                let feed = Feed { exchange: &exchange, host: &host, catalog: &catalog };
                // A session that ends by shutdown has closed the connection.
                let ended = feed.session(&connection, &mut outbox, &mut pending, &shutdown).await;
                if ended.is_err() {
                    let _ = connection.close(200, "tocsin stopping".into()).await;
                }
                ended.err().map(|error| error.to_string())
            }
            Err(error) => Some(error),
        };
        let Some(error) = ended else { return };
        failures += 1;
        let wait = backoff.delay(failures);
        tracing::warn!(
            error = %error, retry_in_ms = millis(wait),
            "registry: The notifier change feed lost the broker; reconnecting."
        );
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(wait) => {}
        }
    }
}

/// One connection's worth of the feed.
struct Feed<'a> {
    exchange: &'a str,
    host: &'a str,
    catalog: &'a Catalog,
}

impl Feed<'_> {
    /// Binds, catches up with the store, then relays changes both ways
    /// until shutdown (`Ok`, the connection closed) or a broker error.
    async fn session(
        &self,
        connection: &Connection,
        outbox: &mut mpsc::UnboundedReceiver<String>,
        pending: &mut VecDeque<String>,
        shutdown: &CancellationToken,
    ) -> Result<(), FeedError> {
        let channel = connection.create_channel().await?;
        let durable = ExchangeDeclareOptions { durable: true, ..ExchangeDeclareOptions::default() };
        channel
            .exchange_declare(self.exchange.into(), ExchangeKind::Fanout, durable, FieldTable::default())
            .await?;
        let mine =
            QueueDeclareOptions { exclusive: true, auto_delete: true, ..QueueDeclareOptions::default() };
        let queue = channel.queue_declare("".into(), mine, FieldTable::default()).await?;
        channel
            .queue_bind(
                queue.name().clone(),
                self.exchange.into(),
                "".into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await?;
        let no_ack = BasicConsumeOptions { no_ack: true, ..BasicConsumeOptions::default() };
        let mut consumer =
            channel.basic_consume(queue.name().clone(), "".into(), no_ack, FieldTable::default()).await?;
        let publisher = Publisher::open(connection).await?;
        // Bound before catching up (the interval's first tick is at once):
        // a change committed from here on is either in the store we read or
        // in the queue. Then again every RESYNC_INTERVAL, for a change whose
        // message came while the store could not be read.
        let mut resync = tokio::time::interval(RESYNC_INTERVAL);
        resync.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            while let Some(scheme) = pending.front() {
                let change =
                    serde_json::to_vec(&Change { scheme: scheme.clone(), host: self.host.to_owned() })
                        .unwrap_or_default();
                publisher.publish(self.exchange, "", &change, BasicProperties::default()).await?;
                pending.pop_front();
            }
            tokio::select! {
                () = shutdown.cancelled() => {
                    if let Err(error) = close_in_order(&[&channel, publisher.channel()], connection).await {
                        tracing::warn!(error = %error, "registry: The broker did not confirm every close; leaving it.");
                    }
                    return Ok(());
                }
                _ = resync.tick() => self.catch_up().await,
                Some(scheme) = outbox.recv() => pending.push_back(scheme),
                delivery = consumer.next() => {
                    let delivery = delivery.ok_or(FeedError::Cancelled)??;
                    self.apply(&delivery.data).await;
                }
            }
        }
    }

    /// Brings every notifier in line with the store.
    async fn catch_up(&self) {
        match self.catalog.sync_all().await {
            Ok((live, disabled)) => {
                tracing::debug!(live, disabled, "registry: In line with the notifier store.")
            }
            Err(error) => {
                tracing::warn!(error = %error, "registry: Cannot read the notifier store to catch up.")
            }
        }
    }

    /// Applies another host's change.
    async fn apply(&self, data: &[u8]) {
        let change: Change = match serde_json::from_slice(data) {
            Ok(change) => change,
            Err(error) => {
                tracing::warn!(error = %error, "registry: Ignored an unreadable notifier change.");
                return;
            }
        };
        if change.host == self.host {
            return;
        }
        match self.catalog.sync(&change.scheme).await {
            Ok(()) => tracing::info!(
                plugin = %change.scheme, from = %change.host, outcome = "applied",
                "registry: Applied a notifier change made on another host."
            ),
            Err(error) => tracing::warn!(
                plugin = %change.scheme, from = %change.host, error = %error, outcome = "failed",
                "registry: Cannot apply a notifier change made on another host; the next resync applies it."
            ),
        }
    }
}
