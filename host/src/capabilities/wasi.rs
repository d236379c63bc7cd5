//! The WASI interfaces a language's standard library needs, linked with an
//! empty context — and nothing else.
//!
//! A Rust `std` guest imports `wasi:io`, `wasi:cli`, `wasi:clocks`,
//! `wasi:random` and `wasi:filesystem` even when it uses none of them, so
//! instantiation needs them linked. Each plugin's context is empty: no
//! environment variables (but the operator's settings for a built-in
//! notifier), no arguments, no preopened directories (so no file can be
//! opened), stdin closed; stdout and stderr are captured
//! ([`CapturedOutput`], excess dropped) and forwarded to the plugin's log.
//! `wasi:sockets` is never linked (a component importing it is refused at
//! load, see [`crate::sandbox::validate`]), nor is `wasi:http`.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use tocsin_core::bindings::tocsin::notifier::log::Level;
use tocsin_core::caps::{MAX_OUTPUT_BYTES, MAX_RANDOM_BYTES, MAX_RESOURCES, MAX_WRITE_BYTES};
use tokio::io::AsyncWrite;
use wasmtime::component::{HasData, Linker, ResourceTable};
use wasmtime_wasi::cli::{IsTerminal, StdoutStream, WasiCli, WasiCliView};
use wasmtime_wasi::clocks::{WasiClocks, WasiClocksView};
use wasmtime_wasi::filesystem::{WasiFilesystem, WasiFilesystemView};
use wasmtime_wasi::p2::bindings::{cli, clocks, filesystem, random};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamError};
use wasmtime_wasi::random::WasiRandom;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use super::log::CallLog;

/// WASI packages a plugin may import (any version): what standard
/// libraries need, served from an empty context.
pub(crate) const ALLOWED_WASI_PACKAGES: &[&str] =
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
pub(crate) fn add_to_linker<T: WasiView + 'static>(linker: &mut Linker<T>) -> wasmtime::Result<()> {
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

/// The WASI state of one call: an empty context (no environment,
/// arguments or preopens; stdin closed), its resources, and the guest's
/// captured stdout and stderr.
pub(crate) struct CallWasi {
    ctx: WasiCtx,
    table: ResourceTable,
    stdout: CapturedOutput,
    stderr: CapturedOutput,
}

impl std::fmt::Debug for CallWasi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CallWasi").finish_non_exhaustive()
    }
}

impl CallWasi {
    /// An empty context for one call, but for `environment`.
    pub fn new(environment: &[(String, String)]) -> Self {
        let stdout = CapturedOutput::new(MAX_OUTPUT_BYTES);
        let stderr = CapturedOutput::new(MAX_OUTPUT_BYTES);
        let ctx = WasiCtx::builder()
            .stdout(stdout.clone())
            .stderr(stderr.clone())
            .max_random_size(MAX_RANDOM_BYTES)
            .envs(environment)
            .build();
        let mut table = ResourceTable::new();
        table.set_max_capacity(MAX_RESOURCES);
        CallWasi { ctx, table, stdout, stderr }
    }

    /// The view `wasmtime_wasi`'s host functions work on.
    pub(crate) fn view(&mut self) -> WasiCtxView<'_> {
        WasiCtxView { ctx: &mut self.ctx, table: &mut self.table }
    }

    /// Forwards what the guest wrote to stdout (at INFO) and stderr (at
    /// WARN: panic messages) to its log, one line per stream.
    pub(crate) fn forward_output(&self, log: &mut CallLog) {
        for (output, level, stream) in
            [(&self.stdout, Level::Info, "stdout"), (&self.stderr, Level::Warn, "stderr")]
        {
            let captured = output.take();
            let text = String::from_utf8_lossy(&captured.bytes);
            if !text.trim().is_empty() {
                log.record_output(level, text.trim(), stream);
            }
            if captured.dropped > 0 {
                tracing::debug!(
                    stream,
                    dropped_bytes = captured.dropped,
                    "sandbox: Plugin output past the cap dropped."
                );
            }
        }
    }
}

/// A guest's stdout or stderr: keeps the first `capacity` bytes for the
/// log and silently drops (and counts) the rest, so a chatty guest is never
/// failed by its output. Clones share the buffer.
#[derive(Debug, Clone)]
pub(crate) struct CapturedOutput {
    capacity: usize,
    buffer: Arc<Mutex<Captured>>,
}

/// What a [`CapturedOutput`] holds.
#[derive(Debug, Default)]
pub struct Captured {
    /// The kept bytes.
    pub bytes: Vec<u8>,
    /// Bytes written past the capacity.
    pub dropped: u64,
}

impl CapturedOutput {
    /// An empty capture keeping at most `capacity` bytes.
    pub fn new(capacity: usize) -> Self {
        CapturedOutput { capacity, buffer: Arc::default() }
    }

    /// Takes what was captured.
    pub fn take(&self) -> Captured {
        std::mem::take(&mut *self.lock())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Captured> {
        self.buffer.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn append(&self, bytes: &[u8]) {
        let mut captured = self.lock();
        let room = self.capacity.saturating_sub(captured.bytes.len());
        let kept = bytes.len().min(room);
        captured.bytes.extend_from_slice(&bytes[..kept]);
        captured.dropped += (bytes.len() - kept) as u64;
    }
}

#[wasmtime_wasi::async_trait]
impl OutputStream for CapturedOutput {
    fn write(&mut self, bytes: Bytes) -> Result<(), StreamError> {
        if bytes.len() > MAX_WRITE_BYTES {
            return Err(StreamError::Trap(wasmtime::format_err!(
                "write of {} bytes exceeds the permitted {MAX_WRITE_BYTES}",
                bytes.len()
            )));
        }
        self.append(&bytes);
        Ok(())
    }

    fn flush(&mut self) -> Result<(), StreamError> {
        Ok(())
    }

    fn check_write(&mut self) -> Result<usize, StreamError> {
        Ok(MAX_WRITE_BYTES)
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for CapturedOutput {
    async fn ready(&mut self) {}
}

impl AsyncWrite for CapturedOutput {
    fn poll_write(self: Pin<&mut Self>, _cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        self.append(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

impl IsTerminal for CapturedOutput {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for CapturedOutput {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_past_the_capacity_is_dropped_and_counted_and_oversized_writes_trap() {
        let mut output = CapturedOutput::new(4);
        output.write(Bytes::from_static(b"abc")).unwrap();
        output.write(Bytes::from_static(b"defg")).unwrap();
        assert!(matches!(output.write(Bytes::from(vec![0; MAX_WRITE_BYTES + 1])), Err(StreamError::Trap(_))));
        let captured = output.take();
        assert_eq!(captured.bytes, b"abcd");
        assert_eq!(captured.dropped, 3);
    }
}
