//! `peer-bench`: tocsin against OpenStack's own aodh-notifier, side by
//! side in one run, on the same RabbitMQ, the same loopback sink and the
//! same alarms. For each scenario (`log://`, `http://`, and a mix where
//! every tenth alarm goes to an endpoint that answers after a pause), each
//! notifier is started fresh on a vhost of its own, the alarms are
//! published as fast as the broker takes them, and the run ends when all
//! have arrived; each scenario runs `--rounds` times (3), the notifiers
//! taking turns. Prints a Markdown table of each notifier's median round
//! (throughput, publish → arrival percentiles, CPU per 1,000 actions, peak
//! RSS, tocsin/aodh ratios) and writes it, with every round, as JSON.
//! `scripts/peer-bench` installs what it needs and runs it.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::{Parser, ValueEnum};
use lapin::{Connection, ConnectionProperties};
use serde_json::json;

use tocsin_bench::load::{self, Timeline};
use tocsin_bench::notifiers::{Kind, Notifier, Programs};
use tocsin_bench::procfs;
use tocsin_bench::report::{self, Latency, Run};
use tocsin_bench::sink::Sink;
use tocsin_bench::vhost::Vhost;

/// A run with no arrival for this long has stalled and ends.
const STALL_LIMIT: Duration = Duration::from_secs(60);

/// What one run sends and how arrivals are seen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Scenario {
    /// `log://`: an alarm has arrived when the notifier logs its line.
    Log,
    /// `http://` to the sink.
    Http,
    /// `http://`, every tenth alarm to a sink that answers after `--slow-ms`.
    SlowMix,
}

impl Scenario {
    fn name(self) -> &'static str {
        match self {
            Scenario::Log => "log",
            Scenario::Http => "http",
            Scenario::SlowMix => "slow-mix",
        }
    }
}

#[derive(Debug, Parser)]
#[command(about = "tocsin against aodh-notifier: the same alarms, broker and sink, side by side")]
struct Args {
    /// Alarms published per run, one action each.
    #[arg(long, default_value_t = 5_000)]
    count: usize,
    /// The scenarios to run.
    #[arg(long, value_delimiter = ',', default_value = "log,http,slow-mix")]
    scenarios: Vec<Scenario>,
    /// The notifiers to run.
    #[arg(long, value_delimiter = ',', default_value = "aodh,tocsin")]
    notifiers: Vec<Kind>,
    /// Rounds of each scenario, the notifiers taking turns; the table shows
    /// each notifier's median round by throughput, the JSON every round.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// The slow endpoint's pause before it answers, in ms.
    #[arg(long, default_value_t = 2_000)]
    slow_ms: u64,
    /// `aodh-notifier` to run.
    #[arg(long, default_value = "target/aodh-venv/bin/aodh-notifier")]
    aodh_notifier: PathBuf,
    /// `tocsin` binary to run.
    #[arg(long, default_value = "target/dist/tocsin")]
    tocsin: PathBuf,
    /// Where the results are written as JSON.
    #[arg(long, default_value = "target/peer-bench.json")]
    json: PathBuf,
    /// Longest a run may take, in seconds, before it is reported incomplete.
    #[arg(long, default_value_t = 600)]
    run_limit_s: u64,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    anyhow::ensure!(args.count > 0, "--count must be at least 1");
    anyhow::ensure!(args.rounds > 0, "--rounds must be at least 1");
    let programs = Programs { aodh_notifier: args.aodh_notifier.clone(), tocsin: args.tocsin.clone() };
    for program in [&programs.aodh_notifier, &programs.tocsin] {
        anyhow::ensure!(program.exists(), "{} is missing: run scripts/peer-bench", program.display());
    }
    let (mut rounds, mut runs) = (Vec::new(), Vec::new());
    for scenario in &args.scenarios {
        let mut scenario_rounds = Vec::new();
        for round in 1..=args.rounds {
            for &kind in &args.notifiers {
                eprintln!(
                    "==> {} with {} alarms through {}, round {round} of {}",
                    scenario.name(),
                    args.count,
                    kind.name(),
                    args.rounds
                );
                let run = measure(&args, &programs, *scenario, kind, round)
                    .await
                    .with_context(|| format!("{} through {}", scenario.name(), kind.name()))?;
                eprintln!(
                    "    {} of {} in {:.2} s: {:.0} actions/s, {:.3} CPU s per 1,000",
                    run.delivered, run.actions, run.seconds, run.actions_per_s, run.cpu_s_per_1000
                );
                scenario_rounds.push(run);
            }
        }
        for &kind in &args.notifiers {
            let of_kind = scenario_rounds.iter().filter(|run| run.notifier == kind).cloned().collect();
            runs.extend(report::median(of_kind));
        }
        rounds.extend(scenario_rounds);
    }
    println!("{}", report::table(&runs));
    let document = json!({
        "count": args.count,
        "slow_ms": args.slow_ms,
        "cores": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        "runs": runs,
        "ratios": report::ratios(&runs),
        "rounds": rounds,
    });
    std::fs::write(&args.json, serde_json::to_vec_pretty(&document)?)
        .with_context(|| format!("writing {}", args.json.display()))?;
    eprintln!("==> written to {}", args.json.display());
    let incomplete: Vec<String> = rounds
        .iter()
        .filter(|run| run.delivered < run.actions)
        .map(|run| format!("{} through {} (round {})", run.scenario, run.notifier.name(), run.round))
        .collect();
    anyhow::ensure!(incomplete.is_empty(), "not every alarm arrived in: {}", incomplete.join(", "));
    Ok(())
}

