//! What happens to one received message, and when it is acknowledged.
//!
//! A message is acked (by the channel's [`crate::amqp::settle::Settler`]) only
//! when each of its actions has a final outcome:
//! delivered; failed for good and its record confirmed in the dead-letter
//! queue; or retryable and its record confirmed in a retry tier. If the
//! broker does not confirm one of those, the message is not acked and
//! comes back: at least once, never lost.

use std::sync::Arc;
use std::time::Duration;

use futures_util::{StreamExt as _, stream};
use lapin::message::Delivery as Message;
use tocsin_contract::action;
use tocsin_core::time::{millis, now_ms, now_us};
use tokio_util::sync::CancellationToken;

use super::Intake;
use super::topology::Source;
use crate::amqp::Backoff;
use crate::amqp::publisher::{PublishError, Publisher};
use crate::amqp::settle::Settlement;
use crate::delivery::DeliveryRecord;
use crate::delivery::memory::{RequeuedMessage, RequeuedMessages};
use crate::delivery::policy::{Decision, tier_label};
use crate::dispatch::{Notifiers, Outcome};
use crate::message::{self, AlarmNotification, Decoded, Properties};
use crate::metrics::ReasonLabels;

/// The dead-letter reason of a message requeued `delivery.max_redeliveries`
/// times.
const REDELIVERY_CAP: &str = "too-many-redeliveries";

/// Why what is left of a message requeued `times` times is dead-lettered.
fn redelivery_cap_reason(times: u32) -> String {
    format!(
        "requeued {times} times (delivery.max_redeliveries): the broker did not confirm a retry or dead letter of it"
    )
}

/// The longest a message whose outcome was not confirmed waits before it
/// is requeued: it holds a place in the prefetch window meanwhile.
const MAX_REQUEUE_BACKOFF: Duration = Duration::from_secs(10);

/// A message's outcome the broker did not confirm: it is requeued.
#[derive(Debug)]
pub(super) struct Unconfirmed {
    error: PublishError,
    /// How many times this host requeued the message, this one included.
    times: u32,
}

impl Unconfirmed {
    /// The first time, for a message that is not counted (one that is not
    /// an alarm: its only outcome is its dead letter).
    fn first(error: PublishError) -> Self {
        Unconfirmed { error, times: 1 }
    }
}

/// What a host remembers a requeued message by: its kind, its id and a
/// digest of its body, so that another message reusing the id (an
/// evaluator's `_unique_id` is the sender's to choose) is not taken for
/// it. The digest is computed only when needed: for a redelivered message,
/// or one being requeued.
pub(super) struct RequeueKey<'a> {
    kind: &'static str,
    id: String,
    message: &'a Message,
    key: std::sync::OnceLock<String>,
}

impl RequeueKey<'_> {
    fn new<'a>(kind: &'static str, id: String, message: &'a Message) -> RequeueKey<'a> {
        RequeueKey { kind, id, message, key: std::sync::OnceLock::new() }
    }

    fn get(&self) -> &str {
        self.key
            .get_or_init(|| format!("{}:{}:{}", self.kind, self.id, message::body_digest(&self.message.data)))
    }

    /// What this host knows of the message, if it requeued it (then it
    /// comes back redelivered).
    fn earlier(&self, requeued: &RequeuedMessages) -> Option<RequeuedMessage> {
        self.message.redelivered.then(|| requeued.get(self.get())).flatten()
    }

    fn forget(&self, requeued: &RequeuedMessages) {
        if self.message.redelivered {
            requeued.forget(self.get());
        }
    }
}

impl<N: Notifiers> Intake<N> {
    /// Handles one message: to be acked, or requeued when its outcomes
    /// could not all be handed to the broker. A requeue waits a backoff
    /// first (or until `stop`): a broker that refuses retries must not
    /// turn the message into a tight loop.
    pub(super) async fn handle(
        &self,
        source: Source,
        message: Message,
        publisher: &Publisher,
        stop: &CancellationToken,
    ) -> Settlement {
        if message.redelivered {
            self.metrics.redeliveries.inc();
        }
        let handled = match source {
            Source::OpenStack => self.handle_openstack(&message, publisher).await,
            Source::Work => self.handle_record(&message, publisher).await,
        };
        match handled {
            Ok(()) => Settlement::Ack,
            Err(Unconfirmed { error, times }) => {
                let backoff = self.requeue_backoff(times);
                tracing::warn!(
                    error = %error, exchange = %message.exchange, routing_key = %message.routing_key,
                    requeues = times, requeue_in_ms = millis(backoff),
                    "intake: A retry or dead letter was not confirmed by the broker; the message is requeued \
                     after a backoff."
                );
                tokio::select! {
                    () = tokio::time::sleep(backoff) => {}
                    () = stop.cancelled() => {}
                }
                Settlement::Requeue
            }
        }
    }

