//! What one store holds: the WASI context, the capabilities' per-call
//! state, and the memory limiter. Built fresh for every call and dropped
//! after it, so nothing leaks between alarms or tenants.

use wasmtime::component::ResourceTable;
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use crate::capabilities::http::CallHttp;
use crate::capabilities::log::CallLog;
use crate::sandbox::limits::MemoryLimiter;

/// Bytes of guest stdout/stderr kept per call (a panic message fits).
const OUTPUT_PIPE_BYTES: usize = 16 << 10;

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
    pub stdout: MemoryOutputPipe,
    /// Guest stderr (panic messages), forwarded to the log after the call.
    pub stderr: MemoryOutputPipe,
}

impl StoreState {
    /// State for one call.
    pub fn new(limiter: MemoryLimiter, log: CallLog, http: CallHttp) -> Self {
        let stdout = MemoryOutputPipe::new(OUTPUT_PIPE_BYTES);
        let stderr = MemoryOutputPipe::new(OUTPUT_PIPE_BYTES);
        let wasi = WasiCtx::builder().stdout(stdout.clone()).stderr(stderr.clone()).build();
        StoreState { wasi, table: ResourceTable::new(), limiter, log, http, stdout, stderr }
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
