//! Per-call limits of a plugin, and the store limiter that enforces the
//! memory one.
//!
//! Every limit has a default (in [`Limits::default`]) and a per-plugin
//! override ([`LimitOverrides`]). Hitting one ends the call with
//! [`crate::sandbox::CallError::Limit`] naming it; the host and other calls
//! are unaffected.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use wasmtime::ResourceLimiter;

/// The limits of one call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Linear memory of the instance, in bytes. Growing past it traps.
    pub memory_bytes: u64,
    /// Fuel: guest instructions, roughly, or the call's CPU time at 2,000
    /// a µs when that is more (see `sandbox::cpu_time`); waiting on I/O
    /// costs none. A notification takes thousands.
    pub fuel: u64,
    /// Wall-clock deadline of the whole call, host calls included, in ms.
    /// Above the HTTP attempt timeout so that a slow webhook fails as a
    /// timeout the plugin can report, not as a killed call.
    pub deadline_ms: u64,
    /// Log lines kept per call; further lines are dropped and counted.
    pub log_lines: u32,
    /// Log bytes kept per call; further lines are dropped and counted.
    pub log_bytes: u64,
    /// Longest log line, in bytes; longer lines are truncated and counted.
    pub log_line_bytes: u32,
    /// HTTP requests per call; further requests get `limit-exceeded`.
    pub http_requests: u32,
    /// Largest HTTP request body, in bytes.
    pub http_request_body_bytes: u64,
    /// Largest HTTP response body, in bytes; the host stops reading past it.
    pub http_response_body_bytes: u64,
    /// Most bytes a plugin passes in one host call: a log line with its
    /// fields, an HTTP request with its URL, headers and body, a write to
    /// stdout. Checked before the host copies any of it, since a copy
    /// cannot be interrupted: a 24 MiB log line held a CPU for ~10 ms of
    /// copying and UTF-8 checks. Checked as each argument is lifted, and on
    /// the reason `notify` returns. At least `http_request_body_bytes` plus
    /// [`HOST_CALL_MARGIN_BYTES`].
    pub host_call_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            memory_bytes: 32 << 20,
            fuel: 200_000_000,
            deadline_ms: 30_000,
            log_lines: 100,
            log_bytes: 64 << 10,
            log_line_bytes: 4 << 10,
            http_requests: 8,
            http_request_body_bytes: 1 << 20,
            http_response_body_bytes: 1 << 20,
            host_call_bytes: 2 << 20,
        }
    }
}

/// What an HTTP request carries in its host call besides its body (its URL,
/// and headers of at most 64 KiB): `host_call_bytes` leaves this much
/// above `http_request_body_bytes`, so that a body within its limit gets
/// `too-large` or goes out, never ends the call.
pub const HOST_CALL_MARGIN_BYTES: u64 = 256 << 10;

/// Per-plugin overrides: each set field replaces the default.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitOverrides {
    /// See [`Limits::memory_bytes`].
    pub memory_bytes: Option<u64>,
    /// See [`Limits::fuel`].
    pub fuel: Option<u64>,
    /// See [`Limits::deadline_ms`].
    pub deadline_ms: Option<u64>,
    /// See [`Limits::log_lines`].
    pub log_lines: Option<u32>,
    /// See [`Limits::log_bytes`].
    pub log_bytes: Option<u64>,
    /// See [`Limits::log_line_bytes`].
    pub log_line_bytes: Option<u32>,
    /// See [`Limits::http_requests`].
    pub http_requests: Option<u32>,
    /// See [`Limits::http_request_body_bytes`].
    pub http_request_body_bytes: Option<u64>,
    /// See [`Limits::http_response_body_bytes`].
    pub http_response_body_bytes: Option<u64>,
    /// See [`Limits::host_call_bytes`].
    pub host_call_bytes: Option<u64>,
}

impl Limits {
    /// These limits with `overrides` applied.
    pub fn with(&self, overrides: &LimitOverrides) -> Limits {
        Limits {
            memory_bytes: overrides.memory_bytes.unwrap_or(self.memory_bytes),
            fuel: overrides.fuel.unwrap_or(self.fuel),
            deadline_ms: overrides.deadline_ms.unwrap_or(self.deadline_ms),
            log_lines: overrides.log_lines.unwrap_or(self.log_lines),
            log_bytes: overrides.log_bytes.unwrap_or(self.log_bytes),
            log_line_bytes: overrides.log_line_bytes.unwrap_or(self.log_line_bytes),
            http_requests: overrides.http_requests.unwrap_or(self.http_requests),
            http_request_body_bytes: overrides
                .http_request_body_bytes
                .unwrap_or(self.http_request_body_bytes),
            http_response_body_bytes: overrides
                .http_response_body_bytes
                .unwrap_or(self.http_response_body_bytes),
            host_call_bytes: overrides.host_call_bytes.unwrap_or(self.host_call_bytes),
        }
    }

