//! The compiler child's confinement, shown with a probe: this binary,
//! started again as `confinement probe …`, goes through the very function
//! the compiler calls (`sandbox::compiler::confine::confine`) and then
//! tries what code smuggled into the compiler would: read the secrets key
//! file, connect to 127.0.0.1, start a thread (a thread bomb), exec a
//! program. The test runs it under
//! each layer alone, under every layer but the last, and under all; each
//! attempt must fail with the error of the layer that stopped it, and
//! (the control) succeed with none.
//!
//! As root it also runs the probe as an unprivileged user, the path of a
//! service that is not root (a user namespace instead of a uid switch).
//! Not as root, only that path runs, and the test says so. Its own
//! harness: confining needs a process with one thread, which libtest's
//! harness is not.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed test

use std::collections::BTreeMap;
use std::io::Read as _;
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt as _;
use std::os::unix::process::CommandExt as _;
use std::path::Path;
use std::process::{Command, ExitCode};

use serde_json::{Value, json};
use tocsin::sandbox::compiler::confine::{self, Identity, Layers, confine};

/// The unprivileged user probes switch to, or run as.
const NOBODY: Identity = Identity { uid: 65534, gid: 65534 };
/// What the probe execs: it prints this when it runs.
const EXECUTED: &str = "probe-exec-ran";

/// The probe's attempts, in order (the exec last: it replaces the probe).
const ATTEMPTS: [&str; 4] =
    ["open the secrets key", "connect to 127.0.0.1", "start a thread", "exec a program"];

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("probe") {
        return probe(&args[2..]);
    }
    let root = rustix::process::geteuid().is_root();
    let fixture = Fixture::new();
    if root {
        as_root(&fixture);
    } else {
        println!("confinement: not root: the uid switch needs root; checking the unprivileged path only");
    }
    unprivileged(&fixture, root);
    println!("confinement: ok");
    ExitCode::SUCCESS
}

/// A secrets key as the service keeps it (0600 in a 0700 directory), and
/// a listener on 127.0.0.1 that counts who reached it.
struct Fixture {
    _dir: tempfile::TempDir,
    key: String,
    listener: TcpListener,
}

impl Fixture {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
        let key = dir.path().join("secrets.key");
        tocsin_core::keys::key_file(&key).unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        Fixture { key: key.display().to_string(), _dir: dir, listener }
    }

    /// Runs this binary as a probe under `layers`, as `as_user` when given,
    /// and returns the error of each attempt (`ok` when it succeeded).
    fn run(&self, binary: &Path, layers: &str, as_user: Option<Identity>) -> BTreeMap<String, String> {
        let port = self.listener.local_addr().unwrap().port().to_string();
        let mut command = Command::new(binary);
        command.args(["probe", layers, &self.key, &port]);
        if let Some(user) = as_user {
            // As root, std drops the supplementary groups with the uid.
            command.uid(user.uid).gid(user.gid);
        }
        let output = command.output().unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout);
        let stderr = String::from_utf8_lossy(&output.stderr);
        let mut results: BTreeMap<String, String> = stdout
            .lines()
            .filter_map(|line| serde_json::from_str::<Value>(line).ok())
            .map(|line| {
                (line["attempt"].as_str().unwrap().to_owned(), line["result"].as_str().unwrap().to_owned())
            })
            .collect();
        if stdout.contains(EXECUTED) {
            results.insert(ATTEMPTS[3].into(), "ok".into());
        }
        assert_eq!(results.len(), ATTEMPTS.len(), "probe {layers}: {stdout}\n{stderr}");
        results
    }
}

/// Every layer alone, all but the seccomp filter, all, and none.
fn as_root(fixture: &Fixture) {
    let binary = std::env::current_exe().unwrap();
    // layers → the error each attempt must end with, and the layer that
    // stopped it.
    let cases: [(&str, [&str; 4]); 7] = [
        ("none", ["ok", "ok", "ok", "ok"]),
        ("network", ["ok", "ENETUNREACH", "ok", "ok"]),
        ("filesystem", ["ENOENT", "ok", "ok", "ENOENT"]),
        ("user", ["EACCES", "ok", "ok", "ok"]),
        ("syscalls", ["EPERM", "EPERM", "EPERM", "EPERM"]),
        ("network,filesystem,user", ["ENOENT", "ENETUNREACH", "ok", "ENOENT"]),
        ("network,filesystem,user,syscalls", ["EPERM", "EPERM", "EPERM", "EPERM"]),
    ];
    let mut reached = 0;
    for (layers, expected) in cases {
        let results = fixture.run(&binary, layers, None);
        for (attempt, want) in ATTEMPTS.iter().zip(expected) {
            let got = &results[*attempt];
            assert_eq!(got, want, "{attempt} under {layers}: {results:?}");
            println!("confinement: {layers:>34}: {attempt:<21} {}", stopped_by(got));
        }
        reached += usize::from(results[ATTEMPTS[1]] == "ok");
    }
    // The listener saw exactly the connections the probes said went through.
    assert_eq!(accepted(&fixture.listener), reached, "connections that reached 127.0.0.1");
}

