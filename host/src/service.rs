//! The service put together: each part built from its sections of the
//! [`Config`], in the order they depend on each other, and [`run`] until
//! told to stop.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use tocsin_core::time::millis;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::api::{self, AppState};
use crate::capabilities::Capabilities;
use crate::capabilities::egress::{NameLookup, SystemLookup};
use crate::capabilities::http::HttpSetupError;
use crate::capabilities::secrets::SecretBox;
use crate::config::Config;
use crate::dispatch::{Dispatcher, Sandboxed};
use crate::intake::{Intake, Status};
use crate::metrics::Metrics;
use crate::registry::Registry;
use crate::registry::catalog::{Catalog, Serving};
use crate::registry::changes;
use crate::sandbox::compiler::Compiler;
use crate::sandbox::compiler::cache::ArtifactCache;
use crate::sandbox::compiler::confine::Confinement;
use crate::sandbox::{Sandbox, SandboxError};
use crate::store::Store;
use crate::throttle::Throttle;

/// How long open API connections get to finish at shutdown.
pub(crate) const API_DRAIN: Duration = Duration::from_secs(5);

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

/// Runs the service, its API on `listener`, until `shutdown` completes:
/// then the intake stops consuming, messages in flight get
/// `intake.shutdown_grace_ms` to finish, and open API connections
/// [`API_DRAIN`]. `tocsin serve` runs it until SIGTERM or SIGINT; tests
/// run it in-process too.
///
/// # Errors
/// The sandbox, the built-in notifiers or the notifier store cannot be
/// set up, or the broker's queues do not match the configuration.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let tls = config.api.tls().context("cannot serve the API over TLS")?;
    let metrics = Arc::new(Metrics::default());
    let status = Arc::new(Status::default());
    let sandbox = Arc::new(sandbox(&config).context("cannot start the sandbox")?);
    // Meanwhile the built-ins compile and the notifier store opens.
    let preparing = tokio::task::spawn_blocking({
        let sandbox = Arc::clone(&sandbox);
        move || sandbox.prepare_capabilities()
    });
    let registry = Arc::new(
        Registry::with_builtins(&sandbox, &config.grants()).context("cannot load the built-in notifiers")?,
    );
    let (outbox, changes) = mpsc::unbounded_channel();
    let serving = Serving {
        sandbox: Arc::clone(&sandbox),
        registry: Arc::clone(&registry),
        metrics: Arc::clone(&metrics),
    };
    let catalog = Arc::new(open_catalog(&config, serving, outbox).await?);
    let (live, disabled) = catalog.sync_all().await.context("cannot read the uploaded notifiers")?;
    tracing::info!(live, disabled, "registry: Loaded the uploaded notifiers.");
    let notifiers = Sandboxed { sandbox, registry, metrics: Arc::clone(&metrics) };
    let dispatcher =
        Arc::new(Dispatcher::new(notifiers, &config.dispatch, &config.tenants, Arc::clone(&metrics)));
    let intake = Arc::new(Intake::new(
        config.intake_settings(),
        dispatcher,
        Arc::clone(&metrics),
        Arc::clone(&status),
    )?);
    let listen = listener.local_addr().context("cannot read the API address")?;
    tracing::info!(%listen, host = %config.intake.host, tls = tls.is_some(), "serve: Starting.");
    if tls.is_none() && !listen.ip().is_loopback() {
        tracing::warn!(
            %listen,
            "serve: The API speaks plain HTTP on a non-loopback address: bearer tokens and secret values cross \
             the network in clear text. Set api.tls_cert_file and api.tls_key_file."
        );
    }
    let stop = CancellationToken::new();
    tokio::spawn({
        let stop = stop.clone();
        async move {
            shutdown.await;
            stop.cancel();
        }
    });
    let state = AppState {
        host: config.intake.host.as_str().into(),
        callers: config.callers(),
        metrics,
        status,
        catalog: Arc::clone(&catalog),
        requests: Arc::new(Throttle::new(config.api.request_limits())),
    };
    let api = tokio::spawn(api::serve(listener, state, tls, stop.clone()));
    let feed = tokio::spawn(changes::run(
        config.feed_settings(),
        intake.broker().clone(),
        Arc::clone(&catalog),
        changes,
        stop.clone(),
    ));
    let grace = Duration::from_millis(config.intake.shutdown_grace_ms);
    // Ready before the first alarm, not built by it.
    if let Err(error) = preparing.await {
        tracing::warn!(error = %error, "serve: Preparing the HTTP clients failed; the first requests build them.");
    }
    let result = intake.run(stop.clone(), grace).await;
    stop.cancel();
    match tokio::time::timeout(API_DRAIN, api).await {
        Ok(Ok(Err(error))) => tracing::warn!(error = %error, "serve: The API server failed."),
        Ok(Err(error)) => tracing::warn!(error = %error, "serve: The API server task failed."),
        Err(_) => tracing::warn!(
            drain_ms = millis(API_DRAIN),
            "serve: API connections still open after the drain period; closing them."
        ),
        Ok(Ok(Ok(()))) => {}
    }
    if tokio::time::timeout(API_DRAIN, feed).await.is_err() {
        tracing::warn!("serve: The notifier change feed did not stop in time; leaving it.");
    }
    result.context("the intake stopped")?;
    tracing::info!("serve: Stopped.");
    Ok(())
}

