//! tocsin's configuration: one typed tree, read once at start.
//!
//! Each part of the service owns its section (`[broker]` is
//! [`crate::amqp`]'s, `[sandbox]` the sandbox's, …) with its defaults and
//! its own rules; this module puts the sections together, checks the rules
//! that span several of them, and hands each part what it reads.
//!
//! Sources, later ones winning: built-in defaults (every field has one that
//! runs against a local setup), a TOML file, then `TOCSIN_*` environment
//! variables with `__` between levels (`TOCSIN_LIMITS__MEMORY_BYTES=…`).
//! Unknown keys are an error, in the file and in the environment. Option
//! names Aodh has (`rest_notifier_*`) keep Aodh's meanings.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};
use tocsin_core::hosts::validate_host_entry;
use tocsin_core::limits::{LimitBounds, LimitOverrides, Limits};
use tocsin_core::tenancy::{Caller, TenantConfig, TokenHash, claim};

use crate::api::Callers;
use crate::registry::PlatformGrants;
use crate::registry::catalog::CatalogSettings;
use crate::registry::changes::FeedSettings;
use crate::sandbox::compiler::confine::{Confinement, Identity};
use crate::sandbox::compiler::{CompileLimits, CompileTarget};

pub use crate::amqp::BrokerConfig;
pub use crate::api::ApiConfig;
pub use crate::capabilities::egress::EgressConfig;
pub use crate::capabilities::http::{HttpConfig, SigningKeys};
pub use crate::delivery::DeliveryConfig;
pub use crate::dispatch::DispatchConfig;
pub use crate::intake::config::{IntakeConfig, IntakeSettings, NotificationIntakeConfig, RpcIntakeConfig};
pub use crate::registry::NotifiersConfig;
pub use crate::registry::catalog::UploadsConfig;
pub use crate::sandbox::SandboxConfig;
pub use crate::store::DatabaseConfig;
pub use tocsin_core::grants::PluginConfig;

/// Environment variables with the `TOCSIN_` prefix that are not config
/// keys: they choose the file and the log output (and how long its lines
/// gather), and give `tocsin plugin` the API's address and the caller's
/// token.
const NON_CONFIG_ENV: &[&str] = &["config", "log", "log_format", "log_flush_ms", "api", "token"];

/// Why the configuration could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A source could not be read or parsed, or holds an unknown key.
    #[error("{0}")]
    Invalid(#[from] Box<figment::Error>),
    /// Values that parse but do not fit together.
    #[error("invalid configuration: {0}")]
    Inconsistent(String),
}

/// The whole configuration.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// The wasmtime engine and its instance pool.
    pub sandbox: SandboxConfig,
    /// Default per-call limits of every plugin.
    pub limits: Limits,
    /// Outbound HTTP of plugins (Aodh's REST notifier options included).
    pub http: HttpConfig,
    /// Which destinations plugins may reach.
    pub egress: EgressConfig,
    /// What the built-in notifiers do beyond Aodh's options.
    pub notifiers: NotifiersConfig,
    /// Per-plugin settings, by plugin name (the built-ins are `log`,
    /// `http`, `test`; a plugin loaded from a file is named after its stem).
    pub plugins: BTreeMap<String, PluginConfig>,
    /// The RabbitMQ broker, with oslo.messaging's option names.
    pub broker: BrokerConfig,
    /// Which OpenStack messages `tocsin serve` consumes.
    pub intake: IntakeConfig,
    /// How many deliveries run at once.
    pub dispatch: DispatchConfig,
    /// Retries, dead letters and tocsin's own queues.
    pub delivery: DeliveryConfig,
    /// The HTTP API of `tocsin serve` (health, metrics, notifier uploads)
    /// and who may use it.
    pub api: ApiConfig,
    /// Where uploaded notifiers are stored: oslo.db's `[database]` section.
    pub database: DatabaseConfig,
    /// What an upload may be, and where compiled notifiers are kept.
    pub uploads: UploadsConfig,
    /// The tenants that may upload notifiers, by name: the prefix of their
    /// schemes (`acme` owns `acme-chat`).
    pub tenants: BTreeMap<String, TenantConfig>,
}

