//! The WASI interfaces a language's standard library needs, linked with an
//! empty context — and nothing else.
//!
//! A Rust `std` guest imports `wasi:io`, `wasi:cli`, `wasi:clocks`,
//! `wasi:random` and `wasi:filesystem` even when it uses none of them, so
//! instantiation needs them linked. Each plugin's context is empty: no
//! environment variables, no arguments, no preopened directories (so no
//! file can be opened), stdin closed; stdout and stderr are captured into
//! bounded pipes that the sandbox forwards to the plugin's log.
//! `wasi:sockets` is never linked (a component importing it is refused at
//! load, see [`crate::registry::validate`]), nor is `wasi:http`.

use wasmtime::component::{HasData, Linker, ResourceTable};
use wasmtime_wasi::WasiView;
use wasmtime_wasi::cli::{WasiCli, WasiCliView};
use wasmtime_wasi::clocks::{WasiClocks, WasiClocksView};
use wasmtime_wasi::filesystem::{WasiFilesystem, WasiFilesystemView};
use wasmtime_wasi::p2::bindings::{cli, clocks, filesystem, random};
use wasmtime_wasi::random::WasiRandom;

/// WASI packages a plugin may import (any version): what standard
/// libraries need, served from an empty context.
pub const ALLOWED_WASI_PACKAGES: &[&str] =
    &["wasi:io/", "wasi:cli/", "wasi:clocks/", "wasi:random/", "wasi:filesystem/"];

/// Projects a store's data onto its resource table for `wasi:io`.
struct IoTable;

impl HasData for IoTable {
    type Data<'a> = &'a mut ResourceTable;
}

/// Links the allowed WASI interfaces (async `wasi:io`, the others
/// non-blocking) into `linker`.
///
/// # Errors
/// Only if an interface is linked twice: a bug.
pub fn link<T: WasiView + 'static>(linker: &mut Linker<T>) -> wasmtime::Result<()> {
    use wasmtime_wasi_io::bindings::wasi::io;
    io::error::add_to_linker::<T, IoTable>(linker, |t| t.ctx().table)?;
    io::poll::add_to_linker::<T, IoTable>(linker, |t| t.ctx().table)?;
    io::streams::add_to_linker::<T, IoTable>(linker, |t| t.ctx().table)?;
    clocks::wall_clock::add_to_linker::<T, WasiClocks>(linker, T::clocks)?;
    clocks::monotonic_clock::add_to_linker::<T, WasiClocks>(linker, T::clocks)?;
    filesystem::types::add_to_linker::<T, WasiFilesystem>(linker, T::filesystem)?;
    filesystem::preopens::add_to_linker::<T, WasiFilesystem>(linker, T::filesystem)?;
    random::random::add_to_linker::<T, WasiRandom>(linker, |t| t.ctx().ctx.random())?;
    random::insecure::add_to_linker::<T, WasiRandom>(linker, |t| t.ctx().ctx.random())?;
    random::insecure_seed::add_to_linker::<T, WasiRandom>(linker, |t| t.ctx().ctx.random())?;
    cli::exit::add_to_linker::<T, WasiCli>(linker, T::cli)?;
    cli::environment::add_to_linker::<T, WasiCli>(linker, T::cli)?;
    cli::stdin::add_to_linker::<T, WasiCli>(linker, T::cli)?;
    cli::stdout::add_to_linker::<T, WasiCli>(linker, T::cli)?;
    cli::stderr::add_to_linker::<T, WasiCli>(linker, T::cli)?;
    cli::terminal_input::add_to_linker::<T, WasiCli>(linker, T::cli)?;
    cli::terminal_output::add_to_linker::<T, WasiCli>(linker, T::cli)?;
    cli::terminal_stdin::add_to_linker::<T, WasiCli>(linker, T::cli)?;
    cli::terminal_stdout::add_to_linker::<T, WasiCli>(linker, T::cli)?;
    cli::terminal_stderr::add_to_linker::<T, WasiCli>(linker, T::cli)?;
    Ok(())
}
