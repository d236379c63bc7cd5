//! The action schemes the platform keeps: those of the built-in notifiers
//! and Aodh's others. No tenant may claim one (see
//! [`crate::tenancy::claim`]).

/// Built-in notifier name → the schemes it serves.
pub const BUILTIN: &[(&str, &[&str])] =
    &[("log", &["log"]), ("test", &["test"]), ("http", &["http", "https"])];

/// Aodh's schemes that need Keystone or other services: reserved for the
/// platform, not implemented yet.
pub const RESERVED: &[&str] = &["trust+http", "trust+https", "zaqar", "trust+zaqar", "trust+heat"];

/// Whether `scheme` is the platform's: a built-in's or a reserved one.
pub fn is_platform(scheme: &str) -> bool {
    RESERVED.contains(&scheme) || BUILTIN.iter().any(|(_, schemes)| schemes.contains(&scheme))
}
