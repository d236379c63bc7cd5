//! The sandbox: runs one plugin call in a fresh wasmtime store, within its
//! limits.
//!
//! Three lifetimes (as wasmtime's and Spin's hosts have them):
//! - process: one [`Engine`] (component model, fuel, pooling allocator)
//!   and one [`Linker`] holding the capabilities;
//! - plugin: compiled once into a [`Plugin`] (a pre-instantiated
//!   [`NotifierPre`]) when loaded;
//! - call: a fresh [`Store`] with its own limits, WASI context and
//!   capability state, dropped after the call, so nothing leaks between
//!   alarms or tenants.
//!
//! Limits per call: memory ([`limiter::MemoryLimiter`]), CPU (fuel: the
//! guest's instructions, or its CPU time's worth when more, [`cpu_time`]), a
//! wall-clock deadline covering host calls too, the bytes one host call
//! carries (wasmtime's hostcall fuel), log and HTTP caps (in the
//! capabilities). Hitting one is a typed [`CallError::Limit`]; the host
//! and other calls carry on.
//!
//! Calls never pin a runtime thread: running guest code yields about once
//! a millisecond ([`epoch`]), and calls take turns on a fixed number of
//! running slots, the tenant that has used the least CPU first
//! ([`scheduler`]).

pub mod compiler;
pub mod config;
pub(crate) mod cpu_time;
pub mod epoch;
pub(crate) mod limiter;
pub(crate) mod scheduler;
pub mod state;
pub mod threads;
pub mod validate;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use tocsin_core::alarm::{Alarm, Delivery, ReasonData};
use tocsin_core::bindings::NotifierPre;
use tocsin_core::bindings::exports::tocsin::notifier::handler::NotifyError;
use tocsin_core::bindings::tocsin::notifier::types as wit;
use tocsin_core::caps::{
    MAX_CORE_INSTANCES, MAX_MEMORIES, MAX_MEMORIES_PER_MODULE, MAX_REASON_BYTES,
    MAX_TABLE_ELEMENTS_PER_TABLE, MAX_TABLES, MAX_TABLES_PER_MODULE,
};
use tocsin_core::limits::{Limit, Limits};
use tocsin_core::logtext::bounded;
use tocsin_core::time::millis;
use tracing::Instrument;
use wasmtime::component::{Component, Linker};
use wasmtime::{
    CallHook, Enabled, Engine, InstanceAllocationStrategy, PoolConcurrencyLimitError,
    PoolingAllocationConfig, Store, Trap, UpdateDeadline,
};

use crate::capabilities::http::HttpGrants;
use crate::capabilities::log::{CallIdentity, LogBuffer, LogLine};
use crate::capabilities::{CallContext, Capabilities};
use compiler::{Artifact, CompileTarget};
use cpu_time::{CallClock, CpuCharge, CpuTimeExceeded};
use epoch::EpochTicker;
use limiter::{DeadlineExceeded, MemoryLimitExceeded, MemoryLimiter, check_deadline};
use scheduler::CpuScheduler;
use state::StoreState;
use threads::CallThreads;
use validate::{ComponentInfo, LoadError};

pub use config::SandboxConfig;

/// Bytes of each pooled memory slot kept resident between calls.
const KEEP_RESIDENT_BYTES: usize = 1 << 20;

/// Why the sandbox could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    /// wasmtime refused the engine configuration.
    #[error("cannot create the wasm engine: {0}")]
    Engine(String),
    /// The epoch ticker thread could not be started.
    #[error("cannot start the epoch ticker thread: {0}")]
    Ticker(#[from] std::io::Error),
    /// The threads calls run on could not be started.
    #[error("cannot start the sandbox threads: {0}")]
    Threads(std::io::Error),
}

