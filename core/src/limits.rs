//! The limits of one plugin call, as the operator and tenants set them.
//!
//! Every limit has a default (in [`Limits::default`]) and a per-plugin
//! override ([`LimitOverrides`]). Hitting one ends the call with an error
//! naming the [`Limit`]; the host and other calls are unaffected. What no
//! configuration can raise is in [`crate::caps`].

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::caps::HOST_CALL_MARGIN_BYTES;

/// The limits of one call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Linear memory of the instance, in bytes. Growing past it traps.
    pub memory_bytes: u64,
    /// Fuel: guest instructions, roughly, or the call's CPU time at 2,000
    /// a µs when that is more ([`crate::caps::FUEL_PER_CPU_MICROSECOND`]); waiting on I/O
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
    /// [`crate::caps::HOST_CALL_MARGIN_BYTES`].
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

/// What the engine and the HTTP settings allow a plugin's limits to be:
/// every plugin's limits, the operator's and those a tenant asks for, are
/// checked against them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LimitBounds {
    /// `sandbox.max_memory_bytes`: the size of one memory slot of the pool.
    pub max_memory_bytes: u64,
    /// `http.max_timeout_ms`: a call's deadline must exceed it.
    pub max_http_timeout_ms: u64,
}

impl LimitBounds {
    /// Checks the limits of plugin `name`.
    ///
    /// # Errors
    /// The rule broken, naming the plugin.
    pub fn check(&self, name: &str, limits: &Limits) -> Result<(), String> {
        if limits.memory_bytes > self.max_memory_bytes {
            return Err(format!(
                "memory limit of plugin {name} ({} bytes) exceeds sandbox.max_memory_bytes ({})",
                limits.memory_bytes, self.max_memory_bytes
            ));
        }
        if limits.fuel == 0 {
            return Err(format!("plugin {name}: fuel must be above 0"));
        }
        if limits.host_call_bytes < limits.http_request_body_bytes.saturating_add(HOST_CALL_MARGIN_BYTES) {
            return Err(format!(
                "plugin {name}: host_call_bytes ({}) must be at least http_request_body_bytes ({}) + {} \
                 bytes: a request's body, URL and headers pass in one host call",
                limits.host_call_bytes, limits.http_request_body_bytes, HOST_CALL_MARGIN_BYTES
            ));
        }
        if limits.deadline_ms <= self.max_http_timeout_ms {
            return Err(format!(
                "plugin {name}: deadline_ms ({}) must exceed http.max_timeout_ms ({}), so that a slow \
                 webhook fails as an HTTP timeout the plugin reports, not as a killed call",
                limits.deadline_ms, self.max_http_timeout_ms
            ));
        }
        Ok(())
    }
}

/// Declares [`Limit`], [`Limit::ALL`] and [`Limit::name`] from one list,
/// so that no limit can be left out of `ALL` (whose series
/// [`Limit::ALL`]'s users drop, say).
macro_rules! limits {
    ($($(#[$doc:meta])* $variant:ident => $name:literal,)*) => {
        /// A limit a call can hit. Its name is what logs, metrics and the
        /// CLI show.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
        #[serde(rename_all = "snake_case")]
        pub enum Limit {
            $($(#[$doc])* $variant,)*
        }

        impl Limit {
            /// Every limit.
            pub const ALL: &'static [Limit] = &[$(Limit::$variant,)*];

            /// The limit's name, as in configuration and output.
            pub fn name(self) -> &'static str {
                match self {
                    $(Limit::$variant => $name,)*
                }
            }
        }
    };
}

limits! {
    /// [`Limits::memory_bytes`].
    Memory => "memory",
    /// [`Limits::fuel`].
    Cpu => "cpu",
    /// [`Limits::deadline_ms`].
    Deadline => "deadline",
    /// The engine's WebAssembly stack (`sandbox.max_wasm_stack_bytes`).
    Stack => "stack",
    /// [`Limits::log_lines`], [`Limits::log_bytes`] or [`Limits::log_line_bytes`].
    Log => "log",
    /// [`Limits::http_requests`].
    HttpRequests => "http_requests",
    /// [`Limits::http_request_body_bytes`].
    HttpRequestBody => "http_request_body",
    /// [`Limits::http_response_body_bytes`].
    HttpResponseBody => "http_response_body",
    /// [`Limits::host_call_bytes`].
    HostCall => "host_call",
}

impl Limit {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_limit_is_listed_once_under_the_name_serde_gives_it() {
        let mut names: Vec<&str> = Limit::ALL.iter().map(|limit| limit.name()).collect();
        for limit in Limit::ALL {
            assert_eq!(serde_json::to_value(limit).unwrap(), limit.name());
        }
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), Limit::ALL.len(), "no two limits share a name");
    }

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
}