/// The path of a service that is not root: a user namespace, no uid
/// switch. Run as `nobody` when the test is root.
fn unprivileged(fixture: &Fixture, root: bool) {
    // A copy `nobody` can run, wherever the build lives.
    let copy = tempfile::tempdir().unwrap();
    std::fs::set_permissions(copy.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let binary = copy.path().join("probe");
    std::fs::copy(std::env::current_exe().unwrap(), &binary).unwrap();
    let user = root.then_some(NOBODY);
    let userns = std::fs::read_to_string("/proc/sys/user/max_user_namespaces")
        .is_ok_and(|max| max.trim().parse::<u64>().is_ok_and(|max| max > 0));
    let all = fixture.run(&binary, "network,filesystem,user,syscalls", user);
    if !userns {
        // Refused with what to change, never run unconfined.
        for attempt in ATTEMPTS {
            assert!(all[attempt].contains("allow unprivileged user namespaces"), "{all:?}");
        }
        println!(
            "confinement: unprivileged: no user namespaces here; confinement refused with what to change"
        );
        return;
    }
    for attempt in ATTEMPTS {
        assert_eq!(all[attempt], "EPERM", "{attempt} unprivileged, every layer: {all:?}");
    }
    let below = fixture.run(&binary, "network,filesystem,user", user);
    let expected =
        [("open the secrets key", ["ENOENT", "EACCES"]), ("connect to 127.0.0.1", ["ENETUNREACH"; 2])];
    for (attempt, allowed) in expected {
        assert!(
            allowed.contains(&below[attempt].as_str()),
            "{attempt} unprivileged, below seccomp: {below:?}"
        );
    }
    assert_eq!(below[ATTEMPTS[3]], "ENOENT", "exec unprivileged, below seccomp: {below:?}");
    println!(
        "confinement: unprivileged (user namespace): every attempt stopped: {all:?}, below seccomp: {below:?}"
    );
}

/// Which layer an attempt's error names.
fn stopped_by(result: &str) -> &'static str {
    match result {
        "ok" => "went through",
        "EPERM" => "stopped by the seccomp filter (EPERM)",
        "ENOENT" => "stopped by the empty root (ENOENT)",
        "EACCES" => "stopped by the unprivileged uid (EACCES)",
        "ENETUNREACH" => "stopped by the network namespace (ENETUNREACH)",
        _ => "failed otherwise",
    }
}

/// Connections waiting on the listener (taken here).
fn accepted(listener: &TcpListener) -> usize {
    listener.set_nonblocking(true).unwrap();
    std::iter::from_fn(|| listener.accept().ok()).count()
}

/// `probe LAYERS KEY PORT`: confines itself, then makes the
/// attempts, one JSON line each; the exec, when it works, prints
/// [`EXECUTED`] instead.
fn probe(args: &[String]) -> ExitCode {
    let [layers, key, port] = args else { return ExitCode::from(2) };
    let has = |layer: &str| layers.split(',').any(|name| name == layer);
    let layers = Layers {
        network: has("network"),
        filesystem: has("filesystem"),
        user: has("user"),
        syscalls: has("syscalls"),
    };
    confine::close_inherited_files();
    if let Err(error) = confine(layers, NOBODY, 1) {
        // Each attempt "fails" with the refusal: the probe never goes on
        // unconfined.
        for attempt in ATTEMPTS {
            println!("{}", json!({"attempt": attempt, "result": error.to_string()}));
        }
        return ExitCode::SUCCESS;
    }
    let result = |outcome: std::io::Result<()>| match outcome {
        Ok(()) => "ok".to_owned(),
        Err(error) => errno_name(error.raw_os_error().unwrap_or(0)),
    };
    let open = std::fs::File::open(key).and_then(|mut file| file.read_to_end(&mut Vec::new()).map(|_| ()));
    println!("{}", json!({"attempt": ATTEMPTS[0], "result": result(open)}));
    let connect = std::net::TcpStream::connect(("127.0.0.1", port.parse::<u16>().unwrap_or(0))).map(|_| ());
    println!("{}", json!({"attempt": ATTEMPTS[1], "result": result(connect)}));
    // A compiler on one thread may start none (a thread bomb would take
    // the host's pids).
    let thread = std::thread::Builder::new()
        .spawn(|| ())
        .and_then(|thread| thread.join().map_err(|_| std::io::Error::other("the thread panicked")));
    println!("{}", json!({"attempt": ATTEMPTS[2], "result": result(thread)}));
    // `exec` replaces this process when it works; it returns only the error.
    let exec = Command::new("/bin/echo").arg(EXECUTED).exec();
    println!("{}", json!({"attempt": ATTEMPTS[3], "result": result(Err(exec))}));
    ExitCode::SUCCESS
}

fn errno_name(errno: i32) -> String {
    match errno {
        libc::EPERM => "EPERM".into(),
        libc::ENOENT => "ENOENT".into(),
        libc::EACCES => "EACCES".into(),
        libc::ENETUNREACH => "ENETUNREACH".into(),
        other => format!("errno {other}"),
    }
}
