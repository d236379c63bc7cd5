//! Compiles guest crates of this workspace (notifiers, test plugins) to
//! `wasm32-wasip2` components from a build script.
//!
//! `host/build.rs` embeds the built-in notifiers this way and
//! `tests/build.rs` builds the misbehaving plugins, so a plain `cargo build`
//! or `cargo test` always runs components built from the current source:
//! no precompiled artifact is ever checked in or loaded. Guests build with
//! the workspace's `guest` profile into their own target directory, so the
//! nested cargo never waits on the outer one's lock and the debug, release
//! and clippy builds of the host share one guest build.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The target every guest is built for.
pub const TARGET: &str = "wasm32-wasip2";

/// A guest crate to build: its package name and where its sources are,
/// relative to the workspace root (watched for changes).
#[derive(Debug, Clone, Copy)]
pub struct Guest<'a> {
    /// Cargo package name, e.g. `tocsin-notifier-log`.
    pub package: &'a str,
    /// Directory of the crate, relative to the workspace root.
    pub dir: &'a str,
}

/// Builds `guests` and returns the path of each one's `.wasm`, in order.
///
/// Prints the `cargo:rerun-if-changed` lines for the guests' sources, the
/// SDK and the WIT contract.
///
/// # Panics
/// When cargo cannot be run or the build fails: a build script has no
/// better way to stop the build, and cargo shows the message.
pub fn build(workspace_root: &Path, guests: &[Guest<'_>]) -> Vec<PathBuf> {
    for watched in ["wit", "guest-sdk", "Cargo.toml", "Cargo.lock"] {
        println!("cargo:rerun-if-changed={}", workspace_root.join(watched).display());
    }
    for guest in guests {
        println!("cargo:rerun-if-changed={}", workspace_root.join(guest.dir).display());
    }
    let target_dir = std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| workspace_root.join("target"), PathBuf::from)
        .join("guests");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut command = Command::new(cargo);
    command
        .current_dir(workspace_root)
        .args(["build", "--profile", "guest", "--target", TARGET, "--target-dir"])
        .arg(&target_dir);
    for guest in guests {
        command.args(["--package", guest.package]);
    }
    // The outer build's flags and wrappers (clippy, coverage) are for the
    // host target; the guests must not inherit them.
    for var in [
        "CARGO_ENCODED_RUSTFLAGS",
        "RUSTFLAGS",
        "RUSTC_WRAPPER",
        "RUSTC_WORKSPACE_WRAPPER",
        "CARGO_TARGET_DIR",
        "CARGO_BUILD_TARGET",
    ] {
        command.env_remove(var);
    }
    let status =
        command.status().unwrap_or_else(|error| panic!("cannot run cargo to build the guests: {error}"));
    assert!(
        status.success(),
        "building the wasm guests failed ({status}); is the target installed? \
         `rustup target add {TARGET}`"
    );
    guests
        .iter()
        .map(|guest| {
            target_dir.join(TARGET).join("guest").join(format!("{}.wasm", guest.package.replace('-', "_")))
        })
        .collect()
}
