//! What the operator grants one plugin: limit overrides, extra hosts, TLS
//! leniency.
//!
//! Grants are keyed by owner, never by name alone: `[plugins.<name>]` are
//! the operator's own plugins', `[tenants.<tenant>.plugins.<scheme>]` a
//! tenant's. So a tenant that claims a scheme named like an operator's
//! plugin (tenant `ops` uploading `ops-relay`) gets nothing the operator
//! granted `ops-relay`, whatever the names and prefixes.

use serde::{Deserialize, Serialize};

use crate::limits::LimitOverrides;

/// Settings of one plugin.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PluginConfig {
    /// Overrides of the default limits.
    pub limits: LimitOverrides,
    /// Hosts the plugin may call besides the action URL's host; the
    /// operator's address exceptions (`egress.allow_networks`,
    /// `trusted_hosts`) apply to these only.
    pub allow_hosts: Vec<String>,
    /// May the plugin switch TLS verification off for a request? The
    /// built-in `http` notifier may (Aodh's `aodh-alarm-ssl-verify=0`).
    pub allow_insecure_tls: Option<bool>,
}
