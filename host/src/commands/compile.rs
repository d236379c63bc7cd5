//! `tocsin compile-component` (hidden): the compiler process of uploads.
//!
//! The service starts it with an empty environment, sends the component on
//! stdin and reads the serialized artifact from stdout (exit 0), or the
//! reason for refusing it as JSON (exit 3). Before reading any input it
//! limits itself: CPU seconds, address space (`memory_bytes` beyond what
//! is mapped at that point; the service starts it with a small allocator
//! arena, see [`crate::sandbox::artifacts`]), no core dumps. A compile
//! bomb then ends this process, never the service.

use std::io::{Read as _, Write as _};

use rlimit::Resource;

use super::Exit;
use crate::sandbox::{compile_settings, precompile};

/// What the service passes.
#[derive(Debug, Clone, Copy)]
pub struct CompileArgs {
    /// `RLIMIT_CPU`, seconds.
    pub cpu_seconds: u64,
    /// `RLIMIT_AS`, bytes.
    pub memory_bytes: u64,
    /// The service engine's WebAssembly stack size.
    pub max_wasm_stack_bytes: usize,
}

/// Limits this process, compiles stdin, writes the artifact to stdout.
///
/// # Errors
/// The limits cannot be set, stdin or stdout fail, or the engine cannot
/// be made.
pub fn run(args: CompileArgs) -> anyhow::Result<Exit> {
    Resource::CORE.set(0, 0)?;
    // The hard CPU limit a second later: SIGXCPU first, SIGKILL if ignored.
    Resource::CPU.set(args.cpu_seconds, args.cpu_seconds.saturating_add(1))?;
    // What is mapped already (the binary, the allocator's first arena)
    // does not count against the compilation.
    let address_space = mapped_bytes()?.saturating_add(args.memory_bytes);
    Resource::AS.set(address_space, address_space)?;
    let mut component = Vec::new();
    std::io::stdin().read_to_end(&mut component)?;
    let engine = wasmtime::Engine::new(&compile_settings(args.max_wasm_stack_bytes))
        .map_err(|e| anyhow::anyhow!("cannot create the engine: {e:#}"))?;
    let mut stdout = std::io::stdout().lock();
    match precompile(&engine, &component) {
        Ok(artifact) => {
            stdout.write_all(&artifact)?;
            stdout.flush()?;
            Ok(Exit::Success)
        }
        Err(refused) => {
            serde_json::to_writer(&mut stdout, &refused)?;
            stdout.flush()?;
            Ok(Exit::Refused)
        }
    }
}

/// The process's mapped address space now (`VmSize`), in bytes.
fn mapped_bytes() -> anyhow::Result<u64> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    let kib = status
        .lines()
        .find_map(|line| line.strip_prefix("VmSize:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .ok_or_else(|| anyhow::anyhow!("no VmSize in /proc/self/status"))?;
    Ok(kib.saturating_mul(1024))
}
