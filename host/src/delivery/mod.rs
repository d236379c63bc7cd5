//! The delivery policy: what one delivery is, when a failed one is tried
//! again, and what tocsin remembers to skip repeats and stale retries.
//!
//! A [`DeliveryRecord`] is one action of one alarm message. It travels as
//! the body of tocsin's own messages: a retry waits in a fixed-delay tier
//! queue that dead-letters back to the work queue; a delivery that failed
//! for good lands in the dead-letter queue with its reason.

pub mod memory;
pub mod policy;

use serde::{Deserialize, Serialize};

use crate::alarm::{Alarm, Delivery};

/// Version of the record format, checked when a record is read back.
pub const RECORD_VERSION: u32 = 1;

/// One action of one alarm message, as carried through retries.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeliveryRecord {
    /// [`RECORD_VERSION`].
    pub version: u32,
    /// `<message id>.<action index>`: the same for every attempt and
    /// redelivery, given to the plugin as `delivery.id`.
    pub delivery_id: String,
    /// The id of the OpenStack message the delivery comes from.
    pub message_id: String,
    /// Index of the action in the alarm's list.
    pub action_index: u32,
    /// The action URL.
    pub action: String,
    /// The alarm.
    pub alarm: Alarm,
    /// The attempt this record is for, 1 for the first.
    pub attempt: u32,
    /// When the first attempt started, ms since the Unix epoch.
    pub first_attempt_ms: i64,
    /// When the alarm changed state (the evaluator's timestamp, else when
    /// tocsin first received it), µs since the Unix epoch: a retry of an
    /// older change is superseded by a newer one.
    pub changed_at_us: i64,
    /// Why the previous attempt failed.
    #[serde(default)]
    pub last_error: Option<String>,
}

impl DeliveryRecord {
    /// The first attempt of action `index` of message `message_id`.
    pub fn first(
        message_id: &str,
        index: usize,
        action: String,
        alarm: Alarm,
        changed_at_us: i64,
        now_ms: i64,
    ) -> Self {
        DeliveryRecord {
            version: RECORD_VERSION,
            delivery_id: format!("{message_id}.{index}"),
            message_id: message_id.to_owned(),
            action_index: u32::try_from(index).unwrap_or(u32::MAX),
            action,
            alarm,
            attempt: 1,
            first_attempt_ms: now_ms,
            changed_at_us,
            last_error: None,
        }
    }

    /// The [`Delivery`] handed to the plugin for this attempt.
    pub fn delivery(&self, tenant: Option<String>) -> Delivery {
        Delivery { id: self.delivery_id.clone(), attempt: self.attempt, tenant }
    }

    /// The record's JSON body.
    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Reads a record back.
    ///
    /// # Errors
    /// The text of the JSON or version error.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, String> {
        let record: DeliveryRecord = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
        if record.version != RECORD_VERSION {
            return Err(format!("unsupported delivery record version {}", record.version));
        }
        Ok(record)
    }
}

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> i64 {
    jiff::Timestamp::now().as_millisecond()
}

/// Microseconds since the Unix epoch, now.
pub fn now_us() -> i64 {
    jiff::Timestamp::now().as_microsecond()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_keep_their_delivery_id() {
        let alarm: Alarm =
            serde_json::from_str(r#"{"alarm_id":"a","previous":"ok","current":"alarm","reason":"r"}"#)
                .unwrap();
        let record = DeliveryRecord::first("m1", 2, "log://".into(), alarm, 5, 7);
        assert_eq!(record.delivery_id, "m1.2");
        let back = DeliveryRecord::from_bytes(&record.to_bytes()).unwrap();
        assert_eq!(back, record);
        assert_eq!(back.delivery(None).id, "m1.2");
        let mut future = serde_json::to_value(&record).unwrap();
        future["version"] = 9.into();
        let error = DeliveryRecord::from_bytes(&serde_json::to_vec(&future).unwrap()).unwrap_err();
        assert!(error.contains("version 9"), "{error}");
        assert!(DeliveryRecord::from_bytes(b"{}").is_err());
    }
}
