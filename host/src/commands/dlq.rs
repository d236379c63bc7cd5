//! `tocsin dlq list|replay|purge`: the dead-letter queue, for operators.
//!
//! Dead letters are of two kinds: delivery records (an action that failed
//! for good or ran out of retries; replayed into the work queue with a
//! fresh retry budget) and OpenStack messages that could not be decoded
//! (replayed to the exchange and routing key they came from). Each carries
//! its reason in headers.

use std::collections::BTreeMap;

use anyhow::Context as _;
use lapin::message::BasicGetMessage;
use lapin::options::{BasicAckOptions, BasicGetOptions, QueueDeclareOptions, QueuePurgeOptions};
use lapin::types::{AMQPValue, FieldTable, ShortString};
use lapin::{BasicProperties, Channel, Connection};
use serde_json::{Value, json};
use tocsin_contract::action;
use tocsin_core::time::now_ms;

use super::Exit;
use crate::amqp::publisher::{
    DEAD_AT_HEADER, EXCHANGE_HEADER, Publisher, REASON_CODE_HEADER, REASON_HEADER, RECORD_TYPE,
    ROUTING_KEY_HEADER, header_text,
};
use crate::amqp::transport::Broker;
use crate::config::Config;
use crate::delivery::DeliveryRecord;
use crate::intake::topology::OwnQueues;

/// What to do with the dead letters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DlqAction {
    /// Print them, one JSON line each, leaving them in place.
    List,
    /// Send them back to be delivered again.
    Replay,
    /// Delete them.
    Purge,
}

/// Runs `action` on at most `limit` dead letters (all when none).
///
/// # Errors
/// No broker, or the dead-letter queue does not exist yet.
pub async fn run(config: &Config, action: DlqAction, limit: Option<u32>) -> anyhow::Result<Exit> {
    let queues = OwnQueues::new(&config.delivery);
    let broker = Broker::new(&config.broker)?;
    let connection = broker.connect("tocsin dlq").await.map_err(|e| anyhow::anyhow!(e))?;
    let channel = connection.create_channel().await.context("cannot open a channel")?;
    let waiting = channel
        .queue_declare(
            queues.dead_letters.as_str().into(),
            QueueDeclareOptions { passive: true, ..QueueDeclareOptions::default() },
            FieldTable::default(),
        )
        .await
        .with_context(|| {
            format!("no dead-letter queue {} (has tocsin serve ever run here?)", queues.dead_letters)
        })?
        .message_count();
    let count = limit.map_or(waiting, |limit| limit.min(waiting));
    let summary = match action {
        DlqAction::List => list(&channel, &queues, count).await?,
        DlqAction::Replay => replay(&connection, &channel, &queues, count).await?,
        DlqAction::Purge => {
            let purged = channel
                .queue_purge(queues.dead_letters.as_str().into(), QueuePurgeOptions::default())
                .await
                .context("cannot purge")?;
            json!({"purged": purged})
        }
    };
    let _ = connection.close(200, "done".into()).await;
    // `list` prints the letters on stdout; its summary goes to stderr.
    if action == DlqAction::List {
        eprintln!("{summary}");
    } else {
        println!("{summary}");
    }
    Ok(Exit::Success)
}

/// The next dead letter, unacknowledged; none when the queue is empty.
async fn next_letter(channel: &Channel, queues: &OwnQueues) -> anyhow::Result<Option<BasicGetMessage>> {
    channel
        .basic_get(queues.dead_letters.as_str().into(), BasicGetOptions::default())
        .await
        .context("cannot read the dead-letter queue")
}

/// Prints `count` dead letters; closing the channel unacknowledged puts
/// them back in place.
async fn list(channel: &Channel, queues: &OwnQueues, count: u32) -> anyhow::Result<Value> {
    let mut listed = 0;
    for _ in 0..count {
        let Some(message) = next_letter(channel, queues).await? else { break };
        println!("{}", describe(&message.delivery.properties, &message.delivery.data));
        listed += 1;
    }
    Ok(json!({"listed": listed, "queue": queues.dead_letters}))
}

