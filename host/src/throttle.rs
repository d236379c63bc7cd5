//! A rate and a bounded number of places per key (a caller): what the API
//! and the upload queue admit before doing any work for a request.
//!
//! Each admission takes a token of its key's rate (governor's GCRA: so many
//! a minute, so many at once) and a place, held until its [`Permit`] is
//! dropped; at most so many places are held in all, and at most so many by
//! one key. Past any of these the answer is a [`Refusal`] at once, so that
//! one caller's storm neither queues without bound nor keeps another
//! caller out. Keys are callers (the operator, tenants), a set the
//! configuration bounds.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use governor::clock::{Clock as _, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota};

/// How often one key is admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    /// Admissions a minute (at least 1).
    pub per_minute: u32,
    /// Admissions at once before the rate applies (at least 1).
    pub burst: u32,
}

/// How much a [`Throttle`] admits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ThrottleLimits {
    /// Each key's rate; none: as often as places free.
    pub rate: Option<Rate>,
    /// Places held at once, all keys together (at least 1).
    pub places: usize,
    /// Places one key may hold at once (at least 1).
    pub places_per_key: usize,
}

/// Why an admission was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The key's rate is spent: its next token comes after this long.
    Rate {
        /// When to try again.
        retry_after: Duration,
    },
    /// Every place is held.
    Full {
        /// How many are held.
        held: usize,
    },
    /// The key holds all the places it may.
    KeyFull {
        /// How many it holds.
        held: usize,
    },
}

/// The rates and places of one host.
#[derive(Debug)]
pub struct Throttle {
    rate: Option<DefaultKeyedRateLimiter<String>>,
    clock: DefaultClock,
    held: Mutex<HashMap<String, usize>>,
    places: usize,
    places_per_key: usize,
}

/// An admission: its place held until it is dropped.
#[derive(Debug)]
pub struct Permit<'a> {
    throttle: &'a Throttle,
    key: String,
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        let mut held = self.throttle.held();
        if let Some(count) = held.get_mut(&self.key) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                held.remove(&self.key);
            }
        }
    }
}

impl Throttle {
    /// A throttle admitting `limits`.
    pub fn new(limits: ThrottleLimits) -> Self {
        let nonzero = |value: u32| NonZeroU32::new(value).unwrap_or(NonZeroU32::MIN);
        let quota = |rate: Rate| {
            let per_minute = u64::from(nonzero(rate.per_minute).get());
            Quota::with_period(Duration::from_millis(60_000 / per_minute).max(Duration::from_millis(1)))
                .unwrap_or_else(|| Quota::per_minute(NonZeroU32::MIN))
                .allow_burst(nonzero(rate.burst))
        };
        Throttle {
            rate: limits.rate.map(|rate| DefaultKeyedRateLimiter::hashmap(quota(rate))),
            clock: DefaultClock::default(),
            held: Mutex::default(),
            places: limits.places.max(1),
            places_per_key: limits.places_per_key.max(1),
        }
    }

    /// Takes a token of `key`'s rate, then a place.
    ///
    /// # Errors
    /// [`Refusal`]: the rate is spent, or no place is free.
    pub fn admit(&self, key: &str) -> Result<Permit<'_>, Refusal> {
        let key = key.to_owned();
        if let Some(rate) = &self.rate {
            rate.check_key(&key).map_err(|not_until| Refusal::Rate {
                retry_after: not_until.wait_time_from(self.clock.now()),
            })?;
        }
        let mut held = self.held();
        let total: usize = held.values().sum();
        if total >= self.places {
            return Err(Refusal::Full { held: total });
        }
        let mine = held.entry(key.clone()).or_default();
        if *mine >= self.places_per_key {
            return Err(Refusal::KeyFull { held: *mine });
        }
        *mine += 1;
        Ok(Permit { throttle: self, key })
    }

    fn held(&self) -> MutexGuard<'_, HashMap<String, usize>> {
        self.held.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_gets_its_burst_then_waits_and_holds_at_most_its_places() {
        let rate = Some(Rate { per_minute: 1, burst: 3 });
        let throttle = Throttle::new(ThrottleLimits { rate, places: 3, places_per_key: 2 });
        let first = throttle.admit("a").unwrap();
        let second = throttle.admit("a").unwrap();
        assert_eq!(throttle.admit("a").unwrap_err(), Refusal::KeyFull { held: 2 });
        let other = throttle.admit("b").unwrap();
        assert_eq!(throttle.admit("c").unwrap_err(), Refusal::Full { held: 3 });
        drop((first, second, other));
        match throttle.admit("a").unwrap_err() {
            Refusal::Rate { retry_after } => {
                assert!(retry_after > Duration::from_secs(50), "{retry_after:?}")
            }
            refusal => panic!("the burst of 3 is spent: {refusal:?}"),
        }
        assert!(throttle.admit("b").is_ok(), "another key's rate is its own");
    }
}