/// How one call ended, when it did not deliver.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CallError {
    /// The plugin reported a failure worth retrying.
    #[error("retryable failure: {reason}")]
    Retryable {
        /// The plugin's reason.
        reason: String,
        /// The plugin's hint of when to retry.
        retry_after: Option<Duration>,
    },
    /// The plugin reported a failure a retry cannot fix.
    #[error("permanent failure: {0}")]
    Permanent(String),
    /// The call hit a limit and was stopped.
    #[error("{limit} limit exceeded: {detail}")]
    Limit {
        /// Which limit.
        limit: Limit,
        /// What happened, for the log.
        detail: String,
    },
    /// The plugin trapped (a panic, `unreachable`, a bad memory access).
    #[error("plugin trapped: {0}")]
    Trap(String),
    /// Every instance slot of the pool is in use: try again shortly.
    #[error("no free instance slot: {0}")]
    Busy(String),
    /// The plugin could not be instantiated (its start-up failed).
    #[error("cannot instantiate plugin: {0}")]
    Instantiate(String),
}

impl CallError {
    /// Whether a later attempt may succeed: the plugin said so, the
    /// deadline passed, or no instance slot was free. Memory, CPU, stack,
    /// traps and failed start-ups are permanent.
    pub fn is_retryable(&self) -> bool {
        match self {
            CallError::Retryable { .. } | CallError::Busy(_) => true,
            CallError::Limit { limit, .. } => limit.is_retryable(),
            CallError::Permanent(_) | CallError::Trap(_) | CallError::Instantiate(_) => false,
        }
    }

    /// Short name of the kind of failure, for output and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            CallError::Retryable { .. } => "retryable",
            CallError::Permanent(_) => "permanent",
            CallError::Limit { .. } => "limit",
            CallError::Trap(_) => "trap",
            CallError::Busy(_) => "busy",
            CallError::Instantiate(_) => "instantiate",
        }
    }
}

/// What a plugin is loaded with.
#[derive(Debug, Clone, Default)]
pub struct PluginSpec {
    /// Name used in logs and configuration.
    pub name: String,
    /// Owning tenant; none for the platform's plugins.
    pub tenant: Option<String>,
    /// Limits of each call.
    pub limits: Limits,
    /// HTTP grants beyond the action URL's host.
    pub grants: HttpGrants,
    /// Its WASI environment: the operator's settings for a built-in
    /// notifier; empty for every other plugin.
    pub environment: Vec<(String, String)>,
}

/// A loaded plugin: compiled, checked and pre-instantiated.
pub struct Plugin {
    name: Arc<str>,
    tenant: Option<Arc<str>>,
    limits: Limits,
    grants: Arc<HttpGrants>,
    environment: Arc<[(String, String)]>,
    /// Set when its notifier is taken out of service.
    retired: AtomicBool,
    pre: NotifierPre<StoreState>,
    log: Arc<LogBuffer>,
    info: ComponentInfo,
}

impl std::fmt::Debug for Plugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Plugin")
            .field("name", &self.name)
            .field("tenant", &self.tenant)
            .finish_non_exhaustive()
    }
}

impl Plugin {
    /// The plugin's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The tenant that owns it; none for the platform's.
    pub fn tenant(&self) -> Option<&str> {
        self.tenant.as_deref()
    }

    /// Marks it out of service: its notifier is gone, and calls still
    /// running should leave no trace in the metrics.
    pub fn retire(&self) {
        self.retired.store(true, Ordering::Release);
    }

    /// Whether [`Plugin::retire`] was called.
    pub fn is_retired(&self) -> bool {
        self.retired.load(Ordering::Acquire)
    }

    /// What the component imports and exports.
    pub fn info(&self) -> &ComponentInfo {
        &self.info
    }

    /// Its recent log lines, across calls.
    pub fn recent_logs(&self) -> Vec<LogLine> {
        self.log.recent()
    }
}

/// The result of one call, with what the plugin did during it.
#[derive(Debug)]
pub struct Invocation {
    /// `Ok` when delivered.
    pub result: Result<(), CallError>,
    /// Wall time of the call, instantiation included.
    pub elapsed: Duration,
    /// Fuel the guest burned.
    pub fuel_used: u64,
    /// Lines the plugin logged in this call (stderr included).
    pub logs: Vec<LogLine>,
    /// Lines dropped by the log caps.
    pub log_dropped: u64,
    /// Lines truncated by the log caps.
    pub log_truncated: u64,
    /// HTTP requests sent.
    pub http_requests: u32,
    /// Limits hit without stopping the call (log, HTTP), and the one that
    /// stopped it, if any.
    pub limits_hit: Vec<Limit>,
}

