//! Dispatch: runs one delivery (one action of one alarm) in the plugin
//! its URL scheme selects, within bounded concurrency, and says what
//! became of it.
//!
//! Four bounds keep one slow destination, plugin or tenant from starving
//! the rest: a global one (the instance pool), one per plugin, one per
//! tenant (its quota) and one per destination host (per tenant and host
//! for a tenant's plugins). A delivery waits for
//! a busy plugin or tenant slot up to `dispatch.slot_wait_ms`, and for a
//! busy destination only if a slot is expected within what is left of
//! that time (judged from how long that destination's deliveries take and
//! how long since one started); otherwise it is [`Outcome::Deferred`] to
//! a retry tier at once instead of holding its message (and a place in
//! the broker's prefetch window) hostage: a slow endpoint cannot block
//! the alarms behind it.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tocsin_contract::action::{self, SplitAction};
use tocsin_core::alarm::{Alarm, Delivery};
use tocsin_core::caps::MAX_IDLE_KEYS;
use tocsin_core::tenancy::TenantConfig;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::delivery::DeliveryRecord;
use crate::metrics::Metrics;
use crate::registry::{Registry, ResolveError};
use crate::sandbox::{CallError, Plugin, Sandbox};

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

    /// Whether the plugin was taken out of service (its notifier deleted),
    /// so that what a delivery in flight counted is dropped.
    fn retired(_plugin: &Self::Plugin) -> bool {
        false
    }

    /// Runs the plugin for one attempt.
    fn invoke(
        &self,
        plugin: &Self::Plugin,
        action: &str,
        alarm: &Arc<Alarm>,
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

    fn retired(plugin: &Plugin) -> bool {
        plugin.is_retired()
    }

    async fn invoke(
        &self,
        plugin: &Plugin,
        action: &str,
        alarm: &Arc<Alarm>,
        delivery: &Delivery,
    ) -> Result<(), CallError> {
        let invocation = self.sandbox.invoke(plugin, action, alarm, delivery).await;
        let (name, tenant) = Self::identity(plugin);
        self.metrics.call_costs(name, tenant, &invocation.limits_hit, invocation.log_dropped);
        invocation.result
    }
}

/// Concurrency slots keyed by plugin, tenant or destination.
#[derive(Debug)]
struct Slots {
    per_key: Mutex<HashMap<String, Arc<Slot>>>,
    permits: usize,
    epoch: tokio::time::Instant,
}

impl Slots {
    fn new(permits: u32) -> Self {
        Slots {
            per_key: Mutex::new(HashMap::new()),
            permits: permits as usize,
            epoch: tokio::time::Instant::now(),
        }
    }

    /// The slot of `key`, made with the default number of permits.
    fn slot(&self, key: &str) -> Arc<Slot> {
        self.slot_of(key, self.permits)
    }

    /// The slot of `key`, made with `permits` when it is new.
    fn slot_of(&self, key: &str, permits: usize) -> Arc<Slot> {
        let new = || Arc::new(Slot::new(permits, self.epoch));
        let Ok(mut per_key) = self.per_key.lock() else { return new() };
        if per_key.len() > MAX_IDLE_KEYS {
            per_key.retain(|_, slot| Arc::strong_count(slot) > 1);
        }
        Arc::clone(per_key.entry(key.to_owned()).or_insert_with(new))
    }
}

/// One key's permits, and what tells whether waiting for one is worth it:
/// how long its deliveries take and how long since one started.
#[derive(Debug)]
struct Slot {
    semaphore: Arc<Semaphore>,
    permits: u64,
    epoch: tokio::time::Instant,
    /// Deliveries waiting for a permit now.
    waiting: AtomicU64,
    /// How long its deliveries take, µs: a moving mean (each new one
    /// weighs 1/8).
    mean_us: AtomicU64,
    /// When one of its deliveries last took a permit, µs since `epoch`.
    last_start_us: AtomicU64,
}

impl Slot {
    fn new(permits: usize, epoch: tokio::time::Instant) -> Self {
        Slot {
            semaphore: Arc::new(Semaphore::new(permits)),
            permits: permits.max(1) as u64,
            epoch,
            waiting: AtomicU64::new(0),
            mean_us: AtomicU64::new(0),
            last_start_us: AtomicU64::new(micros(epoch.elapsed())),
        }
    }

