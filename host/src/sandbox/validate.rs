//! Is it a notifier we may run? Compiles a component and checks what it
//! imports and exports, before anything is instantiated.
//!
//! Allowed imports: the `tocsin:notifier` interfaces of a supported
//! version and the WASI interfaces standard libraries need
//! ([`crate::capabilities::wasi::ALLOWED_WASI_PACKAGES`]). Anything else —
//! `wasi:sockets`, `wasi:http`, an unknown package — is refused with an
//! error that names it. The export must be `tocsin:notifier/handler` of a
//! supported version.

use serde::{Deserialize, Serialize};
use tocsin_core::caps::{MAX_MEMORIES, MAX_TABLES};
use wasmtime::Engine;
use wasmtime::component::Component;

use crate::capabilities::CONTRACT_IMPORTS;
use crate::capabilities::wasi::ALLOWED_WASI_PACKAGES;

/// The contract versions this host serves.
pub(crate) const SUPPORTED_VERSIONS: &[&str] = &["0.1.0"];

/// The export every notifier has.
const HANDLER_EXPORT: &str = "tocsin:notifier/handler";

/// Why a component cannot be loaded. Serializable: the compiler child
/// reports it to the service as JSON.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
#[serde(tag = "kind", content = "detail", rename_all = "snake_case")]
pub enum LoadError {
    /// The bytes are not a WebAssembly component (a core module, or not
    /// wasm at all).
    #[error("not a WebAssembly component: {0}")]
    NotAComponent(String),
    /// wasmtime could not compile it.
    #[error("cannot compile the component: {0}")]
    Compile(String),
    /// Compiling it took more CPU, memory or time than an upload may.
    #[error("the component is too costly to compile: {0}")]
    CompileLimit(String),
    /// A compiled artifact could not be loaded.
    #[error("cannot load the compiled component: {0}")]
    Artifact(String),
    /// It imports something no plugin may have.
    #[error(
        "import {0} is not allowed: a notifier may import only tocsin:notifier/{{log,http,types}} and the WASI interfaces standard libraries need (wasi:sockets and wasi:http are refused)"
    )]
    ForbiddenImport(String),
    /// It does not export the notifier interface of a supported version.
    #[error("missing export: {0}")]
    MissingExport(String),
    /// It exports the notifier interface, but with other types than the
    /// host's version of the contract.
    #[error("the notifier export does not match the contract: {0}")]
    ExportMismatch(String),
    /// It needs more memories or tables than a call may have.
    #[error("the component is too large for the sandbox: {0}")]
    TooLarge(String),
    /// Its imports could not be satisfied by the host's linker.
    #[error("cannot link the component: {0}")]
    Link(String),
}

/// What a component imports and exports.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ComponentInfo {
    /// Imported interface names, e.g. `tocsin:notifier/log@0.1.0`.
    pub imports: Vec<String>,
    /// Exported interface names.
    pub exports: Vec<String>,
}

/// Compiles `bytes` as a component.
///
/// # Errors
/// [`LoadError::NotAComponent`] or [`LoadError::Compile`].
pub fn compile(engine: &Engine, bytes: &[u8]) -> Result<Component, LoadError> {
    const COMPONENT_HEADER: [u8; 8] = [0x00, 0x61, 0x73, 0x6d, 0x0d, 0x00, 0x01, 0x00];
    match bytes.get(..8) {
        Some(header) if header == COMPONENT_HEADER => {}
        Some(header) if header[..4] == COMPONENT_HEADER[..4] => {
            return Err(LoadError::NotAComponent(
                "this is a core wasm module; build with `--target wasm32-wasip2` to get a component".into(),
            ));
        }
        _ => return Err(LoadError::NotAComponent("no wasm header".into())),
    }
    Component::new(engine, bytes).map_err(|e| LoadError::Compile(format!("{e:#}")))
}

/// Checks the imports and exports of a compiled component.
///
/// # Errors
/// [`LoadError::ForbiddenImport`] naming the first refused import, or
/// [`LoadError::MissingExport`].
pub fn check(engine: &Engine, component: &Component) -> Result<ComponentInfo, LoadError> {
    let ty = component.component_type();
    let info = ComponentInfo {
        imports: ty.imports(engine).map(|(name, _)| name.to_owned()).collect(),
        exports: ty.exports(engine).map(|(name, _)| name.to_owned()).collect(),
    };
    if let Some(refused) = info.imports.iter().find(|name| !import_allowed(name)) {
        return Err(LoadError::ForbiddenImport(refused.clone()));
    }
    let supported = |name: &String| {
        SUPPORTED_VERSIONS.iter().any(|version| *name == format!("{HANDLER_EXPORT}@{version}"))
    };
    if !info.exports.iter().any(supported) {
        return Err(LoadError::MissingExport(format!(
            "a notifier exports {HANDLER_EXPORT}@{}; this component exports [{}]",
            SUPPORTED_VERSIONS.join("|"),
            info.exports.join(", ")
        )));
    }
    Ok(info)
}

/// Checks that the component fits the per-call maxima whatever the
/// allocator: the pool enforces them at compile time, the on-demand
/// allocator only when a call instantiates it.
///
/// # Errors
/// [`LoadError::TooLarge`] naming the resource.
pub(crate) fn check_resources(component: &Component) -> Result<(), LoadError> {
    let Some(required) = component.resources_required() else {
        return Ok(());
    };
    if required.num_memories > MAX_MEMORIES || required.num_tables > MAX_TABLES {
        return Err(LoadError::TooLarge(format!(
            "{} memories and {} tables; a notifier may have at most {MAX_MEMORIES} and {MAX_TABLES}",
            required.num_memories, required.num_tables
        )));
    }
    Ok(())
}

/// Whether one import name is allowed.
pub(crate) fn import_allowed(name: &str) -> bool {
    if ALLOWED_WASI_PACKAGES.iter().any(|prefix| name.starts_with(prefix)) {
        return true;
    }
    let Some(rest) = name.strip_prefix("tocsin:notifier/") else {
        return false;
    };
    let (interface, version) = rest.split_once('@').unwrap_or((rest, ""));
    CONTRACT_IMPORTS.contains(&interface) && SUPPORTED_VERSIONS.contains(&version)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn imports_are_judged_by_package_interface_and_version() {
        for allowed in [
            "tocsin:notifier/log@0.1.0",
            "tocsin:notifier/http@0.1.0",
            "tocsin:notifier/types@0.1.0",
            "wasi:io/streams@0.2.6",
            "wasi:cli/environment@0.2.0",
            "wasi:filesystem/preopens@0.2.3",
        ] {
            assert!(import_allowed(allowed), "{allowed}");
        }
        for refused in [
            "wasi:sockets/tcp@0.2.0",
            "wasi:sockets/instance-network@0.2.6",
            "wasi:http/outgoing-handler@0.2.0",
            "tocsin:notifier/log@9.0.0",
            "tocsin:notifier/secrets@0.1.0",
            "tocsin:notifier/log",
            "evil:pkg/x",
            "wasi:iox/y",
        ] {
            assert!(!import_allowed(refused), "{refused}");
        }
    }
}