impl Invocation {
    /// A call that never ran the plugin.
    fn not_run(error: CallError, elapsed: Duration) -> Self {
        Invocation {
            result: Err(error),
            elapsed,
            fuel_used: 0,
            logs: Vec::new(),
            log_dropped: 0,
            log_truncated: 0,
            http_requests: 0,
            limits_hit: Vec::new(),
        }
    }

    /// What happened, as the one JSON object `tocsin notify` prints and a
    /// dry run answers: outcome, error (kind, whether retryable, limit,
    /// retry-after), cost and the plugin's log lines.
    pub fn report(
        &self,
        plugin: &str,
        action: &str,
        alarm: &Alarm,
        delivery: &Delivery,
    ) -> serde_json::Value {
        let error = self.result.as_ref().err().map(|error| {
            let mut value = serde_json::json!({
                "kind": error.kind(), "retryable": error.is_retryable(), "message": error.to_string(),
            });
            match error {
                CallError::Limit { limit, .. } => value["limit"] = serde_json::json!(limit),
                CallError::Retryable { retry_after: Some(after), .. } => {
                    value["retry_after_ms"] = serde_json::json!(millis(*after));
                }
                _ => {}
            }
            value
        });
        serde_json::json!({
            "outcome": if self.result.is_ok() { "delivered" } else { "failed" },
            "plugin": plugin,
            "action": tocsin_contract::action::display(action),
            "alarm_id": alarm.alarm_id,
            "delivery_id": delivery.id,
            "request_id": delivery.request_id(),
            "elapsed_ms": self.elapsed.as_secs_f64() * 1e3,
            "fuel_used": self.fuel_used,
            "error": error,
            "http_requests": self.http_requests,
            "limits_hit": self.limits_hit,
            "log_dropped": self.log_dropped,
            "log_truncated": self.log_truncated,
            "logs": self.logs,
        })
    }
}

/// The process's wasm runtime; see the module docs.
pub struct Sandbox {
    engine: Engine,
    linker: Linker<StoreState>,
    capabilities: Capabilities,
    log_buffer_lines: usize,
    ticker: EpochTicker,
    scheduler: Arc<CpuScheduler>,
    threads: CallThreads,
}

impl std::fmt::Debug for Sandbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sandbox").finish_non_exhaustive()
    }
}

impl Sandbox {
    /// The engine and linker for `config`, serving `capabilities`.
    ///
    /// # Errors
    /// [`SandboxError`] when wasmtime refuses the configuration (e.g. the
    /// pool cannot be reserved) or a thread cannot be started.
    pub fn new(config: &SandboxConfig, capabilities: Capabilities) -> Result<Self, SandboxError> {
        let engine = Engine::new(&engine_config(config, config.pooling.then_some(config.instances)))
            .map_err(|e| SandboxError::Engine(format!("{e:#}")))?;
        let mut linker = Linker::new(&engine);
        crate::capabilities::add_to_linker(&mut linker)
            .map_err(|e| SandboxError::Engine(format!("{e:#}")))?;
        let ticker = EpochTicker::start(&engine)?;
        let tenant_running_calls = config.tenant_running_calls();
        Ok(Sandbox {
            engine,
            linker,
            capabilities,
            log_buffer_lines: config.log_buffer_lines,
            ticker,
            scheduler: Arc::new(CpuScheduler::new(config.running_calls(), tenant_running_calls)),
            threads: CallThreads::start(tenant_running_calls, config.nice).map_err(SandboxError::Threads)?,
        })
    }

