//! What one store holds: the capabilities' state for the call and the
//! memory limiter. Built fresh for every call and dropped after it, so
//! nothing leaks between alarms or tenants.

use wasmtime_wasi::{WasiCtxView, WasiView};

use crate::capabilities::{CallStates, CapabilityView};
use crate::sandbox::limiter::MemoryLimiter;

/// Data of one store.
#[derive(Debug)]
pub(crate) struct StoreState {
    /// Enforces the memory limit and reports hitting it.
    pub limiter: MemoryLimiter,
    /// The capabilities' state in this call.
    pub calls: CallStates,
}

impl CapabilityView for StoreState {
    fn calls(&mut self) -> &mut CallStates {
        &mut self.calls
    }
}

impl WasiView for StoreState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        self.calls.wasi.view()
    }
}
