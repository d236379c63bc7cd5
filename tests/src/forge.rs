//! Notifier components forged from a core module written here, for what a
//! Rust guest cannot easily be made to be: a 120k-entry table, a 64 MiB
//! initial memory, 100k functions, an export of the wrong type.
//!
//! The core module implements `tocsin:notifier/handler@0.1.0#notify` by
//! hand (the canonical ABI: one pointer to the lowered arguments in, one
//! to the result out; a bump `cabi_realloc`) and returns `ok`, so a forged
//! notifier that the host accepts really delivers. `wit-component` wraps
//! it into a component against the repository's own `wit/`, as
//! `cargo component` or the `wasm32-wasip2` linker would.

use std::path::Path;

use wasm_encoder::{
    CodeSection, ConstExpr, ElementSection, Elements, ExportKind, ExportSection, Function, FunctionSection,
    GlobalSection, GlobalType, MemArg, MemorySection, MemoryType, Module, RefType, TableSection, TableType,
    TypeSection, ValType,
};
use wit_component::{ComponentEncoder, StringEncoding};
use wit_parser::Resolve;

/// The contract's `notify` with another signature: the name, package and
/// version tocsin looks for, a type it cannot call.
const WRONG_SIGNATURE_WIT: &str = "package tocsin:notifier@0.1.0;

interface handler {
    notify: func(action: string) -> result<_, string>;
}

world notifier {
    export handler;
}
";

/// What to forge; [`Forge::default`] is a small notifier that delivers.
#[derive(Debug, Clone, Copy)]
pub struct Forge {
    /// Initial pages (64 KiB) of the linear memory.
    pub memory_pages: u64,
    /// A function table of this many entries, each filled with a function.
    pub table_entries: Option<u32>,
    /// Extra functions, each `bomb_repeats` blocks of arithmetic: cheap on
    /// the wire, costly for Cranelift (a compile bomb).
    pub bomb_functions: u32,
    /// Blocks of arithmetic in each extra function.
    pub bomb_repeats: u32,
    /// Export `notify(action: string) -> result<_, string>` instead of the
    /// contract's type.
    pub wrong_signature: bool,
}

impl Default for Forge {
    fn default() -> Self {
        Forge {
            memory_pages: 1,
            table_entries: None,
            bomb_functions: 0,
            bomb_repeats: 0,
            wrong_signature: false,
        }
    }
}

impl Forge {
    /// The component.
    ///
    /// # Panics
    /// When `wit/` cannot be read or `wit-component` refuses the module: a
    /// broken test fixture.
    pub fn component(&self) -> Vec<u8> {
        let mut resolve = Resolve::default();
        let package = if self.wrong_signature {
            resolve.push_str("wrong-signature.wit", WRONG_SIGNATURE_WIT)
        } else {
            resolve.push_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("../wit")).map(|(package, _)| package)
        }
        .unwrap_or_else(|error| panic!("wit: {error:#}"));
        let world = resolve.select_world(&[package], Some("notifier")).unwrap_or_else(|e| panic!("{e:#}"));
        let mut module = self.core_module();
        wit_component::embed_component_metadata(&mut module, &resolve, world, StringEncoding::UTF8)
            .unwrap_or_else(|error| panic!("metadata: {error:#}"));
        ComponentEncoder::default()
            .module(&module)
            .and_then(|encoder| encoder.validate(true).encode())
            .unwrap_or_else(|error| panic!("wit-component: {error:#}"))
    }

    fn core_module(&self) -> Vec<u8> {
        let mut types = TypeSection::new();
        types.ty().function([ValType::I32; 4], [ValType::I32]); // 0: cabi_realloc
        if self.wrong_signature {
            types.ty().function([ValType::I32; 2], [ValType::I32]); // 1: notify(string)
        } else {
            types.ty().function([ValType::I32], [ValType::I32]); // 1: notify(pointer to arguments)
        }
        types.ty().function([ValType::I32], [ValType::I32]); // 2: the bomb's functions

        let mut functions = FunctionSection::new();
        let mut code = CodeSection::new();
        functions.function(0);
        code.function(&bump_realloc());
        functions.function(1);
        code.function(&notify_returning_ok());
        let mut bomb = Function::new([(1, ValType::I32)]);
        for _ in 0..self.bomb_repeats {
            bomb.instructions()
                .local_get(0)
                .i32_const(7)
                .i32_mul()
                .local_get(1)
                .i32_add()
                .local_set(1)
                .local_get(1)
                .local_set(0);
        }
        bomb.instructions().local_get(0).end();
        for _ in 0..self.bomb_functions {
            functions.function(2);
            code.function(&bomb);
        }

        let mut memories = MemorySection::new();
        memories.memory(MemoryType {
            minimum: self.memory_pages,
            maximum: None,
            memory64: false,
            shared: false,
            page_size_log2: None,
        });
        let mut globals = GlobalSection::new();
        globals.global(
            GlobalType { val_type: ValType::I32, mutable: true, shared: false },
            &ConstExpr::i32_const(1024),
        );
        let mut exports = ExportSection::new();
        exports.export("memory", ExportKind::Memory, 0);
        exports.export("cabi_realloc", ExportKind::Func, 0);
        // The same name whatever its type: the name is what tocsin finds.
        exports.export("tocsin:notifier/handler@0.1.0#notify", ExportKind::Func, 1);

        let mut tables = TableSection::new();
        let mut elements = ElementSection::new();
        if let Some(entries) = self.table_entries {
            tables.table(TableType {
                element_type: RefType::FUNCREF,
                minimum: u64::from(entries),
                maximum: None,
                table64: false,
                shared: false,
            });
            let filled = vec![1; usize::try_from(entries).unwrap_or(0)];
            elements.active(Some(0), &ConstExpr::i32_const(0), Elements::Functions(filled.into()));
        }

        let mut module = Module::new();
        module.section(&types).section(&functions);
        if self.table_entries.is_some() {
            module.section(&tables);
        }
        module.section(&memories).section(&globals).section(&exports);
        if self.table_entries.is_some() {
            module.section(&elements);
        }
        module.section(&code);
        module.finish()
    }
}

/// `cabi_realloc(old, old_size, align, size)`: a bump allocator from 1024
/// up. A call has a fresh instance, so nothing is ever freed.
fn bump_realloc() -> Function {
    let mut realloc = Function::new([(1, ValType::I32)]);
    realloc
        .instructions()
        // pointer = (next + align - 1) & -align
        .global_get(0)
        .local_get(2)
        .i32_const(1)
        .i32_sub()
        .i32_add()
        .i32_const(0)
        .local_get(2)
        .i32_sub()
        .i32_and()
        .local_tee(4)
        .local_get(3)
        .i32_add()
        .global_set(0)
        .local_get(4)
        .end();
    realloc
}

/// `notify`: writes `ok` (discriminant 0) at address 8 and returns it.
fn notify_returning_ok() -> Function {
    let mut notify = Function::new([]);
    notify
        .instructions()
        .i32_const(8)
        .i32_const(0)
        .i32_store8(MemArg { offset: 0, align: 0, memory_index: 0 })
        .i32_const(8)
        .end();
    notify
}
