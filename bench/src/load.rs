//! The load: numbered alarms published as an evaluator publishes them, and
//! when each one was published and when it arrived (at the sink, or as the
//! notifier's log line), on one clock.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::{BasicProperties, Channel, Connection, PublisherConfirm};
use tocsin::amqp::transport::Broker;
use tocsin::commands::publish::oslo_properties;
use tocsin::config::{Config, NotificationIntakeConfig};
use tocsin::intake::topology::Topology;
use tocsin::message::{self, Stamps, WireFormat};
use tocsin_core::alarm::{Alarm, SAMPLE_ALARM};

/// The alarm notifications both notifiers consume: their defaults, the
/// same in aodh and in tocsin (exchange `aodh`, queue `alarming.sample`).
pub fn intake() -> NotificationIntakeConfig {
    NotificationIntakeConfig::default()
}
/// Confirmations awaited at once while publishing.
const CONFIRM_BATCH: usize = 512;
/// The part of an alarm id before its number.
const ID_PREFIX: &str = "00000000-0000-4000-8000-";

/// The id of alarm number `seq`: a UUID that ends in the number, so it can
/// be found in a request body or a log line.
pub fn alarm_id(seq: usize) -> String {
    format!("{ID_PREFIX}{seq:012}")
}

/// The number of the first alarm id in `text`.
pub fn seq_in(text: &[u8]) -> Option<usize> {
    let start = memchr::memmem::find(text, ID_PREFIX.as_bytes())? + ID_PREFIX.len();
    let digits = text.get(start..start + 12)?;
    std::str::from_utf8(digits).ok()?.parse().ok()
}

/// Publish and arrival times of alarms `0..count`, and when the notifier
/// began consuming, in ns since the run's start (0: not yet).
#[derive(Debug)]
pub struct Timeline {
    epoch: Instant,
    consuming: AtomicU64,
    published: Vec<AtomicU64>,
    arrived: Vec<AtomicU64>,
    arrivals: AtomicUsize,
}

impl Timeline {
    /// An empty timeline for `count` alarms.
    pub fn new(count: usize) -> Self {
        Timeline {
            epoch: Instant::now(),
            consuming: AtomicU64::new(0),
            published: (0..count).map(|_| AtomicU64::new(0)).collect(),
            arrived: (0..count).map(|_| AtomicU64::new(0)).collect(),
            arrivals: AtomicUsize::new(0),
        }
    }

