//! `tocsin compile-component` (hidden): the compiler process of uploads.
//!
//! The service starts it with an empty environment, sends the component on
//! stdin and reads the serialized artifact from stdout (exit 0), or the
//! reason for refusing it as JSON (exit 3). Before reading any input it
//! limits itself: CPU seconds, address space, no core dumps. A compile
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
    Resource::AS.set(args.memory_bytes, args.memory_bytes)?;
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
