//! What a component takes when a call instantiates it (core instances,
//! linear memories and their initial bytes, tables and their initial
//! elements), read from its sections before anything is compiled, and
//! checked against the instance pool's slots and the call's limits.
//!
//! Instantiations are counted as wasmtime counts them: every core module
//! a component (or a nested component, as often as it is instantiated)
//! instantiates, with the memories and tables that module defines itself.
//! A module or component that is imported, or taken from an instance's
//! exports, cannot be measured before it is compiled: such a component is
//! refused (no toolchain makes one for a notifier).

use tocsin_core::caps::{
    MAX_CORE_INSTANCES, MAX_MEMORIES, MAX_MEMORIES_PER_MODULE, MAX_TABLE_ELEMENTS,
    MAX_TABLE_ELEMENTS_PER_TABLE, MAX_TABLES, MAX_TABLES_PER_MODULE,
};
use wasmparser::{
    ComponentAlias, ComponentExternalKind, ComponentInstance, ComponentOuterAliasKind, ComponentTypeRef,
    Instance, Payload,
};

use super::LoadError;

/// What instantiating something once takes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Footprint {
    /// Core module instances.
    pub core_instances: u64,
    /// Linear memories.
    pub memories: u64,
    /// Their initial size in all, in bytes.
    pub memory_bytes: u64,
    /// Tables.
    pub tables: u64,
    /// Their initial elements in all.
    pub table_elements: u64,
}

impl Footprint {
    fn add(&mut self, other: Footprint) {
        self.core_instances = self.core_instances.saturating_add(other.core_instances);
        self.memories = self.memories.saturating_add(other.memories);
        self.memory_bytes = self.memory_bytes.saturating_add(other.memory_bytes);
        self.tables = self.tables.saturating_add(other.tables);
        self.table_elements = self.table_elements.saturating_add(other.table_elements);
    }

    /// Checks the whole component against the pool's per-component slots
    /// and the call's memory limit (`memory_bytes`).
    ///
    /// # Errors
    /// [`LoadError::TooLarge`] naming what to change.
    pub(crate) fn check(&self, memory_limit: u64) -> Result<(), LoadError> {
        let too_large = |what: String| Err(LoadError::TooLarge(what));
        if self.core_instances > u64::from(MAX_CORE_INSTANCES) {
            return too_large(format!(
                "it instantiates {} core modules; a notifier may instantiate at most {MAX_CORE_INSTANCES}",
                self.core_instances
            ));
        }
        if self.memories > u64::from(MAX_MEMORIES) || self.tables > u64::from(MAX_TABLES) {
            return too_large(format!(
                "{} linear memories and {} tables; a notifier may have at most {MAX_MEMORIES} and {MAX_TABLES}",
                self.memories, self.tables
            ));
        }
        if self.memory_bytes > memory_limit {
            return Err(memory_over_limit(self.memory_bytes, memory_limit));
        }
        if self.table_elements > MAX_TABLE_ELEMENTS {
            return too_large(format!(
                "its tables start with {} elements in all; a notifier may have at most {MAX_TABLE_ELEMENTS}",
                self.table_elements
            ));
        }
        Ok(())
    }
}

/// Memories that start at `bytes`, above the call's `memory_limit`.
pub(crate) fn memory_over_limit(bytes: u64, memory_limit: u64) -> LoadError {
    LoadError::TooLarge(format!(
        "its linear memories start at {bytes} bytes, above the call's memory limit of {memory_limit} bytes \
         (limit memory_bytes): make the initial memory smaller (stack size, static data) or ask for a higher \
         memory_bytes"
    ))
}

/// One module or component whose sections are being read.
#[derive(Debug, Default)]
struct Scope {
    /// The footprint of instantiating each core module of the index space.
    modules: Vec<Footprint>,
    /// The footprint of instantiating each component of the index space.
    components: Vec<Footprint>,
    /// A component: what its instantiations take. A module: what it
    /// defines itself.
    total: Footprint,
}

/// Reads the footprint of a component payload by payload, as wasmparser
/// parses it (after the validator has accepted each payload, so indices
/// are in range).
#[derive(Debug)]
pub(crate) struct FootprintReader {
    /// The enclosing scopes, the outermost first, the one being read last.
    scopes: Vec<Scope>,
    /// Whether each scope is a module.
    is_module: Vec<bool>,
    /// The footprint of the outermost component, once read.
    result: Option<Footprint>,
}

