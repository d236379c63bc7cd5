//! The results: one row per notifier and scenario, the table printed
//! from them with tocsin/aodh ratios, and the same as JSON.

use std::fmt::Write as _;
use std::time::Duration;

use serde::Serialize;

use crate::notifiers::Kind;

/// Publish → arrival percentiles, in ms.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Latency {
    /// Median.
    pub p50_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
}

impl Latency {
    /// Percentiles of sorted `latencies`; None when empty.
    pub fn of(latencies: &[Duration]) -> Option<Latency> {
        let at = |quantile: f64| {
            let index = ((latencies.len() as f64 * quantile).ceil() as usize).clamp(1, latencies.len()) - 1;
            latencies[index].as_secs_f64() * 1e3
        };
        (!latencies.is_empty()).then(|| Latency { p50_ms: at(0.50), p99_ms: at(0.99) })
    }
}

/// One notifier on one scenario.
#[derive(Debug, Clone, Serialize)]
pub struct Run {
    /// `log`, `http` or `slow-mix`.
    pub scenario: &'static str,
    /// Which notifier.
    pub notifier: Kind,
    /// Alarms published (one action each).
    pub actions: usize,
    /// Alarms that arrived.
    pub delivered: usize,
    /// Seconds from the first publish to the last arrival.
    pub seconds: f64,
    /// `delivered / seconds`.
    pub actions_per_s: f64,
    /// Publish → arrival of every alarm.
    pub latency: Option<Latency>,
    /// The same for the healthy endpoint's alarms only (`slow-mix`).
    pub healthy_latency: Option<Latency>,
    /// The same for the slow endpoint's alarms only (`slow-mix`).
    pub slow_latency: Option<Latency>,
    /// CPU seconds of the notifier's processes per 1,000 actions.
    pub cpu_s_per_1000: f64,
    /// Sum of the notifier processes' peak resident set, MiB.
    pub peak_rss_mib: f64,
    /// Processes counted for the notifier.
    pub processes: usize,
    /// CPU seconds of RabbitMQ per 1,000 actions (not charged to the notifier).
    pub broker_cpu_s_per_1000: f64,
    /// CPU seconds of this benchmark while the notifier ran (its sinks and
    /// log readers; the queue was filled before) per 1,000 actions.
    pub bench_cpu_s_per_1000: f64,
    /// Seconds the publisher took to fill the queue (before the notifier ran).
    pub publish_seconds: f64,
}

/// How tocsin compares with aodh on one scenario.
#[derive(Debug, Clone, Serialize)]
pub struct Ratio {
    /// The scenario.
    pub scenario: &'static str,
    /// tocsin's actions/s over aodh's.
    pub throughput: Option<f64>,
    /// aodh's CPU per action over tocsin's.
    pub cpu_per_action: Option<f64>,
    /// aodh's p99 over tocsin's (healthy alarms only in `slow-mix`).
    pub p99: Option<f64>,
}

/// The ratios of every scenario both notifiers ran.
pub fn ratios(runs: &[Run]) -> Vec<Ratio> {
    let mut ratios = Vec::new();
    for aodh in runs.iter().filter(|run| run.notifier == Kind::Aodh) {
        let Some(tocsin) =
            runs.iter().find(|run| run.notifier == Kind::Tocsin && run.scenario == aodh.scenario)
        else {
            continue;
        };
        let p99 = |run: &Run| run.healthy_latency.or(run.latency).map(|latency| latency.p99_ms);
        ratios.push(Ratio {
            scenario: aodh.scenario,
            throughput: ratio(tocsin.actions_per_s, aodh.actions_per_s),
            cpu_per_action: ratio(aodh.cpu_s_per_1000, tocsin.cpu_s_per_1000),
            p99: p99(aodh).zip(p99(tocsin)).and_then(|(aodh, tocsin)| ratio(aodh, tocsin)),
        });
    }
    ratios
}

/// `a / b`, when `b` is not zero (a run too short for the CPU clock's
/// 10 ms ticks measures none).
fn ratio(a: f64, b: f64) -> Option<f64> {
    (b > 0.0).then(|| a / b)
}

fn ratio_cell(ratio: Option<f64>) -> String {
    ratio.map_or_else(|| "-".into(), |ratio| format!("{ratio:.1}×"))
}

fn latency_cell(latency: Option<Latency>) -> String {
    latency.map_or_else(|| "-".into(), |l| format!("{:.1} / {:.1}", l.p50_ms, l.p99_ms))
}

/// The table, as Markdown.
pub fn table(runs: &[Run]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "| scenario | notifier | delivered | actions/s | p50 / p99 ms | healthy p50 / p99 ms | slow p50 / p99 ms | CPU s per 1,000 | peak RSS MiB |"
    );
    let _ = writeln!(out, "|---|---|---|---|---|---|---|---|---|");
    for run in runs {
        let _ = writeln!(
            out,
            "| {} | {} | {} / {} | {:.0} | {} | {} | {} | {:.3} | {:.0} ({} proc) |",
            run.scenario,
            run.notifier.name(),
            run.delivered,
            run.actions,
            run.actions_per_s,
            latency_cell(run.latency),
            latency_cell(run.healthy_latency),
            latency_cell(run.slow_latency),
            run.cpu_s_per_1000,
            run.peak_rss_mib,
            run.processes,
        );
    }
    let _ = writeln!(
        out,
        "\n| scenario | tocsin / aodh actions/s | aodh / tocsin CPU per action | aodh / tocsin p99 |"
    );
    let _ = writeln!(out, "|---|---|---|---|");
    for ratio in ratios(runs) {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} |",
            ratio.scenario,
            ratio_cell(ratio.throughput),
            ratio_cell(ratio.cpu_per_action),
            ratio_cell(ratio.p99)
        );
    }
    let _ = writeln!(out, "\nNot charged to either notifier (CPU s per 1,000 actions):\n");
    let _ = writeln!(
        out,
        "| scenario | notifier | RabbitMQ | benchmark (sinks, log readers) | filling the queue took s |"
    );
    let _ = writeln!(out, "|---|---|---|---|---|");
    for run in runs {
        let _ = writeln!(
            out,
            "| {} | {} | {:.3} | {:.3} | {:.2} |",
            run.scenario,
            run.notifier.name(),
            run.broker_cpu_s_per_1000,
            run.bench_cpu_s_per_1000,
            run.publish_seconds
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_pick_the_nearest_rank() {
        let latencies: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        let latency = Latency::of(&latencies).unwrap_or_else(|| unreachable!());
        assert_eq!((latency.p50_ms, latency.p99_ms), (50.0, 99.0));
        assert!(Latency::of(&[]).is_none());
        let one = Latency::of(&[Duration::from_millis(7)]).unwrap_or_else(|| unreachable!());
        assert_eq!((one.p50_ms, one.p99_ms), (7.0, 7.0));
    }
}
