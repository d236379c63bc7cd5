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

use tocsin_core::tenancy::Caller;

use super::{CatalogError, UploadsConfig};
use crate::throttle::{Permit, Rate, Refusal, Throttle, ThrottleLimits};

/// The rate and the queue of uploads of one host.
#[derive(Debug)]
pub(super) struct Admission {
    throttle: Throttle,
}

/// An upload admitted: its caller's token taken, its place in the queue
/// held until it is dropped (the upload answered or abandoned).
pub type UploadPermit<'a> = Permit<'a>;

impl Admission {
    /// The rate and queue `uploads` sets.
    pub(super) fn new(uploads: &UploadsConfig) -> Self {
        Admission {
            throttle: Throttle::new(ThrottleLimits {
                rate: Some(Rate { per_minute: uploads.uploads_per_minute, burst: uploads.upload_burst }),
                places: uploads.compile_queue,
                places_per_key: uploads.tenant_compile_queue,
            }),
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
        self.throttle.admit(caller.tenant().unwrap_or_default()).map_err(|refusal| match refusal {
            Refusal::Rate { retry_after } => CatalogError::RateLimited { retry_after },
            Refusal::Full { held } => CatalogError::Busy(format!(
                "{held} uploads are compiling or waiting to (uploads.compile_queue); try again shortly"
            )),
            Refusal::KeyFull { held } => CatalogError::Busy(format!(
                "{held} of your uploads are compiling or waiting to (uploads.tenant_compile_queue); \
                 try again when one is answered"
            )),
        })
    }
}