    /// Compiles (in this process), checks and pre-instantiates a plugin:
    /// for the built-ins and files the operator names. Uploads go through
    /// [`compiler::Compiler`] and [`Sandbox::load_artifact`].
    ///
    /// # Errors
    /// [`LoadError`]: not a component, a refused import, no `notifier`
    /// export of a supported version.
    pub fn load(&self, spec: PluginSpec, bytes: &[u8]) -> Result<Plugin, LoadError> {
        validate::precheck(bytes, spec.limits.memory_bytes).map_err(LoadError::bounded)?;
        let component = validate::compile(&self.engine, bytes).map_err(LoadError::bounded)?;
        self.plugin(spec, component).map_err(LoadError::bounded)
    }

    /// Loads a plugin from an artifact tocsin compiled, checking it as
    /// [`Sandbox::load`] does.
    ///
    /// # Errors
    /// [`LoadError`]: the artifact does not fit this engine, or the checks
    /// refuse it.
    pub(crate) fn load_artifact(&self, spec: PluginSpec, artifact: &Artifact) -> Result<Plugin, LoadError> {
        // Checked per version: the artifact may have been compiled (and
        // cached) for another version's limits.
        let limit = spec.limits.memory_bytes;
        if artifact.initial_memory_bytes() > limit {
            return Err(validate::footprint::memory_over_limit(artifact.initial_memory_bytes(), limit));
        }
        // SAFETY: wasmtime requires that deserialized bytes come from
        // `Component::serialize` of a compatible engine and were not
        // tampered with. An `Artifact` is only made by `compiler`, from the
        // output of tocsin's own compiler process or from a cache entry
        // carrying the HMAC that process's parent wrote with a key kept in
        // the state directory; wasmtime checks the engine compatibility.
        #[allow(unsafe_code)]
        let component = unsafe { Component::deserialize(&self.engine, artifact.bytes()) }.map_err(|e| {
            // The pool checks its slots here: a component past them could
            // never be instantiated, whatever the artifact.
            let error = format!("{e:#}");
            if error.contains("pooling allocator") {
                LoadError::TooLarge(error)
            } else {
                LoadError::Artifact(error)
            }
        })?;
        self.plugin(spec, component)
    }

    fn plugin(&self, spec: PluginSpec, component: Component) -> Result<Plugin, LoadError> {
        let (info, pre) = self.link(component)?;
        Ok(Plugin {
            name: spec.name.into(),
            tenant: spec.tenant.map(Into::into),
            limits: spec.limits,
            grants: Arc::new(spec.grants),
            environment: spec.environment.into(),
            retired: AtomicBool::new(false),
            pre,
            log: Arc::new(LogBuffer::new(self.log_buffer_lines)),
            info,
        })
    }

    fn link(&self, component: Component) -> Result<(ComponentInfo, NotifierPre<StoreState>), LoadError> {
        let info = validate::check(&self.engine, &component)?;
        validate::check_resources(&component)?;
        let instance_pre =
            self.linker.instantiate_pre(&component).map_err(|e| LoadError::Link(format!("{e:#}")))?;
        let pre = NotifierPre::new(instance_pre).map_err(|e| LoadError::ExportMismatch(format!("{e:#}")))?;
        Ok((info, pre))
    }

    /// Builds what plugins' first calls would otherwise wait for (see
    /// [`Capabilities::prepare`]): blocking, for the blocking pool at
    /// start-up.
    pub(crate) fn prepare_capabilities(&self) {
        self.capabilities.prepare();
    }