    /// The wall-clock deadline as a duration.
    pub fn deadline(&self) -> Duration {
        Duration::from_millis(self.deadline_ms)
    }
}

/// A limit a call can hit. Its name is what logs, metrics and the CLI show.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Limit {
    /// [`Limits::memory_bytes`].
    Memory,
    /// [`Limits::fuel`].
    Cpu,
    /// [`Limits::deadline_ms`].
    Deadline,
    /// The engine's WebAssembly stack (`sandbox.max_wasm_stack_bytes`).
    Stack,
    /// [`Limits::log_lines`], [`Limits::log_bytes`] or [`Limits::log_line_bytes`].
    Log,
    /// [`Limits::http_requests`].
    HttpRequests,
    /// [`Limits::http_request_body_bytes`].
    HttpRequestBody,
    /// [`Limits::http_response_body_bytes`].
    HttpResponseBody,
    /// [`Limits::host_call_bytes`].
    HostCall,
}

impl Limit {
    /// The limit's name, as in configuration and output.
    pub fn name(self) -> &'static str {
        match self {
            Limit::Memory => "memory",
            Limit::Cpu => "cpu",
            Limit::Deadline => "deadline",
            Limit::Stack => "stack",
            Limit::Log => "log",
            Limit::HttpRequests => "http_requests",
            Limit::HttpRequestBody => "http_request_body",
            Limit::HttpResponseBody => "http_response_body",
            Limit::HostCall => "host_call",
        }
    }

    /// Whether a call that hit this limit may succeed on a later attempt:
    /// only a deadline (the endpoint may be faster next time). Memory, CPU
    /// and stack exhaustion are properties of the plugin and the input.
    pub fn is_retryable(self) -> bool {
        matches!(self, Limit::Deadline)
    }
}

impl std::fmt::Display for Limit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The error a memory or table growth past the limit traps with; the
/// sandbox recognises it to report [`Limit::Memory`].
#[derive(Debug, thiserror::Error)]
#[error("{what} limit of {limit} exceeded (wanted {wanted} in all)")]
pub struct MemoryLimitExceeded {
    /// `linear memory bytes` or `table elements`.
    pub what: &'static str,
    /// The configured limit.
    pub limit: u64,
    /// The total the guest asked to grow to.
    pub wanted: u64,
}

/// The error a host call made past the call's deadline traps with: a guest
/// that keeps the host busy in synchronous host calls (which the async
/// timeout cannot interrupt) is stopped there. Reported as
/// [`Limit::Deadline`].
#[derive(Debug, thiserror::Error)]
#[error("the call ran past its deadline inside a host call")]
pub struct DeadlineExceeded;

/// Traps with [`DeadlineExceeded`] once `deadline` has passed.
///
/// # Errors
/// The trap, past the deadline.
pub fn check_deadline(deadline: std::time::Instant) -> wasmtime::Result<()> {
    if std::time::Instant::now() > deadline { Err(wasmtime::Error::new(DeadlineExceeded)) } else { Ok(()) }
}

/// Table elements a call may hold across all its tables: far above what
/// a compiled Rust or C program needs, far below what would hurt the host.
const MAX_TABLE_ELEMENTS: u64 = 100_000;

/// Most core instances, tables and memories one store may create. A Rust
/// `std` component has a handful of each; these match the pool's
/// per-component maxima (see `sandbox::engine_config`).
pub const MAX_CORE_INSTANCES: u32 = 16;
/// See [`MAX_CORE_INSTANCES`].
pub const MAX_MEMORIES: u32 = 2;
/// See [`MAX_CORE_INSTANCES`].
pub const MAX_TABLES: u32 = 8;

/// A running total against a limit, for one kind of growable resource.
#[derive(Debug)]
struct Budget {
    what: &'static str,
    limit: u64,
    total: u64,
    /// The last growth approved, given back if wasmtime then fails it (a
    /// memory's own declared maximum is checked after the limiter).
    last: u64,
}

