//! What tocsin's host and its notifier plugins agree on, in plain Rust.
//!
//! Both sides read the same action URLs and write the same JSON, so the
//! grammar lives once, here, in a crate that builds for the host and for
//! `wasm32-wasip2` alike. It depends on nothing of tocsin's: the host uses
//! it directly, and the guest SDK re-exports it to plugin authors.
//!
//! - [`action`]: action URLs as Aodh splits them, and as log lines show
//!   them without their secrets.
//! - [`json`]: JSON as Python's `json` reads and writes it (`reason_data`
//!   may hold `NaN`).
#![deny(missing_docs)]

pub mod action;
pub mod json;