/// One dead letter as JSON: its reason, and what it was.
fn describe(properties: &BasicProperties, body: &[u8]) -> Value {
    let headers = properties.headers().as_ref();
    let mut entry = json!({
        "reason_code": header_text(headers, REASON_CODE_HEADER),
        "reason": header_text(headers, REASON_HEADER),
        "dead_lettered_at_ms": headers.and_then(|h| match h.inner().get(&ShortString::from(DEAD_AT_HEADER)) {
            Some(AMQPValue::LongLongInt(at)) => Some(*at),
            _ => None,
        }),
        "bytes": body.len(),
    });
    match record_of(properties, body) {
        Some(record) => {
            entry["kind"] = "delivery".into();
            entry["delivery_id"] = record.delivery_id.into();
            entry["alarm_id"] = record.alarm.alarm_id.as_str().into();
            entry["action"] = action::display(&record.action).into();
            entry["attempt"] = record.attempt.into();
        }
        None => {
            entry["kind"] = "message".into();
            entry["exchange"] = header_text(headers, EXCHANGE_HEADER).into();
            entry["routing_key"] = header_text(headers, ROUTING_KEY_HEADER).into();
        }
    }
    entry
}

fn record_of(properties: &BasicProperties, body: &[u8]) -> Option<DeliveryRecord> {
    let is_record = properties.kind().as_ref().is_some_and(|kind| kind.as_str() == RECORD_TYPE);
    is_record.then(|| DeliveryRecord::from_bytes(body).ok()).flatten()
}

/// Sends `count` dead letters back, each acknowledged only once the broker
/// confirmed its replay.
async fn replay(
    connection: &Connection,
    channel: &Channel,
    queues: &OwnQueues,
    count: u32,
) -> anyhow::Result<Value> {
    let publisher = Publisher::open(connection).await.context("cannot open a publishing channel")?;
    let (mut deliveries, mut messages) = (0u32, 0u32);
    for _ in 0..count {
        let Some(message) = next_letter(channel, queues).await? else { break };
        let letter = &message.delivery;
        if let Some(record) = record_of(&letter.properties, &letter.data) {
            let fresh = DeliveryRecord { attempt: 1, first_attempt_ms: now_ms(), last_error: None, ..record };
            publisher
                .publish_record(&queues.work, &fresh.delivery_id, &fresh.to_bytes(), None)
                .await
                .context("cannot replay a delivery")?;
            deliveries += 1;
        } else {
            let headers = letter.properties.headers().as_ref();
            let exchange = header_text(headers, EXCHANGE_HEADER).unwrap_or_default();
            let routing_key = header_text(headers, ROUTING_KEY_HEADER).unwrap_or_default();
            let tocsin_headers =
                [REASON_HEADER, REASON_CODE_HEADER, DEAD_AT_HEADER, EXCHANGE_HEADER, ROUTING_KEY_HEADER];
            let original: BTreeMap<ShortString, AMQPValue> = headers
                .map(|h| h.inner().iter().filter(|(key, _)| !tocsin_headers.contains(&key.as_str())))
                .into_iter()
                .flatten()
                .map(|(key, value)| (key.clone(), value.clone()))
                .collect();
            let properties = letter.properties.clone().with_headers(FieldTable::from(original));
            publisher
                .publish(&exchange, &routing_key, &letter.data, properties)
                .await
                .with_context(|| format!("cannot replay a message to {exchange}/{routing_key}"))?;
            messages += 1;
        }
        letter.ack(BasicAckOptions::default()).await.context("cannot remove a replayed dead letter")?;
    }
    Ok(json!({"replayed_deliveries": deliveries, "replayed_messages": messages, "work_queue": queues.work}))
}