impl FootprintReader {
    /// A reader for a component's payloads, from its `Version`.
    pub(crate) fn new() -> Self {
        FootprintReader { scopes: Vec::new(), is_module: Vec::new(), result: None }
    }

    /// How many modules and components enclose the payload just read (1:
    /// the outermost component's own sections).
    pub(crate) fn depth(&self) -> usize {
        self.scopes.len()
    }

    /// The footprint, once the outermost `End` was read.
    pub(crate) fn footprint(&self) -> Option<Footprint> {
        self.result
    }

    /// Takes one payload into account.
    ///
    /// # Errors
    /// [`LoadError::TooLarge`] for a module past the pool's per-module
    /// slots; [`LoadError::Invalid`] for a section that does not read.
    pub(crate) fn read(&mut self, payload: &Payload<'_>) -> Result<(), LoadError> {
        match payload {
            Payload::Version { encoding, .. } => {
                self.scopes.push(Scope::default());
                self.is_module.push(*encoding == wasmparser::Encoding::Module);
            }
            Payload::End(_) => self.end()?,
            Payload::MemorySection(memories) => {
                for memory in memories.clone() {
                    let memory = memory.map_err(invalid)?;
                    let bytes = memory.initial.saturating_mul(1 << memory.page_size_log2.unwrap_or(16));
                    let own = self.current()?;
                    own.total.memories += 1;
                    own.total.memory_bytes = own.total.memory_bytes.saturating_add(bytes);
                }
            }
            Payload::TableSection(tables) => {
                for table in tables.clone() {
                    let initial = table.map_err(invalid)?.ty.initial;
                    if initial > MAX_TABLE_ELEMENTS_PER_TABLE {
                        return Err(LoadError::TooLarge(format!(
                            "a table of {initial} elements; a table may have at most \
                             {MAX_TABLE_ELEMENTS_PER_TABLE}"
                        )));
                    }
                    let own = self.current()?;
                    own.total.tables += 1;
                    own.total.table_elements = own.total.table_elements.saturating_add(initial);
                }
            }
            Payload::InstanceSection(instances) => {
                for instance in instances.clone() {
                    if let Instance::Instantiate { module_index, .. } = instance.map_err(invalid)? {
                        let scope = self.current()?;
                        let module = scope.modules.get(index(module_index)).copied().unwrap_or_default();
                        scope.total.add(module);
                    }
                }
            }
            Payload::ComponentInstanceSection(instances) => {
                for instance in instances.clone() {
                    if let ComponentInstance::Instantiate { component_index, .. } =
                        instance.map_err(invalid)?
                    {
                        let scope = self.current()?;
                        let component =
                            scope.components.get(index(component_index)).copied().unwrap_or_default();
                        scope.total.add(component);
                    }
                }
            }
            Payload::ComponentAliasSection(aliases) => {
                for alias in aliases.clone() {
                    self.alias(&alias.map_err(invalid)?)?;
                }
            }
            Payload::ComponentImportSection(imports) => {
                for import in imports.clone() {
                    if let ComponentTypeRef::Module(_) | ComponentTypeRef::Component(_) =
                        import.map_err(invalid)?.ty
                    {
                        return Err(unmeasurable("imports"));
                    }
                }
            }
            Payload::ComponentExportSection(exports) => {
                // An export is a new index of its kind.
                for export in exports.clone() {
                    let export = export.map_err(invalid)?;
                    let scope = self.current()?;
                    match export.kind {
                        ComponentExternalKind::Module => {
                            let module = scope.modules.get(index(export.index)).copied().unwrap_or_default();
                            scope.modules.push(module);
                        }
                        ComponentExternalKind::Component => {
                            let component =
                                scope.components.get(index(export.index)).copied().unwrap_or_default();
                            scope.components.push(component);
                        }
                        _ => {}
                    }
                }
            }
            _ => {}
        }
        Ok(())
    }

