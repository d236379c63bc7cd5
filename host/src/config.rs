//! tocsin's configuration: one typed tree, read once at start.
//!
//! Sources, later ones winning: built-in defaults (every field has one that
//! runs against a local setup), a TOML file, then `TOCSIN_*` environment
//! variables with `__` between levels (`TOCSIN_LIMITS__MEMORY_BYTES=…`).
//! Unknown keys are an error, in the file and in the environment. Option
//! names Aodh has (`rest_notifier_*`) keep Aodh's meanings.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};
use tocsin_core::caps::HOST_CALL_MARGIN_BYTES;
use tocsin_core::hosts::validate_host_entry;
use tocsin_core::limits::{LimitOverrides, Limits};
use tocsin_core::tenancy::TenantConfig;
use tocsin_core::tenancy::TokenHash;

pub use crate::amqp::BrokerConfig;
pub use crate::capabilities::egress::EgressConfig;
pub use crate::capabilities::http::{HttpConfig, SigningKeys};
pub use crate::sandbox::SandboxConfig;

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

/// The OpenStack messages consumed.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IntakeConfig {
    /// This host's name, oslo's `host`: it names the `<topic>.<host>`
    /// queue and the per-host fanout queue. Defaults to the hostname.
    pub host: String,
    /// Largest message body decoded, in bytes; bigger ones are dead-lettered.
    pub max_message_bytes: usize,
    /// Longest field naming an alarm or a message (the alarm's id, name,
    /// severity and states, the message and request ids, each action URL),
    /// in bytes: they are in every log line of the alarm's deliveries. A
    /// message with a longer one is dead-lettered (`field-too-long`); a
    /// dry run with one is refused.
    pub max_field_bytes: usize,
    /// Most actions one alarm message may carry (Aodh's own
    /// `alarm_max_actions` is unlimited by default; an alarm has a
    /// handful). A message with more is dead-lettered whole
    /// (`too-many-actions`), never half delivered.
    pub max_actions: usize,
    /// Most bytes of a message times its actions: each action's retries
    /// and dead letters carry the whole alarm. A message past it is
    /// dead-lettered whole (`too-large-fanout`).
    pub max_fanout_bytes: usize,
    /// Completed message ids remembered to skip repeats (oslo keeps 16).
    pub completed_ids: usize,
    /// On SIGTERM/SIGINT, how long messages in flight may take to finish,
    /// in ms; the broker redelivers what is left.
    pub shutdown_grace_ms: u64,
    /// RPC casts (Ceilometer, Aodh 1.x).
    pub rpc: RpcIntakeConfig,
    /// `alarm.update` notifications (Aodh 2.x and later).
    pub notification: NotificationIntakeConfig,
}

impl IntakeConfig {
    /// What a decoded alarm message may hold.
    pub fn bounds(&self) -> crate::message::Bounds {
        crate::message::Bounds {
            max_field_bytes: self.max_field_bytes,
            max_actions: self.max_actions,
            max_fanout_bytes: self.max_fanout_bytes,
        }
    }
}

impl Default for IntakeConfig {
    fn default() -> Self {
        IntakeConfig {
            host: gethostname::gethostname().to_string_lossy().into_owned(),
            max_message_bytes: 1 << 20,
            max_field_bytes: 4096,
            max_actions: 100,
            max_fanout_bytes: 16 << 20,
            completed_ids: 4096,
            shutdown_grace_ms: 35_000,
            rpc: RpcIntakeConfig::default(),
            notification: NotificationIntakeConfig::default(),
        }
    }
}

/// The RPC intake: queues `<topic>` (shared by all hosts), `<topic>.<host>`
/// and the fanout queue `<topic>_fanout_<host>`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RpcIntakeConfig {
    /// Consume RPC casts.
    pub enabled: bool,
    /// oslo's `control_exchange` of the evaluator (`ceilometer`; `aodh`
    /// for Aodh 1.x).
    pub exchange: String,
    /// `notifier_rpc_topic`.
    pub topic: String,
}

impl Default for RpcIntakeConfig {
    fn default() -> Self {
        RpcIntakeConfig { enabled: true, exchange: "ceilometer".into(), topic: "alarm_notifier".into() }
    }
}

/// The notification intake: queue `<topic>.sample` on the exchange.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NotificationIntakeConfig {
    /// Consume `alarm.update` notifications.
    pub enabled: bool,
    /// oslo's `control_exchange` of Aodh.
    pub exchange: String,
    /// Aodh's `notifier_topic`.
    pub topic: String,
}

