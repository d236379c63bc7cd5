//! tocsin host: an OpenStack alarm notifier whose notifiers are sandboxed
//! WebAssembly components that may only log and make HTTP requests.
//!
//! One action of one alarm takes this path:
//! [`intake`] (an AMQP message) → [`message::decode`] (an alarm and its
//! actions) → [`dispatch`] (one [`delivery::DeliveryRecord`] per action,
//! within its bounds) → [`registry::Registry::resolve`] (the plugin of the
//! action's scheme) → [`sandbox::Sandbox::invoke`] (a fresh store, within
//! its limits) → the plugin calls [`capabilities`] (`log`, and `http`
//! behind the egress policy) → [`sandbox::Invocation`] (delivered, or a
//! typed [`sandbox::CallError`] that says whether a retry may help) → a
//! retry tier or a dead letter, then the ack.
//!
//! # Layout
//!
//! The vocabulary is in two crates below this one: `tocsin-contract`
//! (action URLs, Python's JSON; shared with plugins) and `tocsin-core`
//! (the WIT bindings, the alarm, tenancy, limits and every hard cap).
//! Here, every import points down these layers (`scripts/layers` checks
//! it; `docs/architecture.md` draws them):
//!
//! Mechanisms, each with its own config section:
//! - [`sandbox`]: the wasmtime engine, one fresh store per call, its
//!   limits, the running slots, component checks and the compiler child.
//! - [`capabilities`]: the host functions plugins reach (`log`, `http`,
//!   the WASI subset), the egress policy, secrets and webhook signing.
//! - [`amqp`]: the broker connection, confirmed publishing, acks, backoff.
//! - [`store`]: uploaded notifiers, versioned, in SQL.
//! - [`message`]: OpenStack's two wire formats, decoded and encoded.
//! - [`metrics`]: the Prometheus metrics.
//! - [`telemetry`]: the log's setup.
//! - [`process`]: process-wide settings made at start.
//! - [`throttle`]: a rate and bounded places per caller.
//!
//! The service:
//! - [`registry`]: which plugin serves which scheme; the built-ins, the
//!   operator's grants, uploads ([`registry::catalog`]) and the change
//!   feed between hosts ([`registry::changes`]).
//! - [`dispatch`]: one delivery in its plugin, within the concurrency
//!   bounds, and its outcome.
//! - [`delivery`]: delivery records, the retry policy, what a host
//!   remembers between messages.
//! - [`intake`]: the consumer loop and the handling of each message.
//! - [`api`]: health, metrics and the notifier API, with bearer tokens.
//!
//! Composition:
//! - [`config`]: the sections put together and checked, read once.
//! - [`service`]: the service built from its parts and [`service::run`].
//! - [`commands`]: the `tocsin` subcommands.

// The docs are the maintainers': `cargo doc --document-private-items`.
#![allow(rustdoc::private_intra_doc_links)]

pub mod amqp;
pub mod api;
pub mod capabilities;
pub mod commands;
pub mod config;
pub mod delivery;
pub mod dispatch;
pub mod intake;
pub mod message;
pub mod metrics;
pub mod process;
pub mod registry;
pub mod sandbox;
pub mod service;
pub mod store;
pub mod telemetry;
pub mod throttle;
