//! The delivery policy: what one delivery is, when a failed one is tried
//! again, and what tocsin remembers to skip repeats and stale retries.
//!
//! A [`DeliveryRecord`] is one action of one alarm message. It travels as
//! the body of tocsin's own messages: a retry waits in a fixed-delay tier
//! queue that dead-letters back to the work queue; a delivery that failed
//! for good lands in the dead-letter queue with its reason.

pub mod memory;
pub mod policy;

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tocsin_contract::json::to_python_json;
use tocsin_core::alarm::{Alarm, Delivery};

/// The delivery policy and tocsin's own queues (always durable).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DeliveryConfig {
    /// Prefix of tocsin's queues: `<prefix>.deliveries` (work queue),
    /// `<prefix>.retry.<delay>` (tiers), `<prefix>.dead-letters`.
    pub queue_prefix: String,
    /// Delays of the retry tiers, in ms, ascending: a retry waits in the
    /// smallest tier at least as long as its backoff.
    pub retry_tiers_ms: Vec<u64>,
    /// Backoff before the second attempt, in ms; it doubles per attempt
    /// (full jitter) up to the largest tier.
    pub backoff_initial_ms: u64,
    /// Longest retry-after hint honoured, in ms.
    pub retry_after_max_ms: u64,
    /// Attempts of one delivery, the first included, before it is
    /// dead-lettered.
    pub max_attempts: u32,
    /// Time after the first attempt past which no retry is scheduled, in ms.
    pub horizon_ms: u64,
    /// Times this host requeues a message whose retry or dead letter the
    /// broker did not confirm (each after a backoff from
    /// `backoff_initial_ms`, doubling, at most 10 s). The next time it
    /// comes back, what is left of it is dead-lettered
    /// (`too-many-redeliveries`).
    pub max_redeliveries: u32,
    /// (alarm, action) pairs remembered to drop retries superseded by a
    /// newer state change.
    pub supersede_window: usize,
}

impl Default for DeliveryConfig {
    fn default() -> Self {
        DeliveryConfig {
            queue_prefix: "tocsin".into(),
            retry_tiers_ms: vec![1_000, 5_000, 30_000, 120_000, 600_000, 3_600_000],
            backoff_initial_ms: 1_000,
            retry_after_max_ms: 3_600_000,
            max_attempts: 10,
            horizon_ms: 24 * 3_600_000,
            max_redeliveries: 5,
            supersede_window: 65_536,
        }
    }
}

impl DeliveryConfig {
    /// Checks the section's own rules.
    ///
    /// # Errors
    /// What is wrong, naming the option.
    pub fn validate(&self) -> Result<(), String> {
        let tiers = &self.retry_tiers_ms;
        if tiers.is_empty() || tiers[0] == 0 || tiers.windows(2).any(|pair| pair[0] >= pair[1]) {
            return Err(format!(
                "delivery.retry_tiers_ms ({tiers:?}) must be non-empty, above 0 and ascending"
            ));
        }
        if self.max_attempts == 0 {
            return Err("delivery.max_attempts must be at least 1".into());
        }
        if self.queue_prefix.is_empty() || self.queue_prefix.starts_with("amq.") {
            return Err("delivery.queue_prefix must be non-empty and not start with amq.".into());
        }
        Ok(())
    }
}

/// Version of the record format, checked when a record is read back. 2:
/// the alarm's `reason_data` is a string of its JSON text (it was the
/// JSON value in 1, which [`DeliveryRecord::from_bytes`] still reads).
pub(crate) const RECORD_VERSION: u32 = 2;

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
    /// The alarm: one for all the deliveries of a message, shared.
    pub alarm: Arc<Alarm>,
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
        alarm: Arc<Alarm>,
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

    /// Reads a record back, of this version or the one before.
    ///
    /// # Errors
    /// The text of the JSON or version error.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, String> {
        #[derive(Deserialize)]
        struct Version {
            version: u32,
        }
        let Version { version } = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
        match version {
            RECORD_VERSION => serde_json::from_slice(bytes).map_err(|e| e.to_string()),
            1 => {
                // Version 1 wrote `reason_data` as the value; what it handed
                // the plugins was that value in `json.dumps` form.
                let mut record: serde_json::Map<String, serde_json::Value> =
                    serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
                if let Some(data) = record.get_mut("alarm").and_then(|alarm| alarm.get_mut("reason_data"))
                    && !data.is_null()
                {
                    *data = String::from_utf8(to_python_json(data)).unwrap_or_default().into();
                }
                record.insert("version".into(), RECORD_VERSION.into());
                serde_json::from_value(record.into()).map_err(|e| e.to_string())
            }
            other => Err(format!("unsupported delivery record version {other}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_keep_their_delivery_id() {
        let alarm = Alarm::from_json(
            r#"{"alarm_id":"a","previous":"ok","current":"alarm","reason":"r","reason_data":[NaN, 1e400]}"#,
        )
        .unwrap();
        let record = DeliveryRecord::first("m1", 2, "log://".into(), alarm.into(), 5, 7);
        assert_eq!(record.delivery_id, "m1.2");
        let back = DeliveryRecord::from_bytes(&record.to_bytes()).unwrap();
        assert_eq!(back, record);
        assert_eq!(back.delivery(None).id, "m1.2");
        let mut future = serde_json::to_value(&record).unwrap();
        future["version"] = 9.into();
        let error = DeliveryRecord::from_bytes(&serde_json::to_vec(&future).unwrap()).unwrap_err();
        assert!(error.contains("version 9"), "{error}");
        assert!(DeliveryRecord::from_bytes(b"{}").is_err());
        let text = String::from_utf8(record.to_bytes()).unwrap();
        assert!(text.contains(r#""reason_data":"[NaN, Infinity]""#), "{text}");
    }

    #[test]
    fn version_1_records_are_still_read() {
        let old = br#"{"version":1,"delivery_id":"m1.0","message_id":"m1","action_index":0,"action":"log://",
            "alarm":{"alarm_id":"a","alarm_name":null,"severity":null,"previous":"ok","current":"alarm","reason":"r",
            "reason_data":{"type":"threshold","most_recent":97.0,"s":"\u00e9"}},
            "attempt":2,"first_attempt_ms":7,"changed_at_us":5,"last_error":"503"}"#;
        let record = DeliveryRecord::from_bytes(old).unwrap();
        assert_eq!(
            (record.version, record.attempt, record.last_error.as_deref()),
            (RECORD_VERSION, 2, Some("503"))
        );
        let data = record.alarm.reason_data.as_ref().unwrap();
        assert_eq!(data.as_str(), r#"{"type": "threshold", "most_recent": 97.0, "s": "\u00e9"}"#);
        let none = String::from_utf8(old.to_vec())
            .unwrap()
            .replace(r#"{"type":"threshold","most_recent":97.0,"s":"\u00e9"}"#, "null");
        assert_eq!(DeliveryRecord::from_bytes(none.as_bytes()).unwrap().alarm.reason_data, None);
        for odd in [&b"[1]"[..], b"[2]", br#"{"version": 1, "alarm": 5}"#] {
            assert!(DeliveryRecord::from_bytes(odd).is_err(), "{}", String::from_utf8_lossy(odd));
        }
    }
}
