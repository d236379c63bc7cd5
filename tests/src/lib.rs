//! Test harness for tocsin's integration tests: the misbehaving plugins
//! built from source, components forged from a core module ([`forge`]), a
//! [`TestHost`] that loads plugins into a real sandbox, a [`webhook::Webhook`] server on 127.0.0.1 that records
//! exactly what it receives, the real broker ([`broker`]) and service
//! ([`service`]), TLS with certificates made in the test ([`tls`]), names
//! pointed at internal addresses ([`names`]) and captured logs ([`logs`]).

pub mod broker;
pub mod forge;
pub mod logs;
pub mod names;
pub mod postgres;
pub mod service;
pub mod tls;
pub mod webhook;

use std::path::Path;
use std::sync::Arc;

use tocsin::capabilities::egress::{NameLookup, SystemLookup};
use tocsin::config::Config;
use tocsin::registry::{self, Origin, builtin};
use tocsin::sandbox::validate::LoadError;
use tocsin::sandbox::{Invocation, Plugin, Sandbox};
use tocsin_core::alarm::{Alarm, Delivery};
use tocsin_core::tenancy::Owner;

/// Paths of the test plugins, built from `tests/plugins/` by `build.rs`.
pub mod plugins {
    include!(concat!(env!("OUT_DIR"), "/plugins.rs"));
}

/// The real captured OpenStack messages, requests and log lines
/// (`tests/fixtures/openstack/`, see its README).
pub fn fixture(name: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/openstack").join(name)
}

/// A message the real oslo.messaging client sent for an alarm whose reason
/// data only Python's `json` writes (`tests/fixtures/python-json/`).
pub fn python_json_fixture(name: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/python-json").join(name)
}

/// The names of those messages.
pub const PYTHON_JSON_FIXTURES: [&str; 8] = [
    "infinity",
    "nan",
    "negative-infinity",
    "big-integer",
    "lone-surrogate",
    "event-all",
    "lone-surrogate-name",
    "cast-all",
];

/// The Python of the venv with the PyPI clients tests check tocsin
/// against (`scripts/pypi-venv`: oslo.messaging, standardwebhooks), or of
/// `TOCSIN_PYPI_PYTHON`.
pub fn pypi_python() -> std::path::PathBuf {
    venv_python("TOCSIN_PYPI_PYTHON", "pypi-venv")
}

/// The Python of the venv with the real aodh and this repository's
/// aodh-tocsin filter (`scripts/aodh-venv`), or of `TOCSIN_AODH_PYTHON`.
pub fn aodh_python() -> std::path::PathBuf {
    venv_python("TOCSIN_AODH_PYTHON", "aodh-venv")
}

fn venv_python(variable: &str, venv: &str) -> std::path::PathBuf {
    let python = std::env::var_os(variable).map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("../target/{venv}/bin/python")),
        std::path::PathBuf::from,
    );
    assert!(python.exists(), "{} is missing: run scripts/{venv} (scripts/test does)", python.display());
    python
}

/// The sample alarm of `examples/alarm.json` (the alarm of aodh's captured
/// requests).
pub fn sample_alarm() -> Alarm {
    Alarm::sample()
}

/// A sandbox with a configuration the test adjusts.
#[derive(Debug)]
pub struct TestHost {
    /// The configuration the sandbox was built with.
    pub config: Config,
    /// The sandbox.
    pub sandbox: Sandbox,
}

impl TestHost {
    /// A host with the default configuration changed by `configure`; the
    /// pool is kept small so tests stay light.
    pub fn new(configure: impl FnOnce(&mut Config)) -> Self {
        Self::with_names(configure, Arc::new(SystemLookup))
    }

    /// [`TestHost::new`], with plugins' host names looked up in `names`
    /// (e.g. [`names::StaticNames`]) instead of the system resolver.
    pub fn with_names(configure: impl FnOnce(&mut Config), names: Arc<dyn NameLookup>) -> Self {
        let mut config = Config::default();
        config.sandbox.instances = 8;
        configure(&mut config);
        let sandbox = tocsin::service::sandbox_with_lookup(&config, names)
            .unwrap_or_else(|error| panic!("sandbox: {error}"));
        TestHost { config, sandbox }
    }

    /// A host where 127.0.0.1 is an allowed network granted to the
    /// built-in `http` notifier (the receivers tests start live there),
    /// with `configure` applied after.
    pub fn loopback(configure: impl FnOnce(&mut Config)) -> Self {
        Self::new(|config| {
            config.egress.allow_networks.push("127.0.0.1/32".parse().unwrap_or_else(|e| panic!("{e}")));
            config.plugins.entry("http".into()).or_default().allow_hosts.push("127.0.0.1".into());
            configure(config);
        })
    }

    /// Loads a built-in notifier by name, with its configured settings.
    pub fn builtin(&self, name: &str) -> Plugin {
        let bytes = builtin::component(name).unwrap_or_else(|| panic!("no built-in {name}"));
        self.sandbox
            .load(registry::spec_for(name, Origin::Builtin, &Owner::Operator, &self.config.grants()), bytes)
            .unwrap_or_else(|error| panic!("built-in {name}: {error}"))
    }

    /// Loads a component file as plugin `name`, with its configured settings.
    pub fn load(&self, name: &str, path: &str) -> Result<Plugin, LoadError> {
        let bytes = std::fs::read(path).unwrap_or_else(|error| panic!("{path}: {error}"));
        self.sandbox
            .load(registry::spec_for(name, Origin::External, &Owner::Operator, &self.config.grants()), &bytes)
    }

    /// Runs `plugin` for `action` with the sample alarm and a fresh delivery.
    pub async fn notify(&self, plugin: &Plugin, action: &str) -> Invocation {
        self.sandbox.invoke(plugin, action, &Arc::new(sample_alarm()), &Delivery::one_off()).await
    }

    /// Asserts that the host still works: the built-in `test` notifier
    /// delivers and records the alarm.
    pub async fn assert_healthy(&self) {
        let plugin = self.builtin("test");
        let run = self.notify(&plugin, "test://").await;
        assert_eq!(run.result, Ok(()), "a well-behaved call after the misbehaving one must succeed");
        assert!(run.logs[0].message.contains(&sample_alarm().alarm_id));
    }
}

/// The messages of an invocation's log lines.
pub fn messages(run: &Invocation) -> Vec<&str> {
    run.logs.iter().map(|line| line.message.as_str()).collect()
}