/// The compiler of components from outside tocsin (uploads, and the files
/// `check` and `notify` are given), caching in `cache` when given.
///
/// # Errors
/// The binary cannot be found, or `uploads.compiler_user` names no
/// unprivileged user.
pub fn compiler(config: &Config, cache: Option<ArtifactCache>) -> anyhow::Result<Compiler> {
    let program =
        std::env::current_exe().context("cannot find the tocsin binary to compile components with")?;
    let confinement = config.confinement().context("cannot confine the compiler")?;
    Ok(Compiler::new(program, config.compile_limits(), config.compile_target(), confinement, cache))
}

/// Says at start whether tenants' components will be compiled confined,
/// unconfined (the operator opted out), or not at all.
async fn report_confinement(config: &Config, compiler: &Compiler) {
    if compiler.confinement() == Confinement::Off {
        tracing::warn!(
            outcome = "unconfined",
            "registry: The compiler of tenants' components runs unconfined (uploads.confine_compiler = false)."
        );
        return;
    }
    match compiler.self_check().await {
        Ok(()) => tracing::info!(
            outcome = "confined",
            user = %config.uploads.compiler_user,
            "registry: The compiler of tenants' components is confined: its own namespaces, no capabilities, a seccomp filter."
        ),
        Err(error) => tracing::error!(
            outcome = "refused",
            error = %error,
            "registry: The compiler cannot be confined; no tenant's component will be compiled until it can."
        ),
    }
}

/// The store and the compiler of uploaded notifiers.
async fn open_catalog(
    config: &Config,
    serving: Serving,
    outbox: mpsc::UnboundedSender<String>,
) -> anyhow::Result<Catalog> {
    let state_path = &config.uploads.state_path;
    let cache = ArtifactCache::open(state_path, serving.sandbox.engine())
        .with_context(|| format!("cannot use uploads.state_path {}", state_path.display()))?;
    let compiler = compiler(config, Some(cache))?;
    report_confinement(config, &compiler).await;
    let store = Store::open(&config.database.connection, state_path)
        .await
        .context("cannot open the notifier store (database.connection)")?;
    let key_file = config.uploads.secrets_key_file.clone().unwrap_or_else(|| state_path.join("secrets.key"));
    let secret_box = SecretBox::open(&key_file)
        .with_context(|| format!("cannot use the secrets key {}", key_file.display()))?;
    Ok(Catalog::new(config.catalog_settings(), store, compiler, secret_box, serving, outbox))
}
