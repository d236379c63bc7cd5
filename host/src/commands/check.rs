//! `tocsin check PLUGIN.wasm`: is it a notifier tocsin will run, and what
//! does it import and export? Prints one JSON line.

use std::path::Path;

use anyhow::Context as _;
use serde_json::json;

use super::Exit;
use crate::config::Config;

/// Checks the component at `path`: exit 0 when valid, 1 when not.
///
/// # Errors
/// The file cannot be read or the sandbox cannot start.
pub fn run(config: &Config, path: &Path) -> anyhow::Result<Exit> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let sandbox = crate::service::sandbox(config).context("cannot start the sandbox")?;
    let (exit, report) = match sandbox.inspect(&bytes) {
        Ok(info) => (
            Exit::Success,
            json!({"valid": true, "path": path, "size": bytes.len(), "imports": info.imports, "exports": info.exports}),
        ),
        Err(error) => (Exit::Failure, json!({"valid": false, "path": path, "error": error.to_string()})),
    };
    println!("{report}");
    Ok(exit)
}
