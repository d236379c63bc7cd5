//! Dispatch: runs one delivery (one action of one alarm) in the plugin
//! its URL scheme selects, within bounded concurrency, and says what
//! became of it.
//!
//! Four bounds keep one slow destination, plugin or tenant from starving
//! the rest: a global one (the instance pool), one per plugin, one per
//! tenant (its quota) and one per destination host. A delivery that cannot
//! get its plugin, tenant or host slot within `dispatch.slot_wait_ms` is
//! [`Outcome::Deferred`] to a retry tier instead of holding its message
//! (and the prefetch window) hostage.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tocsin_guest_sdk::action;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::alarm::{Alarm, Delivery};
use crate::config::Config;
use crate::delivery::DeliveryRecord;
use crate::metrics::{Metrics, PluginLabels};
use crate::registry::{Registry, ResolveError};
use crate::sandbox::{CallError, Plugin, Sandbox};

/// Per-plugin or per-host slot tables past this many keys drop the idle ones.
const MAX_IDLE_KEYS: usize = 4096;

/// What became of one delivery attempt.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// The plugin delivered it.
    Delivered,
    /// It can never succeed (permanent failure, trap, limit, unknown
    /// scheme): dead-letter it with `reason`.
    Failed {
        /// A short stable code (`permanent`, `trap`, `limit`, `unparsable`,
        /// `unknown-scheme`, …).
        code: &'static str,
        /// What went wrong.
        reason: String,
    },
    /// It may succeed later.
    Retry {
        /// What went wrong.
        reason: String,
        /// The plugin's retry-after hint.
        retry_after: Option<Duration>,
    },
    /// Not attempted: no plugin or host slot came free in time.
    Deferred {
        /// Which slot was busy.
        reason: String,
    },
}

/// The notifiers dispatch runs: the sandbox in the service, a native
/// stand-in in the benchmark that measures what the sandbox costs.
pub trait Notifiers: Send + Sync + 'static {
    /// A resolved plugin.
    type Plugin: Send + Sync + 'static;

    /// The plugin registered for the scheme of `action`.
    ///
    /// # Errors
    /// [`ResolveError`]: unparsable action, unknown or reserved scheme.
    fn resolve(&self, action: &str) -> Result<Arc<Self::Plugin>, ResolveError>;

    /// The plugin's name and tenant, for limits, logs and metrics.
    fn identity(plugin: &Self::Plugin) -> (&str, Option<&str>);

    /// Runs the plugin for one attempt.
    fn invoke(
        &self,
        plugin: &Self::Plugin,
        action: &str,
        alarm: &Alarm,
        delivery: &Delivery,
    ) -> impl Future<Output = Result<(), CallError>> + Send;
}

/// The registry's plugins, run in the wasm sandbox.
#[derive(Debug)]
pub struct Sandboxed {
    /// The engine.
    pub sandbox: Arc<Sandbox>,
    /// Scheme → plugin, shared with the notifier API that changes it.
    pub registry: Arc<Registry>,
    /// Where each call's limit hits and dropped log lines are counted.
    pub metrics: Arc<Metrics>,
}

impl Notifiers for Sandboxed {
    type Plugin = Plugin;

    fn resolve(&self, action: &str) -> Result<Arc<Plugin>, ResolveError> {
        self.registry.resolve_action(action)
    }

    fn identity(plugin: &Plugin) -> (&str, Option<&str>) {
        (plugin.name(), plugin.tenant())
    }

    async fn invoke(
        &self,
        plugin: &Plugin,
        action: &str,
        alarm: &Alarm,
        delivery: &Delivery,
    ) -> Result<(), CallError> {
        let invocation = self.sandbox.invoke(plugin, action, alarm, delivery).await;
        let (name, tenant) = Self::identity(plugin);
        self.metrics.call_costs(name, tenant, &invocation.limits_hit, invocation.log_dropped);
        invocation.result
    }
}

/// Concurrency slots keyed by plugin or destination.
#[derive(Debug)]
struct Slots {
    per_key: Mutex<HashMap<String, Arc<Semaphore>>>,
    permits: usize,
}

