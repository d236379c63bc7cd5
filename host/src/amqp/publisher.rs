//! Publishing tocsin's own messages (retries, dead letters) on a channel
//! in confirm mode: a message counts as handed over only once the broker
//! confirmed it, and only then is the message it replaces acknowledged.

use lapin::message::Delivery;
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{BasicProperties, Channel, Confirmation, Connection};

/// `type` property of delivery records.
pub(crate) const RECORD_TYPE: &str = "tocsin.delivery";
/// Header: why a message was dead-lettered, in words.
pub(crate) const REASON_HEADER: &str = "x-tocsin-reason";
/// Header: the same as a short stable code.
pub(crate) const REASON_CODE_HEADER: &str = "x-tocsin-reason-code";
/// Header: exchange the dead-lettered message was received from.
pub(crate) const EXCHANGE_HEADER: &str = "x-tocsin-exchange";
/// Header: its routing key.
pub(crate) const ROUTING_KEY_HEADER: &str = "x-tocsin-routing-key";
/// Header: when it was dead-lettered, ms since the Unix epoch.
pub(crate) const DEAD_AT_HEADER: &str = "x-tocsin-dead-lettered-at";

/// Why a message could not be handed to the broker.
#[derive(Debug, thiserror::Error)]
pub(crate) enum PublishError {
    /// The channel or connection failed.
    #[error("broker error: {0}")]
    Broker(#[from] lapin::Error),
    /// The broker refused it (nack).
    #[error("the broker refused the message")]
    Nacked,
    /// No queue took it (the queue was deleted).
    #[error("no queue took the message: {0}")]
    Unroutable(String),
}

/// A confirm-mode channel for tocsin's own messages.
#[derive(Debug)]
pub(crate) struct Publisher {
    channel: Channel,
}

impl Publisher {
    /// Opens the channel and turns confirms on.
    ///
    /// # Errors
    /// The broker's.
    pub async fn open(connection: &Connection) -> Result<Self, lapin::Error> {
        let channel = connection.create_channel().await?;
        channel.confirm_select(ConfirmSelectOptions::default()).await?;
        Ok(Publisher { channel })
    }

    /// Its channel, to close at shutdown.
    pub fn channel(&self) -> &Channel {
        &self.channel
    }

    /// Publishes to `queue` through the default exchange and waits for the
    /// broker's confirmation.
    ///
    /// # Errors
    /// [`PublishError`] when the broker did not take it.
    pub async fn publish(
        &self,
        exchange: &str,
        routing_key: &str,
        body: &[u8],
        properties: BasicProperties,
    ) -> Result<(), PublishError> {
        let options = BasicPublishOptions { mandatory: true, ..BasicPublishOptions::default() };
        let confirmation = self
            .channel
            .basic_publish(exchange.into(), routing_key.into(), options, body, properties)
            .await?
            .await?;
        match confirmation {
            Confirmation::Ack(None) | Confirmation::NotRequested => Ok(()),
            Confirmation::Ack(Some(returned)) => {
                Err(PublishError::Unroutable(returned.reply_text.to_string()))
            }
            Confirmation::Nack(_) => Err(PublishError::Nacked),
        }
    }

    /// Publishes one of tocsin's own records (`body`, JSON, with id
    /// `message_id`) to `queue`, persistent, with optional dead-letter
    /// headers (`(code, text)`).
    ///
    /// # Errors
    /// [`PublishError`] when the broker did not take it.
    pub(crate) async fn publish_record(
        &self,
        queue: &str,
        message_id: &str,
        body: &[u8],
        reason: Option<(&str, &str)>,
    ) -> Result<(), PublishError> {
        let mut headers = FieldTable::default();
        if let Some((code, text)) = reason {
            insert_reason(&mut headers, code, text);
        }
        let properties = BasicProperties::default()
            .with_content_type("application/json".into())
            .with_content_encoding("utf-8".into())
            .with_delivery_mode(2)
            .with_message_id(message_id.into())
            .with_type(RECORD_TYPE.into())
            .with_headers(headers);
        self.publish("", queue, body, properties).await
    }

    /// Dead-letters a received message as it came (body and properties),
    /// with the reason and where it was received in headers.
    ///
    /// # Errors
    /// [`PublishError`] when the broker did not take it.
    pub(crate) async fn dead_letter_message(
        &self,
        queue: &str,
        message: &Delivery,
        code: &str,
        reason: &str,
    ) -> Result<(), PublishError> {
        let mut headers = message.properties.headers().clone().unwrap_or_default();
        insert_reason(&mut headers, code, reason);
        headers.insert(EXCHANGE_HEADER.into(), long_string(message.exchange.as_str()));
        headers.insert(ROUTING_KEY_HEADER.into(), long_string(message.routing_key.as_str()));
        let properties = message.properties.clone().with_delivery_mode(2).with_headers(headers);
        self.publish("", queue, &message.data, properties).await
    }
}

fn insert_reason(headers: &mut FieldTable, code: &str, text: &str) {
    headers.insert(REASON_HEADER.into(), long_string(text));
    headers.insert(REASON_CODE_HEADER.into(), long_string(code));
    headers.insert(DEAD_AT_HEADER.into(), AMQPValue::LongLongInt(jiff::Timestamp::now().as_millisecond()));
}

fn long_string(text: &str) -> AMQPValue {
    AMQPValue::LongString(LongString::from(text))
}

/// The text of header `key`, if it is a string.
pub fn header_text(headers: Option<&FieldTable>, key: &str) -> Option<String> {
    match headers?.inner().get(&ShortString::from(key))? {
        AMQPValue::LongString(text) => Some(text.to_string()),
        AMQPValue::ShortString(text) => Some(text.to_string()),
        _ => None,
    }
}