    fn alias(&mut self, alias: &ComponentAlias<'_>) -> Result<(), LoadError> {
        let (outer, kind, item) = match *alias {
            ComponentAlias::Outer { kind, count, index: item } => (count, kind, item),
            ComponentAlias::InstanceExport {
                kind: ComponentExternalKind::Module | ComponentExternalKind::Component,
                ..
            } => return Err(unmeasurable("takes from an instance's exports")),
            _ => return Ok(()),
        };
        let depth = self.scopes.len().checked_sub(1 + index(outer)).ok_or_else(|| invalid("outer alias"))?;
        let scope = &self.scopes[depth];
        match kind {
            ComponentOuterAliasKind::CoreModule => {
                let module = scope.modules.get(index(item)).copied().unwrap_or_default();
                self.current()?.modules.push(module);
            }
            ComponentOuterAliasKind::Component => {
                let component = scope.components.get(index(item)).copied().unwrap_or_default();
                self.current()?.components.push(component);
            }
            ComponentOuterAliasKind::CoreType | ComponentOuterAliasKind::Type => {}
        }
        Ok(())
    }

    /// Closes the scope being read: a module becomes an entry of its
    /// component's modules, a nested component of its components.
    fn end(&mut self) -> Result<(), LoadError> {
        let (Some(scope), Some(is_module)) = (self.scopes.pop(), self.is_module.pop()) else {
            return Err(invalid("an end without a start"));
        };
        if is_module {
            let own = scope.total;
            if own.memories > u64::from(MAX_MEMORIES_PER_MODULE)
                || own.tables > u64::from(MAX_TABLES_PER_MODULE)
            {
                return Err(LoadError::TooLarge(format!(
                    "a core module defines {} linear memories and {} tables; a module may define at most \
                     {MAX_MEMORIES_PER_MODULE} and {MAX_TABLES_PER_MODULE}",
                    own.memories, own.tables
                )));
            }
            let instantiated = Footprint { core_instances: 1, ..own };
            match self.scopes.last_mut() {
                Some(parent) => parent.modules.push(instantiated),
                None => self.result = Some(instantiated),
            }
        } else {
            match self.scopes.last_mut() {
                Some(parent) => parent.components.push(scope.total),
                None => self.result = Some(scope.total),
            }
        }
        Ok(())
    }

    fn current(&mut self) -> Result<&mut Scope, LoadError> {
        self.scopes.last_mut().ok_or_else(|| invalid("a section outside any module or component"))
    }
}

/// A core module or component whose footprint cannot be known before it
/// is compiled.
fn unmeasurable(how: &str) -> LoadError {
    LoadError::Invalid(format!(
        "the component {how} a core module or component: a notifier's modules must be its own, defined in it, \
         so that what a call instantiates is known before compiling"
    ))
}

fn index(value: u32) -> usize {
    usize::try_from(value).unwrap_or(usize::MAX)
}

fn invalid(error: impl std::fmt::Display) -> LoadError {
    LoadError::Invalid(error.to_string())
}

#[cfg(test)]
mod tests {
    use wasm_encoder::{
        Alias, Component, ComponentAliasSection, ComponentExportKind, ComponentImportSection,
        ComponentInstanceSection, ComponentOuterAliasKind as OuterKind, ComponentTypeRef,
        ComponentTypeSection, InstanceSection, InstanceType, MemorySection, MemoryType, Module, ModuleArg,
        ModuleSection, NestedComponentSection, RefType, TableSection, TableType,
    };

    use super::*;

    /// A module with one memory of `pages` and one table of `elements`.
    fn module(pages: u64, elements: u64) -> Module {
        let mut memories = MemorySection::new();
        memories.memory(MemoryType {
            minimum: pages,
            maximum: None,
            memory64: false,
            shared: false,
            page_size_log2: None,
        });
        let mut tables = TableSection::new();
        tables.table(TableType {
            element_type: RefType::FUNCREF,
            minimum: elements,
            maximum: None,
            table64: false,
            shared: false,
        });
        let mut module = Module::new();
        module.section(&tables).section(&memories);
        module
    }

    fn footprint(bytes: &[u8]) -> Result<Footprint, LoadError> {
        let mut reader = FootprintReader::new();
        for payload in wasmparser::Parser::new(0).parse_all(bytes) {
            reader.read(&payload.map_err(invalid)?)?;
        }
        reader.footprint().ok_or_else(|| invalid("unfinished"))
    }