    /// The engine, for the artifact cache's compatibility key.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Runs `plugin` for one action of one alarm, in a fresh store: a
    /// tenant's on the sandbox threads ([`threads`]), the platform's on the
    /// caller's runtime.
    #[tracing::instrument(name = "sandbox", level = "debug", skip_all, fields(
        plugin = %plugin.name,
        tenant = plugin.tenant.as_deref().unwrap_or(""),
        alarm_id = %alarm.alarm_id,
        action = %tocsin_contract::action::display(action),
    ))]
    pub async fn invoke(
        &self,
        plugin: &Plugin,
        action: &str,
        alarm: &Arc<Alarm>,
        delivery: &Delivery,
    ) -> Invocation {
        let started = Instant::now();
        let limits = plugin.limits;
        let deadline = started + limits.deadline();
        let calls = self.capabilities.start_call(CallContext {
            identity: CallIdentity {
                plugin: Arc::clone(&plugin.name),
                tenant: plugin.tenant.clone(),
                alarm_id: alarm.alarm_id.clone(),
            },
            log_buffer: &plugin.log,
            grants: &plugin.grants,
            environment: &plugin.environment,
            action,
            delivery_id: &delivery.id,
            limits: &limits,
            deadline,
        });
        let state = StoreState { limiter: MemoryLimiter::new(&limits), calls };
        let mut store = Store::new(&self.engine, state);
        store.limiter(|state| &mut state.limiter);
        store.set_hostcall_fuel(usize::try_from(limits.host_call_bytes).unwrap_or(usize::MAX));
        // Every host call first checks the deadline: the timeout below
        // fires only when the call yields, and one host call cannot be
        // interrupted.
        store.call_hook(move |_, hook| match hook {
            CallHook::CallingHost => check_deadline(deadline),
            _ => Ok(()),
        });
        // At every epoch tick the call's CPU time is charged to its fuel,
        // and it yields: the runtime gets its thread back and the scheduler
        // hands the turn on. Through tokio's own yield, which wakes the
        // task only after the worker has polled its I/O and timers: a call
        // that woke itself at once would be polled again and again, and
        // the worker would look at the sockets and timers of every other
        // task only every 61 of its turns.
        let clock = Arc::new(CallClock::default());
        let charge = Arc::new(CpuCharge::new(Arc::clone(&clock), limits.fuel));
        let ticking = Arc::clone(&charge);
        store.epoch_deadline_callback(move |store| {
            ticking.charge(store)?;
            Ok(UpdateDeadline::YieldCustom(1, Box::pin(tokio::task::yield_now())))
        });
        store.set_epoch_deadline(1);
        let call = {
            let (pre, owner, scheduler) =
                (plugin.pre.clone(), plugin.tenant.clone(), Arc::clone(&self.scheduler));
            let (action, alarm, delivery) = (action.to_owned(), Arc::clone(alarm), delivery.clone());
            async move {
                if let Err(error) = store.set_fuel(limits.fuel) {
                    return (store, Err(CallError::Trap(format!("{error:#}"))));
                }
                let call = call_notify(&mut store, &pre, &action, &alarm, &delivery);
                let call = scheduler.run(owner, &clock, call);
                let result = match tokio::time::timeout_at(deadline.into(), call).await {
                    Err(_elapsed) => Err(CallError::Limit {
                        limit: Limit::Deadline,
                        detail: format!("the call ran past its {} ms deadline", limits.deadline_ms),
                    }),
                    Ok(result) => result,
                };
                (store, result)
            }
        };
        let _running = self.ticker.running();
        // The platform's plugins are the operator's code, and a notification
        // takes them tens of microseconds: the hop to another thread would
        // cost them a tenth of their throughput, and no turn of theirs
        // makes the host work for long.
        let ran = match plugin.tenant {
            None => Ok(call.await),
            Some(_) => self.threads.run(call.in_current_span()).await,
        };
        match ran {
            Ok((store, result)) => {
                let fuel_used = charge.used(store.get_fuel().unwrap_or(0));
                finish(store.into_data(), result, started.elapsed(), fuel_used)
            }
            Err(stopping) => Invocation::not_run(CallError::Busy(stopping.to_string()), started.elapsed()),
        }
    }
}