/// One round of one notifier on one scenario, on a vhost of its own.
async fn measure(
    args: &Args,
    programs: &Programs,
    scenario: Scenario,
    kind: Kind,
    round: usize,
) -> anyhow::Result<Run> {
    // Deleted with everything in it when the run ends.
    let vhost = Vhost::create()?;
    let timeline = Arc::new(Timeline::new(args.count));
    let fast = Sink::start(Arc::clone(&timeline), Duration::ZERO)?;
    let slow = Sink::start(Arc::clone(&timeline), Duration::from_millis(args.slow_ms))?;
    let is_slow = |seq: usize| scenario == Scenario::SlowMix && seq.is_multiple_of(10);
    let action = |seq: usize| match scenario {
        Scenario::Log => "log://".to_owned(),
        Scenario::Http | Scenario::SlowMix if is_slow(seq) => slow.url.clone(),
        Scenario::Http | Scenario::SlowMix => fast.url.clone(),
    };
    let publishing = load::prefill(&vhost.transport_url(), &timeline, action).await?;

    let watching = Connection::connect(&vhost.amqp_uri(), ConnectionProperties::default())
        .await
        .context("cannot connect to RabbitMQ")?;
    let channel = watching.create_channel().await?;
    let (broker, me) = (procfs::named("beam.smp"), [std::process::id()]);
    let lines = (scenario == Scenario::Log).then(|| Arc::clone(&timeline));
    let api = "[api]\nlisten = \"127.0.0.1:0\"\n";
    let mut notifier = Notifier::start(kind, programs, &vhost.transport_url(), lines, api)?;
    notifier.consuming(&channel).await?;
    // Its start-up is over: from here on, what it uses is the alarms' work.
    timeline.consuming();
    let processes = notifier.processes();
    let before = [processes.as_slice(), &broker, &me].map(procfs::total_cpu_seconds);
    let limit = Duration::from_secs(args.run_limit_s);
    let started = Instant::now();
    let (mut seen, mut progressed) = (0, Instant::now());
    while timeline.arrivals() < args.count && started.elapsed() < limit && progressed.elapsed() < STALL_LIMIT
    {
        notifier.check_running()?;
        tokio::time::sleep(Duration::from_millis(20)).await;
        if timeline.arrivals() > seen {
            (seen, progressed) = (timeline.arrivals(), Instant::now());
        }
    }
    let after = [processes.as_slice(), &broker, &me].map(procfs::total_cpu_seconds);
    let peak_rss = procfs::peak_rss_bytes(&processes);
    if timeline.arrivals() < args.count {
        eprintln!(
            "    incomplete after {:.0} s ({} s without an arrival); its last lines:\n{}",
            started.elapsed().as_secs_f64(),
            progressed.elapsed().as_secs(),
            notifier.tail()
        );
    }
    notifier.stop().await;

    let delivered = timeline.arrivals();
    let seconds = timeline.span().as_secs_f64();
    let per_1000 = |index: usize| (after[index] - before[index]) * 1000.0 / delivered.max(1) as f64;
    let (healthy_latency, slow_latency) = match scenario {
        Scenario::SlowMix => {
            (Latency::of(&timeline.latencies(|seq| !is_slow(seq))), Latency::of(&timeline.latencies(is_slow)))
        }
        Scenario::Log | Scenario::Http => (None, None),
    };
    Ok(Run {
        scenario: scenario.name(),
        notifier: kind,
        round,
        actions: args.count,
        delivered,
        seconds,
        actions_per_s: if seconds > 0.0 { delivered as f64 / seconds } else { 0.0 },
        latency: Latency::of(&timeline.latencies(|_| true)),
        healthy_latency,
        slow_latency,
        cpu_s_per_1000: per_1000(0),
        peak_rss_mib: peak_rss as f64 / f64::from(1 << 20),
        processes: processes.len(),
        broker_cpu_s_per_1000: per_1000(1),
        bench_cpu_s_per_1000: per_1000(2),
        publish_seconds: publishing.as_secs_f64(),
    })
}
