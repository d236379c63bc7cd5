//! The whole pipeline against the real RabbitMQ on 127.0.0.1:5672:
//! broker → intake (decode, ack after the outcome) → dispatch → notifier →
//! `log` line or HTTP POST to a keep-alive sink on 127.0.0.1. Each case
//! runs twice in the same run: with the wasm sandbox, and with the
//! sandbox replaced by the same notifier code compiled natively (the
//! limit), so the ratio shows what the sandbox costs.
//!
//! `cargo bench -p tocsin --bench pipeline` (after `scripts/rabbitmq`).
//! - throughput: pre-fill the queue with `TOCSIN_BENCH_ALARMS` alarms
//!   (default 20,000, one action each), start the intake, time until all
//!   are delivered; `TOCSIN_BENCH_ROUNDS` runs (default 3), alternating
//!   native and sandbox, the median reported, with the notifier process's
//!   CPU time per action over the same runs. Each executor is built once
//!   and warmed up on a first, untimed drain, as in a long-running
//!   service (the sandbox's pool slots and compiled code are then in use,
//!   not touched for the first time);
//! - latency: publish at 1,000 alarms/s for 5 s, measure publish →
//!   delivered, p50 and p99.
//!
//! `http://` also runs with `http.pool_max_idle_per_host = 0` (`no-reuse`: a
//! new connection per request), which connection reuse is measured against.
//!
//! `TOCSIN_BENCH_CASES=log-sandbox,http-native` runs only those cases (for
//! profiling one of them).

#![allow(clippy::expect_used, clippy::unwrap_used)] // a benchmark that cannot set up has nothing to measure

mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use lapin::BasicProperties;
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use tocsin::config::Config;
use tocsin::dispatch::{Dispatcher, Notifiers, Sandboxed};
use tocsin::intake::topology::Topology;
use tocsin::intake::{Intake, Status};
use tocsin::message::{self, Stamps, WireFormat};
use tocsin::metrics::Metrics;
use tocsin::registry::{Registry, ResolveError};
use tocsin::sandbox::CallError;
use tocsin_core::alarm::{Alarm, Delivery};
use tocsin_tests::broker::TestVhost;
use tokio_util::sync::CancellationToken;

use crate::common::{Native, allow_loopback, start_sink};

/// The allocator the `tocsin` binary uses, so the figures are the service's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const LATENCY_RATE: u64 = 1_000;
const LATENCY_SECONDS: u64 = 5;

/// Counts deliveries and records publish → delivered from the alarm's
/// reason (`t=<unix ns>`).
struct Timed<N: 'static> {
    inner: &'static N,
    delivered: AtomicU64,
    latencies: Mutex<Vec<Duration>>,
}

impl<N: Notifiers> Notifiers for Timed<N> {
    type Plugin = N::Plugin;

    fn resolve(&self, action: &str) -> Result<Arc<N::Plugin>, ResolveError> {
        self.inner.resolve(action)
    }

    fn identity(plugin: &N::Plugin) -> (&str, Option<&str>) {
        N::identity(plugin)
    }

    async fn invoke(
        &self,
        plugin: &N::Plugin,
        action: &str,
        alarm: &Arc<Alarm>,
        delivery: &Delivery,
    ) -> Result<(), CallError> {
        let result = self.inner.invoke(plugin, action, alarm, delivery).await;
        if result.is_ok() {
            if let Some(sent) = alarm.reason.strip_prefix("t=").and_then(|t| t.parse::<u128>().ok()) {
                let latency = now_ns().saturating_sub(sent);
                self.latencies.lock().unwrap().push(Duration::from_nanos(latency as u64));
            }
            self.delivered.fetch_add(1, Ordering::Relaxed);
        }
        result
    }
}

/// CPU time (user + system) this process has used so far (Linux).
fn process_cpu() -> Duration {
    // Fields 14 and 15 of /proc/self/stat, in clock ticks (100 per second
    // on Linux), counted after the parenthesised command name.
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
    let fields: Vec<&str> = stat.rsplit(')').next().unwrap().split_whitespace().collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    Duration::from_millis(ticks * 10)
}

fn now_ns() -> u128 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos()
}

fn config(vhost: &TestVhost) -> Config {
    let mut config = Config::default();
    config.broker.transport_url = vhost.transport_url();
    config.intake.host = "bench".into();
    allow_loopback(&mut config);
    config.validate().expect("bench config");
    config
}

