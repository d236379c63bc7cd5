//! tocsin's configuration: one typed tree, read once at start.
//!
//! Sources, later ones winning: built-in defaults (every field has one that
//! runs against a local setup), a TOML file, then `TOCSIN_*` environment
//! variables with `__` between levels (`TOCSIN_LIMITS__MEMORY_BYTES=…`).
//! Unknown keys are an error, in the file and in the environment. Option
//! names Aodh has (`rest_notifier_*`) keep Aodh's meanings.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::capabilities::egress::{host_key, validate_host_entry};
use crate::sandbox::limits::{LimitOverrides, Limits};

/// Environment variables with the `TOCSIN_` prefix that are not config
/// keys: they choose the file and the log output.
const NON_CONFIG_ENV: &[&str] = &["config", "log", "log_format"];

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
}

/// The engine and its pooling allocator.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SandboxConfig {
    /// Plugin instances that can run at once: the size of the instance pool
    /// (the dispatch concurrency must not exceed it).
    pub instances: u32,
    /// Largest linear memory any plugin may be granted, in bytes: the size
    /// of one memory slot in the pool. Per-plugin memory limits must fit.
    pub max_memory_bytes: u64,
    /// WebAssembly stack per call, in bytes: deep recursion traps here.
    pub max_wasm_stack_bytes: usize,
    /// Use the pooling allocator (fast instantiation from preallocated
    /// slots). Off allocates each instance on demand.
    pub pooling: bool,
    /// Log lines kept per plugin for its owner to read back.
    pub log_buffer_lines: usize,
}

impl Default for SandboxConfig {
    fn default() -> Self {
        SandboxConfig {
            instances: 64,
            max_memory_bytes: 256 << 20,
            max_wasm_stack_bytes: 512 << 10,
            pooling: true,
            log_buffer_lines: 256,
        }
    }
}

/// Outbound HTTP performed for plugins.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// Timeout of one request attempt when the plugin sets none, in ms.
    pub timeout_ms: u64,
    /// The most a plugin may ask for, in ms.
    pub max_timeout_ms: u64,
    /// Redirects followed per request; 0 (the default) follows none. Each
    /// hop is checked against the egress policy again.
    pub max_redirects: u32,
    /// Aodh's `rest_notifier_ssl_verify`: verify TLS certificates unless a
    /// plugin allowed to do so switches it off for one request.
    pub rest_notifier_ssl_verify: bool,
    /// Aodh's `rest_notifier_ca_bundle_certificate_path`: PEM bundle of
    /// extra trusted CAs.
    pub rest_notifier_ca_bundle_certificate_path: Option<PathBuf>,
    /// Aodh's `rest_notifier_certificate_file`: client certificate (PEM).
    pub rest_notifier_certificate_file: Option<PathBuf>,
    /// Aodh's `rest_notifier_certificate_key`: its private key (PEM).
    pub rest_notifier_certificate_key: Option<PathBuf>,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            timeout_ms: 10_000,
            max_timeout_ms: 10_000,
            max_redirects: 0,
            rest_notifier_ssl_verify: true,
            rest_notifier_ca_bundle_certificate_path: None,
            rest_notifier_certificate_file: None,
            rest_notifier_certificate_key: None,
        }
    }
}

/// The egress policy: deny by default.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EgressConfig {
    /// Networks that are reachable although they are loopback, private,
    /// link-local or otherwise internal (e.g. `["127.0.0.1/32"]` in tests).
    pub allow_networks: Vec<IpNet>,
    /// Host names whose addresses are trusted as if they were in
    /// `allow_networks` (an internal webhook gateway, say). They are not
    /// granted to plugins by this: grants are per plugin.
    pub trusted_hosts: Vec<String>,
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
        if self.sandbox.instances == 0 {
            return fail("sandbox.instances must be at least 1".into());
        }
        if self.http.timeout_ms > self.http.max_timeout_ms {
            return fail(format!(
                "http.timeout_ms ({}) exceeds http.max_timeout_ms ({})",
                self.http.timeout_ms, self.http.max_timeout_ms
            ));
        }
        if self.http.rest_notifier_certificate_file.is_some()
            != self.http.rest_notifier_certificate_key.is_some()
        {
            return fail(
                "rest_notifier_certificate_file and rest_notifier_certificate_key go together".into(),
            );
        }
        if let Some(ip) = self.egress.trusted_hosts.iter().find(|h| host_key(h).parse::<IpAddr>().is_ok()) {
            return fail(format!(
                "egress.trusted_hosts holds the address {ip}: list addresses in egress.allow_networks"
            ));
        }
        let hosts =
            self.egress.trusted_hosts.iter().chain(self.plugins.values().flat_map(|p| &p.allow_hosts));
        for host in hosts {
            if let Err(why) = validate_host_entry(host) {
                return fail(why);
            }
        }
        let no_overrides = LimitOverrides::default();
        let plugins = std::iter::once(("<defaults>", &no_overrides))
            .chain(self.plugins.iter().map(|(name, plugin)| (name.as_str(), &plugin.limits)));
        for (name, overrides) in plugins {
            let limits = self.limits.with(overrides);
            if limits.memory_bytes > self.sandbox.max_memory_bytes {
                return fail(format!(
                    "memory limit of plugin {name} ({} bytes) exceeds sandbox.max_memory_bytes ({})",
                    limits.memory_bytes, self.sandbox.max_memory_bytes
                ));
            }
            if limits.fuel == 0 {
                return fail(format!("plugin {name}: fuel must be above 0"));
            }
            if limits.deadline_ms <= self.http.max_timeout_ms {
                return fail(format!(
                    "plugin {name}: deadline_ms ({}) must exceed http.max_timeout_ms ({}), so that a slow \
                     webhook fails as an HTTP timeout the plugin reports, not as a killed call",
                    limits.deadline_ms, self.http.max_timeout_ms
                ));
            }
        }
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
    }
}
