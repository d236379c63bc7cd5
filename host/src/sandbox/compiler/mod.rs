//! Tenants' components are compiled in a child process, never in the
//! service, and what it compiled is cached on disk ([`cache`]).
//!
//! Cranelift cannot be interrupted in-process, and a hostile upload can be
//! built to make it run for minutes, allocate gigabytes (a compile bomb)
//! or, through a compiler bug, run code of its choosing. So a component is
//! compiled by `tocsin compile-component`, a child that:
//! - checks everything the bytes say before compiling them
//!   ([`crate::sandbox::validate::precheck`]: the contract, the pool's
//!   slots, the call's memory), so what could never run is refused with
//!   what to change;
//! - compiles on [`CompileLimits::threads`] threads, within a CPU-time and
//!   an address-space rlimit, and is killed after a wall-clock timeout;
//! - is confined ([`confine`]) before it reads a byte of the component.
//!
//! At most [`CompileLimits::at_once`] run at once; the service reads at
//! most [`CompileLimits::max_artifact_bytes`] of what one writes. The
//! service only ever deserializes an [`Artifact`], and only this module
//! makes one: from the child's output, or from the cache.

pub mod cache;
pub mod confine;

use std::os::unix::process::ExitStatusExt as _;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tocsin_core::caps::MAX_COMPILER_STDERR_BYTES;
use tocsin_core::time::millis;
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWriteExt as _};
use tokio::sync::Semaphore;

use crate::sandbox::validate::LoadError;
use crate::sandbox::{Plugin, PluginSpec, Sandbox};
use cache::ArtifactCache;
use confine::Confinement;

/// The hidden subcommand that compiles one component.
pub(crate) const COMPILE_COMMAND: &str = "compile-component";

/// The compiler process's exit code when it refuses the component (the
/// reason is on its stdout, as JSON); any other failure is its crash.
pub(crate) const REFUSED_EXIT_CODE: u8 = 3;

/// What one compilation may use, and how many run at once.
#[derive(Debug, Clone, Copy)]
pub struct CompileLimits {
    /// CPU seconds (`RLIMIT_CPU`).
    pub cpu_seconds: u64,
    /// Address space in bytes (`RLIMIT_AS`), beyond the engine's own
    /// reservations.
    pub memory_bytes: u64,
    /// Wall-clock time before the child is killed.
    pub timeout: Duration,
    /// Threads Cranelift compiles on (1: no worker threads).
    pub threads: u32,
    /// The largest artifact read back; a larger one is refused.
    pub max_artifact_bytes: u64,
    /// Compiler processes running at once; the others wait.
    pub at_once: usize,
}

/// The service engine's settings that compiled code depends on, which
/// the child's engine reproduces.
#[derive(Debug, Clone, Copy)]
pub struct CompileTarget {
    /// `sandbox.max_wasm_stack_bytes`.
    pub max_wasm_stack_bytes: usize,
}

/// A compiled component that tocsin produced: the only input
/// [`crate::sandbox::Sandbox::load_artifact`] takes. As the child writes
/// it and the cache keeps it: the initial size of its memories in all (8
/// bytes, little-endian), then the serialized component.
#[derive(Debug)]
pub struct Artifact(Vec<u8>);

/// Bytes before the serialized component in an [`Artifact`].
const HEADER_BYTES: usize = 8;

impl Artifact {
    /// The child's output or a cache entry, if it has its header.
    pub(crate) fn new(bytes: Vec<u8>) -> Option<Artifact> {
        (bytes.len() > HEADER_BYTES).then_some(Artifact(bytes))
    }

    /// What the child writes: `initial_memory_bytes`, then `component`.
    pub(crate) fn encode(initial_memory_bytes: u64, component: &[u8]) -> Vec<u8> {
        [&initial_memory_bytes.to_le_bytes()[..], component].concat()
    }

    /// The whole of it, as cached.
    pub(crate) fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The serialized component.
    pub(crate) fn bytes(&self) -> &[u8] {
        &self.0[HEADER_BYTES..]
    }

    /// The initial size of its memories in all, which each version's
    /// memory limit must allow.
    pub(crate) fn initial_memory_bytes(&self) -> u64 {
        let mut header = [0; HEADER_BYTES];
        header.copy_from_slice(&self.0[..HEADER_BYTES]);
        u64::from_le_bytes(header)
    }
}

/// What the child did and used, as it reports it on its last line of
/// stderr.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
pub(crate) struct CompileStats {
    /// User and system CPU time, in ms.
    pub cpu_ms: u64,
    /// Peak resident memory, in bytes.
    pub peak_rss_bytes: u64,
    /// Whether the component passed the checks and was compiled (false:
    /// it was refused before).
    pub compiled: bool,
}

/// How one run of the child ended.
#[derive(Debug)]
struct ChildRun {
    /// The artifact, or why not.
    result: Result<Artifact, LoadError>,
    /// What the child reported; none when it did not end by itself.
    stats: Option<CompileStats>,
}

