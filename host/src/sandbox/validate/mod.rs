//! Is it a notifier we may run? Checks a component twice: before it is
//! compiled ([`precheck`]: everything its bytes say), and after
//! ([`check`], [`check_resources`]: what wasmtime compiled), before
//! anything is instantiated.
//!
//! Allowed imports: the `tocsin:notifier` interfaces of a supported
//! version and the WASI interfaces standard libraries need
//! ([`crate::capabilities::wasi::ALLOWED_WASI_PACKAGES`]). Anything else —
//! `wasi:sockets`, `wasi:http`, an unknown package — is refused with an
//! error that names it. The export must be `tocsin:notifier/handler` of a
//! supported version, of exactly the contract's type ([`contract`]), and
//! what a call instantiates must fit the pool's slots and the call's
//! memory limit ([`footprint`]).

mod contract;
pub(crate) mod footprint;

use serde::{Deserialize, Serialize};
use tocsin_core::caps::{MAX_MEMORIES, MAX_REFUSAL_BYTES, MAX_TABLES};
use tocsin_core::logtext::bounded;
use wasmparser::{Parser, Payload, ValidPayload};
use wasmtime::Engine;
use wasmtime::component::Component;

use crate::capabilities::CONTRACT_IMPORTS;
use crate::capabilities::wasi::ALLOWED_WASI_PACKAGES;
use contract::ContractValidator;
use footprint::{Footprint, FootprintReader};

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
    /// The component does not validate: it is malformed, or uses a
    /// feature wasmtime does not enable.
    #[error("not a valid WebAssembly component: {0}")]
    Invalid(String),
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
    /// A call could never instantiate it: more core instances, memories or
    /// tables than the pool's slots, or memories that start above the
    /// call's memory limit.
    #[error("the component is too large for the sandbox: {0}")]
    TooLarge(String),
    /// The compiler could not confine itself (see
    /// [`crate::sandbox::compiler::confine`]), and the operator did not opt
    /// out: no tenant's component is compiled.
    #[error(
        "the compiler cannot be confined, so tenants' components are not compiled: {0} (or set uploads.confine_compiler = false)"
    )]
    Unconfined(String),
    /// Its imports could not be satisfied by the host's linker.
    #[error("cannot link the component: {0}")]
    Link(String),
}

impl LoadError {
    /// The same refusal with its detail escaped and cut to
    /// [`MAX_REFUSAL_BYTES`].
    #[must_use]
    pub fn bounded(self) -> LoadError {
        let cut = |detail: String| bounded(&detail, MAX_REFUSAL_BYTES, &mut false);
        match self {
            LoadError::NotAComponent(detail) => LoadError::NotAComponent(cut(detail)),
            LoadError::Invalid(detail) => LoadError::Invalid(cut(detail)),
            LoadError::Compile(detail) => LoadError::Compile(cut(detail)),
            LoadError::CompileLimit(detail) => LoadError::CompileLimit(cut(detail)),
            LoadError::Artifact(detail) => LoadError::Artifact(cut(detail)),
            LoadError::ForbiddenImport(detail) => LoadError::ForbiddenImport(cut(detail)),
            LoadError::MissingExport(detail) => LoadError::MissingExport(cut(detail)),
            LoadError::ExportMismatch(detail) => LoadError::ExportMismatch(cut(detail)),
            LoadError::TooLarge(detail) => LoadError::TooLarge(cut(detail)),
            LoadError::Unconfined(detail) => LoadError::Unconfined(cut(detail)),
            LoadError::Link(detail) => LoadError::Link(cut(detail)),
        }
    }

    /// Its stable name (`forbidden_import`, …), as the API's `reason`.
    pub fn kind(&self) -> &'static str {
        match self {
            LoadError::NotAComponent(_) => "not_a_component",
            LoadError::Invalid(_) => "invalid",
            LoadError::Compile(_) => "compile",
            LoadError::CompileLimit(_) => "compile_limit",
            LoadError::Artifact(_) => "artifact",
            LoadError::ForbiddenImport(_) => "forbidden_import",
            LoadError::MissingExport(_) => "missing_export",
            LoadError::ExportMismatch(_) => "export_mismatch",
            LoadError::TooLarge(_) => "too_large",
            LoadError::Unconfined(_) => "unconfined",
            LoadError::Link(_) => "link",
        }
    }
}

/// What a component imports and exports.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ComponentInfo {
    /// Imported interface names, e.g. `tocsin:notifier/log@0.1.0`.
    pub imports: Vec<String>,
    /// Exported interface names.
    pub exports: Vec<String>,
}