/// Instantiates and calls `notify`, classifying what went wrong.
async fn call_notify(
    store: &mut Store<StoreState>,
    pre: &NotifierPre<StoreState>,
    action: &str,
    alarm: &Alarm,
    delivery: &Delivery,
) -> Result<(), CallError> {
    let instance = pre.instantiate_async(&mut *store).await.map_err(|e| classify_error(&e, true))?;
    // Borrowed (the bindings' `Borrowing` ownership): lowering copies each
    // string into the guest's memory, so the host makes no copy of its own.
    let request_id = delivery.request_id();
    let wit_alarm = wit::Alarm {
        alarm_id: &alarm.alarm_id,
        alarm_name: alarm.alarm_name.as_deref(),
        severity: alarm.severity.as_deref(),
        previous: &alarm.previous,
        current: &alarm.current,
        reason: &alarm.reason,
        reason_data: alarm.reason_data.as_ref().map(ReasonData::as_str),
    };
    let wit_delivery = wit::Delivery {
        id: &delivery.id,
        request_id: &request_id,
        attempt: delivery.attempt,
        tenant: delivery.tenant.as_deref(),
    };
    let returned = instance
        .tocsin_notifier_handler()
        .call_notify(&mut *store, action, wit_alarm, wit_delivery)
        .await
        .map_err(|e| classify_error(&e, false))?;
    // The reason is the plugin's text: escaped and bounded before it
    // reaches a log line or a dead-letter record.
    let mut cut = false;
    returned.map_err(|error| match error {
        NotifyError::Retryable(retry) => CallError::Retryable {
            reason: bounded(&retry.reason, MAX_REASON_BYTES, &mut cut),
            retry_after: retry.retry_after_ms.map(Duration::from_millis),
        },
        NotifyError::Permanent(reason) => CallError::Permanent(bounded(&reason, MAX_REASON_BYTES, &mut cut)),
    })
}

/// How wasmtime says a host call's arguments passed the store's hostcall
/// fuel ([`Limits::host_call_bytes`]).
const HOST_CALL_FUEL_EXHAUSTED: &str = "too much data is being copied between the host and the guest: fuel allocated for hostcalls has been exhausted";

/// Turns a wasmtime error into the limit it hit, a full pool, or a trap.
fn classify_error(error: &wasmtime::Error, instantiating: bool) -> CallError {
    if let Some(hit) = error.downcast_ref::<MemoryLimitExceeded>() {
        return CallError::Limit { limit: Limit::Memory, detail: hit.to_string() };
    }
    if let Some(hit) = error.downcast_ref::<DeadlineExceeded>() {
        return CallError::Limit { limit: Limit::Deadline, detail: hit.to_string() };
    }
    if let Some(hit) = error.downcast_ref::<CpuTimeExceeded>() {
        return CallError::Limit { limit: Limit::Cpu, detail: hit.to_string() };
    }
    if let Some(full) = error.downcast_ref::<PoolConcurrencyLimitError>() {
        return CallError::Busy(full.to_string());
    }
    // wasmtime's type for it is private; its message is pinned by a test.
    // Only the root cause: a backtrace in the chain names the guest's own
    // functions, which the guest chooses.
    if error.root_cause().to_string() == HOST_CALL_FUEL_EXHAUSTED {
        return CallError::Limit {
            limit: Limit::HostCall,
            detail: "the plugin passed more data to or back from the host at once than its host_call_bytes"
                .into(),
        };
    }
    match error.downcast_ref::<Trap>() {
        Some(Trap::OutOfFuel) => {
            CallError::Limit { limit: Limit::Cpu, detail: "the plugin ran out of fuel".into() }
        }
        Some(Trap::StackOverflow) => {
            CallError::Limit { limit: Limit::Stack, detail: "the plugin overflowed its stack".into() }
        }
        Some(trap) => CallError::Trap(trap.to_string()),
        None if instantiating => CallError::Instantiate(format!("{error:#}")),
        None => CallError::Trap(format!("{error:#}")),
    }
}

/// Logs the outcome and gathers what the call did.
fn finish(state: StoreState, result: Result<(), CallError>, elapsed: Duration, fuel_used: u64) -> Invocation {
    let mut report = state.calls.finish();
    if let Err(CallError::Limit { limit, .. }) = &result {
        report.limits_hit.push(*limit);
    }
    let elapsed_ms = elapsed.as_secs_f64() * 1e3;
    match &result {
        Ok(()) => {
            tracing::debug!(outcome = "delivered", elapsed_ms, fuel_used, "sandbox: Notification delivered.")
        }
        // The caller reports the failure (dispatch's "Unable to notify", the
        // `notify` command's JSON); this is the sandbox's detail.
        Err(error) => tracing::debug!(
            outcome = "failed", kind = error.kind(), retryable = error.is_retryable(), elapsed_ms, error = %error,
            "sandbox: Notification failed."
        ),
    }
    Invocation {
        result,
        elapsed,
        fuel_used,
        logs: report.logs,
        log_dropped: report.log_dropped,
        log_truncated: report.log_truncated,
        http_requests: report.http_requests,
        limits_hit: report.limits_hit,
    }
}

