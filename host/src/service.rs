//! The service put together: each part built from its sections of the
//! [`Config`], in the order they depend on each other.

use std::sync::Arc;

use crate::capabilities::Capabilities;
use crate::capabilities::egress::{NameLookup, SystemLookup};
use crate::capabilities::http::HttpSetupError;
use crate::config::Config;
use crate::sandbox::{Sandbox, SandboxError};

/// Why a part of the service could not be built.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// The capabilities' process-wide state (the operator's TLS files).
    #[error(transparent)]
    Capabilities(#[from] HttpSetupError),
    /// The wasm engine or its threads.
    #[error(transparent)]
    Sandbox(#[from] SandboxError),
}

/// The sandbox `config` describes, with its capabilities.
///
/// # Errors
/// [`BuildError`] when the engine, its threads or the operator's TLS
/// material cannot be set up.
pub fn sandbox(config: &Config) -> Result<Sandbox, BuildError> {
    sandbox_with_lookup(config, Arc::new(SystemLookup))
}

/// [`sandbox`], with plugins' host names looked up by `lookup` instead of
/// the system resolver (tests point names at internal addresses with it).
///
/// # Errors
/// As [`sandbox`].
pub fn sandbox_with_lookup(config: &Config, lookup: Arc<dyn NameLookup>) -> Result<Sandbox, BuildError> {
    let capabilities = Capabilities::new(&config.http, &config.egress, lookup)?;
    Ok(Sandbox::new(&config.sandbox, capabilities)?)
}