impl Default for NotificationIntakeConfig {
    fn default() -> Self {
        NotificationIntakeConfig { enabled: true, exchange: "aodh".into(), topic: "alarming".into() }
    }
}

impl NotificationIntakeConfig {
    /// The queue, and routing key, of alarm notifications: `<topic>.sample`
    /// (oslo's notification topic at priority `sample`).
    pub fn queue(&self) -> String {
        format!("{}.sample", self.topic)
    }
}

/// Concurrency of deliveries.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DispatchConfig {
    /// Deliveries running at once in this process: at most
    /// `sandbox.instances`.
    pub concurrency: u32,
    /// Deliveries running at once per plugin.
    pub per_plugin: u32,
    /// Deliveries running at once per destination host.
    pub per_host: u32,
    /// Deliveries of one message running at once; its other actions wait
    /// their turn, so an alarm with many actions cannot take every slot.
    pub per_message: u32,
    /// The longest a delivery waits for a busy plugin, tenant or
    /// destination slot, in ms. It waits only when a slot is expected
    /// within this time (judged from how long that key's deliveries take);
    /// otherwise, or once this time has passed, it goes to the first retry
    /// tier (without counting an attempt), so a slow destination never
    /// holds up other alarms.
    pub slot_wait_ms: u64,
}

impl Default for DispatchConfig {
    fn default() -> Self {
        DispatchConfig { concurrency: 64, per_plugin: 64, per_host: 16, per_message: 16, slot_wait_ms: 500 }
    }
}

/// The delivery policy and tocsin's own queues (always durable).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DeliveryConfig {
    /// Prefix of tocsin's queues: `<prefix>.deliveries` (work queue),
    /// `<prefix>.retry.<delay>` (tiers), `<prefix>.dead-letters`.
    pub queue_prefix: String,
    /// Delays of the retry tiers, in ms, ascending: a retry waits in the
    /// smallest tier at least as long as its backoff.
    pub retry_tiers_ms: Vec<u64>,
    /// Backoff before the second attempt, in ms; it doubles per attempt
    /// (full jitter) up to the largest tier.
    pub backoff_initial_ms: u64,
    /// Longest retry-after hint honoured, in ms.
    pub retry_after_max_ms: u64,
    /// Attempts of one delivery, the first included, before it is
    /// dead-lettered.
    pub max_attempts: u32,
    /// Time after the first attempt past which no retry is scheduled, in ms.
    pub horizon_ms: u64,
    /// Times this host requeues a message whose retry or dead letter the
    /// broker did not confirm (each after a backoff from
    /// `backoff_initial_ms`, doubling, at most 10 s). The next time it
    /// comes back, what is left of it is dead-lettered
    /// (`too-many-redeliveries`).
    pub max_redeliveries: u32,
    /// (alarm, action) pairs remembered to drop retries superseded by a
    /// newer state change.
    pub supersede_window: usize,
}

impl Default for DeliveryConfig {
    fn default() -> Self {
        DeliveryConfig {
            queue_prefix: "tocsin".into(),
            retry_tiers_ms: vec![1_000, 5_000, 30_000, 120_000, 600_000, 3_600_000],
            backoff_initial_ms: 1_000,
            retry_after_max_ms: 3_600_000,
            max_attempts: 10,
            horizon_ms: 24 * 3_600_000,
            max_redeliveries: 5,
            supersede_window: 65_536,
        }
    }
}

/// The HTTP API of `tocsin serve`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ApiConfig {
    /// Address of the API (`/healthz`, `/readyz`, `/metrics`, `/v1/…`).
    pub listen: SocketAddr,
    /// SHA-256 (hex) of the operator's bearer token: it may manage every
    /// notifier. None: no operator access through the API.
    pub operator_token_sha256: Option<TokenHash>,
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig { listen: SocketAddr::from(([127, 0, 0, 1], 8080)), operator_token_sha256: None }
    }
}

/// oslo.db's `[database]` options, as OpenStack services read them.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DatabaseConfig {
    /// SQLAlchemy-style URL: `sqlite:////var/lib/tocsin/tocsin.sqlite`
    /// (absolute path after the fourth slash, relative after the third),
    /// or `postgresql://user:pass@host:5432/tocsin` (a `+driver` suffix
    /// such as `postgresql+psycopg2` is accepted) when several hosts share
    /// the notifiers. Empty: `tocsin.sqlite` in `uploads.state_path`.
    pub connection: String,
}

