//! tocsin host: an OpenStack alarm notifier whose notifiers are sandboxed
//! WebAssembly components that may only log and make HTTP requests.
//!
//! One action of one alarm takes this path:
//! [`alarm::Alarm`] + action URL → [`registry::Registry::resolve`] (plugin
//! by scheme) → [`sandbox::Sandbox::invoke`] (fresh store, limits) → the
//! plugin calls [`capabilities`] (`log`, `http` behind the egress policy)
//! → [`sandbox::Invocation`] (delivered, or a typed [`sandbox::CallError`]
//! that says whether a retry may help).
//!
//! Modules:
//! - [`config`]: the typed configuration (TOML + `TOCSIN_*`), read once.
//! - [`alarm`]: the alarm and delivery being handled.
//! - [`sandbox`]: the wasmtime engine, per-call stores and limits.
//! - [`capabilities`]: the host functions plugins can reach.
//! - [`registry`]: built-in plugins, scheme resolution, component checks.
//! - [`store`]: uploaded notifiers, versioned, in SQL.
//! - [`api`]: health, metrics and the notifier API, with bearer tokens.
//! - [`commands`]: the `tocsin` subcommands.
//! - [`telemetry`]: logging setup.
//! - [`process`]: process-wide settings made at start.

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