/// Runs the compiler child, through the cache when it has one.
#[derive(Debug)]
pub struct Compiler {
    program: PathBuf,
    limits: CompileLimits,
    target: CompileTarget,
    confinement: Confinement,
    cache: Option<ArtifactCache>,
    running: Semaphore,
}

impl Compiler {
    /// A compiler that runs `program compile-component`, caching in
    /// `cache` when given.
    pub fn new(
        program: PathBuf,
        limits: CompileLimits,
        target: CompileTarget,
        confinement: Confinement,
        cache: Option<ArtifactCache>,
    ) -> Self {
        let running = Semaphore::new(limits.at_once.max(1));
        Compiler { program, limits, target, confinement, cache, running }
    }

    /// How it confines its child.
    pub(crate) fn confinement(&self) -> Confinement {
        self.confinement
    }

    /// The cache, if this compiler keeps one.
    pub(crate) fn cache(&self) -> Option<&ArtifactCache> {
        self.cache.as_ref()
    }

    /// The artifact of `component`, whose SHA-256 is `sha256`, for calls
    /// whose memory limit is `memory_limit`: from the cache when tocsin
    /// wrote it there, else compiled in the child and cached.
    ///
    /// # Errors
    /// [`LoadError`]: the compiler refused the component, or hit a limit.
    pub async fn artifact(
        &self,
        sha256: &str,
        component: &[u8],
        memory_limit: u64,
    ) -> Result<Artifact, LoadError> {
        if let Some(artifact) = self.cache.as_ref().and_then(|cache| cache.get(sha256)) {
            return Ok(artifact);
        }
        let artifact = self.compile(sha256, component, memory_limit).await?;
        if let Some(cache) = &self.cache {
            cache.put(sha256, artifact.as_bytes());
        }
        Ok(artifact)
    }

    /// Compiles `component` (without the cache) and loads it into
    /// `sandbox` with `spec`: what `check` and `notify` do with a file.
    ///
    /// # Errors
    /// [`LoadError`]: refused, or a limit hit.
    pub async fn load(
        &self,
        sandbox: &Sandbox,
        spec: PluginSpec,
        component: &[u8],
    ) -> Result<Plugin, LoadError> {
        let sha256 = format!("{:x}", <sha2::Sha256 as sha2::Digest>::digest(component));
        let artifact = self.compile(&sha256, component, spec.limits.memory_bytes).await?;
        sandbox.load_artifact(spec, &artifact)
    }

    /// Runs the compiler once on no component: `Ok` when it could confine
    /// itself (and so refused the empty input as not a component).
    ///
    /// # Errors
    /// [`LoadError::Unconfined`] saying why, or how the compiler failed.
    pub async fn self_check(&self) -> Result<(), LoadError> {
        match self.run_child(&[], 0).await.result {
            Err(LoadError::NotAComponent(_)) => Ok(()),
            Err(error) => Err(error),
            Ok(_) => Err(LoadError::Compile("the compiler accepted an empty component".into())),
        }
    }

    /// Compiles `component` in the child, saying what happened in the log.
    async fn compile(
        &self,
        sha256: &str,
        component: &[u8],
        memory_limit: u64,
    ) -> Result<Artifact, LoadError> {
        let _slot = self
            .running
            .acquire()
            .await
            .map_err(|_| LoadError::Compile("the compiler is shut down".into()))?;
        let started = std::time::Instant::now();
        tracing::info!(sha256, component_bytes = component.len(), "registry: Started the compiler.");
        let run = self.run_child(component, memory_limit).await;
        let stats = run.stats.unwrap_or_default();
        let elapsed_ms = millis(started.elapsed());
        match &run.result {
            Ok(artifact) => tracing::info!(
                sha256,
                elapsed_ms,
                cpu_ms = stats.cpu_ms,
                peak_rss_bytes = stats.peak_rss_bytes,
                artifact_bytes = artifact.bytes().len(),
                "registry: Compiled a component."
            ),
            Err(error) => tracing::info!(
                sha256, elapsed_ms, cpu_ms = stats.cpu_ms, peak_rss_bytes = stats.peak_rss_bytes,
                reason = error.kind(), compiled = run.stats.is_none_or(|stats| stats.compiled), error = %error,
                "registry: The compiler refused a component."
            ),
        }
        run.result
    }

