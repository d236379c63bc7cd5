//! The one dependency of a tocsin notifier plugin.
//!
//! A notifier is a WebAssembly component that receives one alarm state
//! change for one action URL and delivers it, using only the two
//! capabilities the host grants: [`log`] and [`http`]. This crate hides the
//! generated bindings and offers:
//!
//! - the types of the contract: [`Alarm`], [`Delivery`], [`NotifyError`];
//! - [`log`]: one function per level;
//! - [`http`]: a request builder with a JSON helper;
//! - [`json`]: JSON as Python's `json` reads and writes it (`reason_data`
//!   may hold `NaN`: [`Alarm::reason_data_value`] reads it);
//! - [`status::classify`]: the HTTP status table that decides whether a
//!   failed delivery is worth retrying;
//! - [`action`]: Aodh-compatible handling of action URLs (query options,
//!   user info, and how a log line shows one: [`log::shown_action`]);
//! - [`export_notifier!`]: the macro that exports your type.
//!
//! ```ignore
//! use tocsin_guest_sdk::{Alarm, Delivery, Notifier, NotifyError, export_notifier, log};
//!
//! struct Hello;
//!
//! impl Notifier for Hello {
//!     fn notify(action: String, alarm: Alarm, _delivery: Delivery) -> Result<(), NotifyError> {
//!         log::info(format!("alarm {} is now {} ({action})", alarm.alarm_id, alarm.current));
//!         Ok(())
//!     }
//! }
//!
//! export_notifier!(Hello);
//! ```
#![deny(missing_docs)]

pub mod http;
pub mod log;
pub mod status;

pub use tocsin_contract::{action, json};

/// Generated bindings of the `tocsin:notifier` world. Use the re-exports
/// at the crate root instead; this module's shape follows the WIT files.
#[doc(hidden)]
#[allow(missing_docs, missing_debug_implementations, clippy::all)]
pub mod bindings {
    wit_bindgen::generate!({
        path: "../wit",
        world: "notifier",
        pub_export_macro: true,
        export_macro_name: "export_notifier_bindings",
        default_bindings_module: "tocsin_guest_sdk::bindings",
    });
}

pub use bindings::exports::tocsin::notifier::handler::Guest as Notifier;
pub use bindings::tocsin::notifier::types::{Alarm, Delivery, NotifyError, Retry};

/// Exports your type as the component's notifier: `export_notifier!(MyType);`
/// where `MyType` implements [`Notifier`]. Call it once per plugin crate.
///
/// The export exists only when building for WebAssembly: a native build of
/// the same crate (to run its unit tests, say) carries no exports.
#[macro_export]
macro_rules! export_notifier {
    ($ty:ident) => {
        #[cfg(target_arch = "wasm32")]
        $crate::bindings::export_notifier_bindings!($ty);
        // Natively, still check that the type is a notifier (and use it).
        #[cfg(not(target_arch = "wasm32"))]
        const _: fn(String, $crate::Alarm, $crate::Delivery) -> Result<(), $crate::NotifyError> =
            <$ty as $crate::Notifier>::notify;
    };
}

impl Alarm {
    /// `reason_data` as a tree, read as Python's `json` reads it (see
    /// [`json::to_value`]: `NaN`, `Infinity` and `-Infinity` are `null`).
    /// The exact text is `alarm.reason_data`; none when the alarm has none.
    pub fn reason_data_value(&self) -> Option<Result<serde_json::Value, json::PythonJsonError>> {
        self.reason_data.as_deref().map(json::to_value)
    }
}

impl NotifyError {
    /// A failure a retry may fix, with an optional hint of when to retry.
    pub fn retryable(reason: impl Into<String>, retry_after: Option<std::time::Duration>) -> Self {
        NotifyError::Retryable(Retry {
            retry_after_ms: retry_after.map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
            reason: reason.into(),
        })
    }

    /// A failure a retry cannot fix.
    pub fn permanent(reason: impl Into<String>) -> Self {
        NotifyError::Permanent(reason.into())
    }
}
