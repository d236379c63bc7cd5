//! Uploaded components are compiled in a child process, and what it
//! compiled is cached on disk.
//!
//! Cranelift cannot be interrupted in-process, and a hostile upload can be
//! built to make it run for minutes or allocate gigabytes (a compile
//! bomb). So uploads are compiled by `tocsin compile-component`, a child
//! with an empty environment, a CPU-time and an address-space rlimit, and
//! a wall-clock timeout after which it is killed; at most
//! [`MAX_CONCURRENT_COMPILES`] run at once. The service only ever
//! deserializes an [`Artifact`], and only this module makes one: from the
//! child's output, or from the cache after checking the HMAC tocsin wrote
//! with a key that never leaves `state_path/artifacts/`. Cache entries are
//! keyed by the component's SHA-256 and the engine's compatibility hash,
//! so a wasmtime upgrade or a changed engine setting recompiles.

use std::hash::{Hash as _, Hasher};
use std::io::Write as _;
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _};
use std::os::unix::process::ExitStatusExt as _;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use hmac::{Hmac, Mac as _};
use sha2::{Digest as _, Sha256};
use tocsin_core::caps::MAX_CONCURRENT_COMPILES;
use tocsin_core::time::millis;
use tokio::io::AsyncWriteExt as _;
use tokio::sync::Semaphore;
use wasmtime::Engine;

use crate::sandbox::validate::LoadError;

/// The hidden subcommand that compiles one component.
pub(crate) const COMPILE_COMMAND: &str = "compile-component";

/// The compiler process's exit code when it refuses the component (the
/// reason is on its stdout, as JSON); any other failure is its crash.
pub(crate) const REFUSED_EXIT_CODE: u8 = 3;

/// Bytes of the MAC at the start of a cached artifact.
const MAC_BYTES: usize = 32;

/// What a compilation may use.
#[derive(Debug, Clone, Copy)]
pub struct CompileLimits {
    /// CPU seconds (`RLIMIT_CPU`).
    pub cpu_seconds: u64,
    /// Address space in bytes (`RLIMIT_AS`).
    pub memory_bytes: u64,
    /// Wall-clock time before the child is killed.
    pub timeout: Duration,
    /// The engine's WebAssembly stack size, which the child's engine
    /// must share.
    pub max_wasm_stack_bytes: usize,
}

/// A compiled component that tocsin produced: the only input
/// [`crate::sandbox::Sandbox::load_artifact`] takes.
#[derive(Debug)]
pub struct Artifact(Vec<u8>);

impl Artifact {
    /// The serialized component.
    pub(super) fn bytes(&self) -> &[u8] {
        &self.0
    }
}

/// Runs the compiler child and keeps its artifacts.
#[derive(Debug)]
pub struct Compiler {
    program: PathBuf,
    limits: CompileLimits,
    dir: PathBuf,
    key: [u8; 32],
    engine_tag: String,
    running: Semaphore,
}

impl Compiler {
    /// A compiler that runs `program compile-component` and caches in
    /// `state_path/artifacts` (created, mode 0700, with its key).
    ///
    /// # Errors
    /// The directory or the key cannot be created or read.
    pub fn new(
        program: PathBuf,
        limits: CompileLimits,
        state_path: &Path,
        engine: &Engine,
    ) -> std::io::Result<Self> {
        let dir = state_path.join("artifacts");
        std::fs::DirBuilder::new().recursive(true).mode(0o700).create(&dir)?;
        let key = tocsin_core::keys::key_file(&dir.join("key"))?;
        let mut hasher = Sha256Hasher(Sha256::new());
        engine.precompile_compatibility_hash().hash(&mut hasher);
        let mut engine_tag = format!("{:x}", hasher.0.finalize());
        engine_tag.truncate(24);
        Ok(Compiler {
            program,
            limits,
            dir,
            key,
            engine_tag,
            running: Semaphore::new(MAX_CONCURRENT_COMPILES),
        })
    }

    /// The artifact of `component`, whose SHA-256 is `sha256`: from the
    /// cache when tocsin wrote it there, else compiled in the child and
    /// cached.
    ///
    /// # Errors
    /// [`LoadError`]: the compiler refused the component, or hit a limit.
    pub async fn artifact(&self, sha256: &str, component: &[u8]) -> Result<Artifact, LoadError> {
        if let Some(artifact) = self.cached(sha256) {
            return Ok(artifact);
        }
        let started = std::time::Instant::now();
        let bytes = self.compile(component).await?;
        tracing::info!(
            sha256,
            elapsed_ms = millis(started.elapsed()),
            artifact_bytes = bytes.len(),
            "registry: Compiled a component."
        );
        if let Err(error) = self.store(sha256, &bytes) {
            tracing::warn!(error = %error, dir = %self.dir.display(), "registry: Cannot cache a compiled notifier.");
        }
        Ok(Artifact(bytes))
    }

    /// The cached artifact of `sha256`, if present and signed by this key.
    pub fn cached(&self, sha256: &str) -> Option<Artifact> {
        let path = self.path(sha256)?;
        let file = std::fs::read(&path).ok()?;
        let (mac, bytes) = file.split_at_checked(MAC_BYTES)?;
        if self.mac(sha256).chain_update(bytes).verify_slice(mac).is_err() {
            tracing::warn!(path = %path.display(), "registry: A cached artifact fails its MAC; compiling again.");
            return None;
        }
        Some(Artifact(bytes.to_vec()))
    }