    /// How long a delivery arriving now would wait for a permit: none when
    /// one is free; else the longer of the time since the last one started
    /// (all permits have been held at least that long: a stall) and its
    /// place in the queue at one permit freed per `mean / permits` (the
    /// permits were taken at different times and free up in turn).
    fn expected_wait(&self) -> Duration {
        if self.semaphore.available_permits() > 0 {
            return Duration::ZERO;
        }
        let since_start =
            micros(self.epoch.elapsed()).saturating_sub(self.last_start_us.load(Ordering::Relaxed));
        let place = self.waiting.load(Ordering::Relaxed) + 1;
        let queued = self.mean_us.load(Ordering::Relaxed).saturating_mul(place) / self.permits;
        Duration::from_micros(since_start.max(queued))
    }

    /// A permit, waited for until `deadline` at most; when `judge_speed`,
    /// only if one is expected before then. Destinations are judged (each
    /// has deliveries of one kind); plugins and tenants are not (theirs go
    /// to fast and slow destinations alike, so their mean says nothing).
    async fn take(self: Arc<Self>, deadline: tokio::time::Instant, judge_speed: bool) -> Option<Held> {
        let permit = match Arc::clone(&self.semaphore).try_acquire_owned() {
            Ok(permit) => permit,
            Err(_)
                if judge_speed
                    && self.expected_wait()
                        >= deadline.saturating_duration_since(tokio::time::Instant::now()) =>
            {
                return None;
            }
            Err(_) => {
                self.waiting.fetch_add(1, Ordering::Relaxed);
                let _waiting = Waiting(&self.waiting);
                let wait = Arc::clone(&self.semaphore).acquire_owned();
                tokio::time::timeout_at(deadline, wait).await.ok()?.ok()?
            }
        };
        self.last_start_us.store(micros(self.epoch.elapsed()), Ordering::Relaxed);
        Some(Held { _permit: permit, slot: self })
    }
}

/// Counts a waiting delivery until it stops waiting, for any reason.
struct Waiting<'a>(&'a AtomicU64);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A permit of one key, with the slot it came from.
struct Held {
    _permit: OwnedSemaphorePermit,
    slot: Arc<Slot>,
}

impl Held {
    /// Tells the slot a delivery took `took`.
    fn learn(&self, took: Duration) {
        let took = micros(took);
        let _ = self.slot.mean_us.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |mean| {
            Some(if mean == 0 { took } else { mean - mean / 8 + took / 8 })
        });
    }
}