    /// Runs the child once on `component`.
    async fn run_child(&self, component: &[u8], memory_limit: u64) -> ChildRun {
        let ended = |result| ChildRun { result, stats: None };
        let (limits, target) = (self.limits, self.target);
        let mut command = tokio::process::Command::new(&self.program);
        command
            .arg(COMPILE_COMMAND)
            .args(["--cpu-seconds", &limits.cpu_seconds.to_string()])
            .args(["--memory-bytes", &limits.memory_bytes.to_string()])
            .args(["--threads", &limits.threads.to_string()])
            .args(["--max-wasm-stack-bytes", &target.max_wasm_stack_bytes.to_string()])
            .args(["--memory-limit-bytes", &memory_limit.to_string()])
            .args(self.confinement.args())
            .env_clear()
            .env("TOCSIN_LOG", "error")
            .env("RAYON_NUM_THREADS", limits.threads.to_string())
            // mimalloc (the binary's allocator) otherwise maps a 1 GiB arena
            // up front, and memory taken from it escapes the address-space
            // limit; with small arenas each one is a new, counted mapping.
            .env("MIMALLOC_ARENA_RESERVE", "32M")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = match command.spawn() {
            Ok(child) => child,
            Err(e) => {
                let program = self.program.display();
                return ended(Err(LoadError::Compile(format!("cannot start the compiler {program}: {e}"))));
            }
        };
        let (Some(mut stdin), Some(stdout), Some(stderr)) =
            (child.stdin.take(), child.stdout.take(), child.stderr.take())
        else {
            return ended(Err(LoadError::Compile("the compiler's pipes are missing".into())));
        };
        let input = component.to_vec();
        let feed = tokio::spawn(async move {
            // A child that dies early closes the pipe: its status says why.
            let _ = stdin.write_all(&input).await;
        });
        let diagnostics = tokio::spawn(read_head(stderr, MAX_COMPILER_STDERR_BYTES));
        let run = async {
            let output = read_capped(stdout, limits.max_artifact_bytes).await;
            if output.is_err() {
                // Past the cap: stop it rather than read the rest.
                let _ = child.start_kill();
            }
            (output, child.wait().await)
        };
        let (output, status) = match tokio::time::timeout(limits.timeout, run).await {
            Ok(ended) => ended,
            Err(_) => {
                return ended(Err(LoadError::CompileLimit(format!(
                    "compilation took longer than {} ms and was stopped (uploads.compile_timeout_ms)",
                    limits.timeout.as_millis()
                ))));
            }
        };
        feed.abort();
        let stderr = diagnostics.await.unwrap_or_default();
        let stderr = String::from_utf8_lossy(&stderr);
        let stats = stderr.lines().last().and_then(|line| serde_json::from_str(line).ok());
        let result = match (status, output) {
            (Err(e), _) => Err(LoadError::Compile(format!("compiler: {e}"))),
            (Ok(_), Err(())) => Err(LoadError::CompileLimit(format!(
                "the compiled component is larger than {} bytes (uploads.max_artifact_bytes)",
                limits.max_artifact_bytes
            ))),
            (Ok(status), Ok(stdout)) => match status.code() {
                Some(0) => Artifact::new(stdout)
                    .ok_or_else(|| LoadError::Compile("the compiler wrote no artifact".into())),
                Some(code) if code == i32::from(REFUSED_EXIT_CODE) => {
                    Err(serde_json::from_slice::<LoadError>(&stdout).map_or_else(
                        |e| LoadError::Compile(format!("unreadable answer from the compiler: {e}")),
                        LoadError::bounded,
                    ))
                }
                _ => Err(abnormal_end(status, &stderr, &limits).bounded()),
            },
        };
        ChildRun { result, stats }
    }
}

/// Reads `reader` to its end, or fails once it has given more than `cap`
/// bytes.
async fn read_capped(reader: impl AsyncRead + Unpin, cap: u64) -> Result<Vec<u8>, ()> {
    let mut bytes = Vec::new();
    reader.take(cap.saturating_add(1)).read_to_end(&mut bytes).await.map_err(|_| ())?;
    if u64::try_from(bytes.len()).unwrap_or(u64::MAX) > cap { Err(()) } else { Ok(bytes) }
}

/// The first `cap` bytes of `reader`; the rest is read to its end and
/// dropped, so the writer never blocks on a full pipe.
async fn read_head(mut reader: impl AsyncRead + Unpin, cap: u64) -> Vec<u8> {
    let mut head = Vec::new();
    let _ = (&mut reader).take(cap).read_to_end(&mut head).await;
    let _ = tokio::io::copy(&mut reader, &mut tokio::io::sink()).await;
    head
}

/// Why a compiler child that neither succeeded nor refused ended.
fn abnormal_end(status: std::process::ExitStatus, stderr: &str, limits: &CompileLimits) -> LoadError {
    let signal = status.signal();
    if stderr.contains("memory allocation of") || stderr.contains("out of memory") {
        LoadError::CompileLimit(format!(
            "compilation needed more than {} bytes of memory (uploads.compile_memory_bytes)",
            limits.memory_bytes
        ))
    } else if signal == Some(libc::SIGXCPU) {
        LoadError::CompileLimit(format!(
            "compilation used more than {} CPU seconds (uploads.compile_cpu_seconds)",
            limits.cpu_seconds
        ))
    } else if signal == Some(libc::SIGKILL) {
        // The hard CPU limit, a second past the soft one, or the kernel out
        // of memory: nothing else may signal the child.
        LoadError::CompileLimit(format!(
            "the compiler was killed: it used more than {} CPU seconds (uploads.compile_cpu_seconds), or the \
             host ran out of memory",
            limits.cpu_seconds
        ))
    } else {
        LoadError::Compile(format!(
            "the compiler failed ({}): {}",
            signal.map_or_else(|| status.to_string(), |s| format!("signal {s}")),
            stderr.lines().last().unwrap_or_default()
        ))
    }
}
