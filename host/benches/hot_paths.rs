//! The hot paths of one delivery, each measured with criterion beside a
//! native baseline in the same run, so that a regression shows as a ratio
//! rather than as a time that depends on the machine:
//!
//! | group | measured | baseline |
//! |---|---|---|
//! | `decode` | `message::decode` of a captured `alarm.update` (`tocsin`), and of one whose reason data holds `Infinity` (`python-json`, `tests/fixtures/python-json/infinity`: the general decoder's path) | parsing the first message's bytes into JSON values (envelope and inner message), the least any decoder does |
//! | `dispatch` | `Dispatcher::deliver` of a `log://` delivery record (resolve, four concurrency slots, metrics, outcome) over the native notifier | calling that notifier directly |
//! | `sandbox-call` | the built-in `log` notifier: fresh store, instantiation, `notify`, the `log` capability, teardown; pooling and on-demand allocator | its formatting (`aodh_line`) compiled natively |
//! | `sandbox-call` | the same component as a tenant's (`tenant`): its call on the sandbox threads | the built-in's (`pooling`), on the caller's runtime |
//! | `http` | the built-in `http` notifier: one POST through the `http` capability (grant, egress policy, shared client) to a keep-alive sink on 127.0.0.1 | the notifier's code compiled natively, the same client and sink |
//!
//! `cargo bench -p tocsin --bench hot_paths` prints criterion's figures,
//! then a table of each median against its baseline's. No tracing
//! subscriber is installed: log lines cost nothing on either side here
//! (the pipeline benchmark and `scripts/profile` count them).

#![allow(clippy::expect_used, clippy::unwrap_used)] // a benchmark that cannot set up has nothing to measure

mod common;

use std::hint::black_box;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::SystemTime;

use criterion::Criterion;
use tocsin::config::Config;
use tocsin::delivery::DeliveryRecord;
use tocsin::dispatch::{Dispatcher, Notifiers, Outcome};
use tocsin::message::{self, Properties};
use tocsin::metrics::Metrics;
use tocsin::registry::{self, Origin, builtin};
use tocsin_core::alarm::{Alarm, Delivery, SAMPLE_ALARM};
use tocsin_core::tenancy::Owner;

use crate::common::{Native, allow_loopback, sdk_alarm, start_sink};

/// The allocator the `tocsin` binary uses, so the figures are the service's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Each measured path and the baseline it is compared with: (group,
/// measured, baseline).
const PAIRS: [(&str, &str, &str); 7] = [
    ("decode", "tocsin", "native-json"),
    ("decode", "python-json", "native-json"),
    ("dispatch", "dispatcher", "direct-call"),
    ("sandbox-call", "pooling", "native"),
    ("sandbox-call", "on-demand", "native"),
    ("sandbox-call", "tenant", "pooling"),
    ("http", "sandbox", "native"),
];

fn output_directory() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/criterion")
}

fn sample_alarm() -> Alarm {
    Alarm::from_json(SAMPLE_ALARM).expect("sample alarm")
}

/// A configuration whose `http` notifier may reach 127.0.0.1.
fn loopback_config() -> Config {
    let mut config = Config::default();
    allow_loopback(&mut config);
    config.validate().expect("bench config");
    config
}

fn decode(c: &mut Criterion) {
    let body =
        std::fs::read(tocsin_tests::fixture("notification-1.body.bin")).expect("captured notification");
    let properties = Properties { content_type: Some("application/json"), content_encoding: Some("utf-8") };
    let mut group = c.benchmark_group("decode");
    group.bench_function("native-json", |b| {
        b.iter(|| {
            let envelope: serde_json::Value = serde_json::from_slice(black_box(&body)).unwrap();
            let inner: serde_json::Value =
                serde_json::from_str(envelope["oslo.message"].as_str().unwrap()).unwrap();
            black_box(inner)
        });
    });
    group.bench_function("tocsin", |b| {
        b.iter(|| black_box(message::decode(properties, black_box(&body), 1 << 20).unwrap()));
    });
    let infinity = std::fs::read(tocsin_tests::python_json_fixture("infinity.body.bin")).expect("captured");
    group.bench_function("python-json", |b| {
        b.iter(|| black_box(message::decode(properties, black_box(&infinity), 1 << 20).unwrap()));
    });
    group.finish();
}