    fn store(&self, sha256: &str, bytes: &[u8]) -> std::io::Result<()> {
        let path = self.path(sha256).ok_or_else(|| std::io::Error::other("not a sha256"))?;
        let temporary = path.with_extension(format!("tmp{}", uuid::Uuid::new_v4().simple()));
        let mut file =
            std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&temporary)?;
        file.write_all(&self.mac(sha256).chain_update(bytes).finalize().into_bytes())?;
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&temporary, &path)
    }

    /// Deletes the cached artifacts of components not in `keep` (deleted or
    /// pruned versions), of other engines, and unfinished writes older than
    /// an hour; returns how many files went.
    pub(crate) fn retain(&self, keep: &std::collections::HashSet<String>) -> usize {
        let Ok(entries) = std::fs::read_dir(&self.dir) else { return 0 };
        let suffix = format!("-{}.cwasm", self.engine_tag);
        let stale = |path: &Path| {
            let age = std::fs::metadata(path).and_then(|m| m.modified()).ok().and_then(|t| t.elapsed().ok());
            age.is_some_and(|age| age > Duration::from_secs(3600))
        };
        let mut removed = 0;
        for path in entries.filter_map(|entry| entry.ok().map(|entry| entry.path())) {
            let Some(name) = path.file_name().and_then(|name| name.to_str()) else { continue };
            let unused = if name.ends_with(".cwasm") {
                name.strip_suffix(&suffix).is_none_or(|sha256| !keep.contains(sha256))
            } else {
                name.contains(".tmp") && stale(&path)
            };
            if unused && std::fs::remove_file(&path).is_ok() {
                removed += 1;
            }
        }
        removed
    }

    fn path(&self, sha256: &str) -> Option<PathBuf> {
        let valid = sha256.len() == 64 && sha256.bytes().all(|b| b.is_ascii_hexdigit());
        valid.then(|| self.dir.join(format!("{sha256}-{}.cwasm", self.engine_tag)))
    }

    /// The MAC of the artifact of `sha256` for this engine, to be fed its
    /// bytes: an entry cannot be passed off as another component's.
    fn mac(&self, sha256: &str) -> Hmac<Sha256> {
        // A 32-byte key always fits HMAC-SHA256.
        let mac = <Hmac<Sha256> as hmac::Mac>::new_from_slice(&self.key).unwrap_or_else(|_| unreachable!());
        mac.chain_update(sha256.as_bytes())
            .chain_update(b"\0")
            .chain_update(self.engine_tag.as_bytes())
            .chain_update(b"\0")
    }

    async fn compile(&self, component: &[u8]) -> Result<Vec<u8>, LoadError> {
        let _slot = self
            .running
            .acquire()
            .await
            .map_err(|_| LoadError::Compile("the compiler is shut down".into()))?;
        let limits = self.limits;
        let mut child = tokio::process::Command::new(&self.program)
            .arg(COMPILE_COMMAND)
            .args(["--cpu-seconds", &limits.cpu_seconds.to_string()])
            .args(["--memory-bytes", &limits.memory_bytes.to_string()])
            .args(["--max-wasm-stack-bytes", &limits.max_wasm_stack_bytes.to_string()])
            .env_clear()
            .env("TOCSIN_LOG", "error")
            // mimalloc (the binary's allocator) otherwise maps a 1 GiB arena
            // up front, and memory taken from it escapes the address-space
            // limit; with small arenas each one is a new, counted mapping.
            .env("MIMALLOC_ARENA_RESERVE", "32M")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| {
                LoadError::Compile(format!("cannot start the compiler {}: {e}", self.program.display()))
            })?;
        let mut stdin = child.stdin.take().ok_or_else(|| LoadError::Compile("no compiler stdin".into()))?;
        let input = component.to_vec();
        let feed = tokio::spawn(async move {
            // A child that dies early closes the pipe: its status says why.
            let _ = stdin.write_all(&input).await;
        });
        let output = match tokio::time::timeout(limits.timeout, child.wait_with_output()).await {
            Ok(output) => output.map_err(|e| LoadError::Compile(format!("compiler: {e}")))?,
            Err(_) => {
                return Err(LoadError::CompileLimit(format!(
                    "compilation took longer than {} ms and was stopped",
                    limits.timeout.as_millis()
                )));
            }
        };
        feed.abort();
        match output.status.code() {
            Some(0) => Ok(output.stdout),
            Some(code) if code == i32::from(REFUSED_EXIT_CODE) => Err(serde_json::from_slice(&output.stdout)
                .unwrap_or_else(|e| LoadError::Compile(format!("unreadable answer from the compiler: {e}")))),
            _ => Err(abnormal_end(&output, &limits)),
        }
    }
}

/// Why a compiler child that neither succeeded nor refused ended.
fn abnormal_end(output: &std::process::Output, limits: &CompileLimits) -> LoadError {
    let stderr = String::from_utf8_lossy(&output.stderr);
    let signal = output.status.signal();
    if stderr.contains("memory allocation of") || stderr.contains("out of memory") {
        LoadError::CompileLimit(format!(
            "compilation needed more than {} bytes of memory",
            limits.memory_bytes
        ))
    } else if signal == Some(SIGXCPU) || signal == Some(SIGKILL) {
        LoadError::CompileLimit(format!("compilation used more than {} CPU seconds", limits.cpu_seconds))
    } else {
        LoadError::Compile(format!(
            "the compiler failed ({}): {}",
            signal.map_or_else(|| output.status.to_string(), |s| format!("signal {s}")),
            stderr.lines().last().unwrap_or_default()
        ))
    }
}

/// `SIGXCPU`: the soft CPU rlimit was reached.
const SIGXCPU: i32 = 24;
/// `SIGKILL`: the hard CPU rlimit was reached.
const SIGKILL: i32 = 9;

/// Feeds `Hash` output into SHA-256, for a tag that is the same in every
/// process of the same build.
struct Sha256Hasher(Sha256);

impl Hasher for Sha256Hasher {
    fn finish(&self) -> u64 {
        0
    }

    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }
}
