//! Builds the test plugins the noisy-neighbour benchmark runs, from
//! `tests/plugins/`, and emits their paths (`tocsin_bench::plugins`).

use std::path::Path;

use tocsin_guest_build::Guest;

fn main() {
    let manifest_dir = std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| ".".into());
    let guests = [
        ("FETCH", Guest { package: "tocsin-plugin-fetch", dir: "tests/plugins/fetch" }),
        ("LOG_FLOOD", Guest { package: "tocsin-plugin-log-flood", dir: "tests/plugins/log-flood" }),
        ("SPIN", Guest { package: "tocsin-plugin-spin", dir: "tests/plugins/spin" }),
    ];
    tocsin_guest_build::write_component_paths(&Path::new(&manifest_dir).join(".."), "plugins.rs", &guests);
}
