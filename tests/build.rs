//! Builds the misbehaving plugins in `tests/plugins/` from source for
//! `wasm32-wasip2` and emits their paths as constants (`tocsin_tests::plugins`).

use std::path::Path;

use tocsin_guest_build::Guest;

/// (constant name, package, directory) of every test plugin.
const PLUGINS: &[(&str, &str, &str)] = &[
    ("SPIN", "tocsin-plugin-spin", "tests/plugins/spin"),
    ("MEMORY_BOMB", "tocsin-plugin-memory-bomb", "tests/plugins/memory-bomb"),
    ("RECURSION", "tocsin-plugin-recursion", "tests/plugins/recursion"),
    ("PANIC", "tocsin-plugin-panic", "tests/plugins/panic"),
    ("LOG_FLOOD", "tocsin-plugin-log-flood", "tests/plugins/log-flood"),
    ("FETCH", "tocsin-plugin-fetch", "tests/plugins/fetch"),
    ("SOCKETS", "tocsin-plugin-sockets", "tests/plugins/sockets"),
    ("READ_FILE", "tocsin-plugin-read-file", "tests/plugins/read-file"),
    ("ENV", "tocsin-plugin-env", "tests/plugins/env"),
    ("COUNTER", "tocsin-plugin-counter", "tests/plugins/counter"),
    ("WASI_HTTP", "tocsin-plugin-wasi-http", "tests/plugins/wasi-http"),
    ("POLL_FLOOD", "tocsin-plugin-poll-flood", "tests/plugins/poll-flood"),
];

fn main() {
    let manifest_dir = std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| ".".into());
    let guests: Vec<(&str, Guest<'_>)> =
        PLUGINS.iter().map(|&(name, package, dir)| (name, Guest { package, dir })).collect();
    tocsin_guest_build::write_component_paths(&Path::new(&manifest_dir).join(".."), "plugins.rs", &guests);
}
