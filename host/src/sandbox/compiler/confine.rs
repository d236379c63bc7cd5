//! Confines the compiler child before it reads a byte of the component,
//! as browsers confine their compilers: if a crafted component finds a
//! bug in Cranelift and runs code of its choosing, that code reads nothing
//! the service owns, reaches no network and starts no program.
//!
//! Four [`Layers`], each of which stops those attempts on its own (the
//! confinement test runs a probe under each):
//! - **network**: a network namespace of its own, whose one interface
//!   (loopback) is down;
//! - **filesystem**: a mount namespace of its own whose root is an empty,
//!   read-only tmpfs (`pivot_root`, the old root detached): no
//!   `state_path`, no keys, no programs;
//! - **user**: as root, an unprivileged uid and gid
//!   (`uploads.compiler_user`) with no supplementary groups and no
//!   capabilities; otherwise the caller's own uid, in a user namespace of
//!   its own, with every capability dropped;
//! - **syscalls**: a seccomp filter that allows what compiling needs
//!   (memory, stdin, stdout, threads, time) and answers `EPERM` to the
//!   rest: no `open`, `socket` or `execve`.
//!
//! Also: IPC and UTS namespaces, `no_new_privs`, not dumpable, and
//! (before, by the caller) no inherited file descriptors. Nothing of this
//! can be undone from inside. It needs a single-threaded process
//! (the compiler starts none before), and root or unprivileged user
//! namespaces; where neither is available it fails with what to change,
//! and the service refuses uploads unless the operator opted out.

use std::collections::BTreeMap;

use rustix::mount::{MountFlags, MountPropagationFlags, UnmountFlags};
use rustix::process::{Gid, Uid};
use rustix::thread::{CapabilitySet, CapabilitySets, UnshareFlags};
use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter, SeccompRule,
    TargetArch,
};

/// An existing directory the new root is mounted on (in the child's own
/// mount namespace: the host's `/tmp` is untouched).
const NEW_ROOT: &str = "/tmp";

/// How the service runs its compiler child.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Confinement {
    /// Every layer; a child that cannot apply one refuses to compile.
    Required(Identity),
    /// None: the operator opted out (`uploads.confine_compiler = false`).
    Off,
}

impl Confinement {
    /// The child's command-line flags that say it.
    pub(crate) fn args(&self) -> Vec<String> {
        match self {
            Confinement::Required(identity) => vec![
                "--confine-uid".into(),
                identity.uid.to_string(),
                "--confine-gid".into(),
                identity.gid.to_string(),
            ],
            Confinement::Off => vec!["--unconfined".into()],
        }
    }
}

/// The unprivileged user and group a compiler started as root runs as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Identity {
    /// Its uid (not 0).
    pub uid: u32,
    /// Its gid (not 0).
    pub gid: u32,
}

impl Identity {
    /// The identity `user` names: `uid:gid`, a uid (with its user's
    /// group, or the same number) or a user name. Never root.
    ///
    /// # Errors
    /// What is wrong with `user`.
    pub fn resolve(user: &str) -> Result<Identity, String> {
        let number = |text: &str| text.parse::<u32>().ok();
        let identity = if let Some((uid, gid)) = user.split_once(':') {
            number(uid).zip(number(gid)).map(|(uid, gid)| Identity { uid, gid })
        } else if let Some(uid) = number(user) {
            let entry = nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid)).ok().flatten();
            Some(Identity { uid, gid: entry.map_or(uid, |entry| entry.gid.as_raw()) })
        } else {
            let entry = nix::unistd::User::from_name(user).ok().flatten();
            entry.map(|entry| Identity { uid: entry.uid.as_raw(), gid: entry.gid.as_raw() })
        };
        match identity {
            None => Err(format!("no user {user:?} (uploads.compiler_user: a name, a uid or uid:gid)")),
            Some(identity) if identity.uid == 0 || identity.gid == 0 => {
                Err(format!("uploads.compiler_user {user:?} is root; name an unprivileged user"))
            }
            Some(identity) => Ok(identity),
        }
    }
}

/// Which layers to apply: all of them, but for the test that shows what
/// each one stops.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(clippy::struct_excessive_bools)] // four independent layers
pub struct Layers {
    /// A network namespace with loopback down.
    pub network: bool,
    /// A mount namespace with an empty, read-only root.
    pub filesystem: bool,
    /// An unprivileged identity without capabilities.
    pub user: bool,
    /// The seccomp filter.
    pub syscalls: bool,
}

