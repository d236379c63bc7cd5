//! The notifier export's exact type, checked against the contract before
//! anything is compiled.
//!
//! The contract is the `wit/` package in its binary form, encoded into
//! tocsin by `build.rs`. wasmparser compares the component's export with
//! the contract's as wasmtime's linker would: a function must match
//! exactly, parameter names and all. So an export with the right name and
//! the wrong signature is refused at upload, with where it differs,
//! instead of failing every call at instantiation.

use wasmparser::component_types::{ComponentAnyTypeId, ComponentEntityType, SubtypeCx};
use wasmparser::types::{Types, TypesRef};
use wasmparser::{Validator, WasmFeatures};

use super::LoadError;

/// `wit/` as a WIT package component (see `build.rs`).
const CONTRACT: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/contract.wasm"));

/// A validator that has read the contract, to validate one component
/// with: types can be compared only within one validator.
pub(super) struct ContractValidator {
    /// Reads the component after the contract.
    pub validator: Validator,
    contract: Types,
}

impl ContractValidator {
    /// Reads the contract.
    ///
    /// # Errors
    /// [`LoadError::Invalid`] if the built-in contract does not validate,
    /// which a build of tocsin never produces.
    pub(super) fn new() -> Result<Self, LoadError> {
        let mut validator = Validator::new_with_features(WasmFeatures::default());
        let contract = validator
            .validate_all(CONTRACT)
            .map_err(|error| LoadError::Invalid(format!("the built-in contract: {error}")))?;
        validator.reset();
        Ok(ContractValidator { validator, contract })
    }

    /// Checks that `component` (validated by `self.validator`) exports
    /// `name` with the contract's type.
    ///
    /// # Errors
    /// [`LoadError::ExportMismatch`] saying where the types differ.
    pub(super) fn check_export(&self, component: &Types, name: &str) -> Result<(), LoadError> {
        let mismatch = |why: String| {
            Err(LoadError::ExportMismatch(format!(
                "{name}: {why}; build the notifier against tocsin's WIT (the guest SDK does)"
            )))
        };
        let exported = match component.component_item_for_export(name).map(|item| item.ty) {
            Some(ComponentEntityType::Instance(id)) => &component[id],
            _ => return mismatch("not an exported instance".into()),
        };
        let Some(ComponentEntityType::Instance(expected)) = find_export(self.contract.as_ref(), name) else {
            return mismatch("not in this host's contract".into());
        };
        let mut subtype = SubtypeCx::new_with_refs(component.as_ref(), self.contract.as_ref());
        // Function by function: what the host calls. (The types the
        // interface names are compared where its functions use them.)
        for (function, item) in &self.contract[expected].exports {
            let ComponentEntityType::Func(expected) = item.ty else { continue };
            let Some(found) = exported.exports.get(function) else {
                return mismatch(format!("no function {function}"));
            };
            if let Err(error) =
                subtype.component_entity_type(&found.ty, &ComponentEntityType::Func(expected), 0)
            {
                // Its context, one line each, outermost first: which
                // parameter, what differs.
                return mismatch(format!("function {function}: {}", error.message().replace('\n', ": ")));
            }
        }
        Ok(())
    }
}

/// The type of the instance exported as `name` anywhere in the contract
/// package (under its world, under the package's type).
fn find_export(types: TypesRef<'_>, name: &str) -> Option<ComponentEntityType> {
    let mut pending: Vec<ComponentEntityType> = (0..types.component_type_count())
        .map(|index| ComponentEntityType::Type {
            referenced: types.component_any_type_at(index),
            created: types.component_any_type_at(index),
        })
        .collect();
    // The package nests two levels deep; the bound keeps a malformed
    // contract from looping.
    for _ in 0..64 {
        let entity = pending.pop()?;
        let component = match entity {
            ComponentEntityType::Type { referenced: ComponentAnyTypeId::Component(id), .. }
            | ComponentEntityType::Component(id) => &types[id],
            _ => continue,
        };
        if let Some(item) = component.exports.get(name) {
            return Some(item.ty);
        }
        pending.extend(component.exports.values().map(|item| item.ty));
    }
    None
}
