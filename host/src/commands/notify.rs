//! `tocsin notify`: runs one notification through the sandbox, with the
//! configured limits, and prints one JSON line saying what happened.

use std::io::Read as _;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context as _, bail};
use ipnet::IpNet;
use tocsin_core::alarm::{Alarm, Delivery, SAMPLE_ALARM};
use tocsin_core::hosts::{host_key, validate_host_entry};
use tocsin_core::tenancy::Owner;

use super::Exit;
use crate::config::Config;
use crate::registry::{self, Origin, builtin};

/// What to run.
#[derive(Debug, Clone)]
pub struct NotifyArgs {
    /// A built-in name (`log`, `http`, `test`) or a path to a `.wasm`;
    /// none picks the built-in registered for the action's scheme.
    pub plugin: Option<String>,
    /// The action URL.
    pub action: String,
    /// Alarm JSON file, `-` for stdin, none for the sample alarm.
    pub alarm: Option<PathBuf>,
    /// Hosts granted for this run, loopback or private included.
    pub allow_hosts: Vec<String>,
}

/// Runs the notification: exit 0 when delivered, 1 when not.
///
/// # Errors
/// Bad input: unreadable or invalid alarm, unknown plugin, a file that is
/// not a valid notifier.
pub async fn run(mut config: Config, args: NotifyArgs) -> anyhow::Result<Exit> {
    let alarm = Arc::new(read_alarm(args.alarm.as_deref())?);
    let (name, origin, bytes) = match &args.plugin {
        Some(plugin) => plugin_bytes(plugin)?,
        None => plugin_bytes(
            registry::builtin_for_action(&args.action).map_err(|e| anyhow::anyhow!("{e}; pass --plugin"))?,
        )?,
    };
    if origin == Origin::External && builtin::component(&name).is_some() {
        bail!(
            "plugin file {name}.wasm has the name of a built-in notifier; rename it so it cannot take the built-in's settings"
        );
    }
    grant_hosts(&mut config, &name, &args.allow_hosts)?;
    let sandbox = crate::service::sandbox(&config).context("cannot start the sandbox")?;
    let spec = registry::spec_for(&name, origin, &Owner::Operator, &config.grants());
    // A file is compiled as an upload is: in the confined compiler child,
    // within the `[uploads]` limits.
    let plugin = match origin {
        Origin::Builtin => sandbox.load(spec, &bytes),
        Origin::External => crate::service::compiler(&config, None)?.load(&sandbox, spec, &bytes).await,
    }
    .with_context(|| format!("cannot load plugin {name}"))?;
    let delivery = Delivery::one_off();
    let invocation = sandbox.invoke(&plugin, &args.action, &alarm, &delivery).await;
    let report = invocation.report(&name, &args.action, &alarm, &delivery);
    println!("{report}");
    Ok(if invocation.result.is_ok() { Exit::Success } else { Exit::Failure })
}

pub(super) fn read_alarm(path: Option<&Path>) -> anyhow::Result<Alarm> {
    let (text, source) = match path {
        None => (SAMPLE_ALARM.to_owned(), "the sample alarm".to_owned()),
        Some(path) if path == Path::new("-") => {
            let mut text = String::new();
            std::io::stdin().read_to_string(&mut text).context("cannot read the alarm from stdin")?;
            (text, "stdin".to_owned())
        }
        Some(path) => (
            std::fs::read_to_string(path)
                .with_context(|| format!("cannot read alarm file {}", path.display()))?,
            path.display().to_string(),
        ),
    };
    Alarm::from_json(&text).with_context(|| format!("invalid alarm JSON in {source}"))
}

/// The plugin's name, origin and component: a built-in, or a `.wasm`
/// file named after its stem.
fn plugin_bytes(plugin: &str) -> anyhow::Result<(String, Origin, Vec<u8>)> {
    if let Some(bytes) = builtin::component(plugin) {
        return Ok((plugin.to_owned(), Origin::Builtin, bytes.to_vec()));
    }
    let path = Path::new(plugin);
    if path.extension().is_none() && !plugin.contains('/') {
        bail!("unknown plugin {plugin:?}: use a built-in (log, http, test) or a path to a .wasm component");
    }
    let bytes = std::fs::read(path).with_context(|| format!("cannot read plugin {}", path.display()))?;
    let name = path.file_stem().map_or_else(|| plugin.to_owned(), |stem| stem.to_string_lossy().into_owned());
    Ok((name, Origin::External, bytes))
}

/// `--allow-host`: grants each host to the plugin and lets the egress
/// policy reach it even when it is loopback or private, as an operator's
/// configuration would.
fn grant_hosts(config: &mut Config, plugin: &str, hosts: &[String]) -> anyhow::Result<()> {
    for host in hosts {
        validate_host_entry(host).map_err(|why| anyhow::anyhow!("--allow-host: {why}"))?;
        let key = host_key(host);
        match key.parse::<IpAddr>() {
            Ok(ip) => config.egress.allow_networks.push(IpNet::from(ip)),
            Err(_) => config.egress.trusted_hosts.push(key.clone()),
        }
        config.plugins.entry(plugin.to_owned()).or_default().allow_hosts.push(key);
    }
    Ok(())
}