impl Layers {
    /// Every layer.
    pub const ALL: Layers = Layers { network: true, filesystem: true, user: true, syscalls: true };
}

/// Why the process could not be confined.
#[derive(Debug, thiserror::Error)]
pub enum ConfineError {
    /// Threads are running: namespaces and identities apply to one.
    #[error("the process runs {0} threads; confining it needs exactly one")]
    Threads(String),
    /// The namespaces could not be created.
    #[error(
        "cannot create namespaces: {0}; run tocsin as root, or allow unprivileged user namespaces (sysctl user.max_user_namespaces > 0, kernel.unprivileged_userns_clone = 1)"
    )]
    Namespaces(std::io::Error),
    /// The empty root could not be made.
    #[error("cannot make the compiler's empty root ({step}): {error}")]
    Filesystem {
        /// What failed.
        step: &'static str,
        /// How.
        error: std::io::Error,
    },
    /// The identity or capabilities could not be changed.
    #[error("cannot drop to uid {uid} and gid {gid} without capabilities: {error}")]
    User {
        /// The uid asked for.
        uid: u32,
        /// The gid asked for.
        gid: u32,
        /// How it failed.
        error: std::io::Error,
    },
    /// The seccomp filter could not be built or installed.
    #[error("cannot install the seccomp filter: {0}")]
    Syscalls(String),
}

/// Confines the calling process with `layers`, switching to `identity`
/// if it runs as root; it may start threads afterwards only if `threads`
/// is above 1. Whatever descriptors are open stay open: close what was
/// inherited first ([`close_inherited_files`]).
///
/// # Errors
/// [`ConfineError`]: a layer could not be applied; the process must then
/// not go on to handle what it was to be confined for.
pub fn confine(layers: Layers, identity: Identity, threads: u32) -> Result<(), ConfineError> {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let running = status_field(&status, "Threads:").unwrap_or_default();
    if running != "1" {
        return Err(ConfineError::Threads(running.to_owned()));
    }
    let root = rustix::process::geteuid().is_root();
    let mut namespaces = UnshareFlags::empty();
    if layers.network {
        namespaces |= UnshareFlags::NEWNET;
    }
    if layers.filesystem {
        namespaces |= UnshareFlags::NEWNS;
    }
    if !namespaces.is_empty() || layers.user {
        namespaces |= UnshareFlags::NEWIPC | UnshareFlags::NEWUTS;
        if !root {
            // Unprivileged, the other namespaces need one of users first
            // (the kernel creates it first), in which the process holds
            // the capabilities to set them up.
            namespaces |= UnshareFlags::NEWUSER;
        }
        let (uid, gid) = (rustix::process::getuid(), rustix::process::getgid());
        // SAFETY: `unshare` is unsafe in rustix for `FILES`, which would
        // split the file descriptor table between threads; it is not asked
        // for, and the process has one thread (checked above).
        #[allow(unsafe_code)]
        unsafe { rustix::thread::unshare_unsafe(namespaces) }
            .map_err(|e| ConfineError::Namespaces(e.into()))?;
        if !root {
            map_identity(uid.as_raw(), gid.as_raw())?;
        }
    }
    if layers.filesystem {
        empty_root()?;
    }
    if layers.user {
        drop_identity(root, identity)?;
    }
    rustix::process::set_dumpable_behavior(rustix::process::DumpableBehavior::NotDumpable)
        .map_err(|e| ConfineError::User { uid: identity.uid, gid: identity.gid, error: e.into() })?;
    rustix::thread::set_no_new_privs(true).map_err(|e| ConfineError::Syscalls(e.to_string()))?;
    if layers.syscalls {
        let pid = rustix::process::getpid().as_raw_nonzero().get();
        for filter in syscall_filters(u64::from(pid.unsigned_abs()), threads > 1)? {
            seccompiler::apply_filter(&filter).map_err(|e| ConfineError::Syscalls(e.to_string()))?;
        }
    }
    Ok(())
}

/// In a new user namespace: maps the process's uid and gid to themselves
/// (an unmapped identity cannot even make the directory the root moves
/// to), with `setgroups` denied as the kernel requires.
fn map_identity(uid: u32, gid: u32) -> Result<(), ConfineError> {
    let write = |file: &str, text: String| {
        std::fs::write(format!("/proc/self/{file}"), text).map_err(ConfineError::Namespaces)
    };
    write("setgroups", "deny".into())?;
    write("uid_map", format!("{uid} {uid} 1"))?;
    write("gid_map", format!("{gid} {gid} 1"))
}