/// Checks what can be known of `bytes` before compiling them: that they
/// are a valid component, what they import, the exact type of the
/// notifier export, and that a call can instantiate them within the
/// pool's slots and `memory_limit` (the call's `memory_bytes`).
///
/// Returns what a call instantiates.
///
/// # Errors
/// [`LoadError`] naming what to change.
pub(crate) fn precheck(bytes: &[u8], memory_limit: u64) -> Result<Footprint, LoadError> {
    check_header(bytes)?;
    let mut contract = ContractValidator::new()?;
    let mut footprint = FootprintReader::new();
    let (mut imports, mut exports) = (Vec::new(), Vec::new());
    let mut types = None;
    for payload in Parser::new(0).parse_all(bytes) {
        let payload = payload.map_err(invalid)?;
        match contract.validator.payload(&payload).map_err(invalid)? {
            ValidPayload::Func(function, body) => {
                function.into_validator(Default::default()).validate(&body).map_err(invalid)?;
            }
            ValidPayload::End(end) => types = Some(end),
            ValidPayload::Ok | ValidPayload::Parser(_) => {}
        }
        footprint.read(&payload)?;
        match &payload {
            Payload::ComponentImportSection(section) if footprint.depth() == 1 => {
                for import in section.clone() {
                    imports.push(import.map_err(invalid)?.name.name.to_owned());
                }
            }
            Payload::ComponentExportSection(section) if footprint.depth() == 1 => {
                for export in section.clone() {
                    exports.push(export.map_err(invalid)?.name.name.to_owned());
                }
            }
            _ => {}
        }
    }
    let (Some(types), Some(footprint)) = (types, footprint.footprint()) else {
        return Err(LoadError::Invalid("the component ends early".into()));
    };
    check_names(&imports, &exports)?;
    let handler = exports.iter().find(|name| is_handler(name)).map_or("", String::as_str);
    contract.check_export(&types, handler)?;
    footprint.check(memory_limit)?;
    Ok(footprint)
}

fn invalid(error: impl std::fmt::Display) -> LoadError {
    LoadError::Invalid(error.to_string())
}

/// Compiles `bytes` as a component.
///
/// # Errors
/// [`LoadError::NotAComponent`] or [`LoadError::Compile`].
pub fn compile(engine: &Engine, bytes: &[u8]) -> Result<Component, LoadError> {
    check_header(bytes)?;
    Component::new(engine, bytes).map_err(|e| LoadError::Compile(format!("{e:#}")))
}

/// Refuses what is not a component at all: a core module (with the
/// command that builds a component) or something else.
fn check_header(bytes: &[u8]) -> Result<(), LoadError> {
    const COMPONENT_HEADER: [u8; 8] = [0x00, 0x61, 0x73, 0x6d, 0x0d, 0x00, 0x01, 0x00];
    match bytes.get(..8) {
        Some(header) if header == COMPONENT_HEADER => Ok(()),
        Some(header) if header[..4] == COMPONENT_HEADER[..4] => Err(LoadError::NotAComponent(
            "this is a core wasm module; build with `--target wasm32-wasip2` to get a component".into(),
        )),
        _ => Err(LoadError::NotAComponent("no wasm header".into())),
    }
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
    check_names(&info.imports, &info.exports)?;
    Ok(info)
}

/// Refuses the first import no notifier may have, or the lack of a
/// notifier export of a supported version.
fn check_names(imports: &[String], exports: &[String]) -> Result<(), LoadError> {
    if let Some(refused) = imports.iter().find(|name| !import_allowed(name)) {
        return Err(LoadError::ForbiddenImport(refused.clone()));
    }
    if !exports.iter().any(|name| is_handler(name)) {
        return Err(LoadError::MissingExport(format!(
            "a notifier exports {HANDLER_EXPORT}@{}; this component exports [{}]",
            SUPPORTED_VERSIONS.join("|"),
            exports.join(", ")
        )));
    }
    Ok(())
}

/// Whether `name` is the notifier export of a supported version.
fn is_handler(name: &str) -> bool {
    name.strip_prefix(HANDLER_EXPORT)
        .and_then(|rest| rest.strip_prefix('@'))
        .is_some_and(|version| SUPPORTED_VERSIONS.contains(&version))
}

/// Checks what wasmtime compiled against the per-call maxima whatever the
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
    fn a_refusals_detail_is_escaped_and_cut() {
        let long = format!("\u{1b}[31m{}", "n".repeat(10 * MAX_REFUSAL_BYTES));
        let LoadError::ForbiddenImport(detail) = LoadError::ForbiddenImport(long).bounded() else {
            unreachable!()
        };
        assert!(detail.len() <= MAX_REFUSAL_BYTES + 16, "{}", detail.len());
        assert!(!detail.contains('\u{1b}'), "{detail}");
    }

    #[test]
    fn the_kind_of_a_refusal_is_its_serialized_tag() {
        let all = [
            LoadError::NotAComponent(String::new()),
            LoadError::Invalid(String::new()),
            LoadError::Compile(String::new()),
            LoadError::CompileLimit(String::new()),
            LoadError::Artifact(String::new()),
            LoadError::ForbiddenImport(String::new()),
            LoadError::MissingExport(String::new()),
            LoadError::ExportMismatch(String::new()),
            LoadError::TooLarge(String::new()),
            LoadError::Unconfined(String::new()),
            LoadError::Link(String::new()),
        ];
        for error in all {
            assert_eq!(serde_json::to_value(&error).unwrap()["kind"], error.kind());
        }
    }

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