impl Config {
    /// Reads the defaults, then `path` if given, then `TOCSIN_*` variables,
    /// and validates the result.
    ///
    /// # Errors
    /// [`ConfigError`] for an unreadable file, a bad value, an unknown key
    /// or values that do not fit together.
    pub fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
        let mut figment = Figment::from(Serialized::defaults(Config::default()));
        if let Some(path) = path {
            figment = figment.merge(Toml::file_exact(path));
        }
        let env = Env::prefixed("TOCSIN_").split("__").ignore(NON_CONFIG_ENV);
        let config: Config = figment.merge(env).extract().map_err(Box::new)?;
        config.validate()?;
        Ok(config)
    }

    /// Checks each section's own rules, then those that span several.
    ///
    /// # Errors
    /// [`ConfigError::Inconsistent`] naming the offending field.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let fail = |message: String| Err(ConfigError::Inconsistent(message));
        let sections = [
            self.sandbox.validate(),
            self.api.validate(),
            self.http.validate(),
            self.egress.validate(),
            self.broker.validate(),
            self.intake.validate(),
            self.dispatch.validate(),
            self.delivery.validate(),
            self.database.validate(),
            self.uploads.validate(),
        ];
        for section in sections {
            section.map_err(ConfigError::Inconsistent)?;
        }
        for host in self.all_plugins().flat_map(|(_, plugin)| &plugin.allow_hosts) {
            validate_host_entry(host).map_err(ConfigError::Inconsistent)?;
        }
        let (prefetch, dispatch) = (self.broker.rabbit_qos_prefetch_count, &self.dispatch);
        if prefetch == 0 || u32::from(prefetch) > dispatch.concurrency {
            return fail(format!(
                "broker.rabbit_qos_prefetch_count ({prefetch}) must be between 1 and dispatch.concurrency ({})",
                dispatch.concurrency
            ));
        }
        if dispatch.concurrency > self.sandbox.instances {
            return fail(format!(
                "dispatch.concurrency ({}) exceeds sandbox.instances ({}): deliveries would wait for instance slots",
                dispatch.concurrency, self.sandbox.instances
            ));
        }
        let bounds = self.limit_bounds();
        let no_overrides = LimitOverrides::default();
        let plugins = std::iter::once(("<defaults>".to_owned(), &no_overrides))
            .chain(self.all_plugins().map(|(name, plugin)| (name, &plugin.limits)));
        for (name, overrides) in plugins {
            bounds.check(&name, &self.limits.with(overrides)).map_err(ConfigError::Inconsistent)?;
        }
        bounds.check("<uploads.max_limits>", &self.uploads.max_limits).map_err(ConfigError::Inconsistent)?;
        self.validate_tenants()
    }

    /// Every plugin's settings, named by where they are in the file
    /// (`log`, `tenants.acme.plugins.acme-relay`).
    fn all_plugins(&self) -> impl Iterator<Item = (String, &PluginConfig)> {
        let operators = self.plugins.iter().map(|(name, plugin)| (name.clone(), plugin));
        let tenants = self.tenants.iter().flat_map(|(tenant, config)| {
            config
                .plugins
                .iter()
                .map(move |(scheme, plugin)| (format!("tenants.{tenant}.plugins.{scheme}"), plugin))
        });
        operators.chain(tenants)
    }

    /// Rules of the tenants: names that can prefix schemes, quotas above 0,
    /// grants only for schemes the tenant may own, and a token of their own
    /// for every caller.
    fn validate_tenants(&self) -> Result<(), ConfigError> {
        let fail = |message: String| Err(ConfigError::Inconsistent(message));
        if let Some(name) = self.tenants.keys().find(|name| !tocsin_core::tenancy::is_tenant_name(name)) {
            return fail(format!(
                "tenants.{name:?}: a tenant name is a lower-case letter followed by lower-case letters and \
                 digits (it prefixes the tenant's schemes: acme-chat)"
            ));
        }
        if let Some((name, _)) = self.tenants.iter().find(|(_, tenant)| tenant.max_concurrent_deliveries == 0)
        {
            return fail(format!("tenants.{name}.max_concurrent_deliveries must be at least 1"));
        }
        for (name, tenant) in &self.tenants {
            let caller = Caller::Tenant(name.clone());
            if let Some(scheme) =
                tenant.plugins.keys().find(|scheme| claim(&caller, scheme, &self.tenants).is_err())
            {
                return fail(format!(
                    "tenants.{name}.plugins.{scheme}: tenant {name} cannot own the scheme {scheme:?}; \
                     its schemes start with \"{name}-\""
                ));
            }
        }
        // Grants used to be keyed by name alone: one written for a tenant's
        // scheme in [plugins] would now go unused, and deliveries fail.
        let owned = |plugin: &str| {
            claim(&Caller::Operator, plugin, &self.tenants)
                .ok()
                .and_then(|owner| owner.tenant().map(str::to_owned))
        };
        if let Some((plugin, tenant)) =
            self.plugins.keys().find_map(|plugin| owned(plugin).map(|tenant| (plugin, tenant)))
        {
            return fail(format!(
                "plugins.{plugin}: the scheme {plugin} is in tenant {tenant}'s prefix, so a notifier of that \
                 name is {tenant}'s, and [plugins] grants only the operator's own plugins. To grant \
                 {tenant}'s notifier, use [tenants.{tenant}.plugins.{plugin}]; a notifier of the operator's \
                 needs a name outside every tenant's prefix"
            ));
        }
        let mut hashes: Vec<_> = self.tenants.values().map(|tenant| tenant.token_sha256).collect();
        hashes.extend(self.api.operator_token_sha256);
        hashes.extend(self.api.metrics_token_sha256);
        let count = hashes.len();
        hashes.sort_by_key(TokenHash::to_hex);
        hashes.dedup();
        if hashes.len() != count {
            return fail(
                "two callers (tenants, the operator, the metrics scraper) have the same token hash: give each its own token"
                    .into(),
            );
        }
        Ok(())
    }

    /// What the engine and HTTP settings allow a plugin's limits to be.
    pub(crate) fn limit_bounds(&self) -> LimitBounds {
        LimitBounds {
            max_memory_bytes: self.sandbox.max_memory_bytes,
            max_http_timeout_ms: self.http.max_timeout_ms,
        }
    }

    /// What the operator grants plugins (`[limits]`, `[plugins.*]`).
    pub fn grants(&self) -> PlatformGrants {
        PlatformGrants {
            limits: self.limits,
            notifiers: self.notifiers.clone(),
            plugins: self.plugins.clone(),
            tenant_plugins: self
                .tenants
                .iter()
                .map(|(name, tenant)| (name.clone(), tenant.plugins.clone()))
                .collect(),
            bounds: self.limit_bounds(),
        }
    }

    /// The sections the intake reads.
    pub fn intake_settings(&self) -> IntakeSettings {
        IntakeSettings {
            broker: self.broker.clone(),
            intake: self.intake.clone(),
            delivery: self.delivery.clone(),
            http: self.http.clone(),
            dispatch: self.dispatch.clone(),
        }
    }

    /// What the catalog of uploaded notifiers reads.
    pub(crate) fn catalog_settings(&self) -> CatalogSettings {
        CatalogSettings {
            uploads: self.uploads.clone(),
            tenants: self.tenants.clone(),
            grants: self.grants(),
            max_field_bytes: self.intake.max_field_bytes,
        }
    }

    /// Where the notifier change feed between hosts runs.
    pub(crate) fn feed_settings(&self) -> FeedSettings {
        FeedSettings {
            exchange: format!("{}.notifier-changes", self.delivery.queue_prefix),
            host: self.intake.host.clone(),
            backoff: self.broker.reconnect_backoff(),
        }
    }

    /// Who may call the API.
    pub fn callers(&self) -> Arc<Callers> {
        Arc::new(Callers {
            operator: self.api.operator_token_sha256,
            metrics: self.api.metrics_token_sha256,
            tenants: self.tenants.clone(),
        })
    }

    /// What compiling one component may use.
    pub(crate) fn compile_limits(&self) -> CompileLimits {
        CompileLimits {
            cpu_seconds: self.uploads.compile_cpu_seconds,
            memory_bytes: self.uploads.compile_memory_bytes,
            timeout: Duration::from_millis(self.uploads.compile_timeout_ms),
            threads: self.uploads.compile_threads,
            max_artifact_bytes: self.uploads.max_artifact_bytes,
            at_once: self.uploads.compiles_at_once,
        }
    }

    /// The engine settings compiled components must match.
    pub(crate) fn compile_target(&self) -> CompileTarget {
        CompileTarget { max_wasm_stack_bytes: self.sandbox.max_wasm_stack_bytes }
    }

    /// How the compiler child is confined.
    ///
    /// # Errors
    /// `uploads.compiler_user` names no unprivileged user.
    pub(crate) fn confinement(&self) -> Result<Confinement, ConfigError> {
        if !self.uploads.confine_compiler {
            return Ok(Confinement::Off);
        }
        Identity::resolve(&self.uploads.compiler_user)
            .map(Confinement::Required)
            .map_err(ConfigError::Inconsistent)
    }
}