fn micros(duration: Duration) -> u64 {
    u64::try_from(duration.as_micros()).unwrap_or(u64::MAX)
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

impl DispatchConfig {
    /// Checks the section's own rules.
    ///
    /// # Errors
    /// What is wrong, naming the option.
    pub fn validate(&self) -> Result<(), String> {
        if self.per_plugin == 0 || self.per_host == 0 || self.per_message == 0 {
            return Err(
                "dispatch.per_plugin, dispatch.per_host and dispatch.per_message must be at least 1".into()
            );
        }
        Ok(())
    }
}

impl Default for DispatchConfig {
    fn default() -> Self {
        DispatchConfig { concurrency: 64, per_plugin: 64, per_host: 16, per_message: 16, slot_wait_ms: 500 }
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
    /// A dispatcher for `notifiers` with the bounds of `dispatch` and the
    /// concurrent-delivery quotas of `tenants`.
    pub fn new(
        notifiers: N,
        dispatch: &DispatchConfig,
        tenants: &BTreeMap<String, TenantConfig>,
        metrics: Arc<Metrics>,
    ) -> Self {
        let tenant_quotas = tenants
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
        let split = action::split(&record.action).ok();
        let shown = split.as_ref().map_or_else(|| action::display(&record.action), |split| split.redacted());
        let plugin = match self.notifiers.resolve(&record.action) {
            Ok(plugin) => plugin,
            Err(error) => return self.unresolved(record, &shown, &error),
        };
        let outcome = self.attempt(record, &plugin, split.as_ref(), &shown).await;
        if N::retired(&plugin) {
            // Its notifier was deleted meanwhile, and its series with it:
            // what this delivery counted must not bring them back.
            let (name, tenant) = N::identity(&plugin);
            self.metrics.forget_plugin(name, tenant);
        }
        outcome
    }

    /// Runs one attempt of `record` in `plugin`, within the slots, and
    /// logs and counts its outcome.
    async fn attempt(
        &self,
        record: &DeliveryRecord,
        plugin: &N::Plugin,
        split: Option<&SplitAction<'_>>,
        shown: &str,
    ) -> Outcome {
        let alarm_id = record.alarm.alarm_id.as_str();
        let (name, tenant) = N::identity(plugin);
        // Actions without a host (`log://`) are their plugin's destination.
        // A tenant's plugin reaches what it was granted, whatever the
        // action's host, which the alarm's author chose: its deliveries
        // share the host's slots with its tenant's only, so that they
        // cannot take the slots of another tenant's or the platform's
        // deliveries to that host.
        let host = split
            .map(|s| s.host_port().to_ascii_lowercase())
            .filter(|host| !host.is_empty())
            .unwrap_or_else(|| format!("{name}:"));
        let destination = match tenant {
            Some(tenant) => format!("{tenant}/{host}"),
            None => host,
        };
        let permits = match self.acquire(name, tenant, &destination).await {
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
        let result = self.notifiers.invoke(plugin, &record.action, &record.alarm, &delivery).await;
        let elapsed = started.elapsed();
        permits.learn(elapsed);
        self.metrics.delivery_time(name, tenant, elapsed.as_secs_f64());
        let elapsed_ms = elapsed.as_secs_f64() * 1e3;
        let attempt = record.attempt;
        match result {
            Ok(()) => {
                // A first attempt's success is the plugin's own lines at
                // `info`, as Aodh logs it (one line per `log://` action):
                // this line is for `debug`. One that took retries is news.
                macro_rules! delivered {
                    ($level:expr) => {
                        tracing::event!($level, alarm_id, action = %shown, plugin = name, tenant,
                            delivery_id = %record.delivery_id, attempt, outcome = "delivered", elapsed_ms,
                            "dispatch: Delivered.")
                    };
                }
                if attempt > 1 {
                    delivered!(tracing::Level::INFO);
                } else {
                    delivered!(tracing::Level::DEBUG);
                }
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
    /// the destination's slots, all within `slot_wait`, then a global one
    /// (waited for: every delivery needs one, and they all finish within
    /// their deadline). A busy destination is waited for only when a slot
    /// is expected in time: a delivery that waits holds its message, and
    /// so a place in the broker's prefetch window that other alarms could
    /// use. The bounded slots first, so that a waiting delivery holds no
    /// global slot either.
    async fn acquire(
        &self,
        plugin: &str,
        tenant: Option<&str>,
        destination: &str,
    ) -> Result<Permits, String> {
        let deadline = tokio::time::Instant::now() + self.slot_wait;
        let plugin_slot = self
            .per_plugin
            .slot(plugin)
            .take(deadline, false)
            .await
            .ok_or_else(|| format!("plugin {plugin} is at its concurrency limit"))?;
        let tenant_slot = match tenant {
            Some(tenant) => {
                let quota = self.tenant_quotas.get(tenant).copied().unwrap_or(self.per_tenant.permits);
                let held = self
                    .per_tenant
                    .slot_of(tenant, quota)
                    .take(deadline, false)
                    .await
                    .ok_or_else(|| format!("tenant {tenant} is at its concurrent-delivery quota"))?;
                Some(held)
            }
            None => None,
        };
        let host_slot = self
            .per_host
            .slot(destination)
            .take(deadline, true)
            .await
            .ok_or_else(|| format!("destination {destination} is at its concurrency limit"))?;
        let global = Arc::clone(&self.global).acquire_owned().await.map_err(|e| e.to_string())?;
        Ok(Permits { _global: global, _plugin: plugin_slot, _tenant: tenant_slot, host: host_slot })
    }
}

/// The slots one delivery holds while it runs.
struct Permits {
    _global: OwnedSemaphorePermit,
    _plugin: Held,
    _tenant: Option<Held>,
    host: Held,
}

impl Permits {
    /// Tells the destination's slot how long the delivery took.
    fn learn(&self, took: Duration) {
        self.host.learn(took);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const WAIT: Duration = Duration::from_millis(100);

    fn one_permit() -> Arc<Slot> {
        Arc::new(Slot::new(1, tokio::time::Instant::now()))
    }

    async fn take(slot: &Arc<Slot>) -> Option<Held> {
        Arc::clone(slot).take(tokio::time::Instant::now() + WAIT, true).await
    }

    #[tokio::test(start_paused = true)]
    async fn a_busy_key_whose_deliveries_are_quick_is_waited_for() {
        let slot = one_permit();
        let held = take(&slot).await.unwrap();
        held.learn(Duration::from_millis(2));
        let release = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(5)).await;
            drop(held);
        });
        let started = tokio::time::Instant::now();
        assert!(take(&slot).await.is_some(), "the permit came free within the wait");
        assert_eq!(started.elapsed(), Duration::from_millis(5));
        release.await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn a_busy_key_whose_deliveries_are_slow_defers_at_once() {
        let slot = one_permit();
        let held = take(&slot).await.unwrap();
        held.learn(Duration::from_secs(2));
        let started = tokio::time::Instant::now();
        assert!(take(&slot).await.is_none());
        assert_eq!(started.elapsed(), Duration::ZERO, "no time spent holding the message");
        drop(held);
        assert!(take(&slot).await.is_some(), "a free permit is taken whatever the key's speed");
    }

    #[tokio::test(start_paused = true)]
    async fn a_key_busy_past_the_wait_defers_at_once_before_any_delivery_ends() {
        let slot = one_permit();
        let _held = take(&slot).await.unwrap();
        let started = tokio::time::Instant::now();
        assert!(take(&slot).await.is_none(), "nothing learnt yet: waits, until the wait runs out");
        assert_eq!(started.elapsed(), WAIT);
        let started = tokio::time::Instant::now();
        assert!(take(&slot).await.is_none());
        assert_eq!(started.elapsed(), Duration::ZERO, "busy for longer than the wait: deferred at once");
        assert_eq!(slot.waiting.load(Ordering::Relaxed), 0, "no waiter left counted");
    }

    #[tokio::test(start_paused = true)]
    async fn each_waiter_ahead_adds_a_delivery_time_shared_by_the_permits() {
        let slot = Arc::new(Slot::new(2, tokio::time::Instant::now()));
        let (first, _second) = (take(&slot).await.unwrap(), take(&slot).await.unwrap());
        first.learn(Duration::from_millis(40));
        assert_eq!(slot.expected_wait(), Duration::from_millis(20), "one of two permits frees every 20 ms");
        // Two real waiters, each bounded by the wait.
        let waiters: Vec<_> = (0..2).map(|_| tokio::spawn(take_owned(Arc::clone(&slot)))).collect();
        tokio::task::yield_now().await;
        assert_eq!(slot.waiting.load(Ordering::Relaxed), 2);
        assert_eq!(slot.expected_wait(), Duration::from_millis(60), "third in line");
        for waiter in waiters {
            assert!(waiter.await.unwrap().is_none(), "no permit came free within the wait");
        }
        assert_eq!(slot.waiting.load(Ordering::Relaxed), 0);
    }

    async fn take_owned(slot: Arc<Slot>) -> Option<Held> {
        take(&slot).await
    }

    #[tokio::test(start_paused = true)]
    async fn an_unjudged_slot_is_waited_for_until_the_deadline_whatever_its_speed() {
        let slot = one_permit();
        let held = take(&slot).await.unwrap();
        held.learn(Duration::from_secs(2));
        let started = tokio::time::Instant::now();
        assert!(Arc::clone(&slot).take(started + WAIT, false).await.is_none());
        assert_eq!(started.elapsed(), WAIT, "a plugin's or tenant's slot: waited for, up to the deadline");
    }

    #[tokio::test(start_paused = true)]
    async fn a_dropped_wait_is_no_longer_counted() {
        let slot = one_permit();
        let _held = take(&slot).await.unwrap();
        let waiter = tokio::spawn(take_owned(Arc::clone(&slot)));
        tokio::task::yield_now().await;
        assert_eq!(slot.waiting.load(Ordering::Relaxed), 1);
        waiter.abort();
        assert!(waiter.await.is_err_and(|error| error.is_cancelled()));
        assert_eq!(slot.waiting.load(Ordering::Relaxed), 0);
    }
}
