//! The `[sandbox]` section: the engine, its instance pool, and how many
//! calls run guest code at once.

use serde::{Deserialize, Serialize};

/// The engine and its pooling allocator.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SandboxConfig {
    /// Plugin instances that can run at once: the size of the instance pool
    /// (the dispatch concurrency must not exceed it).
    pub instances: u32,
    /// Largest linear memory any plugin may be granted, in bytes: the size
    /// of one memory slot in the pool. Per-plugin memory limits must fit.
    pub max_memory_bytes: u64,
    /// WebAssembly stack per call, in bytes: deep recursion traps here.
    pub max_wasm_stack_bytes: usize,
    /// Use the pooling allocator (fast instantiation from preallocated
    /// slots). Off allocates each instance on demand.
    pub pooling: bool,
    /// Log lines kept per plugin for its owner to read back.
    pub log_buffer_lines: usize,
    /// Calls that run guest code (and the host's work for it) at once;
    /// the others wait their turn, the tenant that has used the least CPU
    /// first. The platform's plugins may hold every slot. Unset: the CPUs.
    pub running_calls: Option<usize>,
    /// Of the running calls, how many may be tenants' calls, each tenant
    /// holding at most its share of them while others have calls in
    /// flight. Unset: one fewer than `running_calls` (at least one), so
    /// that however tenants spend their turns a CPU is left for the
    /// service's own work and a broker on the same host; on one CPU
    /// tenants share its one slot with the rest.
    pub tenant_running_calls: Option<usize>,
    /// How much nicer than the service the threads calls run on are
    /// (0–19, the sum capped at 19). Raised, the kernel runs the service's
    /// own threads (intake, API, acknowledgements, log) first when both
    /// want a CPU; at full load that costs throughput (at 10, `log://`
    /// 14–19k → 13–16k actions/s on 2 cores), and the CPU left free by
    /// `tenant_running_calls` already keeps the service responsive.
    pub nice: i32,
}

impl SandboxConfig {
    /// [`SandboxConfig::running_calls`], or the CPUs.
    pub fn running_calls(&self) -> usize {
        self.running_calls
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, std::num::NonZero::get))
    }

    /// [`SandboxConfig::tenant_running_calls`], or one fewer than the
    /// running calls (at least one).
    pub(crate) fn tenant_running_calls(&self) -> usize {
        self.tenant_running_calls.unwrap_or_else(|| self.running_calls().saturating_sub(1).max(1))
    }
}

impl Default for SandboxConfig {
    fn default() -> Self {
        SandboxConfig {
            instances: 64,
            max_memory_bytes: 256 << 20,
            max_wasm_stack_bytes: 512 << 10,
            pooling: true,
            log_buffer_lines: 256,
            running_calls: None,
            tenant_running_calls: None,
            nice: 0,
        }
    }
}

impl SandboxConfig {
    /// Checks the section's own rules.
    ///
    /// # Errors
    /// What is wrong, naming the option.
    pub fn validate(&self) -> Result<(), String> {
        if self.instances == 0 {
            return Err("sandbox.instances must be at least 1".into());
        }
        if self.running_calls == Some(0) || self.tenant_running_calls == Some(0) {
            return Err("sandbox.running_calls and sandbox.tenant_running_calls must be at least 1".into());
        }
        let (tenant_running, running) = (self.tenant_running_calls(), self.running_calls());
        if tenant_running > running {
            return Err(format!(
                "sandbox.tenant_running_calls ({tenant_running}) must not exceed sandbox.running_calls ({running})"
            ));
        }
        if !(0..=19).contains(&self.nice) {
            return Err(format!("sandbox.nice ({}) must be between 0 and 19", self.nice));
        }
        Ok(())
    }
}