    /// `delivery.backoff_initial_ms`, doubled for each earlier requeue, at
    /// most [`MAX_REQUEUE_BACKOFF`].
    fn requeue_backoff(&self, times: u32) -> Duration {
        Backoff::new(Duration::from_millis(self.config.delivery.backoff_initial_ms), MAX_REQUEUE_BACKOFF)
            .delay(times)
    }

    async fn handle_openstack(&self, message: &Message, publisher: &Publisher) -> Result<(), Unconfirmed> {
        let properties = Properties {
            content_type: message.properties.content_type().as_ref().map(|t| t.as_str()),
            content_encoding: message.properties.content_encoding().as_ref().map(|e| e.as_str()),
        };
        let decoded = message::decode(properties, &message.data, self.config.intake.max_message_bytes)
            .and_then(|decoded| match decoded {
                Decoded::Alarm(notification) => {
                    notification.check_bounds(message.data.len(), self.config.intake.bounds())?;
                    Ok(Decoded::Alarm(notification))
                }
                ignored @ Decoded::Ignored { .. } => Ok(ignored),
            });
        match decoded {
            Err(error) => {
                tracing::error!(
                    exchange = %message.exchange, routing_key = %message.routing_key, bytes = message.data.len(),
                    reason = error.code(), error = %error, outcome = "dead_lettered",
                    "intake: Undecodable message; dead-lettered."
                );
                self.metrics.message("unknown", "undecodable");
                publisher
                    .dead_letter_message(
                        &self.topology.own.dead_letters,
                        message,
                        error.code(),
                        &error.to_string(),
                    )
                    .await
                    .map_err(Unconfirmed::first)?;
                self.metrics.dead_letter(error.code());
                Ok(())
            }
            Ok(Decoded::Ignored { event_type, priority }) => {
                tracing::info!(
                    event_type,
                    priority,
                    outcome = "ignored",
                    "intake: Notification is not an alarm change; acknowledged and ignored."
                );
                self.metrics.message("notification", "ignored");
                Ok(())
            }
            Ok(Decoded::Alarm(notification)) => {
                let key = RequeueKey::new("message", notification.message_id.clone(), message);
                self.handle_alarm(*notification, &key, publisher).await
            }
        }
    }

    async fn handle_alarm(
        &self,
        notification: AlarmNotification,
        key: &RequeueKey<'_>,
        publisher: &Publisher,
    ) -> Result<(), Unconfirmed> {
        let kind = notification.kind.as_str();
        let (message_id, alarm_id) = (notification.message_id.as_str(), notification.alarm.alarm_id.as_str());
        if self.completed.contains(message_id) {
            tracing::info!(
                message_id,
                alarm_id,
                kind,
                outcome = "duplicate",
                "intake: Message already handled; skipped, as oslo.messaging skips repeats."
            );
            self.metrics.message(kind, "duplicate");
            return Ok(());
        }
        if notification.actions.is_empty() {
            tracing::error!(
                message_id,
                alarm_id,
                kind,
                outcome = "no_action",
                "Unable to notify for an alarm with no action"
            );
            self.metrics.message(kind, "no_action");
            self.completed.insert(message_id);
            return Ok(());
        }
        let earlier = key.earlier(&self.requeued);
        if let Some(earlier) = earlier.as_ref().filter(|e| e.times >= self.config.delivery.max_redeliveries) {
            return self.give_up(notification, earlier, key, publisher).await;
        }
        self.metrics.message(kind, "accepted");
        if notification.lone_surrogates > 0 {
            tracing::warn!(
                message_id,
                alarm_id,
                kind,
                lone_surrogates = notification.lone_surrogates,
                "intake: The alarm's text fields or actions hold lone surrogate escapes, which Python reads \
                 and a plugin's string cannot carry; each is delivered as U+FFFD."
            );
        }
        let settled_before = earlier.map(|earlier| earlier.settled).unwrap_or_default();
        if !settled_before.is_empty() {
            tracing::info!(
                message_id,
                alarm_id,
                actions_skipped = settled_before.len(),
                outcome = "partly_settled",
                "intake: The message came back after a requeue; its actions settled before are not sent again."
            );
        }
        let changed_at = notification.changed_at_us.unwrap_or_else(now_us);
        let started = now_ms();
        let message_id = notification.message_id.clone();
        let records: Vec<DeliveryRecord> = self
            .records(notification, changed_at, started)
            .filter(|record| !settled_before.contains(&(record.action_index as usize)))
            .inspect(|record| self.newest.observe(&record.alarm.alarm_id, &record.action, changed_at))
            .collect();
        // At most `dispatch.per_message` at once: an alarm with many
        // actions cannot take every delivery slot from other alarms.
        let settled: Vec<(usize, Result<(), PublishError>)> = if let [record] = records.as_slice() {
            vec![(record.action_index as usize, self.deliver_and_settle(record, publisher).await)]
        } else {
            stream::iter(records)
                .map(|record| async move {
                    (record.action_index as usize, self.deliver_and_settle(&record, publisher).await)
                })
                .buffer_unordered(self.config.dispatch.per_message as usize)
                .collect()
                .await
        };
        let (confirmed, unconfirmed): (Vec<_>, Vec<_>) = settled.into_iter().partition(|(_, r)| r.is_ok());
        match unconfirmed.into_iter().find_map(|(_, result)| result.err()) {
            None => {
                key.forget(&self.requeued);
                self.completed.insert(&message_id);
                Ok(())
            }
            Some(error) => {
                let times = self.requeued.requeue(key.get(), confirmed.into_iter().map(|(index, _)| index));
                Err(Unconfirmed { error, times })
            }
        }
    }