/// Makes the root an empty, read-only tmpfs and detaches the old one, in
/// the process's own mount namespace.
fn empty_root() -> Result<(), ConfineError> {
    let step = |step: &'static str| {
        move |error: rustix::io::Errno| ConfineError::Filesystem { step, error: error.into() }
    };
    // Nothing done here may reach the host's mounts.
    rustix::mount::mount_change("/", MountPropagationFlags::REC | MountPropagationFlags::PRIVATE)
        .map_err(step("make the mounts private"))?;
    let hardened = MountFlags::NOSUID | MountFlags::NODEV | MountFlags::NOEXEC;
    rustix::mount::mount("tocsin-compiler", NEW_ROOT, "tmpfs", hardened, c"size=16k,mode=0755")
        .map_err(step("mount a tmpfs"))?;
    let old = format!("{NEW_ROOT}/old");
    std::fs::create_dir(&old)
        .map_err(|error| ConfineError::Filesystem { step: "make a directory", error })?;
    rustix::process::pivot_root(NEW_ROOT, old.as_str()).map_err(step("pivot_root"))?;
    std::env::set_current_dir("/").map_err(|error| ConfineError::Filesystem { step: "chdir /", error })?;
    rustix::mount::unmount("/old", UnmountFlags::DETACH).map_err(step("detach the old root"))?;
    std::fs::remove_dir("/old").map_err(|error| ConfineError::Filesystem { step: "remove /old", error })?;
    rustix::mount::mount_remount("/", hardened | MountFlags::RDONLY, "")
        .map_err(step("make the root read-only"))
}

/// As root: becomes `identity`, with no groups (which also clears every
/// capability). Otherwise: drops every capability the user namespace
/// gave.
fn drop_identity(root: bool, identity: Identity) -> Result<(), ConfineError> {
    let failed = |error: rustix::io::Errno| ConfineError::User {
        uid: identity.uid,
        gid: identity.gid,
        error: error.into(),
    };
    if root {
        if identity.uid == 0 || identity.gid == 0 {
            return Err(failed(rustix::io::Errno::INVAL));
        }
        // The process has one thread: these per-thread calls are the
        // process's.
        rustix::thread::set_thread_groups(&[]).map_err(failed)?;
        let gid = Gid::from_raw(identity.gid);
        rustix::thread::set_thread_res_gid(gid, gid, gid).map_err(failed)?;
        let uid = Uid::from_raw(identity.uid);
        rustix::thread::set_thread_res_uid(uid, uid, uid).map_err(failed)?;
    }
    let none = CapabilitySets {
        effective: CapabilitySet::empty(),
        permitted: CapabilitySet::empty(),
        inheritable: CapabilitySet::empty(),
    };
    rustix::thread::set_capabilities(None, none).map_err(failed)?;
    let left = rustix::thread::capabilities(None).map_err(failed)?;
    if !left.effective.is_empty() || !left.permitted.is_empty() {
        return Err(failed(rustix::io::Errno::PERM));
    }
    Ok(())
}