    #[test]
    fn instantiations_are_counted_through_nested_components_and_outer_aliases() {
        // The outer component defines a module (2 pages, 10 elements), and a
        // nested component that aliases it from outside and instantiates
        // it; the outer one instantiates the nested component twice and the
        // module once more.
        let mut nested = Component::new();
        let mut aliases = ComponentAliasSection::new();
        aliases.alias(Alias::Outer { kind: OuterKind::CoreModule, count: 1, index: 0 });
        nested.section(&aliases);
        let mut instances = InstanceSection::new();
        instances.instantiate(0, Vec::<(&str, ModuleArg)>::new());
        nested.section(&instances);

        let mut outer = Component::new();
        outer.section(&ModuleSection(&module(2, 10)));
        outer.section(&NestedComponentSection(&nested));
        let mut components = ComponentInstanceSection::new();
        components.instantiate(0, Vec::<(&str, ComponentExportKind, u32)>::new());
        components.instantiate(0, Vec::<(&str, ComponentExportKind, u32)>::new());
        outer.section(&components);
        let mut instances = InstanceSection::new();
        instances.instantiate(0, Vec::<(&str, ModuleArg)>::new());
        outer.section(&instances);

        let counted = footprint(&outer.finish()).unwrap();
        assert_eq!(
            counted,
            Footprint {
                core_instances: 3,
                memories: 3,
                memory_bytes: 3 * 2 * 65536,
                tables: 3,
                table_elements: 30
            }
        );
        let refused = counted.check(u64::MAX).unwrap_err().to_string();
        assert!(
            refused.contains("3 linear memories and 3 tables; a notifier may have at most 2 and 8"),
            "{refused}"
        );
        let two = Footprint { memories: 2, ..counted };
        assert!(two.check(393_216).is_ok());
        let refused = two.check(393_215).unwrap_err().to_string();
        assert!(
            refused.contains("start at 393216 bytes, above the call's memory limit of 393215"),
            "{refused}"
        );
    }

    #[test]
    fn a_module_past_the_pools_per_module_slots_is_refused() {
        let mut outer = Component::new();
        let mut memories = MemorySection::new();
        for _ in 0..2 {
            memories.memory(MemoryType {
                minimum: 1,
                maximum: None,
                memory64: false,
                shared: false,
                page_size_log2: None,
            });
        }
        let mut two = Module::new();
        two.section(&memories);
        outer.section(&ModuleSection(&two));
        assert!(
            matches!(footprint(&outer.finish()), Err(LoadError::TooLarge(why)) if why.contains("2 linear memories"))
        );

        let mut outer = Component::new();
        outer.section(&ModuleSection(&module(1, MAX_TABLE_ELEMENTS_PER_TABLE + 1)));
        assert!(
            matches!(footprint(&outer.finish()), Err(LoadError::TooLarge(why)) if why.contains("20001 elements"))
        );
    }

    #[test]
    fn more_instances_than_the_pool_has_slots_for_are_refused() {
        let mut outer = Component::new();
        outer.section(&ModuleSection(&Module::new()));
        let mut instances = InstanceSection::new();
        for _ in 0..=MAX_CORE_INSTANCES {
            instances.instantiate(0, Vec::<(&str, ModuleArg)>::new());
        }
        outer.section(&instances);
        let counted = footprint(&outer.finish()).unwrap();
        assert_eq!(counted.core_instances, u64::from(MAX_CORE_INSTANCES) + 1);
        assert!(counted.check(u64::MAX).unwrap_err().to_string().contains("instantiates 17 core modules"));
    }

    #[test]
    fn a_module_from_an_import_or_an_instances_exports_is_refused() {
        let mut types = ComponentTypeSection::new();
        types.instance(&InstanceType::new());
        let mut imports = ComponentImportSection::new();
        imports.import("m", ComponentTypeRef::Instance(0));
        let mut aliases = ComponentAliasSection::new();
        aliases.alias(Alias::InstanceExport { instance: 0, kind: ComponentExportKind::Module, name: "m" });
        let mut component = Component::new();
        component.section(&types).section(&imports).section(&aliases);
        let refused = footprint(&component.finish()).unwrap_err().to_string();
        assert!(refused.contains("takes from an instance's exports a core module"), "{refused}");
    }
}
