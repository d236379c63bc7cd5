//! Per-call limits of a plugin, and the store limiter that enforces the
//! memory one.
//!
//! Every limit has a default (in [`Limits::default`]) and a per-plugin
//! override ([`LimitOverrides`]). Hitting one ends the call with
//! [`crate::sandbox::CallError::Limit`] naming it; the host and other calls
//! are unaffected.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use wasmtime::{ResourceLimiter, StoreLimits, StoreLimitsBuilder};

/// The limits of one call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Linear memory of the instance, in bytes. Growing past it traps.
    pub memory_bytes: u64,
    /// Fuel: guest instructions, roughly. Counts guest work only, not time
    /// spent waiting on host calls. A notification takes thousands.
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
        }
    }
}

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
#[error("memory limit of {limit_bytes} bytes exceeded (wanted {wanted_bytes})")]
pub struct MemoryLimitExceeded {
    /// The configured limit.
    pub limit_bytes: u64,
    /// The size the guest asked to grow to.
    pub wanted_bytes: usize,
}

/// Enforces [`Limits::memory_bytes`] through wasmtime's [`StoreLimits`]
/// with `trap_on_grow_failure`, and turns a refused growth into a
/// [`MemoryLimitExceeded`] trap so the hit is classified, not a bare trap.
#[derive(Debug)]
pub struct MemoryLimiter {
    inner: StoreLimits,
    limit_bytes: u64,
}

impl MemoryLimiter {
    /// A limiter for one call.
    pub fn new(limits: &Limits) -> Self {
        let memory = usize::try_from(limits.memory_bytes).unwrap_or(usize::MAX);
        MemoryLimiter {
            inner: StoreLimitsBuilder::new()
                .memory_size(memory)
                .table_elements(100_000)
                .instances(64)
                .tables(64)
                .memories(16)
                .trap_on_grow_failure(true)
                .build(),
            limit_bytes: limits.memory_bytes,
        }
    }
}

impl ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        match self.inner.memory_growing(current, desired, maximum) {
            Ok(true) => Ok(true),
            Ok(false) | Err(_) => Err(wasmtime::Error::new(MemoryLimitExceeded {
                limit_bytes: self.limit_bytes,
                wanted_bytes: desired,
            })),
        }
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        self.inner.table_growing(current, desired, maximum)
    }

    fn instances(&self) -> usize {
        self.inner.instances()
    }

    fn tables(&self) -> usize {
        self.inner.tables()
    }

    fn memories(&self) -> usize {
        self.inner.memories()
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
        for limit in [Limit::Memory, Limit::Cpu, Limit::Stack, Limit::HttpRequests] {
            assert!(!limit.is_retryable(), "{limit}");
        }
    }

    #[test]
    fn growth_past_the_limit_traps_with_a_typed_error() {
        let mut limiter = MemoryLimiter::new(&Limits { memory_bytes: 1 << 20, ..Limits::default() });
        assert!(limiter.memory_growing(0, 1 << 20, None).unwrap());
        let error = limiter.memory_growing(1 << 20, 2 << 20, None).unwrap_err();
        let hit = error.downcast_ref::<MemoryLimitExceeded>().unwrap();
        assert_eq!(hit.limit_bytes, 1 << 20);
    }
}
