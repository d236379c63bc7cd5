//! The only host functions a plugin can reach: `log`, `http`, and the
//! WASI interfaces standard libraries need, served from an empty context.
//!
//! A capability is a module here with three parts: what it keeps for the
//! whole process (built once, in [`Capabilities::new`]), its state in one
//! call (made by [`Capabilities::start_call`], kept in [`CallStates`]), and
//! an `add_to_linker` that links its host functions for any store whose
//! data is a [`CapabilityView`]. The sandbox never names a capability: it
//! links [`add_to_linker`], keeps the [`CallStates`] in its store and
//! reads the [`CallReport`] after the call. Adding a capability touches its
//! own module and this one.

pub mod egress;
pub mod http;
pub mod log;
mod refusals;
pub mod secrets;
pub mod signing;
pub mod wasi;

use std::sync::Arc;
use std::time::Instant;

use tocsin_core::limits::{Limit, Limits};
use wasmtime::component::Linker;

use self::egress::{EgressConfig, EgressPolicy, NameLookup};
use self::http::{CallHttp, HttpCapability, HttpConfig, HttpGrants, HttpSetupError};
use self::log::{CallIdentity, CallLog, LogBuffer, LogLine};
use self::wasi::CallWasi;

/// The `tocsin:notifier` interfaces the capabilities serve: a component
/// may import these and the allowed WASI packages
/// ([`wasi::ALLOWED_WASI_PACKAGES`]), nothing else.
pub(crate) const CONTRACT_IMPORTS: &[&str] = &["types", log::INTERFACE, http::INTERFACE];

/// What every capability keeps for the whole process.
#[derive(Debug)]
pub struct Capabilities {
    http: Arc<HttpCapability>,
}

/// What a capability is told of the call it serves.
#[derive(Debug)]
pub(crate) struct CallContext<'a> {
    /// Whose call it is: the fields every plugin log line carries.
    pub identity: CallIdentity,
    /// The plugin's log lines across calls, for its owner to read.
    pub log_buffer: &'a Arc<LogBuffer>,
    /// What the plugin may reach over HTTP besides its action's host.
    pub grants: &'a Arc<HttpGrants>,
    /// The plugin's WASI environment (empty but for built-in notifiers).
    pub environment: &'a [(String, String)],
    /// The action URL being delivered to.
    pub action: &'a str,
    /// The delivery's id.
    pub delivery_id: &'a str,
    /// The call's limits.
    pub limits: &'a Limits,
    /// When the call must have ended.
    pub deadline: Instant,
}

/// The state of every capability in one call: made fresh for it and
/// dropped after it, so nothing leaks between alarms or tenants.
#[derive(Debug)]
pub(crate) struct CallStates {
    /// The WASI context (empty) and the guest's captured output.
    pub wasi: CallWasi,
    /// The `log` capability's state.
    pub log: CallLog,
    /// The `http` capability's state.
    pub http: CallHttp,
}

/// What the capabilities saw a call do, for its report.
#[derive(Debug, Default)]
pub(crate) struct CallReport {
    /// Lines the plugin logged (its stdout and stderr included).
    pub logs: Vec<LogLine>,
    /// Lines dropped by the log caps.
    pub log_dropped: u64,
    /// Lines truncated by the log caps.
    pub log_truncated: u64,
    /// HTTP requests the plugin asked for.
    pub http_requests: u32,
    /// Limits hit without stopping the call.
    pub limits_hit: Vec<Limit>,
}

/// A store's data that holds the capabilities' call states.
pub(crate) trait CapabilityView: Send {
    /// The states of the call this store serves.
    fn calls(&mut self) -> &mut CallStates;
}

/// Links every capability into `linker`.
///
/// # Errors
/// Only if an interface is linked twice: a bug.
pub(crate) fn add_to_linker<T: CapabilityView + wasmtime_wasi::WasiView + 'static>(
    linker: &mut Linker<T>,
) -> wasmtime::Result<()> {
    wasi::add_to_linker(linker)?;
    log::add_to_linker(linker, |data: &mut T| &mut data.calls().log)?;
    http::add_to_linker(linker, |data: &mut T| &mut data.calls().http)?;
    Ok(())
}

impl Capabilities {
    /// The process-wide state: the HTTP client pools and the egress policy
    /// (plugins' host names looked up with `lookup`).
    ///
    /// # Errors
    /// [`HttpSetupError`] when the operator's TLS files are unreadable or
    /// invalid.
    pub fn new(
        http: &HttpConfig,
        egress: &EgressConfig,
        lookup: Arc<dyn NameLookup>,
    ) -> Result<Self, HttpSetupError> {
        let policy = Arc::new(
            EgressPolicy::new(egress.allow_networks.clone(), egress.trusted_hosts.iter().cloned())
                .report_only(egress.report_only),
        );
        Ok(Capabilities { http: Arc::new(HttpCapability::new(http, policy, lookup)?) })
    }

    /// Builds ahead of the first alarm what the first call would otherwise
    /// wait for (the HTTP clients): blocking, for the blocking pool.
    pub(crate) fn prepare(&self) {
        self.http.prepare();
    }

    /// The capabilities' state for one call.
    pub(crate) fn start_call(&self, call: CallContext<'_>) -> CallStates {
        CallStates {
            wasi: CallWasi::new(call.environment),
            http: CallHttp::new(
                call.identity.clone(),
                Arc::clone(&self.http),
                Arc::clone(call.grants),
                call.action,
                call.delivery_id,
                call.limits,
                call.deadline,
            ),
            log: CallLog::new(call.identity, Arc::clone(call.log_buffer), call.limits),
        }
    }
}

impl CallStates {
    /// Ends the call: the guest's captured output goes to its log, and
    /// what each capability saw goes to the report.
    pub fn finish(mut self) -> CallReport {
        self.wasi.forward_output(&mut self.log);
        let mut report = CallReport::default();
        self.http.finish(&mut report);
        self.log.finish(&mut report);
        report
    }
}
