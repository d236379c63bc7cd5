//! `tocsin check PLUGIN.wasm`: is it a notifier tocsin will run, and what
//! does it import and export? Prints one JSON line. The component is
//! compiled as an upload is: in the confined compiler child, within the
//! `[uploads]` limits.

use std::path::Path;

use anyhow::Context as _;
use serde_json::json;
use tocsin_core::tenancy::Owner;

use super::Exit;
use crate::config::Config;
use crate::registry::{self, Origin};

/// Checks the component at `path`: exit 0 when valid, 1 when not.
///
/// # Errors
/// The file cannot be read, or the sandbox or the compiler cannot start.
pub async fn run(config: &Config, path: &Path) -> anyhow::Result<Exit> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let name = path.file_stem().map_or_else(String::new, |stem| stem.to_string_lossy().into_owned());
    let sandbox = crate::service::sandbox(config).context("cannot start the sandbox")?;
    let compiler = crate::service::compiler(config, None)?;
    let spec = registry::spec_for(&name, Origin::External, &Owner::Operator, &config.grants());
    let (exit, report) = match compiler.load(&sandbox, spec, &bytes).await {
        Ok(plugin) => (
            Exit::Success,
            json!({
                "valid": true, "path": path, "size": bytes.len(),
                "imports": plugin.info().imports, "exports": plugin.info().exports,
            }),
        ),
        Err(error) => (Exit::Failure, json!({"valid": false, "path": path, "error": error.to_string()})),
    };
    println!("{report}");
    Ok(exit)
}
