//! tocsin's vocabulary: the types and rules every layer of the host speaks,
//! and nothing that acts.
//!
//! It imports nothing of tocsin's but [`tocsin_contract`]; every other part
//! of the host builds on it. Modules:
//! - [`bindings`]: the one `bindgen!` of the `tocsin:notifier` WIT world.
//! - [`alarm`]: the [`alarm::Alarm`] and the [`alarm::Delivery`] being
//!   handled.
//! - [`tenancy`]: tokens, callers, owners, and who may claim which scheme.
//! - [`grants`]: what the operator grants one plugin, by owner.
//! - [`schemes`]: the platform's schemes.
//! - [`limits`]: the per-call limits operators and tenants set.
//! - [`caps`]: every hard cap beneath them, in one list.
//! - [`logtext`]: a plugin's text made safe for the operator's log.
//! - [`hosts`]: how host names are compared.
//! - [`keys`]: the host's own key files.
//! - [`time`]: timestamps and durations as records and logs write them.

// The docs are the maintainers': `cargo doc --document-private-items`.
#![allow(rustdoc::private_intra_doc_links)]

pub mod alarm;
pub mod bindings;
pub mod caps;
pub mod grants;
pub mod hosts;
pub mod keys;
pub mod limits;
pub mod logtext;
pub mod schemes;
pub mod tenancy;
pub mod time;
