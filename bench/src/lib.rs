//! The benchmarks' parts: the load and its timeline, the HTTP sink, the
//! notifiers under test, the broker's virtual hosts, `/proc` readings and
//! the report. Two programs use them: `peer-bench` (tocsin against
//! aodh-notifier) and `noisy-neighbour` (one tenant's healthy notifier
//! while another tenant misbehaves).

pub mod load;
pub mod notifiers;
pub mod plugins;
pub mod procfs;
pub mod report;
pub mod sink;
pub mod vhost;