/// The engine settings that decide what compiled code looks like: shared
/// by the service's engine and the compiler process, so that what one
/// compiles the other can load.
pub fn compile_settings(max_wasm_stack_bytes: usize) -> wasmtime::Config {
    let mut engine = wasmtime::Config::new();
    engine.wasm_component_model(true);
    engine.consume_fuel(true);
    engine.epoch_interruption(true);
    engine.max_wasm_stack(max_wasm_stack_bytes);
    engine
}

/// What the compiler process does once [`validate::precheck`] accepted
/// `bytes`: compiles and checks them on an engine made from
/// [`compile_settings`], and serializes the result.
///
/// # Errors
/// [`LoadError`] saying what is wrong.
pub(crate) fn precompile(engine: &Engine, bytes: &[u8]) -> Result<Vec<u8>, LoadError> {
    let component = validate::compile(engine, bytes)?;
    validate::check(engine, &component)?;
    validate::check_resources(&component)?;
    component.serialize().map_err(|e| LoadError::Compile(format!("{e:#}")))
}

/// The compiler child's engine configuration: the service's settings that
/// compiled code depends on, compiling on `threads`, and no instance pool.
/// A pool reserves gigabytes of address space up front, which code run
/// through a compiler bug could make usable past the child's
/// `RLIMIT_AS`; the pool's limits are checked before compiling instead
/// ([`validate::footprint`]), and exactly when the service loads the
/// artifact into its own pool.
pub(crate) fn compiler_engine_config(target: CompileTarget, threads: u32) -> wasmtime::Config {
    let mut engine = compile_settings(target.max_wasm_stack_bytes);
    engine.parallel_compilation(threads > 1);
    engine
}

/// The service's engine configuration: [`compile_settings`] and, with
/// `pool_instances`, the pooling allocator sized to that many instances.
fn engine_config(config: &SandboxConfig, pool_instances: Option<u32>) -> wasmtime::Config {
    let mut engine = compile_settings(config.max_wasm_stack_bytes);
    if let Some(instances) = pool_instances {
        let mut pool = PoolingAllocationConfig::default();
        // Per-component and per-module maxima (checked when a component is
        // compiled, so an oversized one is refused at load) and totals
        // sized so that `instances` calls of the largest allowed component
        // fit at once: one plugin cannot take the slots of the others.
        pool.max_core_instances_per_component(MAX_CORE_INSTANCES)
            .max_memories_per_component(MAX_MEMORIES)
            .max_tables_per_component(MAX_TABLES)
            .max_memories_per_module(MAX_MEMORIES_PER_MODULE)
            .max_tables_per_module(MAX_TABLES_PER_MODULE)
            .table_elements(usize::try_from(MAX_TABLE_ELEMENTS_PER_TABLE).unwrap_or(usize::MAX))
            .total_component_instances(instances)
            .total_core_instances(instances.saturating_mul(MAX_CORE_INSTANCES))
            .total_memories(instances.saturating_mul(MAX_MEMORIES))
            .total_tables(instances.saturating_mul(MAX_TABLES))
            .total_stacks(instances)
            .max_memory_size(usize::try_from(config.max_memory_bytes).unwrap_or(usize::MAX))
            // Reset the first pages of a slot with memset (only the pages
            // actually touched, found with PAGEMAP_SCAN where the kernel has
            // it) instead of madvise: a reused slot then takes no page
            // faults. A notifier touches well under this much per call.
            .linear_memory_keep_resident(KEEP_RESIDENT_BYTES)
            .table_keep_resident(KEEP_RESIDENT_BYTES / 16)
            .pagemap_scan(Enabled::Auto);
        engine.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    }
    engine
}