/// Publishes `count` notifications with one action, pacing them at `rate`
/// per second when given; the reason carries the publish time.
async fn publish(vhost: &TestVhost, config: &Config, action: &str, count: u64, rate: Option<u64>) {
    let connection = vhost.connect().await;
    let channel = connection.create_channel().await.unwrap();
    Topology::new(&config.intake_settings())
        .publisher(&config.intake, WireFormat::Notification)
        .declare(&channel, false)
        .await
        .unwrap();
    channel.confirm_select(ConfirmSelectOptions::default()).await.unwrap();
    let properties = BasicProperties::default()
        .with_content_type("application/json".into())
        .with_content_encoding("utf-8".into())
        .with_delivery_mode(2);
    let mut alarm = Alarm::sample();
    let actions = [action.to_owned()];
    let mut pacing = rate.map(|rate| tokio::time::interval(Duration::from_nanos(1_000_000_000 / rate)));
    let mut pending = Vec::new();
    for _ in 0..count {
        if let Some(interval) = pacing.as_mut() {
            interval.tick().await;
        }
        alarm.reason = format!("t={}", now_ns());
        let body = message::encode(WireFormat::Notification, &alarm, &actions, &Stamps::fresh());
        let confirm = channel
            .basic_publish(
                "aodh".into(),
                "alarming.sample".into(),
                BasicPublishOptions::default(),
                &body,
                properties.clone(),
            )
            .await
            .unwrap();
        pending.push(confirm);
        if pending.len() >= 1000 {
            for confirm in pending.drain(..) {
                assert!(confirm.await.unwrap().is_ack());
            }
        }
    }
    for confirm in pending {
        assert!(confirm.await.unwrap().is_ack());
    }
    let _ = connection.close(200, "done".into()).await;
}

struct Run {
    delivered: u64,
    elapsed: Duration,
    /// CPU time of this process (intake, dispatch, notifiers, sink) over
    /// the run.
    cpu: Duration,
    latencies: Vec<Duration>,
}

/// Starts an intake over `notifiers`, runs `load` beside it, and waits
/// until `expected` deliveries happened.
async fn pipeline<N: Notifiers>(
    config: &Config,
    notifiers: &'static N,
    expected: u64,
    load: impl Future<Output = ()>,
) -> Run {
    let metrics = Arc::new(Metrics::default());
    let timed = Timed { inner: notifiers, delivered: AtomicU64::new(0), latencies: Mutex::new(Vec::new()) };
    let dispatcher =
        Arc::new(Dispatcher::new(timed, &config.dispatch, &config.tenants, Arc::clone(&metrics)));
    let intake = Arc::new(
        Intake::new(config.intake_settings(), Arc::clone(&dispatcher), metrics, Arc::new(Status::default()))
            .unwrap(),
    );
    let shutdown = CancellationToken::new();
    let started = Instant::now();
    let cpu_before = process_cpu();
    let task = tokio::spawn(Arc::clone(&intake).run(shutdown.clone(), Duration::from_secs(5)));
    load.await;
    let deadline = Instant::now() + Duration::from_secs(300);
    let timed = dispatcher.notifiers();
    while timed.delivered.load(Ordering::Relaxed) < expected && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let elapsed = started.elapsed();
    let cpu = process_cpu().saturating_sub(cpu_before);
    shutdown.cancel();
    task.await.unwrap().unwrap();
    let latencies = std::mem::take(&mut *timed.latencies.lock().unwrap());
    Run { delivered: timed.delivered.load(Ordering::Relaxed), elapsed, cpu, latencies }
}

fn percentile(sorted: &[Duration], q: f64) -> Duration {
    sorted.get(((sorted.len().max(1) - 1) as f64 * q).round() as usize).copied().unwrap_or_default()
}

