//! Instantiate + call latency of the built-in `log` notifier, with the
//! pooling and the on-demand allocator, against a native Rust function
//! doing the same formatting (the notifier's own `aodh_line`, compiled
//! natively), all measured in the same run.
//!
//! `cargo bench -p tocsin --bench sandbox` prints p50/p99 per variant and
//! the ratio to native. Each sample is one complete call: a fresh store,
//! instantiation, `notify`, the log capability, teardown.

#![allow(clippy::expect_used)] // a benchmark that cannot set up has nothing to measure

use std::hint::black_box;
use std::time::{Duration, Instant};

use tocsin::alarm::{Alarm, Delivery};
use tocsin::config::Config;
use tocsin::registry::{self, Origin, builtin};
use tocsin::sandbox::Sandbox;

const WARMUP: usize = 2_000;
const SAMPLES: usize = 20_000;

struct Summary {
    name: &'static str,
    p50: Duration,
    p99: Duration,
    mean: Duration,
}

fn summarize(name: &'static str, mut samples: Vec<Duration>) -> Summary {
    samples.sort_unstable();
    let at = |q: f64| samples[((samples.len() as f64 - 1.0) * q).round() as usize];
    let mean = samples.iter().sum::<Duration>() / samples.len() as u32;
    Summary { name, p50: at(0.50), p99: at(0.99), mean }
}

fn sandbox_samples(runtime: &tokio::runtime::Runtime, pooling: bool, alarm: &Alarm) -> Vec<Duration> {
    let mut config = Config::default();
    config.sandbox.pooling = pooling;
    config.sandbox.instances = 16;
    let sandbox = Sandbox::new(&config).expect("sandbox");
    let plugin = sandbox
        .load(
            registry::spec_for("log", Origin::Builtin, None, &config),
            builtin::component("log").expect("built-in log"),
        )
        .expect("load log");
    let delivery = Delivery::one_off();
    runtime.block_on(async {
        let mut samples = Vec::with_capacity(SAMPLES);
        for i in 0..WARMUP + SAMPLES {
            let started = Instant::now();
            let run = sandbox.invoke(&plugin, "log://", alarm, &delivery).await;
            let elapsed = started.elapsed();
            assert!(run.result.is_ok(), "{:?}", run.result);
            if i >= WARMUP {
                samples.push(elapsed);
            }
        }
        samples
    })
}

fn native_samples(alarm: &Alarm) -> Vec<Duration> {
    let wit_alarm = alarm.to_sdk();
    (0..WARMUP + SAMPLES)
        .map(|_| {
            let started = Instant::now();
            black_box(tocsin_notifier_log::aodh_line(black_box("log://"), black_box(&wit_alarm)));
            started.elapsed()
        })
        .skip(WARMUP)
        .collect()
}

fn main() {
    let alarm: Alarm = serde_json::from_str(include_str!("../../examples/alarm.json")).expect("sample alarm");
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let results = [
        summarize("native aodh_line (baseline)", native_samples(&alarm)),
        summarize("sandbox log, pooling allocator", sandbox_samples(&runtime, true, &alarm)),
        summarize("sandbox log, on-demand allocator", sandbox_samples(&runtime, false, &alarm)),
    ];
    let native = &results[0];
    println!("instantiate + call of the built-in `log` notifier, {SAMPLES} samples each ({WARMUP} warm-up)");
    println!(
        "{:<36} {:>10} {:>10} {:>10} {:>12} {:>12}",
        "variant", "p50", "p99", "mean", "p50/native", "p99/native"
    );
    for r in &results {
        println!(
            "{:<36} {:>10.1?} {:>10.1?} {:>10.1?} {:>11.0}x {:>11.0}x",
            r.name,
            r.p50,
            r.p99,
            r.mean,
            r.p50.as_secs_f64() / native.p50.as_secs_f64(),
            r.p99.as_secs_f64() / native.p99.as_secs_f64(),
        );
    }
    let pooling = &results[1];
    let on_demand = &results[2];
    println!(
        "pooling vs on-demand: p50 {:.2}x, p99 {:.2}x faster",
        on_demand.p50.as_secs_f64() / pooling.p50.as_secs_f64(),
        on_demand.p99.as_secs_f64() / pooling.p99.as_secs_f64()
    );
    println!(
        "target: p50 <= 30us and p99 <= 150us with pooling: {}",
        if pooling.p50 <= Duration::from_micros(30) && pooling.p99 <= Duration::from_micros(150) {
            "met"
        } else {
            "NOT met"
        }
    );
}
