//! `tocsin compile-component` (hidden): the compiler process of tenants'
//! components (see [`crate::sandbox::compiler`]).
//!
//! The service starts it with an empty environment, sends the component on
//! stdin and reads the [`Artifact`] from stdout (exit 0), or the
//! reason for refusing it as JSON (exit 3); its last line of stderr is
//! what it used. Before reading any input it makes its engine, limits
//! itself (CPU seconds, address space beyond what is mapped then, no core
//! dumps) and confines itself. A compile bomb then ends this process, never the
//! service, and what a compiler bug could run reads nothing of the
//! service's.

use std::io::{Read as _, Write as _};

use rlimit::Resource;

use super::Exit;
use crate::sandbox::compiler::confine::{self, Identity, Layers};
use crate::sandbox::compiler::{Artifact, CompileStats, CompileTarget};
use crate::sandbox::validate::{self, LoadError};
use crate::sandbox::{compiler_engine_config, precompile};

/// What the service passes.
#[derive(Debug, Clone, Copy)]
pub struct CompileArgs {
    /// `RLIMIT_CPU`, seconds.
    pub cpu_seconds: u64,
    /// `RLIMIT_AS` beyond what is mapped at start, bytes.
    pub memory_bytes: u64,
    /// Threads Cranelift may compile on.
    pub threads: u32,
    /// The service engine's settings compiled code depends on.
    pub target: CompileTarget,
    /// The memory limit of the calls the component is for.
    pub memory_limit_bytes: u64,
    /// Confine as this identity; none: the operator opted out.
    pub confine: Option<Identity>,
}

/// Limits and confines this process, compiles stdin, writes the artifact
/// to stdout.
///
/// # Errors
/// The limits cannot be set, stdin or stdout fail, or the engine cannot
/// be made.
pub fn run(args: CompileArgs) -> anyhow::Result<Exit> {
    Resource::CORE.set(0, 0)?;
    confine::close_inherited_files();
    // Read once, at the end: the peak memory (`VmHWM`; `ru_maxrss` would
    // be the service's, kept across exec). Its own, read-only.
    let mut status = std::fs::File::open("/proc/self/status").ok();
    let engine = wasmtime::Engine::new(&compiler_engine_config(args.target, args.threads))
        .map_err(|e| anyhow::anyhow!("cannot create the engine: {e:#}"))?;
    // The hard CPU limit a second later: SIGXCPU first, SIGKILL if ignored.
    Resource::CPU.set(args.cpu_seconds, args.cpu_seconds.saturating_add(1))?;
    // What is mapped already (the binary, the allocator's first arena)
    // does not count against the compilation.
    let address_space = mapped_bytes()?.saturating_add(args.memory_bytes);
    Resource::AS.set(address_space, address_space)?;
    let mut stdout = std::io::stdout().lock();
    let mut compiled = false;
    let answer = match args.confine.map(|identity| confine::confine(Layers::ALL, identity, args.threads)) {
        Some(Err(error)) => Err(LoadError::Unconfined(error.to_string())),
        Some(Ok(())) | None => {
            let mut component = Vec::new();
            std::io::stdin().read_to_end(&mut component)?;
            validate::precheck(&component, args.memory_limit_bytes).and_then(|footprint| {
                compiled = true;
                let artifact = precompile(&engine, &component)?;
                Ok(Artifact::encode(footprint.memory_bytes, &artifact))
            })
        }
    };
    let exit = match answer {
        Ok(artifact) => {
            stdout.write_all(&artifact)?;
            Exit::Success
        }
        Err(refused) => {
            serde_json::to_writer(&mut stdout, &refused)?;
            Exit::Refused
        }
    };
    stdout.flush()?;
    let peak_rss_bytes = status.as_mut().and_then(peak_rss_bytes).unwrap_or_default();
    eprintln!(
        "{}",
        serde_json::to_string(&CompileStats { compiled, peak_rss_bytes, ..usage() }).unwrap_or_default()
    );
    Ok(exit)
}

/// `VmHWM` of a `/proc/self/status` opened before, read from its start.
fn peak_rss_bytes(status: &mut std::fs::File) -> Option<u64> {
    let mut text = String::new();
    status.read_to_string(&mut text).ok()?;
    confine::status_bytes(&text, "VmHWM:")
}

/// The CPU time of this process so far.
fn usage() -> CompileStats {
    use nix::sys::resource::{UsageWho, getrusage};
    use nix::sys::time::TimeValLike as _;
    let Ok(usage) = getrusage(UsageWho::RUSAGE_SELF) else { return CompileStats::default() };
    let cpu_ms = usage.user_time().num_milliseconds() + usage.system_time().num_milliseconds();
    CompileStats { cpu_ms: u64::try_from(cpu_ms).unwrap_or(0), peak_rss_bytes: 0, compiled: false }
}

/// The process's mapped address space now (`VmSize`), in bytes.
fn mapped_bytes() -> anyhow::Result<u64> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    confine::status_bytes(&status, "VmSize:").ok_or_else(|| anyhow::anyhow!("no VmSize in /proc/self/status"))
}