    /// The first delivery record of each action of `notification`, all
    /// sharing one alarm.
    fn records(
        &self,
        notification: AlarmNotification,
        changed_at: i64,
        started: i64,
    ) -> impl Iterator<Item = DeliveryRecord> {
        let AlarmNotification { alarm, actions, message_id, .. } = notification;
        let alarm = Arc::new(alarm);
        actions.into_iter().enumerate().map(move |(index, url)| {
            DeliveryRecord::first(&message_id, index, url, Arc::clone(&alarm), changed_at, started)
        })
    }

    /// A message requeued `delivery.max_redeliveries` times: what is left
    /// of it is dead-lettered, each unsettled action as its record.
    async fn give_up(
        &self,
        notification: AlarmNotification,
        earlier: &RequeuedMessage,
        key: &RequeueKey<'_>,
        publisher: &Publisher,
    ) -> Result<(), Unconfirmed> {
        let message_id = notification.message_id.clone();
        let reason = redelivery_cap_reason(earlier.times);
        let now = now_ms();
        let changed_at = notification.changed_at_us.unwrap_or_else(now_us);
        let mut dead = Vec::new();
        for record in self.records(notification, changed_at, now) {
            let index = record.action_index as usize;
            if earlier.settled.contains(&index) {
                continue;
            }
            if let Err(error) = self.dead_letter(&record, REDELIVERY_CAP, &reason, publisher).await {
                // Those dead-lettered are settled: not again next time.
                return Err(Unconfirmed { error, times: self.requeued.requeue(key.get(), dead) });
            }
            dead.push(index);
        }
        key.forget(&self.requeued);
        self.completed.insert(&message_id);
        Ok(())
    }

    /// A delivery record from the work queue: a retry come due, or a
    /// replayed dead letter.
    async fn handle_record(&self, message: &Message, publisher: &Publisher) -> Result<(), Unconfirmed> {
        let record = match DeliveryRecord::from_bytes(&message.data) {
            Ok(record) => record,
            Err(error) => {
                tracing::error!(queue = %self.topology.own.work, error = %error, outcome = "dead_lettered",
                    "intake: Invalid delivery record; dead-lettered.");
                self.metrics.message("retry", "undecodable");
                publisher
                    .dead_letter_message(&self.topology.own.dead_letters, message, "invalid-record", &error)
                    .await
                    .map_err(Unconfirmed::first)?;
                self.metrics.dead_letter("invalid-record");
                return Ok(());
            }
        };
        // Each attempt of a delivery is its own message.
        let key = RequeueKey::new("record", format!("{}#{}", record.delivery_id, record.attempt), message);
        if let Some(earlier) =
            key.earlier(&self.requeued).filter(|e| e.times >= self.config.delivery.max_redeliveries)
        {
            let reason = redelivery_cap_reason(earlier.times);
            let dead = self.dead_letter(&record, REDELIVERY_CAP, &reason, publisher).await;
            return self.remember(&key, dead);
        }
        let (alarm_id, shown) = (record.alarm.alarm_id.as_str(), action::display(&record.action));
        // An event alarm's messages are separate occurrences (other events),
        // not newer states of one another: none supersedes another.
        let snapshot = !record.alarm.is_event();
        if snapshot && self.newest.is_superseded(alarm_id, &record.action, record.changed_at_us) {
            tracing::info!(alarm_id, action = %shown, delivery_id = %record.delivery_id, attempt = record.attempt,
                outcome = "superseded",
                "intake: A newer state change of this alarm went to this action; the stale retry is dropped.");
            self.metrics.message("retry", "superseded");
            return Ok(());
        }
        self.newest.observe(alarm_id, &record.action, record.changed_at_us);
        self.metrics.message("retry", "accepted");
        let settled = self.deliver_and_settle(&record, publisher).await;
        self.remember(&key, settled)
    }