impl Budget {
    fn new(what: &'static str, limit: u64) -> Self {
        Budget { what, limit, total: 0, last: 0 }
    }

    fn grow(&mut self, current: usize, desired: usize) -> wasmtime::Result<bool> {
        let growth = desired.saturating_sub(current) as u64;
        let wanted = self.total.saturating_add(growth);
        if wanted > self.limit {
            return Err(wasmtime::Error::new(MemoryLimitExceeded {
                what: self.what,
                limit: self.limit,
                wanted,
            }));
        }
        self.total = wanted;
        self.last = growth;
        Ok(true)
    }

    fn give_back(&mut self) {
        self.total -= std::mem::take(&mut self.last);
    }
}

/// Enforces [`Limits::memory_bytes`] over the sum of all linear memories
/// of the call (a component may hold several), and a table-element cap.
/// A refused growth traps (as wasmtime's `trap_on_grow_failure` does) with
/// a [`MemoryLimitExceeded`], so the hit is classified, not a bare trap.
#[derive(Debug)]
pub struct MemoryLimiter {
    memory: Budget,
    tables: Budget,
}

impl MemoryLimiter {
    /// A limiter for one call.
    pub fn new(limits: &Limits) -> Self {
        MemoryLimiter {
            memory: Budget::new("linear memory bytes", limits.memory_bytes),
            tables: Budget::new("table elements", MAX_TABLE_ELEMENTS),
        }
    }
}

impl ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        self.memory.grow(current, desired)
    }

    fn memory_grow_failed(&mut self, _error: wasmtime::Error) -> wasmtime::Result<()> {
        self.memory.give_back();
        Ok(())
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        self.tables.grow(current, desired)
    }

    fn table_grow_failed(&mut self, _error: wasmtime::Error) -> wasmtime::Result<()> {
        self.tables.give_back();
        Ok(())
    }

    fn instances(&self) -> usize {
        MAX_CORE_INSTANCES as usize
    }

    fn tables(&self) -> usize {
        MAX_TABLES as usize
    }

    fn memories(&self) -> usize {
        MAX_MEMORIES as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overrides_replace_only_what_they_set() {
        let base = Limits::default();
        let limits = base.with(&LimitOverrides { fuel: Some(7), ..LimitOverrides::default() });
        assert_eq!(limits.fuel, 7);
        assert_eq!(limits.memory_bytes, base.memory_bytes);
        assert_eq!(base.with(&LimitOverrides::default()), base);
    }

    #[test]
    fn only_the_deadline_is_retryable() {
        assert!(Limit::Deadline.is_retryable());
        for limit in [Limit::Memory, Limit::Cpu, Limit::Stack, Limit::HttpRequests, Limit::HostCall] {
            assert!(!limit.is_retryable(), "{limit}");
        }
    }

    #[test]
    fn growth_past_the_limit_traps_with_a_typed_error() {
        let mut limiter = MemoryLimiter::new(&Limits { memory_bytes: 1 << 20, ..Limits::default() });
        assert!(limiter.memory_growing(0, 1 << 20, None).unwrap());
        let error = limiter.memory_growing(1 << 20, 2 << 20, None).unwrap_err();
        let hit = error.downcast_ref::<MemoryLimitExceeded>().unwrap();
        assert_eq!(hit.limit, 1 << 20);
    }

    #[test]
    fn the_memory_limit_covers_all_memories_of_the_call() {
        let mut limiter = MemoryLimiter::new(&Limits { memory_bytes: 3 << 20, ..Limits::default() });
        assert!(limiter.memory_growing(0, 2 << 20, None).unwrap(), "first memory");
        assert!(limiter.memory_growing(0, 1 << 20, None).unwrap(), "second memory");
        assert!(limiter.memory_growing(1 << 20, (1 << 20) + 1, None).is_err(), "one byte over in all");
        assert!(limiter.table_growing(0, 100_001, None).is_err());
    }

    #[test]
    fn a_growth_that_fails_later_is_given_back() {
        let mut limiter = MemoryLimiter::new(&Limits { memory_bytes: 2 << 20, ..Limits::default() });
        assert!(limiter.memory_growing(0, 2 << 20, None).unwrap());
        limiter.memory_grow_failed(wasmtime::format_err!("past the declared maximum")).unwrap();
        assert!(limiter.memory_growing(0, 2 << 20, None).unwrap(), "the failed growth no longer counts");
    }
}
