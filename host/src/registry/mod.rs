//! Which plugin handles which action scheme.
//!
//! The built-ins (`log`, `test`, `http` for `http` and `https`) are built
//! from `notifiers/` with the host and embedded in its binary. Aodh's other
//! schemes (`trust+http`, `trust+https`, `zaqar`, `trust+zaqar`,
//! `trust+heat`) are reserved for the platform and refused clearly until
//! tocsin implements them.

pub(crate) mod catalog;
pub mod changes;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use arc_swap::ArcSwap;
use serde::{Deserialize, Serialize};
use tocsin_contract::action;
use tocsin_core::grants::PluginConfig;
use tocsin_core::hosts::host_key;
use tocsin_core::limits::{LimitBounds, Limits};
use tocsin_core::tenancy::Owner;

use crate::capabilities::http::HttpGrants;
use crate::capabilities::secrets::SharedSecrets;
use crate::sandbox::validate::LoadError;
use crate::sandbox::{Plugin, PluginSpec, Sandbox};
use crate::store::VersionRow;

/// The built-in components, embedded by `build.rs`.
pub mod builtin {
    include!(concat!(env!("OUT_DIR"), "/builtin_components.rs"));

    /// The built-in notifier named `name` (`log`, `http`, `test`).
    pub fn component(name: &str) -> Option<&'static [u8]> {
        match name {
            "log" => Some(LOG),
            "http" => Some(HTTP),
            "test" => Some(TEST),
            _ => None,
        }
    }

    pub use tocsin_core::schemes::BUILTIN as SCHEMES;
}

/// Why an action's scheme has no plugin.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResolveError {
    /// The action URL cannot be parsed (Aodh: "Unable to parse action").
    #[error("unable to parse action {0}")]
    Unparsable(String),
    /// Nobody registered the scheme (Aodh: "Action … is unknown").
    #[error("no notifier is registered for scheme {0:?}")]
    Unknown(String),
    /// Aodh has it, tocsin does not implement it yet.
    #[error("scheme {0:?} is reserved for a platform notifier that tocsin does not implement yet")]
    NotImplemented(String),
}

/// Where a plugin comes from: its origin, not its name, decides what the
/// platform grants it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// Embedded in the host binary, built from `notifiers/`.
    Builtin,
    /// Anything else: a file, a tenant upload.
    External,
}

/// What the operator grants plugins: the default limits, and by owner
/// and plugin name their overrides, extra hosts and TLS leniency. Uploads
/// get the same by their owner and scheme; the bounds every plugin's
/// limits must keep come with them.
#[derive(Debug, Clone)]
pub struct PlatformGrants {
    /// Default per-call limits (`[limits]`).
    pub limits: Limits,
    /// What the built-in notifiers are told (`[notifiers]`).
    pub notifiers: NotifiersConfig,
    /// The operator's own plugins' settings (`[plugins.<name>]`).
    pub plugins: BTreeMap<String, PluginConfig>,
    /// Tenants' notifiers' settings, by tenant, then scheme
    /// (`[tenants.<tenant>.plugins.<scheme>]`).
    pub tenant_plugins: BTreeMap<String, BTreeMap<String, PluginConfig>>,
    /// What the engine and HTTP settings allow limits to be.
    pub bounds: LimitBounds,
}

impl PlatformGrants {
    /// The settings of `owner`'s plugin `name`: the operator's plugins'
    /// from `[plugins]`, a tenant's from its own `plugins` only, so that no
    /// name a tenant can claim reaches what the operator granted another
    /// owner.
    pub fn plugin(&self, owner: &Owner, name: &str) -> Option<&PluginConfig> {
        match owner {
            Owner::Operator => self.plugins.get(name),
            Owner::Tenant(tenant) => self.tenant_plugins.get(tenant)?.get(name),
        }
    }

    /// The limits of `owner`'s plugin `name`: the defaults with its
    /// overrides.
    pub(crate) fn limits_for(&self, owner: &Owner, name: &str) -> Limits {
        self.plugin(owner, name).map_or(self.limits, |plugin| self.limits.with(&plugin.limits))
    }
}

/// Settings of the built-in notifiers beyond Aodh's options.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NotifiersConfig {
    /// Show action URLs whole in the built-in notifiers' Aodh log lines,
    /// as Aodh prints them, with only user info and secret-named
    /// parameters hidden; a webhook token in the path is then printed.
    /// Off by default: a line shows the scheme, host and port, and the
    /// rest as `/***`.
    pub whole_action_urls: bool,
}

impl NotifiersConfig {
    /// The WASI environment the built-in notifiers get: these settings,
    /// as [`tocsin_contract::action`] names them.
    fn environment(&self) -> Vec<(String, String)> {
        let whole = self.whole_action_urls.then(|| (action::WHOLE_URLS_ENV.to_owned(), "1".to_owned()));
        whole.into_iter().collect()
    }
}