impl Slots {
    fn new(permits: u32) -> Self {
        Slots { per_key: Mutex::new(HashMap::new()), permits: permits as usize }
    }

    /// The semaphore of `key`, made with the default number of permits.
    fn semaphore(&self, key: &str) -> Arc<Semaphore> {
        self.semaphore_of(key, self.permits)
    }

    /// The semaphore of `key`, made with `permits` when it is new.
    fn semaphore_of(&self, key: &str, permits: usize) -> Arc<Semaphore> {
        let Ok(mut per_key) = self.per_key.lock() else { return Arc::new(Semaphore::new(permits)) };
        if per_key.len() > MAX_IDLE_KEYS {
            per_key.retain(|_, semaphore| Arc::strong_count(semaphore) > 1);
        }
        Arc::clone(per_key.entry(key.to_owned()).or_insert_with(|| Arc::new(Semaphore::new(permits))))
    }
}

/// Runs deliveries within the configured bounds.
#[derive(Debug)]
pub struct Dispatcher<N: Notifiers> {
    notifiers: N,
    global: Arc<Semaphore>,
    per_plugin: Slots,
    per_host: Slots,
    per_tenant: Slots,
    tenant_quotas: HashMap<String, usize>,
    slot_wait: Duration,
    metrics: Arc<Metrics>,
}

impl<N: Notifiers> Dispatcher<N> {
    /// A dispatcher for `notifiers` with the bounds of `config.dispatch`
    /// and the tenants' concurrent-delivery quotas.
    pub fn new(notifiers: N, config: &Config, metrics: Arc<Metrics>) -> Self {
        let dispatch = &config.dispatch;
        let tenant_quotas = config
            .tenants
            .iter()
            .map(|(name, tenant)| (name.clone(), tenant.max_concurrent_deliveries as usize))
            .collect();
        Dispatcher {
            notifiers,
            global: Arc::new(Semaphore::new(dispatch.concurrency as usize)),
            per_plugin: Slots::new(dispatch.per_plugin),
            per_host: Slots::new(dispatch.per_host),
            per_tenant: Slots::new(dispatch.per_plugin),
            tenant_quotas,
            slot_wait: Duration::from_millis(dispatch.slot_wait_ms),
            metrics,
        }
    }

    /// The notifiers.
    pub fn notifiers(&self) -> &N {
        &self.notifiers
    }

    /// Runs one attempt of `record`, logging the outcome with Aodh's words
    /// where Aodh has some.
    pub async fn deliver(&self, record: &DeliveryRecord) -> Outcome {
        let alarm_id = record.alarm.alarm_id.as_str();
        let split = action::split(&record.action).ok();
        let shown = split.as_ref().map_or_else(|| action::display(&record.action), |split| split.redacted());
        let plugin = match self.notifiers.resolve(&record.action) {
            Ok(plugin) => plugin,
            Err(error) => return self.unresolved(record, &shown, &error),
        };
        let (name, tenant) = N::identity(&plugin);
        let destination = split.as_ref().map(|s| s.host_port().to_ascii_lowercase()).unwrap_or_default();
        let _permits = match self.acquire(name, tenant, &destination).await {
            Ok(permits) => permits,
            Err(reason) => {
                tracing::warn!(
                    alarm_id, action = %shown, plugin = name, tenant, delivery_id = %record.delivery_id,
                    outcome = "deferred", reason = %reason,
                    "dispatch: No slot came free in time; the delivery waits in the first retry tier."
                );
                self.metrics.delivery(name, tenant, "deferred");
                return Outcome::Deferred { reason };
            }
        };
        let started = Instant::now();
        let delivery = record.delivery(tenant.map(str::to_owned));
        let result = self.notifiers.invoke(&plugin, &record.action, &record.alarm, &delivery).await;
        let elapsed = started.elapsed();
        self.metrics
            .delivery_seconds
            .get_or_create(&PluginLabels { plugin: name.to_owned() })
            .observe(elapsed.as_secs_f64());
        let elapsed_ms = elapsed.as_secs_f64() * 1e3;
        let attempt = record.attempt;
        match result {
            Ok(()) => {
                tracing::info!(
                    alarm_id, action = %shown, plugin = name, tenant, delivery_id = %record.delivery_id,
                    attempt, outcome = "delivered", elapsed_ms, "dispatch: Delivered."
                );
                self.metrics.delivery(name, tenant, "delivered");
                Outcome::Delivered
            }
            Err(error) => {
                let retryable = error.is_retryable();
                self.metrics.delivery(name, tenant, if retryable { "retryable" } else { "failed" });
                tracing::error!(
                    alarm_id, action = %shown, plugin = name, tenant, delivery_id = %record.delivery_id,
                    attempt, outcome = if retryable { "retryable" } else { "failed" }, elapsed_ms,
                    error = %error, "Unable to notify alarm {alarm_id}"
                );
                if retryable {
                    let retry_after = match &error {
                        CallError::Retryable { retry_after, .. } => *retry_after,
                        _ => None,
                    };
                    Outcome::Retry { reason: error.to_string(), retry_after }
                } else {
                    Outcome::Failed { code: error.kind(), reason: error.to_string() }
                }
            }
        }
    }

