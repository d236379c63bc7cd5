//! Every hard cap: the bounds no configuration raises, in one list.
//!
//! Per-call limits an operator or tenant sets are in [`crate::limits`];
//! these sit beneath them and bound what a plugin, a tenant or a sender can
//! make the host hold or do at once, whatever the configuration says. Each
//! is enforced where its mechanism lives (the module named in its
//! section), and a test with a misbehaving plugin hits it.

// ---- The sandbox: one call's store (`sandbox`).

/// Longest failure reason kept from a plugin.
pub const MAX_REASON_BYTES: usize = 1024;

/// Bytes of guest stdout/stderr kept per call (a panic message fits);
/// the rest is dropped.
pub const MAX_OUTPUT_BYTES: usize = 16 << 10;

/// Most bytes one `wasi:random` call returns (wasmtime's default is
/// 64 MiB of host memory per call). Seeds and ids need a few dozen.
pub const MAX_RANDOM_BYTES: u64 = 64 << 10;

/// Most WASI resources (streams, pollables) a call may hold at once.
pub const MAX_RESOURCES: usize = 1024;

/// Table elements a call may hold across all its tables: far above what
/// a compiled Rust or C program needs, far below what would hurt the host.
pub const MAX_TABLE_ELEMENTS: u64 = 100_000;

/// Most core instances one component may create. A Rust `std` component
/// has a handful of each; these are the instance pool's per-component
/// maxima too, so a component past them is refused when it is loaded.
pub const MAX_CORE_INSTANCES: u32 = 16;
/// Most linear memories one component may create; see [`MAX_CORE_INSTANCES`].
pub const MAX_MEMORIES: u32 = 2;
/// Most tables one component may create; see [`MAX_CORE_INSTANCES`].
pub const MAX_TABLES: u32 = 8;

/// Most linear memories one core module may define: the pool's
/// per-module slot (wasmtime's default, named here so the check before
/// compiling and the pool agree). A module with more is refused.
pub const MAX_MEMORIES_PER_MODULE: u32 = 1;
/// Most tables one core module may define; see [`MAX_MEMORIES_PER_MODULE`].
pub const MAX_TABLES_PER_MODULE: u32 = 1;
/// Initial elements of one table: the pool's table slot. A module whose
/// table starts larger could never be instantiated, so it is refused
/// before it is compiled.
pub const MAX_TABLE_ELEMENTS_PER_TABLE: u64 = 20_000;

/// Fuel charged per microsecond of a call's CPU time, at least. A guest
/// burns 1,000 to 8,000 fuel in a microsecond of its own running (a tight
/// loop: 7,500 on the 2-core test machine); at this rate ordinary code is
/// charged by its instructions, and the default fuel (200 M) stands for
/// at most 100 ms of CPU however it is spent. A notification takes tens of
/// microseconds.
pub const FUEL_PER_CPU_MICROSECOND: u64 = 2_000;

/// What an HTTP request carries in its host call besides its body (its URL,
/// and headers of at most [`MAX_HEADER_BYTES`]): `host_call_bytes` must
/// leave this much above `http_request_body_bytes`, so that a body within
/// its limit gets `too-large` or goes out, never ends the call.
pub const HOST_CALL_MARGIN_BYTES: u64 = 256 << 10;

// ---- Capabilities (`capabilities`).

/// Bytes a guest may write per `write` call, as `check-write` reports. A
/// larger write breaks the stream contract and traps: the host would
/// otherwise copy whatever size the guest passes.
pub const MAX_WRITE_BYTES: usize = 64 << 10;

/// Most `key=value` fields kept per line; further fields are dropped and
/// the line counted as truncated.
pub const MAX_LOG_FIELDS: usize = 16;

/// Longest method name accepted.
pub const MAX_METHOD_BYTES: usize = 32;

/// Longest URL accepted.
pub const MAX_URL_BYTES: usize = 8 << 10;

/// Most headers, and most header bytes, a request may carry: headers must
/// not become a way around the body cap.
pub const MAX_HEADERS: usize = 64;

/// Most header bytes a request may carry; see [`MAX_HEADERS`].
pub const MAX_HEADER_BYTES: usize = 64 << 10;

/// Longest secret value, in bytes.
pub const MAX_SECRET_BYTES: usize = 8 << 10;

/// Secrets one notifier may have.
pub const MAX_SECRETS: usize = 32;

/// Placeholders one header value may hold: a token, perhaps with a key or
/// two beside it. Past it, the request is refused before any is filled in.
pub const MAX_PLACEHOLDERS_PER_VALUE: usize = 4;

// ---- Tenants and their uploads (`tenancy`, `registry`, `api`).

/// Longest scheme accepted.
pub const MAX_SCHEME_LEN: usize = 64;

/// Longest detail of a refused component (an import's name, what its
/// exports are, where its type differs) kept in the answer and the log:
/// names in a component are the uploader's to choose.
pub const MAX_REFUSAL_BYTES: usize = 2048;

/// The time a client has to send an upload's body (16 MiB at 280 KB/s):
/// a slow one would hold its place in the compile queue.
pub const UPLOAD_BODY_TIME: std::time::Duration = std::time::Duration::from_secs(60);

/// Bytes of the compiler child's stderr kept (its error and its usage);
/// the rest is read and dropped.
pub const MAX_COMPILER_STDERR_BYTES: u64 = 64 << 10;

/// Dry runs at once on one host (each holds an instance slot for up to its
/// deadline, outside dispatch's concurrency bounds).
pub const MAX_DRY_RUNS: usize = 4;

/// Of [`MAX_DRY_RUNS`], how many one caller may run at once: one tenant's
/// dry runs waiting on an endpoint that never answers leave the others
/// theirs.
pub const MAX_DRY_RUNS_PER_CALLER: usize = 1;

/// The largest body of a dry run: an alarm is a few hundred bytes, and its
/// reading costs time in proportion to its size and depth.
pub const MAX_DRY_RUN_BYTES: usize = 64 << 10;

// ---- The service (`dispatch`) and what senders write (`tocsin_contract`).

/// Per-plugin or per-host slot tables past this many keys drop the idle ones.
pub const MAX_IDLE_KEYS: usize = 4096;

/// Deepest nesting of `reason_data` read, as Python's `json` limits it.
pub use tocsin_contract::json::MAX_DEPTH as MAX_JSON_DEPTH;
/// Most digits of an integer in `reason_data`, as Python limits it.
pub use tocsin_contract::json::MAX_INT_DIGITS as MAX_JSON_INT_DIGITS;