/// Uploaded notifiers: size, compilation limits, the limits a tenant may
/// ask for, and where compiled artifacts live.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct UploadsConfig {
    /// Directory of tocsin's own files (oslo's `state_path`): the default
    /// SQLite database and the cache of compiled notifiers.
    pub state_path: PathBuf,
    /// Largest component accepted, in bytes.
    pub max_component_bytes: u64,
    /// CPU seconds the compiler process may use for one upload.
    pub compile_cpu_seconds: u64,
    /// Address space of the compiler process, in bytes.
    pub compile_memory_bytes: u64,
    /// Wall-clock time one compilation may take, in ms; then it is killed.
    pub compile_timeout_ms: u64,
    /// The most an uploaded notifier's limits may be: an upload may set
    /// each of its limits at most this high.
    pub max_limits: Limits,
    /// Versions kept per notifier: the newest this many (at least 2) and
    /// the active one, for rolling back; older ones are deleted when a new
    /// one is uploaded.
    pub versions_kept: u32,
    /// The key tenants' secrets are encrypted with (32 bytes, made when
    /// missing); hosts sharing a database must share it. Default:
    /// `secrets.key` in `state_path`.
    pub secrets_key_file: Option<PathBuf>,
}

impl Default for UploadsConfig {
    fn default() -> Self {
        UploadsConfig {
            state_path: PathBuf::from("/var/lib/tocsin"),
            max_component_bytes: 16 << 20,
            compile_cpu_seconds: 60,
            compile_memory_bytes: 2 << 30,
            compile_timeout_ms: 120_000,
            max_limits: Limits::default(),
            versions_kept: 10,
            secrets_key_file: None,
        }
    }
}