    /// Aodh's lines for an action no plugin takes.
    fn unresolved(&self, record: &DeliveryRecord, shown: &str, error: &ResolveError) -> Outcome {
        let alarm_id = record.alarm.alarm_id.as_str();
        let delivery_id = record.delivery_id.as_str();
        let code = match error {
            ResolveError::Unparsable(_) => {
                tracing::error!(alarm_id, action = %shown, delivery_id, outcome = "failed", error = %error,
                    "Unable to parse action {shown} for alarm {alarm_id}");
                "unparsable-action"
            }
            ResolveError::Unknown(scheme) | ResolveError::NotImplemented(scheme) => {
                tracing::error!(alarm_id, action = %shown, delivery_id, outcome = "failed", error = %error,
                    "Action {scheme} for alarm {alarm_id} is unknown, cannot notify");
                "unknown-scheme"
            }
        };
        self.metrics.delivery("-", None, "dead_lettered");
        Outcome::Failed { code, reason: error.to_string() }
    }

    /// The plugin's, the tenant's (a tenant's plugins share its quota) and
    /// the destination's slots, each waited for at most `slot_wait`, then a
    /// global one (waited for: every delivery needs one, and they all finish
    /// within their deadline). The bounded ones first, so that a delivery
    /// waiting for its busy plugin, tenant or destination holds no global
    /// slot that other alarms could use.
    async fn acquire(
        &self,
        plugin: &str,
        tenant: Option<&str>,
        destination: &str,
    ) -> Result<Permits, String> {
        let deadline = tokio::time::Instant::now() + self.slot_wait;
        let plugin_slot = slot(self.per_plugin.semaphore(plugin), deadline)
            .await
            .ok_or_else(|| format!("plugin {plugin} is at its concurrency limit"))?;
        let tenant_slot = match tenant {
            Some(tenant) => {
                let quota = self.tenant_quotas.get(tenant).copied().unwrap_or(self.per_tenant.permits);
                let permit = slot(self.per_tenant.semaphore_of(tenant, quota), deadline)
                    .await
                    .ok_or_else(|| format!("tenant {tenant} is at its concurrent-delivery quota"))?;
                Some(permit)
            }
            None => None,
        };
        let host_slot = slot(self.per_host.semaphore(destination), deadline)
            .await
            .ok_or_else(|| format!("destination {destination} is at its concurrency limit"))?;
        let global = Arc::clone(&self.global).acquire_owned().await.map_err(|e| e.to_string())?;
        Ok(Permits { _held: (global, plugin_slot, tenant_slot, host_slot) })
    }
}

/// The slots one delivery holds while it runs.
struct Permits {
    _held: (OwnedSemaphorePermit, OwnedSemaphorePermit, Option<OwnedSemaphorePermit>, OwnedSemaphorePermit),
}

/// A permit of `semaphore`, if one comes free before `deadline`.
async fn slot(semaphore: Arc<Semaphore>, deadline: tokio::time::Instant) -> Option<OwnedSemaphorePermit> {
    tokio::time::timeout_at(deadline, semaphore.acquire_owned()).await.ok()?.ok()
}