/// The settings `owner`'s plugin named `name` is loaded with: its limits
/// and the hosts `grants` grants it, looked up by owner and name (see
/// [`PlatformGrants::plugin`]). Every plugin's grants are assembled here
/// and in [`spec_for_upload`]. The embedded `http` notifier also gets the
/// operator's REST-notifier TLS settings and may switch verification off
/// (Aodh's `aodh-alarm-ssl-verify=0`), unless the operator says otherwise.
pub fn spec_for(name: &str, origin: Origin, owner: &Owner, grants: &PlatformGrants) -> PluginSpec {
    let plugin = grants.plugin(owner, name);
    let allowed_hosts =
        plugin.map(|p| p.allow_hosts.iter().map(|h| host_key(h)).collect()).unwrap_or_default();
    let rest_notifier = origin == Origin::Builtin && name == "http";
    let allow_insecure_tls = plugin.and_then(|p| p.allow_insecure_tls).unwrap_or(rest_notifier);
    PluginSpec {
        name: name.to_owned(),
        tenant: owner.tenant().map(str::to_owned),
        limits: grants.limits_for(owner, name),
        environment: if origin == Origin::Builtin { grants.notifiers.environment() } else { Vec::new() },
        grants: HttpGrants {
            allowed_hosts,
            requested_hosts: Vec::new(),
            allow_insecure_tls,
            operator_tls: rest_notifier,
            sign_deliveries: rest_notifier,
            secrets: SharedSecrets::default(),
        },
    }
}

/// The settings a version of an uploaded notifier is loaded with: what
/// [`spec_for`] grants its scheme, with the limits and hosts its upload
/// asked for (held to the operator's maximum when it was uploaded) and its
/// owner's secrets.
pub(crate) fn spec_for_upload(
    scheme: &str,
    owner: &Owner,
    upload: &VersionRow,
    secrets: SharedSecrets,
    grants: &PlatformGrants,
) -> PluginSpec {
    let mut spec = spec_for(scheme, Origin::External, owner, grants);
    spec.limits = spec.limits.with(&upload.limits);
    spec.grants.requested_hosts = upload.allow_hosts.iter().map(|host| host_key(host)).collect();
    spec.grants.secrets = secrets;
    spec
}

/// Scheme → loaded plugin: the built-ins, fixed at start, then the
/// uploaded notifiers, swapped as a whole on every change so that lookups
/// take no lock and a call in flight keeps the plugin it resolved.
#[derive(Debug, Default)]
pub struct Registry {
    by_scheme: HashMap<String, Arc<Plugin>>,
    uploaded: ArcSwap<HashMap<String, Arc<Plugin>>>,
}

impl Registry {
    /// A registry holding the built-in notifiers, compiled for `sandbox`.
    ///
    /// # Errors
    /// [`LoadError`] if a built-in does not load: a build defect.
    pub fn with_builtins(sandbox: &Sandbox, grants: &PlatformGrants) -> Result<Self, LoadError> {
        let mut registry = Registry::default();
        for (name, schemes) in builtin::SCHEMES {
            let bytes = builtin::component(name).unwrap_or_default();
            let plugin =
                Arc::new(sandbox.load(spec_for(name, Origin::Builtin, &Owner::Operator, grants), bytes)?);
            for scheme in *schemes {
                registry.by_scheme.insert((*scheme).to_owned(), Arc::clone(&plugin));
            }
        }
        Ok(registry)
    }

    /// The plugin for the scheme of `action` (lower case, as Python's
    /// `urlsplit` gives it).
    ///
    /// # Errors
    /// [`ResolveError`]: unparsable, unknown, or reserved and not implemented.
    pub fn resolve_action(&self, action: &str) -> Result<Arc<Plugin>, ResolveError> {
        self.resolve(&scheme_of(action)?)
    }

    /// The plugin for `scheme` (lower case, as Python's `urlsplit` gives it).
    ///
    /// # Errors
    /// [`ResolveError`]: unknown, or reserved and not implemented.
    pub fn resolve(&self, scheme: &str) -> Result<Arc<Plugin>, ResolveError> {
        if let Some(plugin) = self.by_scheme.get(scheme) {
            return Ok(Arc::clone(plugin));
        }
        self.uploaded(scheme).ok_or_else(|| unresolved(scheme))
    }

    /// The uploaded notifier live for `scheme`.
    pub fn uploaded(&self, scheme: &str) -> Option<Arc<Plugin>> {
        self.uploaded.load().get(scheme).cloned()
    }

    /// Makes `plugin` the one for `scheme` (an uploaded notifier's new
    /// active version); calls in flight finish on the one they resolved.
    pub(crate) fn install(&self, scheme: &str, plugin: Arc<Plugin>) {
        self.uploaded.rcu(|current| {
            let mut next = HashMap::clone(current);
            next.insert(scheme.to_owned(), Arc::clone(&plugin));
            next
        });
    }

