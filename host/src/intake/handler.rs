//! What happens to one received message, and when it is acknowledged.
//!
//! A message is acked (by the channel's [`super::settle::Settler`]) only
//! when each of its actions has a final outcome:
//! delivered; failed for good and its record confirmed in the dead-letter
//! queue; or retryable and its record confirmed in a retry tier. If the
//! broker does not confirm one of those, the message is not acked and
//! comes back: at least once, never lost.

use std::sync::Arc;
use std::time::Duration;

use futures_util::{StreamExt as _, stream};
use lapin::message::Delivery as Message;
use tocsin_guest_sdk::action;

use super::Intake;
use super::publisher::{PublishError, Publisher};
use super::settle::Settlement;
use super::topology::Source;
use crate::delivery::policy::{Decision, tier_label};
use crate::delivery::{DeliveryRecord, now_ms, now_us};
use crate::dispatch::{Notifiers, Outcome};
use crate::message::{self, AlarmNotification, Decoded, Properties};
use crate::metrics::ReasonLabels;

impl<N: Notifiers> Intake<N> {
    /// Handles one message: to be acked, or requeued when its outcomes
    /// could not all be handed to the broker.
    pub(super) async fn handle(&self, source: Source, message: Message, publisher: &Publisher) -> Settlement {
        if message.redelivered {
            self.metrics.redeliveries.inc();
        }
        let handled = match source {
            Source::OpenStack => self.handle_openstack(&message, publisher).await,
            Source::Work => self.handle_record(&message, publisher).await,
        };
        match handled {
            Ok(()) => Settlement::Ack,
            Err(error) => {
                tracing::warn!(
                    error = %error, exchange = %message.exchange, routing_key = %message.routing_key,
                    "intake: A retry or dead letter was not confirmed by the broker; the message is requeued."
                );
                Settlement::Requeue
            }
        }
    }

    async fn handle_openstack(&self, message: &Message, publisher: &Publisher) -> Result<(), PublishError> {
        let properties = Properties {
            content_type: message.properties.content_type().as_ref().map(|t| t.as_str()),
            content_encoding: message.properties.content_encoding().as_ref().map(|e| e.as_str()),
        };
        let decoded = message::decode(properties, &message.data, self.config.intake.max_message_bytes)
            .and_then(|decoded| match decoded {
                Decoded::Alarm(notification) => {
                    notification.check_bounds(self.config.intake.bounds())?;
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
                    .await?;
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
            Ok(Decoded::Alarm(notification)) => self.handle_alarm(*notification, publisher).await,
        }
    }

    async fn handle_alarm(
        &self,
        notification: AlarmNotification,
        publisher: &Publisher,
    ) -> Result<(), PublishError> {
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
        let changed_at = notification.changed_at_us.unwrap_or_else(now_us);
        let started = now_ms();
        let AlarmNotification { alarm, actions, message_id, .. } = notification;
        let alarm = Arc::new(alarm);
        let records: Vec<DeliveryRecord> = actions
            .into_iter()
            .enumerate()
            .map(|(index, url)| {
                self.newest.observe(&alarm.alarm_id, &url, changed_at);
                DeliveryRecord::first(&message_id, index, url, Arc::clone(&alarm), changed_at, started)
            })
            .collect();
        // At most `dispatch.per_message` at once: an alarm with many
        // actions cannot take every delivery slot from other alarms.
        let settled: Vec<Result<(), PublishError>> = if let [record] = records.as_slice() {
            vec![self.deliver_and_settle(record, publisher).await]
        } else {
            stream::iter(records)
                .map(|record| async move { self.deliver_and_settle(&record, publisher).await })
                .buffer_unordered(self.config.dispatch.per_message as usize)
                .collect()
                .await
        };
        settled.into_iter().collect::<Result<Vec<()>, _>>()?;
        self.completed.insert(&message_id);
        Ok(())
    }

    /// A delivery record from the work queue: a retry come due, or a
    /// replayed dead letter.
    async fn handle_record(&self, message: &Message, publisher: &Publisher) -> Result<(), PublishError> {
        let record = match DeliveryRecord::from_bytes(&message.data) {
            Ok(record) => record,
            Err(error) => {
                tracing::error!(queue = %self.topology.own.work, error = %error, outcome = "dead_lettered",
                    "intake: Invalid delivery record; dead-lettered.");
                self.metrics.message("retry", "undecodable");
                publisher
                    .dead_letter_message(&self.topology.own.dead_letters, message, "invalid-record", &error)
                    .await?;
                self.metrics.dead_letter("invalid-record");
                return Ok(());
            }
        };
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
        self.deliver_and_settle(&record, publisher).await
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
        publisher.publish_record(queue, next, None).await?;
        tracing::info!(
            alarm_id = %next.alarm.alarm_id, action = %action::display(&next.action), delivery_id = %next.delivery_id,
            next_attempt = next.attempt, retry_in_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
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
        publisher.publish_record(&self.topology.own.dead_letters, &dead, Some((code, reason))).await?;
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