fn dispatch(c: &mut Criterion, runtime: &tokio::runtime::Runtime) {
    let config = loopback_config();
    let notifier = Native::new(&config);
    let record = DeliveryRecord::first("bench", 0, "log://".into(), sample_alarm().into(), 0, 0);
    let delivery = record.delivery(None);
    let mut group = c.benchmark_group("dispatch");
    group.bench_function("direct-call", |b| {
        b.to_async(runtime).iter(|| async {
            notifier.invoke(&"log", &record.action, &record.alarm, &delivery).await.unwrap();
        });
    });
    let dispatcher = Dispatcher::new(
        Native::new(&config),
        &config.dispatch,
        &config.tenants,
        Arc::new(Metrics::default()),
    );
    group.bench_function("dispatcher", |b| {
        b.to_async(runtime).iter(|| async {
            assert_eq!(dispatcher.deliver(black_box(&record)).await, Outcome::Delivered);
        });
    });
    group.finish();
}

fn sandbox_call(c: &mut Criterion, runtime: &tokio::runtime::Runtime) {
    let alarm = Arc::new(sample_alarm());
    let delivery = Delivery::one_off();
    let mut group = c.benchmark_group("sandbox-call");
    let sdk_alarm = sdk_alarm(&alarm);
    group.bench_function("native", |b| {
        b.iter(|| black_box(tocsin_notifier_log::aodh_line(black_box("log://"), black_box(&sdk_alarm))));
    });
    // A built-in's call runs on the caller's runtime; a tenant's (the same
    // component, uploaded) on the sandbox threads, a hop away.
    for (name, pooling, tenant) in
        [("pooling", true, None), ("on-demand", false, None), ("tenant", true, Some("bench"))]
    {
        let mut config = Config::default();
        config.sandbox.pooling = pooling;
        config.sandbox.instances = 16;
        let sandbox = tocsin::service::sandbox(&config).expect("sandbox");
        let origin = if tenant.is_some() { Origin::External } else { Origin::Builtin };
        let owner = Owner::from_tenant(tenant.map(Into::into));
        let spec = registry::spec_for("log", origin, &owner, &config.grants());
        let plugin = sandbox.load(spec, builtin::component("log").expect("built-in log")).expect("load log");
        group.bench_function(name, |b| {
            b.to_async(runtime).iter(|| async {
                let run = sandbox.invoke(&plugin, "log://", &alarm, &delivery).await;
                assert!(run.result.is_ok(), "{:?}", run.result);
            });
        });
    }
    group.finish();
}

fn http(c: &mut Criterion, runtime: &tokio::runtime::Runtime) {
    let config = loopback_config();
    let sink = runtime.block_on(start_sink());
    let (alarm, delivery) = (Arc::new(sample_alarm()), Delivery::one_off());
    let mut group = c.benchmark_group("http");
    let notifier = Native::new(&config);
    group.bench_function("native", |b| {
        b.to_async(runtime).iter(|| async {
            notifier.invoke(&"http", &sink, &alarm, &delivery).await.unwrap();
        });
    });
    let sandbox = tocsin::service::sandbox(&config).expect("sandbox");
    let spec = registry::spec_for("http", Origin::Builtin, &Owner::Operator, &config.grants());
    let plugin = sandbox.load(spec, builtin::component("http").expect("built-in http")).expect("load http");
    group.bench_function("sandbox", |b| {
        b.to_async(runtime).iter(|| async {
            let run = sandbox.invoke(&plugin, &sink, &alarm, &delivery).await;
            assert!(run.result.is_ok(), "{:?}", run.result);
        });
    });
    group.finish();
}

/// Criterion's median estimate of `group/bench`, in ns, if it was
/// measured in this run (written after `since`): a bench filtered out of
/// this run has only an older run's file.
fn median_ns(group: &str, bench: &str, since: SystemTime) -> Option<f64> {
    let path = output_directory().join(group).join(bench).join("new/estimates.json");
    if std::fs::metadata(&path).and_then(|m| m.modified()).ok()? < since {
        return None;
    }
    let estimates: serde_json::Value = serde_json::from_slice(&std::fs::read(path).ok()?).ok()?;
    estimates["median"]["point_estimate"].as_f64()
}

/// The ratio of each pair both of whose sides ran in this run.
fn print_ratios(since: SystemTime) {
    println!("\n| path | measured | median | baseline | median | ratio |");
    println!("|---|---|---|---|---|---|");
    for (group, measured, baseline) in PAIRS {
        if let (Some(m), Some(b)) = (median_ns(group, measured, since), median_ns(group, baseline, since)) {
            println!(
                "| {group} | {measured} | {:.2} µs | {baseline} | {:.2} µs | {:.2}× |",
                m / 1e3,
                b / 1e3,
                m / b
            );
        }
    }
}

fn main() {
    tocsin::process::disable_transparent_huge_pages()
        .expect("opt out of transparent huge pages, as the service does");
    let since = SystemTime::now();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let mut c = Criterion::default().output_directory(&output_directory()).configure_from_args();
    decode(&mut c);
    dispatch(&mut c, &runtime);
    sandbox_call(&mut c, &runtime);
    http(&mut c, &runtime);
    c.final_summary();
    print_ratios(since);
}