    fn now(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX).max(1)
    }

    /// Alarms in the run.
    pub fn count(&self) -> usize {
        self.published.len()
    }

    /// Alarm `seq` is being published now.
    pub fn publishing(&self, seq: usize) {
        self.publishing_at(seq, self.now());
    }

    fn publishing_at(&self, seq: usize, ns: u64) {
        if let Some(at) = self.published.get(seq) {
            at.store(ns, Ordering::Relaxed);
        }
    }

    /// The notifier began consuming now.
    pub fn consuming(&self) {
        self.consuming.store(self.now(), Ordering::Relaxed);
    }

    /// Alarm `seq` arrived now; only its first arrival counts.
    pub fn arrived(&self, seq: usize) {
        self.arrived_at(seq, self.now());
    }

    fn arrived_at(&self, seq: usize, ns: u64) {
        let Some(at) = self.arrived.get(seq) else { return };
        if at.compare_exchange(0, ns, Ordering::Relaxed, Ordering::Relaxed).is_ok() {
            self.arrivals.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Distinct alarms arrived so far.
    pub fn arrivals(&self) -> usize {
        self.arrivals.load(Ordering::Relaxed)
    }

    /// Publish → arrival of every arrived alarm `seq` for which `pick(seq)`,
    /// the clock of an alarm published before the notifier consumed
    /// starting when it began to: its start-up time is left out.
    pub fn latencies(&self, pick: impl Fn(usize) -> bool) -> Vec<Duration> {
        let consuming = self.consuming.load(Ordering::Relaxed);
        let mut latencies: Vec<Duration> = (0..self.count())
            .filter(|seq| pick(*seq))
            .filter_map(|seq| {
                let published = self.published[seq].load(Ordering::Relaxed).max(consuming);
                let arrived = self.arrived[seq].load(Ordering::Relaxed);
                (published > 0 && arrived > 0)
                    .then(|| Duration::from_nanos(arrived.saturating_sub(published)))
            })
            .collect();
        latencies.sort();
        latencies
    }

    /// From when the notifier began consuming (or the first publish, if
    /// later) to the last arrival.
    pub fn span(&self) -> Duration {
        let consuming = self.consuming.load(Ordering::Relaxed);
        let first = self.published.iter().map(|at| at.load(Ordering::Relaxed)).filter(|at| *at > 0).min();
        let last = self.arrived.iter().map(|at| at.load(Ordering::Relaxed)).max();
        match (first, last) {
            (Some(first), Some(last)) => Duration::from_nanos(last.saturating_sub(first.max(consuming))),
            _ => Duration::ZERO,
        }
    }
}

/// Publishes alarm notifications onto the queue the notifiers consume, as
/// an evaluator does: `alarm.update` notifications (tocsin's encoder: the
/// bytes oslo.messaging writes), into the exchange and queue declared as
/// oslo.messaging declares them, with publisher confirms.
#[derive(Debug)]
pub struct AlarmPublisher {
    connection: Connection,
    channel: Channel,
    exchange: String,
    queue: String,
    properties: BasicProperties,
}

impl AlarmPublisher {
    /// Connects to the vhost of `transport_url` and declares the exchange
    /// and queue, so that a notifier started next finds them as its own.
    ///
    /// # Errors
    /// No broker.
    pub async fn connect(transport_url: &str) -> anyhow::Result<AlarmPublisher> {
        let mut config = Config::default();
        config.broker.transport_url = transport_url.to_owned();
        config.intake.notification = intake();
        let connection = Broker::new(&config.broker)?
            .connect("bench")
            .await
            .map_err(|error| anyhow::anyhow!("cannot connect to RabbitMQ to publish: {error}"))?;
        let channel = connection.create_channel().await.context("cannot open a channel")?;
        Topology::new(&config.intake_settings())
            .publisher(&config.intake, WireFormat::Notification)
            .declare(&channel, false)
            .await?;
        channel.confirm_select(ConfirmSelectOptions::default()).await.context("cannot enable confirms")?;
        let notification = &config.intake.notification;
        Ok(AlarmPublisher {
            connection,
            channel,
            exchange: notification.exchange.clone(),
            queue: notification.queue(),
            properties: oslo_properties(),
        })
    }

    /// The channel it publishes on.
    pub fn channel(&self) -> &Channel {
        &self.channel
    }

    /// Publishes `alarm` with `actions`; the returned confirmation says
    /// whether the broker took it.
    ///
    /// # Errors
    /// The channel is gone.
    pub async fn publish(&self, alarm: &Alarm, actions: &[String]) -> anyhow::Result<PublisherConfirm> {
        let body = message::encode(WireFormat::Notification, alarm, actions, &Stamps::fresh());
        let confirm = self
            .channel
            .basic_publish(
                self.exchange.as_str().into(),
                self.queue.as_str().into(),
                BasicPublishOptions::default(),
                &body,
                self.properties.clone(),
            )
            .await?;
        Ok(confirm)
    }

    /// Closes the connection.
    pub async fn close(self) {
        let _ = self.connection.close(200, "published".into()).await;
    }
}

/// Fills the queue both notifiers consume on the vhost of `transport_url`
/// with alarms `0..timeline.count()` (see [`AlarmPublisher`]), alarm `seq`
/// with the one action `action(seq)`. Returns how long publishing took.
///
/// # Errors
/// No broker, or a message the broker refused.
pub async fn prefill(
    transport_url: &str,
    timeline: &Timeline,
    action: impl Fn(usize) -> String,
) -> anyhow::Result<Duration> {
    let publisher = AlarmPublisher::connect(transport_url).await?;
    let mut alarm = Alarm::from_json(SAMPLE_ALARM).context("the sample alarm")?;
    let started = Instant::now();
    let mut pending = Vec::with_capacity(CONFIRM_BATCH);
    for seq in 0..timeline.count() {
        alarm.alarm_id = alarm_id(seq);
        timeline.publishing(seq);
        let confirm = publisher
            .publish(&alarm, &[action(seq)])
            .await
            .with_context(|| format!("publishing alarm {seq}"))?;
        pending.push(confirm);
        if pending.len() == CONFIRM_BATCH || seq + 1 == timeline.count() {
            for confirm in pending.drain(..) {
                anyhow::ensure!(confirm.await?.is_ack(), "the broker refused an alarm");
            }
        }
    }
    let elapsed = started.elapsed();
    publisher.close().await;
    Ok(elapsed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_alarm_number_is_found_again_in_a_body_or_a_line() {
        let id = alarm_id(4321);
        assert!(uuid::Uuid::parse_str(&id).is_ok(), "{id} is a UUID, as aodh's ids are");
        let line = format!("INFO Notifying alarm cpu_high {id} of critical priority from ok to alarm");
        assert_eq!(seq_in(line.as_bytes()), Some(4321));
        assert_eq!(seq_in(format!("{{\"alarm_id\": \"{id}\"}}").as_bytes()), Some(4321));
        assert_eq!(seq_in(b"Notifying alarm cpu_high 0e3cd4a5-7d6a-4f4c-9b5b-6c1f2d3e4f50"), None);
    }

    #[test]
    fn the_timeline_counts_first_arrivals_and_measures_from_when_consuming_began() {
        let timeline = Timeline::new(3);
        timeline.publishing_at(0, 10);
        timeline.publishing_at(1, 20);
        timeline.consuming.store(1_000, Ordering::Relaxed);
        timeline.arrived_at(1, 1_500);
        timeline.arrived_at(1, 1_700);
        timeline.arrived_at(7, 1_800);
        assert_eq!(timeline.arrivals(), 1, "a repeat and an unknown number do not count");
        let latencies = timeline.latencies(|_| true);
        assert_eq!(latencies, [Duration::from_nanos(500)], "the wait before consuming is left out");
        assert!(timeline.latencies(|seq| seq == 0).is_empty(), "alarm 0 has not arrived");
        assert_eq!(timeline.span(), Duration::from_nanos(500), "the span starts when consuming began");
    }
}
