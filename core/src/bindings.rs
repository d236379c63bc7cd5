//! The one `bindgen!` of the `tocsin:notifier` world, host side.
//!
//! `http.send` is async (the host awaits the network); `log` is a plain
//! call. Both may trap only on a host bug: a refusal is a value.

#![allow(missing_docs, missing_debug_implementations)]

wasmtime::component::bindgen!({
    path: "../wit",
    world: "notifier",
    imports: {
        "tocsin:notifier/http.send": async | trappable,
        default: trappable,
    },
    exports: { default: async },
    ownership: Borrowing { duplicate_if_necessary: true },
});
