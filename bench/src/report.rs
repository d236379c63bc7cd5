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

/// One notifier on one scenario, one round.
#[derive(Debug, Clone, Serialize)]
pub struct Run {
    /// `log`, `http` or `slow-mix`.
    pub scenario: &'static str,
    /// Which notifier.
    pub notifier: Kind,
    /// Which round of the scenario (from 1).
    pub round: usize,
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

/// The round of `rounds` (one notifier's, of one scenario) with the median
/// throughput, the lower of the two middle ones for an even count: on a
/// shared machine a single round can land in a slow moment of either
/// notifier.
pub fn median(mut rounds: Vec<Run>) -> Option<Run> {
    rounds.sort_by(|a, b| a.actions_per_s.total_cmp(&b.actions_per_s));
    let middle = rounds.len().checked_sub(1)? / 2;
    Some(rounds.swap_remove(middle))
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

/// The tables, as Markdown.
pub fn table(runs: &[Run]) -> String {
    let mut out = String::new();
    markdown(
        &mut out,
        &[
            "scenario",
            "notifier",
            "delivered",
            "actions/s",
            "p50 / p99 ms",
            "healthy p50 / p99 ms",
            "slow p50 / p99 ms",
            "CPU s per 1,000",
            "peak RSS MiB",
        ],
        runs.iter().map(|run| {
            vec![
                run.scenario.to_owned(),
                run.notifier.name().to_owned(),
                format!("{} / {}", run.delivered, run.actions),
                format!("{:.0}", run.actions_per_s),
                latency_cell(run.latency),
                latency_cell(run.healthy_latency),
                latency_cell(run.slow_latency),
                format!("{:.3}", run.cpu_s_per_1000),
                format!("{:.0} ({} proc)", run.peak_rss_mib, run.processes),
            ]
        }),
    );
    out.push('\n');
    markdown(
        &mut out,
        &["scenario", "tocsin / aodh actions/s", "aodh / tocsin CPU per action", "aodh / tocsin p99"],
        ratios(runs).into_iter().map(|ratio| {
            vec![
                ratio.scenario.to_owned(),
                ratio_cell(ratio.throughput),
                ratio_cell(ratio.cpu_per_action),
                ratio_cell(ratio.p99),
            ]
        }),
    );
    out.push_str("\nNot charged to either notifier (CPU s per 1,000 actions):\n\n");
    markdown(
        &mut out,
        &["scenario", "notifier", "RabbitMQ", "benchmark (sinks, log readers)", "filling the queue took s"],
        runs.iter().map(|run| {
            vec![
                run.scenario.to_owned(),
                run.notifier.name().to_owned(),
                format!("{:.3}", run.broker_cpu_s_per_1000),
                format!("{:.3}", run.bench_cpu_s_per_1000),
                format!("{:.2}", run.publish_seconds),
            ]
        }),
    );
    out
}

/// Appends a Markdown table: the header, its rule, a line per row.
fn markdown(out: &mut String, header: &[&str], rows: impl Iterator<Item = Vec<String>>) {
    let _ = writeln!(out, "| {} |", header.join(" | "));
    let _ = writeln!(out, "|{}", "---|".repeat(header.len()));
    for row in rows {
        let _ = writeln!(out, "| {} |", row.join(" | "));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(notifier: Kind, actions_per_s: f64, cpu_s_per_1000: f64) -> Run {
        Run {
            scenario: "http",
            notifier,
            round: 1,
            actions: 10,
            delivered: 10,
            seconds: 1.0,
            actions_per_s,
            latency: Some(Latency { p50_ms: 1.0, p99_ms: 2.0 }),
            healthy_latency: None,
            slow_latency: None,
            cpu_s_per_1000,
            peak_rss_mib: 100.0,
            processes: 1,
            broker_cpu_s_per_1000: 0.05,
            bench_cpu_s_per_1000: 0.0,
            publish_seconds: 0.25,
        }
    }

    #[test]
    fn the_tables_show_each_run_and_the_ratios() {
        let text = table(&[run(Kind::Aodh, 800.0, 1.3), run(Kind::Tocsin, 12_000.0, 0.0)]);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[1], "|---|---|---|---|---|---|---|---|---|");
        assert_eq!(lines[2], "| http | aodh | 10 / 10 | 800 | 1.0 / 2.0 | - | - | 1.300 | 100 (1 proc) |");
        assert_eq!(lines[6], "|---|---|---|---|");
        assert_eq!(lines[7], "| http | 15.0× | - | 1.0× |", "no CPU measured: no ratio");
        assert_eq!(lines[14], "| http | tocsin | 0.050 | 0.000 | 0.25 |");
    }

    #[test]
    fn the_median_round_is_the_middle_one_by_throughput() {
        let rounds = |rates: &[f64]| -> Vec<Run> {
            rates
                .iter()
                .enumerate()
                .map(|(index, &rate)| Run { round: index + 1, ..run(Kind::Tocsin, rate, 0.1) })
                .collect()
        };
        let pick = |rates: &[f64]| median(rounds(rates)).map(|run| run.round);
        assert_eq!(pick(&[9_000.0, 11_000.0, 10_000.0]), Some(3));
        assert_eq!(pick(&[9_000.0, 12_000.0, 10_000.0, 11_000.0]), Some(3), "the lower middle");
        assert_eq!(pick(&[9_000.0]), Some(1));
        assert_eq!(pick(&[]), None);
    }

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
