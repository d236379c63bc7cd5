//! What one store holds: the WASI context, the capabilities' per-call
//! state, and the memory limiter. Built fresh for every call and dropped
//! after it, so nothing leaks between alarms or tenants.

use tocsin_core::caps::{MAX_OUTPUT_BYTES, MAX_RANDOM_BYTES, MAX_RESOURCES};
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use crate::capabilities::http::CallHttp;
use crate::capabilities::log::CallLog;
use crate::capabilities::wasi::CapturedOutput;
use crate::sandbox::limiter::MemoryLimiter;

/// Data of one store.
pub struct StoreState {
    /// Empty WASI context: no env, args or preopens; stdin closed.
    wasi: WasiCtx,
    /// WASI resources (streams, pollables) of this call.
    table: ResourceTable,
    /// Enforces the memory limit and reports hitting it.
    pub limiter: MemoryLimiter,
    /// The `log` capability's state.
    pub log: CallLog,
    /// The `http` capability's state.
    pub http: CallHttp,
    /// Guest stdout, forwarded to the log after the call.
    pub stdout: CapturedOutput,
    /// Guest stderr (panic messages), forwarded to the log after the call.
    pub stderr: CapturedOutput,
}

impl StoreState {
    /// State for one call.
    pub fn new(limiter: MemoryLimiter, log: CallLog, http: CallHttp) -> Self {
        let stdout = CapturedOutput::new(MAX_OUTPUT_BYTES);
        let stderr = CapturedOutput::new(MAX_OUTPUT_BYTES);
        let wasi = WasiCtx::builder()
            .stdout(stdout.clone())
            .stderr(stderr.clone())
            .max_random_size(MAX_RANDOM_BYTES)
            .build();
        let mut table = ResourceTable::new();
        table.set_max_capacity(MAX_RESOURCES);
        StoreState { wasi, table, limiter, log, http, stdout, stderr }
    }
}

impl std::fmt::Debug for StoreState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreState").field("log", &self.log).field("http", &self.http).finish_non_exhaustive()
    }
}

impl WasiView for StoreState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView { ctx: &mut self.wasi, table: &mut self.table }
    }
}