    /// A work-queue record's outcome: forgotten once confirmed, counted as
    /// requeued once more when not.
    fn remember(&self, key: &RequeueKey<'_>, settled: Result<(), PublishError>) -> Result<(), Unconfirmed> {
        match settled {
            Ok(()) => {
                key.forget(&self.requeued);
                Ok(())
            }
            Err(error) => Err(Unconfirmed { error, times: self.requeued.requeue(key.get(), []) }),
        }
    }

    /// Runs one attempt and hands its outcome to the broker when it is
    /// not delivered: a retry tier or the dead-letter queue.
    async fn deliver_and_settle(
        &self,
        record: &DeliveryRecord,
        publisher: &Publisher,
    ) -> Result<(), PublishError> {
        match self.dispatcher.deliver(record).await {
            Outcome::Delivered => Ok(()),
            Outcome::Failed { code, reason } => self.dead_letter(record, code, &reason, publisher).await,
            Outcome::Deferred { reason } => match self.policy.defer(age_of(record)) {
                Decision::Retry { tier, .. } => {
                    let next = DeliveryRecord { last_error: Some(reason), ..record.clone() };
                    self.schedule(&next, tier, publisher).await
                }
                Decision::GiveUp(why) => {
                    self.dead_letter(record, "gave-up", &format!("{why}; {reason}"), publisher).await
                }
            },
            Outcome::Retry { reason, retry_after } => {
                let age =
                    Duration::from_millis(u64::try_from(now_ms() - record.first_attempt_ms).unwrap_or(0));
                match self.policy.decide(&record.action, record.attempt, age, retry_after) {
                    Decision::Retry { tier, .. } => {
                        let next = DeliveryRecord {
                            attempt: record.attempt + 1,
                            last_error: Some(reason),
                            ..record.clone()
                        };
                        self.schedule(&next, tier, publisher).await
                    }
                    Decision::GiveUp(why) => {
                        self.dead_letter(
                            record,
                            "gave-up",
                            &format!("{why}; last error: {reason}"),
                            publisher,
                        )
                        .await
                    }
                }
            }
        }
    }

    async fn schedule(
        &self,
        next: &DeliveryRecord,
        tier: usize,
        publisher: &Publisher,
    ) -> Result<(), PublishError> {
        let delay = self.policy.tiers().get(tier).copied().unwrap_or_default();
        let queue = self.topology.own.tiers.get(tier).map_or(self.topology.own.work.as_str(), String::as_str);
        publisher.publish_record(queue, &next.delivery_id, &next.to_bytes(), None).await?;
        tracing::info!(
            alarm_id = %next.alarm.alarm_id, action = %action::display(&next.action), delivery_id = %next.delivery_id,
            next_attempt = next.attempt, retry_in_ms = millis(delay),
            outcome = "retry_scheduled", "intake: Retry scheduled."
        );
        self.metrics.retries.get_or_create(&ReasonLabels { reason: tier_label(delay) }).inc();
        Ok(())
    }

    async fn dead_letter(
        &self,
        record: &DeliveryRecord,
        code: &str,
        reason: &str,
        publisher: &Publisher,
    ) -> Result<(), PublishError> {
        let dead = DeliveryRecord { last_error: Some(reason.to_owned()), ..record.clone() };
        publisher
            .publish_record(
                &self.topology.own.dead_letters,
                &dead.delivery_id,
                &dead.to_bytes(),
                Some((code, reason)),
            )
            .await?;
        tracing::warn!(
            alarm_id = %record.alarm.alarm_id, action = %action::display(&record.action), delivery_id = %record.delivery_id,
            attempt = record.attempt, reason = code, error = reason, outcome = "dead_lettered",
            "intake: Delivery failed for good; dead-lettered."
        );
        self.metrics.dead_letter(code);
        Ok(())
    }
}

/// Time since the delivery's first attempt began.
fn age_of(record: &DeliveryRecord) -> Duration {
    Duration::from_millis(u64::try_from(now_ms().saturating_sub(record.first_attempt_ms)).unwrap_or(0))
}