/// The calls the compiler makes once confined, found by tracing it
/// compiling the built-in notifiers and large components on one and on
/// several threads; every other call fails with `EPERM`.
/// - `tgkill` reaches this process (`pid`) only: a panic's abort, not
///   another process of the same user.
/// - `prctl` only names things.
/// - Without `threads`, no `clone` at all; with them, `clone` makes
///   threads only, never processes, and `clone3`, whose flags are in
///   memory where a filter cannot look, fails with `ENOSYS` (which makes
///   the C library fall back to `clone`) through a first filter, whose
///   error the kernel returns whatever the second, the allowlist, says.
fn syscall_filters(pid: u64, threads: bool) -> Result<Vec<BpfProgram>, ConfineError> {
    let failed = |error: seccompiler::BackendError| ConfineError::Syscalls(error.to_string());
    let arch =
        TargetArch::try_from(std::env::consts::ARCH).map_err(|e| ConfineError::Syscalls(e.to_string()))?;
    let when = |conditions: Vec<(u8, SeccompCmpArgLen, SeccompCmpOp, u64)>| {
        conditions
            .into_iter()
            .map(|(arg, len, op, value)| SeccompCondition::new(arg, len, op, value))
            .collect::<Result<Vec<_>, _>>()
            .and_then(SeccompRule::new)
            .map_err(failed)
    };
    let mut rules: BTreeMap<i64, Vec<SeccompRule>> = ALLOWED.iter().map(|&call| (call, Vec::new())).collect();
    rules.insert(libc::SYS_tgkill, vec![when(vec![(0, SeccompCmpArgLen::Dword, SeccompCmpOp::Eq, pid)])?]);
    let prctl = ALLOWED_PRCTL
        .iter()
        .map(|&option| when(vec![(0, SeccompCmpArgLen::Dword, SeccompCmpOp::Eq, option)]))
        .collect::<Result<Vec<_>, _>>()?;
    rules.insert(libc::SYS_prctl, prctl);
    let mut filters = Vec::new();
    if threads {
        let clone3 = BTreeMap::from([(libc::SYS_clone3, Vec::new())]);
        filters.push(
            SeccompFilter::new(clone3, SeccompAction::Allow, SeccompAction::Errno(ENOSYS), arch)
                .and_then(BpfProgram::try_from)
                .map_err(failed)?,
        );
        let thread = (0, SeccompCmpArgLen::Qword, SeccompCmpOp::MaskedEq(CLONE_THREAD), CLONE_THREAD);
        rules.insert(libc::SYS_clone, vec![when(vec![thread])?]);
        rules.insert(libc::SYS_clone3, Vec::new());
    }
    // The allowlist last: it has no `seccomp` for another filter after it.
    filters.push(
        SeccompFilter::new(rules, SeccompAction::Errno(EPERM), SeccompAction::Allow, arch)
            .and_then(BpfProgram::try_from)
            .map_err(failed)?,
    );
    Ok(filters)
}

/// Closes every file descriptor past stderr: the service's own are
/// close-on-exec, but what its launcher left open is not, and would stay
/// open in a confined process.
pub fn close_inherited_files() {
    let Ok(entries) = std::fs::read_dir("/proc/self/fd") else { return };
    let open: Vec<i32> = entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse().ok())
        .filter(|&fd| fd > 2)
        .collect();
    for fd in open {
        // The directory's own descriptor is among them, closed already.
        let _ = nix::unistd::close(fd);
    }
}

/// `CLONE_THREAD`.
const CLONE_THREAD: u64 = libc::CLONE_THREAD as u64;
/// `EPERM`.
const EPERM: u32 = libc::EPERM as u32;
/// `ENOSYS`.
const ENOSYS: u32 = libc::ENOSYS as u32;

/// What compiling needs; see [`syscall_filters`].
const ALLOWED: &[i64] = &[
    // stdin, stdout, stderr
    libc::SYS_read,
    libc::SYS_write,
    libc::SYS_close,
    // memory
    libc::SYS_mmap,
    libc::SYS_munmap,
    libc::SYS_mprotect,
    libc::SYS_madvise,
    libc::SYS_brk,
    // threads (`clone` and `prctl` have rules of their own)
    libc::SYS_futex,
    libc::SYS_set_robust_list,
    libc::SYS_rseq,
    libc::SYS_sched_yield,
    libc::SYS_sched_getaffinity,
    libc::SYS_gettid,
    libc::SYS_exit,
    // signals: the runtime's handlers, and a panic's abort
    libc::SYS_rt_sigaction,
    libc::SYS_rt_sigprocmask,
    libc::SYS_rt_sigreturn,
    libc::SYS_sigaltstack,
    libc::SYS_getpid,
    // time, randomness, what it used, the end
    libc::SYS_clock_gettime,
    libc::SYS_getrandom,
    libc::SYS_getrusage,
    libc::SYS_exit_group,
];

/// The `prctl` options allowed: naming a thread, naming a mapping (the
/// allocator does).
const ALLOWED_PRCTL: &[u64] = &[libc::PR_SET_NAME as u64, libc::PR_SET_VMA as u64];

/// A field of a `/proc/<pid>/status` text, trimmed.
pub(crate) fn status_field<'a>(status: &'a str, name: &str) -> Option<&'a str> {
    status.lines().find_map(|line| line.strip_prefix(name)).map(str::trim)
}

/// A field of a `/proc/<pid>/status` text given in `kB`, in bytes.
pub(crate) fn status_bytes(status: &str, name: &str) -> Option<u64> {
    let kib = status_field(status, name)?.trim_end_matches("kB").trim().parse::<u64>().ok()?;
    Some(kib.saturating_mul(1024))
}