/// What delivers the actions of a run: built once per process, as a
/// service builds it once, and shared by every run.
#[derive(Clone, Copy)]
enum Executor {
    Native(&'static Native),
    Sandbox(&'static Sandboxed),
    /// The sandbox with `http.pool_max_idle_per_host = 0`: a new connection
    /// per request, what connection reuse is measured against.
    NoReuse(&'static Sandboxed),
}

impl Executor {
    /// The executors for `config`, in the order the table shows them; the
    /// no-reuse one (a second instance pool) only `with_no_reuse`.
    fn all(config: &Config, with_no_reuse: bool) -> Vec<Executor> {
        let sandboxed = |config: &Config| -> &'static Sandboxed {
            let sandbox = tocsin::service::sandbox(config).unwrap();
            let registry = Registry::with_builtins(&sandbox, &config.grants()).unwrap();
            let metrics = Arc::new(Metrics::default());
            Box::leak(Box::new(Sandboxed {
                sandbox: Arc::new(sandbox),
                registry: Arc::new(registry),
                metrics,
            }))
        };
        let mut all = vec![
            Executor::Native(Box::leak(Box::new(Native::new(config)))),
            Executor::Sandbox(sandboxed(config)),
        ];
        if with_no_reuse {
            let mut fresh_connections = config.clone();
            fresh_connections.http.pool_max_idle_per_host = 0;
            all.push(Executor::NoReuse(sandboxed(&fresh_connections)));
        }
        all
    }

    fn label(self) -> &'static str {
        match self {
            Executor::Native(_) => "native",
            Executor::Sandbox(_) => "sandbox",
            Executor::NoReuse(_) => "no-reuse",
        }
    }
}

/// Alarms drained, untimed, before an executor's first timed run.
const WARMUP_ALARMS: u64 = 2_000;

async fn case(
    vhost: &TestVhost,
    config: &Config,
    executor: Executor,
    action: &str,
    alarms: u64,
    latency: bool,
) -> Run {
    let (count, rate) =
        if latency { (LATENCY_RATE * LATENCY_SECONDS, Some(LATENCY_RATE)) } else { (alarms, None) };
    if !latency {
        publish(vhost, config, action, count, None).await;
    }
    let load = async {
        if latency {
            publish(vhost, config, action, count, rate).await;
        }
    };
    match executor {
        Executor::Native(native) => pipeline(config, native, count, load).await,
        Executor::Sandbox(sandboxed) | Executor::NoReuse(sandboxed) => {
            pipeline(config, sandboxed, count, load).await
        }
    }
}

fn main() {
    tocsin::process::disable_transparent_huge_pages()
        .expect("opt out of transparent huge pages, as the service does");
    let alarms: u64 =
        std::env::var("TOCSIN_BENCH_ALARMS").ok().and_then(|n| n.parse().ok()).unwrap_or(20_000);
    let rounds: usize = std::env::var("TOCSIN_BENCH_ROUNDS").ok().and_then(|n| n.parse().ok()).unwrap_or(3);
    let cases = std::env::var("TOCSIN_BENCH_CASES").unwrap_or_default();
    let selected = |case: &str| cases.is_empty() || cases.split(',').any(|c| c == case);
    tracing_subscriber::fmt().with_writer(std::io::sink).with_max_level(tracing::Level::INFO).init();
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    runtime.block_on(async {
        if tokio::net::TcpStream::connect("127.0.0.1:5672").await.is_err() {
            eprintln!("no RabbitMQ on 127.0.0.1:5672: run scripts/rabbitmq first");
            std::process::exit(2);
        }
        let vhost = TestVhost::create();
        let config = config(&vhost);
        let sink = start_sink().await;
        let all = Executor::all(&config, selected("http-no-reuse"));
        println!("pipeline: RabbitMQ → intake → dispatch → notifier, one action per alarm");
        println!("throughput: median of {rounds} runs, each draining {alarms} pre-filled alarms");
        println!("latency: {LATENCY_RATE} alarms/s for {LATENCY_SECONDS} s, publish → delivered");
        println!("cpu/action: this process (intake, dispatch, notifier, sink) over the throughput runs");
        println!(
            "{:<8} {:<8} {:>12} {:>11} {:>10} {:>10} {:>10}",
            "action", "notifier", "actions/s", "cpu/action", "p50", "p99", "sent"
        );
        for (name, action) in [("log://", "log://".to_owned()), ("http://", sink.clone())] {
            // Connection reuse matters to `http://` only.
            let executors: Vec<Executor> = all
                .iter()
                .copied()
                .filter(|executor| name == "http://" || !matches!(executor, Executor::NoReuse(_)))
                .filter(|executor| {
                    selected(&format!("{}-{}", name.trim_end_matches("://"), executor.label()))
                })
                .collect();
            for executor in &executors {
                case(&vhost, &config, *executor, &action, WARMUP_ALARMS, false).await;
            }
            // Rounds alternate the executors so that a noisy moment of the
            // machine (or the broker) does not land on one of them only.
            let mut runs = vec![Vec::new(); executors.len()];
            for _ in 0..rounds {
                for (executor, runs) in executors.iter().zip(&mut runs) {
                    let run = case(&vhost, &config, *executor, &action, alarms, false).await;
                    let rate = run.delivered as f64 / run.elapsed.as_secs_f64();
                    runs.push((rate, run.cpu / u32::try_from(run.delivered.max(1)).unwrap_or(u32::MAX)));
                }
            }
            let mut medians = std::collections::HashMap::new();
            for (executor, mut runs) in executors.iter().zip(runs) {
                runs.sort_by(|a, b| a.0.total_cmp(&b.0));
                let (median, _) = runs[runs.len() / 2];
                let mut cpu: Vec<Duration> = runs.iter().map(|(_, cpu)| *cpu).collect();
                cpu.sort_unstable();
                medians.insert(executor.label(), median);
                let mut latency = case(&vhost, &config, *executor, &action, alarms, true).await;
                latency.latencies.sort_unstable();
                println!(
                    "{:<8} {:<8} {:>12.0} {:>11.1?} {:>10.2?} {:>10.2?} {:>10}",
                    name,
                    executor.label(),
                    median,
                    cpu[cpu.len() / 2],
                    percentile(&latency.latencies, 0.50),
                    percentile(&latency.latencies, 0.99),
                    latency.delivered,
                );
            }
            if let (Some(native), Some(sandbox)) = (medians.get("native"), medians.get("sandbox")) {
                println!("{name} sandbox / native throughput: {:.2}", sandbox / native);
            }
            if let (Some(fresh), Some(reused)) = (medians.get("no-reuse"), medians.get("sandbox")) {
                println!(
                    "{name} connection reuse: {:.2}× the throughput of a new connection per request",
                    reused / fresh
                );
            }
        }
    });
}