#[cfg(test)]
mod tests {
    use tocsin_core::tenancy::Owner;

    use super::*;

    fn load_toml(text: &str) -> Result<Config, ConfigError> {
        let dir = std::env::temp_dir().join(format!("tocsin-config-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("tocsin.toml");
        std::fs::write(&path, text).unwrap();
        let result = Config::load(Some(&path));
        std::fs::remove_dir_all(&dir).unwrap();
        result
    }

    #[test]
    fn defaults_are_valid_and_match_the_documented_values() {
        let config = Config::default();
        config.validate().unwrap();
        assert_eq!(config.limits.memory_bytes, 32 << 20);
        assert_eq!(config.limits.deadline_ms, 30_000);
        assert_eq!(config.http.timeout_ms, 10_000);
        assert!(config.http.rest_notifier_ssl_verify);
        assert!(config.egress.allow_networks.is_empty());
    }

    #[test]
    fn file_values_and_plugin_overrides_apply() {
        let config = load_toml(
            r#"
            [limits]
            fuel = 5000
            [plugins.log.limits]
            memory_bytes = 1048576
            [egress]
            allow_networks = ["127.0.0.1/32"]
            "#,
        )
        .unwrap();
        assert_eq!(config.limits.fuel, 5000);
        assert_eq!(config.grants().limits_for(&Owner::Operator, "log").memory_bytes, 1 << 20);
        assert_eq!(config.grants().limits_for(&Owner::Operator, "log").fuel, 5000);
        assert_eq!(config.grants().limits_for(&Owner::Operator, "other").memory_bytes, 32 << 20);
        assert_eq!(config.egress.allow_networks.len(), 1);
    }

    #[test]
    fn prefetch_dispatch_and_pool_must_nest_and_the_broker_url_parse() {
        let error = load_toml("[broker]\nrabbit_qos_prefetch_count = 100\n").unwrap_err();
        assert!(error.to_string().contains("dispatch.concurrency (64)"), "{error}");
        let error = load_toml("[dispatch]\nconcurrency = 65\n").unwrap_err();
        assert!(error.to_string().contains("sandbox.instances (64)"), "{error}");
        let error = load_toml("[delivery]\nretry_tiers_ms = [5000, 1000]\n").unwrap_err();
        assert!(error.to_string().contains("ascending"), "{error}");
        let error = load_toml("[broker]\ntransport_url = \"kafka://h\"\n").unwrap_err();
        assert!(error.to_string().contains("broker.transport_url"), "{error}");
        let config =
            load_toml("[broker]\nrabbit_qos_prefetch_count = 8\n[dispatch]\nconcurrency = 8\n").unwrap();
        assert_eq!(config.broker.rabbit_qos_prefetch_count, 8);
        assert!(!config.intake.host.is_empty(), "the host defaults to the hostname");
    }

    #[test]
    fn tenants_leave_a_running_slot_to_the_service_and_the_nice_value_is_bounded() {
        let sandbox = |toml: &str| load_toml(&format!("[sandbox]\n{toml}\n")).map(|config| config.sandbox);
        let slots = |toml| sandbox(toml).map(|s| (s.running_calls(), s.tenant_running_calls())).unwrap();
        assert_eq!(slots("running_calls = 3"), (3, 2));
        assert_eq!(slots("running_calls = 1"), (1, 1), "one CPU: tenants share the one slot");
        assert_eq!(slots("running_calls = 4\ntenant_running_calls = 4"), (4, 4));
        assert!(Config::default().sandbox.running_calls() >= 1);
        assert_eq!(Config::default().sandbox.nice, 0);
        for (toml, expected) in [
            ("nice = 20", "sandbox.nice (20) must be between 0 and 19"),
            ("running_calls = 0", "must be at least 1"),
            ("tenant_running_calls = 0", "must be at least 1"),
            (
                "running_calls = 2\ntenant_running_calls = 3",
                "sandbox.tenant_running_calls (3) must not exceed sandbox.running_calls (2)",
            ),
        ] {
            let error = sandbox(toml).unwrap_err();
            assert!(error.to_string().contains(expected), "{toml}: {error}");
        }
    }

    #[test]
    fn a_request_body_limit_leaves_room_for_the_url_and_headers_in_one_host_call() {
        let error = load_toml("[plugins.big.limits]\nhttp_request_body_bytes = 2097152\n").unwrap_err();
        assert!(
            error.to_string().contains(
                "plugin big: host_call_bytes (2097152) must be at least http_request_body_bytes (2097152) + 262144"
            ),
            "{error}"
        );
        let fits = "[plugins.big.limits]\nhttp_request_body_bytes = 2097152\nhost_call_bytes = 2359296\n";
        assert_eq!(
            load_toml(fits).unwrap().grants().limits_for(&Owner::Operator, "big").host_call_bytes,
            2_359_296
        );
    }

    #[test]
    fn unknown_keys_are_refused() {
        let error = load_toml("[limits]\nmemroy_bytes = 1\n").unwrap_err();
        assert!(error.to_string().contains("memroy_bytes"), "{error}");
    }

    #[test]
    fn inconsistent_values_are_refused_with_the_field_named() {
        let error = load_toml("[plugins.big.limits]\nmemory_bytes = 1099511627776\n").unwrap_err();
        assert!(error.to_string().contains("plugin big"), "{error}");
        let error = load_toml("[http]\ntimeout_ms = 20000\n").unwrap_err();
        assert!(error.to_string().contains("max_timeout_ms"), "{error}");
        let error = load_toml("[limits]\ndeadline_ms = 5000\n").unwrap_err();
        assert!(error.to_string().contains("must exceed http.max_timeout_ms"), "{error}");
        let error = load_toml("[plugins.x]\nallow_hosts = [\"hooks.example.com:8443\"]\n").unwrap_err();
        assert!(error.to_string().contains("not a bare host"), "{error}");
        let error = load_toml("[egress]\ntrusted_hosts = [\"10.0.0.1\"]\n").unwrap_err();
        assert!(error.to_string().contains("allow_networks"), "{error}");
        let error = load_toml("[http]\nrest_notifier_certificate_key = \"/k.pem\"\n").unwrap_err();
        assert!(error.to_string().contains("needs rest_notifier_certificate_file"), "{error}");
    }

    #[test]
    fn signing_secrets_are_checked_and_never_shown() {
        let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        let config =
            load_toml(&format!("[http.signing.\"Hooks.Example.com\"]\nsecrets = [\"{secret}\"]\n")).unwrap();
        let keys = &config.http.signing["Hooks.Example.com"];
        assert_eq!(keys.secrets.len(), 1);
        assert!(!format!("{config:?}").contains("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"), "secrets never print");
        let error =
            load_toml("[http.signing.\"h.example\"]\nsecrets = [\"MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\"]\n")
                .unwrap_err();
        assert!(error.to_string().contains("whsec_"), "{error}");
        let error = load_toml("[http.signing.\"h.example\"]\nsecrets = []\n").unwrap_err();
        assert!(error.to_string().contains("has no secrets"), "{error}");
        let one = load_toml(&format!("[http.signing.\"h.example\"]\nsecrets = \"{secret}\"\n")).unwrap();
        assert_eq!(one.http.signing["h.example"].secrets.len(), 1, "one secret as a plain string");
        let error = load_toml("[http.signing.\"h.example\"]\nsecrets = \"whsec_TooShortButSecretish\"\n")
            .unwrap_err();
        assert!(
            !error.to_string().contains("TooShortButSecretish"),
            "a refused secret is not echoed: {error}"
        );
        let twice = format!(
            "[http.signing.\"h.example\"]\nsecrets = [\"{secret}\"]\n[http.signing.\"H.example.\"]\nsecrets = [\"{secret}\"]\n"
        );
        let error = load_toml(&twice).unwrap_err();
        assert!(error.to_string().contains("already listed"), "{error}");
        let error = load_toml(&format!("[http.signing.\"https://h.example\"]\nsecrets = [\"{secret}\"]\n"))
            .unwrap_err();
        assert!(error.to_string().contains("not a bare host"), "{error}");
    }

    #[test]
    fn tenants_need_their_own_tokens_a_valid_name_and_usable_quotas() {
        let hash = |token: &str| TokenHash::of(token).to_hex();
        let tenant = |name: &str, token: &str, extra: &str| {
            format!("[tenants.{name}]\ntoken_sha256 = \"{}\"\n{extra}\n", hash(token))
        };
        let ok = format!("{}{}", tenant("acme", "a", "project_ids = [\"p1\"]"), tenant("globex", "g", ""));
        let config = load_toml(&ok).unwrap();
        assert_eq!(config.tenants["acme"].project_ids, ["p1"]);
        assert_eq!(config.tenants["globex"].max_concurrent_deliveries, 16);
        let refused = [
            (format!("{}{}", tenant("acme", "same", ""), tenant("globex", "same", "")), "same token hash"),
            (
                format!(
                    "[api]\noperator_token_sha256 = \"{}\"\n{}",
                    hash("same"),
                    tenant("acme", "same", "")
                ),
                "same token hash",
            ),
            (tenant("Acme", "a", ""), "tenant name"),
            (tenant("ac-me", "a", ""), "tenant name"),
            (tenant("acme", "a", "max_concurrent_deliveries = 0"), "max_concurrent_deliveries"),
            ("[uploads]\ncompile_cpu_seconds = 0\n".to_owned(), "compile_cpu_seconds"),
            ("[uploads]\nversions_kept = 1\n".to_owned(), "versions_kept"),
            ("[database]\nconnection = \"mysql://u@h/d\"\n".to_owned(), "mysql"),
        ];
        for (text, expected) in refused {
            let error = load_toml(&text).unwrap_err().to_string();
            assert!(error.contains(expected), "{text}: {error}");
        }
    }

    #[test]
    fn the_apis_certificate_and_key_come_together() {
        for half in ["tls_cert_file = \"/c.pem\"", "tls_key_file = \"/k.pem\""] {
            let error = load_toml(&format!("[api]\n{half}\n")).unwrap_err().to_string();
            assert!(error.contains("is set without api.tls_"), "{half}: {error}");
        }
    }

    #[test]
    fn grants_sit_with_their_owner_in_the_file() {
        let tenant = "[tenants.ops]\ntoken_sha256 = \"".to_owned() + &TokenHash::of("t").to_hex() + "\"\n";
        let misplaced = format!("{tenant}[plugins.ops-relay]\nallow_hosts = [\"relay.internal\"]\n");
        let error = load_toml(&misplaced).unwrap_err().to_string();
        assert!(error.contains("use [tenants.ops.plugins.ops-relay]"), "{error}");
        let foreign = format!("{tenant}[tenants.ops.plugins.acme-x]\nallow_hosts = []\n");
        let error = load_toml(&foreign).unwrap_err().to_string();
        assert!(error.contains("tenant ops cannot own the scheme \"acme-x\""), "{error}");
        let bad_host = format!("{tenant}[tenants.ops.plugins.ops-relay]\nallow_hosts = [\"http://x/\"]\n");
        assert!(load_toml(&bad_host).is_err(), "a tenant plugin's hosts are checked as the operator's are");
        let placed = format!("{tenant}[tenants.ops.plugins.ops-relay]\nallow_hosts = [\"relay.internal\"]\n");
        let grants = load_toml(&placed).unwrap().grants();
        let spec = crate::registry::spec_for(
            "ops-relay",
            crate::registry::Origin::External,
            &Owner::Tenant("ops".into()),
            &grants,
        );
        assert_eq!(spec.grants.allowed_hosts, ["relay.internal"]);
    }
}