    /// Takes the uploaded notifier of `scheme` out of service; returns the
    /// plugin that served it, which calls in flight still use.
    pub fn remove(&self, scheme: &str) -> Option<Arc<Plugin>> {
        let previous = self.uploaded.rcu(|current| {
            let mut next = HashMap::clone(current);
            next.remove(scheme);
            next
        });
        previous.get(scheme).cloned()
    }
}

/// The scheme of an action URL, lower case, as Python's `urlsplit` gives it.
///
/// # Errors
/// [`ResolveError::Unparsable`] naming the (redacted) action.
pub(crate) fn scheme_of(action: &str) -> Result<String, ResolveError> {
    tocsin_contract::action::split(action).map(|split| split.scheme).map_err(|error| {
        ResolveError::Unparsable(format!("{}: {error}", tocsin_contract::action::display(action)))
    })
}

/// The built-in notifier for the scheme of `action`, without compiling
/// anything (for one-off runs).
///
/// # Errors
/// [`ResolveError`]: unparsable, unknown, or reserved and not implemented.
pub fn builtin_for_action(action: &str) -> Result<&'static str, ResolveError> {
    let scheme = scheme_of(action)?;
    builtin::SCHEMES
        .iter()
        .find(|(_, schemes)| schemes.contains(&scheme.as_str()))
        .map(|(name, _)| *name)
        .ok_or_else(|| unresolved(&scheme))
}

/// Why a scheme that no plugin serves has none.
fn unresolved(scheme: &str) -> ResolveError {
    if tocsin_core::schemes::RESERVED.contains(&scheme) {
        ResolveError::NotImplemented(scheme.to_owned())
    } else {
        ResolveError::Unknown(scheme.to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtins_are_found_by_action_scheme_and_others_refused() {
        assert_eq!(builtin_for_action("log://"), Ok("log"));
        assert_eq!(builtin_for_action("HTTPS://h/x"), Ok("http"));
        assert_eq!(
            builtin_for_action("trust+heat://t@h/"),
            Err(ResolveError::NotImplemented("trust+heat".into()))
        );
        assert_eq!(builtin_for_action("nosuch://x"), Err(ResolveError::Unknown("nosuch".into())));
        assert!(matches!(builtin_for_action("http://[::1/x"), Err(ResolveError::Unparsable(_))));
    }

    /// Issue 23, finding 5: at e8aba4b grants were keyed by plugin name, so
    /// a tenant `ops` that claimed `ops-relay` got what the operator
    /// granted its own `ops-relay`: internal hosts with the address
    /// exceptions, insecure TLS, raised limits. Tenants here are given as
    /// they could be at run time, with no check of the configuration file.
    #[test]
    fn operator_grants_reach_only_their_owner() {
        let operators = PluginConfig {
            limits: tocsin_core::limits::LimitOverrides { deadline_ms: Some(60_000), ..Default::default() },
            allow_hosts: vec!["relay.internal".into()],
            allow_insecure_tls: Some(true),
        };
        let acmes = PluginConfig { allow_hosts: vec!["pager.internal".into()], ..Default::default() };
        let grants = PlatformGrants {
            limits: Limits::default(),
            notifiers: NotifiersConfig::default(),
            plugins: BTreeMap::from([("ops-relay".to_owned(), operators)]),
            tenant_plugins: BTreeMap::from([(
                "acme".to_owned(),
                BTreeMap::from([("acme-relay".to_owned(), acmes)]),
            )]),
            bounds: LimitBounds { max_memory_bytes: 1 << 30, max_http_timeout_ms: 60_000 },
        };
        let spec = |scheme: &str, owner: &Owner| spec_for(scheme, Origin::External, owner, &grants);

        let ops = Owner::Tenant("ops".into());
        for (scheme, owner) in
            [("ops-relay", &ops), ("acme-relay", &ops), ("ops-relay", &Owner::Tenant("acme".into()))]
        {
            let claimed = spec(scheme, owner);
            assert!(claimed.grants.allowed_hosts.is_empty(), "{scheme} of {owner:?}");
            assert!(!claimed.grants.allow_insecure_tls, "{scheme} of {owner:?}");
            assert_eq!(claimed.limits, Limits::default(), "{scheme} of {owner:?}");
        }
        let operators = spec("ops-relay", &Owner::Operator);
        assert_eq!(operators.grants.allowed_hosts, ["relay.internal"]);
        assert!(operators.grants.allow_insecure_tls);
        assert_eq!(operators.limits.deadline_ms, 60_000);
        let acmes = spec("acme-relay", &Owner::Tenant("acme".into()));
        assert_eq!(acmes.grants.allowed_hosts, ["pager.internal"]);
        assert_eq!(acmes.tenant.as_deref(), Some("acme"));
    }
}