/// Settings of one plugin.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PluginConfig {
    /// Overrides of the default limits.
    pub limits: LimitOverrides,
    /// Hosts the plugin may call besides the action URL's host.
    pub allow_hosts: Vec<String>,
    /// May the plugin switch TLS verification off for a request? The
    /// built-in `http` notifier may (Aodh's `aodh-alarm-ssl-verify=0`).
    pub allow_insecure_tls: Option<bool>,
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

    /// Checks rules that span fields.
    ///
    /// # Errors
    /// [`ConfigError::Inconsistent`] naming the offending field.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let fail = |message: String| Err(ConfigError::Inconsistent(message));
        for section in [self.sandbox.validate(), self.http.validate(), self.egress.validate()] {
            section.map_err(ConfigError::Inconsistent)?;
        }
        if self.intake.max_field_bytes == 0 || self.intake.max_actions == 0 {
            return fail("intake.max_field_bytes and intake.max_actions must be at least 1".into());
        }
        for host in self.plugins.values().flat_map(|p| &p.allow_hosts) {
            validate_host_entry(host).map_err(ConfigError::Inconsistent)?;
        }
        self.validate_service()?;
        let no_overrides = LimitOverrides::default();
        let plugins = std::iter::once(("<defaults>", &no_overrides))
            .chain(self.plugins.iter().map(|(name, plugin)| (name.as_str(), &plugin.limits)));
        for (name, overrides) in plugins {
            self.check_limits(name, &self.limits.with(overrides)).map_err(ConfigError::Inconsistent)?;
        }
        self.check_limits("<uploads.max_limits>", &self.uploads.max_limits)
            .map_err(ConfigError::Inconsistent)?;
        if let Some(name) = self.tenants.keys().find(|name| !tocsin_core::tenancy::is_tenant_name(name)) {
            return fail(format!(
                "tenants.{name:?}: a tenant name is a lower-case letter followed by lower-case letters and \
                 digits (it prefixes the tenant's schemes: acme-chat)"
            ));
        }
        let uploads = &self.uploads;
        if uploads.compile_cpu_seconds == 0
            || uploads.compile_memory_bytes == 0
            || uploads.compile_timeout_ms == 0
        {
            return fail(
                "uploads.compile_cpu_seconds, compile_memory_bytes and compile_timeout_ms must be above 0"
                    .into(),
            );
        }
        if let Some((name, _)) = self.tenants.iter().find(|(_, tenant)| tenant.max_concurrent_deliveries == 0)
        {
            return fail(format!("tenants.{name}.max_concurrent_deliveries must be at least 1"));
        }
        let mut hashes: Vec<_> = self.tenants.values().map(|tenant| tenant.token_sha256).collect();
        hashes.extend(self.api.operator_token_sha256);
        let count = hashes.len();
        hashes.sort_by_key(TokenHash::to_hex);
        hashes.dedup();
        if hashes.len() != count {
            return fail(
                "two callers (tenants or the operator) have the same token hash: give each its own token"
                    .into(),
            );
        }
        if self.uploads.versions_kept < 2 {
            return fail("uploads.versions_kept must be at least 2 (the newest and the one before)".into());
        }
        if let Err(error) = crate::store::Connection::parse(&self.database.connection) {
            return fail(format!("database.connection: {error}"));
        }
        Ok(())
    }

    /// Checks one plugin's limits against the engine and HTTP settings.
    ///
    /// # Errors
    /// The rule broken, naming the plugin.
    pub fn check_limits(&self, name: &str, limits: &Limits) -> Result<(), String> {
        if limits.memory_bytes > self.sandbox.max_memory_bytes {
            return Err(format!(
                "memory limit of plugin {name} ({} bytes) exceeds sandbox.max_memory_bytes ({})",
                limits.memory_bytes, self.sandbox.max_memory_bytes
            ));
        }
        if limits.fuel == 0 {
            return Err(format!("plugin {name}: fuel must be above 0"));
        }
        if limits.host_call_bytes < limits.http_request_body_bytes.saturating_add(HOST_CALL_MARGIN_BYTES) {
            return Err(format!(
                "plugin {name}: host_call_bytes ({}) must be at least http_request_body_bytes ({}) + {} \
                 bytes: a request's body, URL and headers pass in one host call",
                limits.host_call_bytes, limits.http_request_body_bytes, HOST_CALL_MARGIN_BYTES
            ));
        }
        if limits.deadline_ms <= self.http.max_timeout_ms {
            return Err(format!(
                "plugin {name}: deadline_ms ({}) must exceed http.max_timeout_ms ({}), so that a slow \
                 webhook fails as an HTTP timeout the plugin reports, not as a killed call",
                limits.deadline_ms, self.http.max_timeout_ms
            ));
        }
        Ok(())
    }

    /// Rules of the service settings: prefetch ≤ dispatch concurrency ≤ the
    /// instance pool, sane retry tiers, a usable broker URL.
    fn validate_service(&self) -> Result<(), ConfigError> {
        let fail = |message: String| Err(ConfigError::Inconsistent(message));
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
        if dispatch.per_plugin == 0 || dispatch.per_host == 0 || dispatch.per_message == 0 {
            return fail(
                "dispatch.per_plugin, dispatch.per_host and dispatch.per_message must be at least 1".into(),
            );
        }
        let tiers = &self.delivery.retry_tiers_ms;
        if tiers.is_empty() || tiers[0] == 0 || tiers.windows(2).any(|pair| pair[0] >= pair[1]) {
            return fail(format!(
                "delivery.retry_tiers_ms ({tiers:?}) must be non-empty, above 0 and ascending"
            ));
        }
        if self.delivery.max_attempts == 0 {
            return fail("delivery.max_attempts must be at least 1".into());
        }
        if self.delivery.queue_prefix.is_empty() || self.delivery.queue_prefix.starts_with("amq.") {
            return fail("delivery.queue_prefix must be non-empty and not start with amq.".into());
        }
        if self.intake.host.is_empty() {
            return fail("intake.host is empty and the hostname could not be read: set it".into());
        }
        self.broker.validate().map_err(ConfigError::Inconsistent)?;
        Ok(())
    }

    /// The limits of plugin `name`: the defaults with its overrides.
    pub fn limits_for(&self, name: &str) -> Limits {
        self.plugins.get(name).map_or(self.limits, |plugin| self.limits.with(&plugin.limits))
    }
}

#[cfg(test)]
mod tests {
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
        assert_eq!(config.limits_for("log").memory_bytes, 1 << 20);
        assert_eq!(config.limits_for("log").fuel, 5000);
        assert_eq!(config.limits_for("other").memory_bytes, 32 << 20);
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
        assert_eq!(load_toml(fits).unwrap().limits_for("big").host_call_bytes, 2_359_296);
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
}
