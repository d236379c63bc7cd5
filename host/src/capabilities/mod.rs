//! The only host functions a plugin can reach: `log`, `http`, and the
//! WASI interfaces standard libraries need, served from an empty context.
//!
//! [`link_all`] puts them in the one [`Linker`] the sandbox uses; per call,
//! each capability keeps its own state ([`log::CallLog`],
//! [`http::CallHttp`]) inside the store.

pub mod egress;
pub mod http;
pub mod log;
pub mod secrets;
pub mod signing;
pub mod wasi;

use tocsin_core::bindings::tocsin::notifier as contract;
use wasmtime::component::{HasData, Linker};

use crate::sandbox::state::StoreState;

struct LogData;

impl HasData for LogData {
    type Data<'a> = &'a mut log::CallLog;
}

struct HttpData;

impl HasData for HttpData {
    type Data<'a> = &'a mut http::CallHttp;
}

/// Links every capability into `linker`.
///
/// # Errors
/// Only if an interface is linked twice: a bug.
pub fn link_all(linker: &mut Linker<StoreState>) -> wasmtime::Result<()> {
    wasi::link(linker)?;
    contract::log::add_to_linker::<StoreState, LogData>(linker, |state| &mut state.log)?;
    contract::http::add_to_linker::<StoreState, HttpData>(linker, |state| &mut state.http)?;
    Ok(())
}
