//! The cache of compiled components: what the compiler child produced,
//! kept on disk with an HMAC so that the service only ever deserializes
//! what tocsin itself compiled.
//!
//! Entries are keyed by the component's SHA-256 and the engine's
//! compatibility hash, so a wasmtime upgrade or a changed engine setting
//! recompiles. The key never leaves `state_path/artifacts/` (mode 0700),
//! which the compiler child cannot see.

use std::hash::{Hash as _, Hasher};
use std::io::Write as _;
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};
use std::time::Duration;

use hmac::{Hmac, Mac as _};
use sha2::{Digest as _, Sha256};
use wasmtime::Engine;

use super::Artifact;

/// Bytes of the MAC at the start of a cached artifact.
const MAC_BYTES: usize = 32;

/// Compiled components on disk, signed by this host's key.
#[derive(Debug)]
pub struct ArtifactCache {
    dir: PathBuf,
    key: [u8; 32],
    engine_tag: String,
}

impl ArtifactCache {
    /// The cache in `state_path/artifacts` (created, mode 0700, with its
    /// key) for artifacts of `engine`.
    ///
    /// # Errors
    /// The directory or the key cannot be created or read.
    pub fn open(state_path: &Path, engine: &Engine) -> std::io::Result<Self> {
        let dir = state_path.join("artifacts");
        std::fs::DirBuilder::new().recursive(true).mode(0o700).create(&dir)?;
        let key = tocsin_core::keys::key_file(&dir.join("key"))?;
        let mut hasher = Sha256Hasher(Sha256::new());
        engine.precompile_compatibility_hash().hash(&mut hasher);
        let mut engine_tag = format!("{:x}", hasher.0.finalize());
        engine_tag.truncate(24);
        Ok(ArtifactCache { dir, key, engine_tag })
    }

    /// The cached artifact of `sha256`, if present and signed by this key.
    pub fn get(&self, sha256: &str) -> Option<Artifact> {
        let path = self.path(sha256)?;
        let file = std::fs::read(&path).ok()?;
        let (mac, bytes) = file.split_at_checked(MAC_BYTES)?;
        if self.mac(sha256).chain_update(bytes).verify_slice(mac).is_err() {
            tracing::warn!(path = %path.display(), "registry: A cached artifact fails its MAC; compiling again.");
            return None;
        }
        Artifact::new(bytes.to_vec())
    }

    /// Keeps `bytes` as the artifact of `sha256`; a failure is logged, and
    /// the next load compiles again.
    pub(super) fn put(&self, sha256: &str, bytes: &[u8]) {
        if let Err(error) = self.write(sha256, bytes) {
            tracing::warn!(error = %error, dir = %self.dir.display(), "registry: Cannot cache a compiled notifier.");
        }
    }

    fn write(&self, sha256: &str, bytes: &[u8]) -> std::io::Result<()> {
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
}

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
