//! Who may upload now: a rate per caller, and a bounded queue of uploads
//! compiling or waiting to, of which one caller may hold only a share.
//!
//! An upload is where a tenant spends the host's CPU and memory before any
//! quota applies. Before its body is read, each attempt (refused later or
//! not) takes a token of its caller's rate
//! ([`UploadsConfig::uploads_per_minute`], with
//! [`UploadsConfig::upload_burst`] at once) and a place in the queue
//! ([`UploadsConfig::compile_queue`], at most
//! [`UploadsConfig::tenant_compile_queue`] a caller) until it is answered:
//! at most that many bodies are held, and compiled, at once.
//! Past either, the API answers 429 at once, so a storm from one tenant
//! neither queues without bound nor keeps another tenant's upload out.
//! The change feed and start-up loads do not pass here: they load what
//! was already accepted.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::Mutex;
use std::time::Duration;

use governor::clock::{Clock as _, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota};
use tocsin_core::tenancy::Caller;

use super::{CatalogError, UploadsConfig};

/// The rate and the queue of uploads of one host.
#[derive(Debug)]
pub(super) struct Admission {
    rate: DefaultKeyedRateLimiter<String>,
    clock: DefaultClock,
    queue: Mutex<HashMap<String, usize>>,
    queue_max: usize,
    caller_max: usize,
}

/// An upload admitted: its caller's token taken, its place in the queue
/// held until it is dropped (the upload answered or abandoned).
#[derive(Debug)]
pub struct UploadPermit<'a> {
    admission: &'a Admission,
    caller: String,
}

impl Drop for UploadPermit<'_> {
    fn drop(&mut self) {
        let mut queue = self.admission.places();
        if let Some(held) = queue.get_mut(&self.caller) {
            *held = held.saturating_sub(1);
            if *held == 0 {
                queue.remove(&self.caller);
            }
        }
    }
}

impl Admission {
    /// The rate and queue `uploads` sets.
    pub(super) fn new(uploads: &UploadsConfig) -> Self {
        let nonzero = |value: u32| NonZeroU32::new(value).unwrap_or(NonZeroU32::MIN);
        let per_minute = u64::from(nonzero(uploads.uploads_per_minute).get());
        let quota =
            Quota::with_period(Duration::from_millis(60_000 / per_minute).max(Duration::from_millis(1)))
                .unwrap_or_else(|| Quota::per_minute(NonZeroU32::MIN))
                .allow_burst(nonzero(uploads.upload_burst));
        Admission {
            rate: DefaultKeyedRateLimiter::hashmap(quota),
            clock: DefaultClock::default(),
            queue: Mutex::default(),
            queue_max: uploads.compile_queue.max(1),
            caller_max: uploads.tenant_compile_queue.max(1),
        }
    }

    /// Takes a token of `caller`'s rate, then a place in the queue.
    ///
    /// # Errors
    /// [`CatalogError::RateLimited`] with when to try again;
    /// [`CatalogError::Busy`]: the queue, or the caller's share of it, is
    /// full.
    pub(super) fn admit(&self, caller: &Caller) -> Result<UploadPermit<'_>, CatalogError> {
        // The operator's key is empty: no tenant is named so.
        let caller = caller.tenant().unwrap_or_default().to_owned();
        self.rate.check_key(&caller).map_err(|not_until| CatalogError::RateLimited {
            retry_after: not_until.wait_time_from(self.clock.now()),
        })?;
        let mut queue = self.places();
        let total: usize = queue.values().sum();
        if total >= self.queue_max {
            return Err(CatalogError::Busy(format!(
                "{total} uploads are compiling or waiting to (uploads.compile_queue); try again shortly"
            )));
        }
        let held = queue.entry(caller.clone()).or_default();
        if *held >= self.caller_max {
            return Err(CatalogError::Busy(format!(
                "{held} of your uploads are compiling or waiting to (uploads.tenant_compile_queue); \
                 try again when one is answered"
            )));
        }
        *held += 1;
        Ok(UploadPermit { admission: self, caller })
    }

    fn places(&self) -> std::sync::MutexGuard<'_, HashMap<String, usize>> {
        self.queue.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}
