//! `noisy-neighbour`: what one tenant's misbehaving notifiers do to
//! another tenant's healthy one, on one `tocsin serve`.
//!
//! Tenant B's notifier (`fetch`, built from source) gets a steady stream of
//! alarms (`--b-rate`, 200/s) and fetches a URL on a loopback sink for
//! each; an alarm has arrived when the sink sees its id. Meanwhile tenant
//! A, kept at its quota of concurrent deliveries (published to as its
//! deliveries end, read from `/metrics`), runs one misbehaviour per
//! scenario:
//! - `log-flood`: a loop of 2 MiB `log` lines, the most one host call
//!   may carry (`host_call_bytes`; a 24 MiB line ends the call at once);
//! - `header-bomb`: a header of a hundred placeholders of an 8 KiB secret;
//! - `spin`: a pure CPU loop;
//! - `slow-http`: requests to an endpoint that never answers;
//! - `many-actions`: messages of 2,000 actions each (10 a second).
//!
//! `alone` runs B by itself first, the baseline. A prober asks
//! `/healthz` every 10 ms throughout. Each scenario starts a fresh service
//! on a vhost of its own. Prints one Markdown table: B's publish → arrival
//! p50 and p99 against B alone, `/healthz` p99, the service's peak RSS,
//! B's alarms lost, A's calls, and whether the targets held; writes it as
//! JSON. `scripts/noisy-bench` builds and runs it.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail, ensure};
use clap::{Parser, ValueEnum};
use serde::Serialize;
use tocsin_bench::load::{AlarmPublisher, Timeline, alarm_id};
use tocsin_bench::notifiers::{Kind, Notifier, Programs};
use tocsin_bench::report::Latency;
use tocsin_bench::sink::Sink;
use tocsin_bench::vhost::Vhost;
use tocsin_bench::{plugins, procfs};
use tocsin_core::alarm::{Alarm, SAMPLE_ALARM};
use tocsin_core::tenancy::TokenHash;

const TOKEN_A: &str = "tenant-a-token";
const TOKEN_B: &str = "tenant-b-token";
/// Tenant A's deliveries kept in flight: its quota (16, the default
/// `max_concurrent_deliveries`) and as many again waiting.
const A_IN_FLIGHT: usize = 32;
/// A's alarm numbers start here, clear of B's.
const A_FIRST_SEQ: usize = 1 << 30;
/// How often `/healthz` is asked.
const PROBE_EVERY: Duration = Duration::from_millis(10);
/// How long B's last alarms may take to arrive once publishing ends.
const DRAIN_LIMIT: Duration = Duration::from_secs(60);

/// What tenant A does while B runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
enum Scenario {
    /// Nothing: B alone, the baseline.
    Alone,
    /// A loop of 2 MiB `log` lines.
    LogFlood,
    /// A header of a hundred placeholders of an 8 KiB secret.
    HeaderBomb,
    /// A pure CPU loop.
    Spin,
    /// Requests to an endpoint that never answers.
    SlowHttp,
    /// Messages of 2,000 actions each.
    ManyActions,
}

impl Scenario {
    fn name(self) -> &'static str {
        match self {
            Scenario::Alone => "B alone",
            Scenario::LogFlood => "A: 2 MiB log lines",
            Scenario::HeaderBomb => "A: header bomb",
            Scenario::Spin => "A: CPU spin",
            Scenario::SlowHttp => "A: never-answering HTTP",
            Scenario::ManyActions => "A: 2,000 actions a message",
        }
    }
}

#[derive(Debug, Parser)]
#[command(about = "one tenant's healthy notifier while another tenant's misbehave, on one tocsin")]
struct Args {
    /// Tenant B's alarms per second.
    #[arg(long, default_value_t = 200)]
    b_rate: u32,
    /// Seconds of load per scenario.
    #[arg(long, default_value_t = 15)]
    seconds: u64,
    /// The scenarios, `alone` first (the others are compared with it).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "alone,log-flood,header-bomb,spin,slow-http,many-actions"
    )]
    scenarios: Vec<Scenario>,
    /// `tocsin` binary to run.
    #[arg(long, default_value = "target/dist/tocsin")]
    tocsin: PathBuf,
    /// Where the results are written as JSON.
    #[arg(long, default_value = "target/noisy-neighbour.json")]
    json: PathBuf,
}

/// One scenario's figures.
#[derive(Debug, Clone, Serialize)]
struct Row {
    scenario: Scenario,
    /// B's alarms published.
    b_published: usize,
    /// B's alarms that never arrived.
    b_lost: usize,
    /// B's publish → arrival.
    b_latency: Option<Latency>,
    /// `/healthz` round trips.
    healthz: Option<Latency>,
    /// `/healthz` requests that failed.
    healthz_failed: usize,
    /// The service's peak resident set, MiB.
    peak_rss_mib: f64,
    /// A's deliveries that ran, by outcome.
    a_outcomes: Vec<(String, f64)>,
    /// A's messages published.
    a_published: usize,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    ensure!(args.b_rate > 0 && args.seconds > 0, "--b-rate and --seconds must be at least 1");
    ensure!(args.tocsin.exists(), "{} is missing: run scripts/noisy-bench", args.tocsin.display());
    let mut rows = Vec::new();
    for &scenario in &args.scenarios {
        eprintln!("==> {}: B at {}/s for {} s", scenario.name(), args.b_rate, args.seconds);
        let row = measure(&args, scenario).await.with_context(|| scenario.name())?;
        eprintln!(
            "    B {:?}, /healthz {:?}, {} lost, peak RSS {:.0} MiB, A {:?}",
            row.b_latency, row.healthz, row.b_lost, row.peak_rss_mib, row.a_outcomes
        );
        rows.push(row);
    }
    let (table, held) = table(&rows);
    println!("{table}");
    let document = serde_json::json!({
        "b_rate": args.b_rate,
        "seconds": args.seconds,
        "cores": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        "rows": rows,
        "targets_held": held,
    });
    std::fs::write(&args.json, serde_json::to_vec_pretty(&document)?)
        .with_context(|| format!("writing {}", args.json.display()))?;
    eprintln!("==> written to {}", args.json.display());
    ensure!(rows.iter().all(|row| row.b_lost == 0), "tenant B lost alarms");
    Ok(())
}

/// The service's configuration beyond the bench's defaults: the API on
/// `port`, tenants A and B (schemes `a-*` and `b-*`), and the loopback
/// grants of their fetching notifiers.
fn config(port: u16) -> String {
    let hash = |token| TokenHash::of(token).to_hex();
    format!(
        "[api]\nlisten = \"127.0.0.1:{port}\"\n\n\
         [tenants.a]\ntoken_sha256 = \"{}\"\n\n[tenants.b]\ntoken_sha256 = \"{}\"\n\n\
         [plugins.a-fetch]\nallow_hosts = [\"127.0.0.1\"]\n\n[plugins.b-fetch]\nallow_hosts = [\"127.0.0.1\"]\n",
        hash(TOKEN_A),
        hash(TOKEN_B)
    )
}

/// A free loopback port for the service's API.
fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// The service's API.
struct Api {
    base: String,
    client: reqwest::Client,
}

impl Api {
    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        token: &str,
        body: Vec<u8>,
    ) -> anyhow::Result<u16> {
        let response = self
            .client
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(token)
            .body(body)
            .send()
            .await
            .with_context(|| path.to_owned())?;
        Ok(response.status().as_u16())
    }

    async fn upload(&self, scheme: &str, token: &str, component: &str) -> anyhow::Result<()> {
        let bytes = std::fs::read(component).with_context(|| format!("reading {component}"))?;
        let status =
            self.send(reqwest::Method::PUT, &format!("/v1/notifiers/{scheme}"), token, bytes).await?;
        ensure!(status == 201, "uploading {scheme}: {status}");
        Ok(())
    }

    /// Waits until the service answers `/readyz` with 200.
    async fn ready(&self, notifier: &mut Notifier) -> anyhow::Result<()> {
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(60) {
            notifier.check_running()?;
            let answer = self.client.get(format!("{}/readyz", self.base)).send().await;
            if answer.is_ok_and(|answer| answer.status() == 200) {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        bail!("the service was not ready within a minute:\n{}", notifier.tail())
    }

    /// Sum of `tocsin_deliveries_total` of tenant A by outcome.
    async fn a_outcomes(&self) -> anyhow::Result<Vec<(String, f64)>> {
        let text = self.client.get(format!("{}/metrics", self.base)).send().await?.text().await?;
        let mut outcomes: Vec<(String, f64)> = Vec::new();
        for line in text.lines().filter(|line| line.starts_with("tocsin_deliveries_total{")) {
            let (labels, value) = line.rsplit_once(' ').unwrap_or_default();
            if !labels.contains("tenant=\"a\"") {
                continue;
            }
            let outcome = labels.split("outcome=\"").nth(1).and_then(|rest| rest.split('"').next());
            let (Some(outcome), Ok(value)) = (outcome, value.parse::<f64>()) else { continue };
            match outcomes.iter_mut().find(|(name, _)| name == outcome) {
                Some((_, total)) => *total += value,
                None => outcomes.push((outcome.to_owned(), value)),
            }
        }
        Ok(outcomes)
    }
}

/// A's deliveries that ran (every outcome but `deferred`, which waits for
/// a slot without running).
fn ran(outcomes: &[(String, f64)]) -> usize {
    outcomes.iter().filter(|(outcome, _)| outcome != "deferred").map(|(_, n)| *n as usize).sum()
}

async fn measure(args: &Args, scenario: Scenario) -> anyhow::Result<Row> {
    let vhost = Vhost::create()?;
    let b_count = usize::try_from(u64::from(args.b_rate) * args.seconds)?;
    let timeline = Arc::new(Timeline::new(b_count));
    let sink = Sink::start(Arc::clone(&timeline), Duration::ZERO)?;
    let a_sink = Sink::start(Arc::new(Timeline::new(0)), Duration::ZERO)?;
    let never = Sink::start(Arc::new(Timeline::new(0)), Duration::from_secs(3_600))?;
    let publisher = Arc::new(AlarmPublisher::connect(&vhost.transport_url()).await?);
    let port = free_port()?;
    let programs = Programs { aodh_notifier: PathBuf::new(), tocsin: args.tocsin.clone() };
    let mut notifier = Notifier::start(Kind::Tocsin, &programs, &vhost.transport_url(), None, &config(port))?;
    notifier.consuming(publisher.channel()).await?;
    let api = Arc::new(Api {
        base: format!("http://127.0.0.1:{port}"),
        client: reqwest::Client::builder().no_proxy().timeout(Duration::from_secs(30)).build()?,
    });
    api.ready(&mut notifier).await?;
    api.upload("b-fetch", TOKEN_B, plugins::FETCH).await?;
    let a_action = match scenario {
        Scenario::Alone => None,
        Scenario::LogFlood => {
            api.upload("a-flood", TOKEN_A, plugins::LOG_FLOOD).await?;
            // Just under the default host_call_bytes (2 MiB).
            Some("a-flood://x/?kib=2047".to_owned())
        }
        Scenario::Spin => {
            api.upload("a-spin", TOKEN_A, plugins::SPIN).await?;
            Some("a-spin://x/".to_owned())
        }
        Scenario::HeaderBomb => {
            api.upload("a-fetch", TOKEN_A, plugins::FETCH).await?;
            let path = format!("/v1/notifiers/a-fetch/secrets/zz-bomb?url={}", a_sink.url);
            let status = api.send(reqwest::Method::PUT, &path, TOKEN_A, vec![b'x'; 8 << 10]).await?;
            ensure!(status == 204, "storing the secret: {status}");
            let bomb = "%7B%7Bsecret:zz-bomb%7D%7D".repeat(100);
            Some(format!("a-fetch://x/?target={}&header=x-bomb&value={bomb}", a_sink.url))
        }
        Scenario::SlowHttp => {
            api.upload("a-fetch", TOKEN_A, plugins::FETCH).await?;
            Some(format!("a-fetch://x/?target={}", never.url))
        }
        Scenario::ManyActions => {
            api.upload("a-fetch", TOKEN_A, plugins::FETCH).await?;
            Some(format!("a-fetch://x/?target={}", a_sink.url))
        }
    };
    let pids = notifier.processes();

    let done = Arc::new(AtomicBool::new(false));
    let prober = tokio::spawn(probe(Arc::clone(&api), Arc::clone(&done)));
    let feeder = a_action.map(|action| {
        let (api, publisher, done) = (Arc::clone(&api), Arc::clone(&publisher), Arc::clone(&done));
        tokio::spawn(async move { feed_a(&api, &publisher, &done, scenario, &action).await })
    });
    let published = publish_b(&publisher, &timeline, args.b_rate, &sink.url).await;
    done.store(true, Ordering::Relaxed);
    let a_published = match feeder {
        Some(feeder) => feeder.await??,
        None => 0,
    };
    let b_published = published?;
    let started = Instant::now();
    while timeline.arrivals() < b_published && started.elapsed() < DRAIN_LIMIT {
        notifier.check_running()?;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (probes, healthz_failed) = prober.await?;
    let a_outcomes = api.a_outcomes().await?;
    let peak_rss = procfs::peak_rss_bytes(&pids);
    if timeline.arrivals() < b_published {
        eprintln!("    B incomplete; the service's last lines:\n{}", notifier.tail());
    }
    notifier.stop().await;
    if let Ok(publisher) = Arc::try_unwrap(publisher) {
        publisher.close().await;
    }
    Ok(Row {
        scenario,
        b_published,
        b_lost: b_published - timeline.arrivals(),
        b_latency: Latency::of(&timeline.latencies(|_| true)),
        healthz: Latency::of(&probes),
        healthz_failed,
        peak_rss_mib: peak_rss as f64 / f64::from(1 << 20),
        a_outcomes,
        a_published,
    })
}

/// Publishes B's alarms at `rate` a second, each with the action that
/// fetches `sink`'s URL of its id. Returns how many were published.
async fn publish_b(
    publisher: &AlarmPublisher,
    timeline: &Timeline,
    rate: u32,
    sink: &str,
) -> anyhow::Result<usize> {
    let mut alarm = Alarm::from_json(SAMPLE_ALARM).context("the sample alarm")?;
    let mut ticks = tokio::time::interval(Duration::from_secs(1) / rate);
    let mut confirms = Vec::new();
    for seq in 0..timeline.count() {
        ticks.tick().await;
        alarm.alarm_id = alarm_id(seq);
        let action = format!("b-fetch://x/?target={sink}/{}", alarm.alarm_id);
        timeline.publishing(seq);
        confirms.push(publisher.publish(&alarm, &[action]).await?);
    }
    for confirm in confirms {
        ensure!(confirm.await?.is_ack(), "the broker refused one of B's alarms");
    }
    Ok(timeline.count())
}

/// Keeps tenant A at its quota with `action` until `done`: [`A_IN_FLIGHT`]
/// deliveries published and not yet run, looked at every 50 ms; or, for
/// `many-actions`, a message of 2,000 of them every 100 ms. Returns how
/// many messages it published.
async fn feed_a(
    api: &Api,
    publisher: &AlarmPublisher,
    done: &AtomicBool,
    scenario: Scenario,
    action: &str,
) -> anyhow::Result<usize> {
    let mut alarm = Alarm::from_json(SAMPLE_ALARM).context("the sample alarm")?;
    let (mut published, mut deliveries) = (0, 0);
    while !done.load(Ordering::Relaxed) {
        let (count, actions) = if scenario == Scenario::ManyActions {
            (1, 2_000)
        } else {
            let in_flight = deliveries - ran(&api.a_outcomes().await?).min(deliveries);
            (A_IN_FLIGHT.saturating_sub(in_flight), 1)
        };
        for _ in 0..count {
            alarm.alarm_id = alarm_id(A_FIRST_SEQ + published);
            let actions: Vec<String> = (0..actions).map(|n| format!("{action}&n={n}")).collect();
            publisher.publish(&alarm, &actions).await?;
            published += 1;
            deliveries += actions.len();
        }
        let pause = if scenario == Scenario::ManyActions { 100 } else { 50 };
        tokio::time::sleep(Duration::from_millis(pause)).await;
    }
    Ok(published)
}

/// Asks `/healthz` every [`PROBE_EVERY`] until `done`: the round trips
/// (sorted) and how many failed.
async fn probe(api: Arc<Api>, done: Arc<AtomicBool>) -> (Vec<Duration>, usize) {
    let (mut times, mut failed) = (Vec::new(), 0);
    while !done.load(Ordering::Relaxed) {
        let asked = Instant::now();
        match api.client.get(format!("{}/healthz", api.base)).send().await {
            Ok(answer) if answer.status() == 200 => times.push(asked.elapsed()),
            _ => failed += 1,
        }
        tokio::time::sleep_until((asked + PROBE_EVERY).into()).await;
    }
    times.sort();
    (times, failed)
}

/// The table, and whether every scenario held the targets: B's p99 at most
/// max(2 × alone, alone + 25 ms), `/healthz` p99 under 50 ms, nothing lost.
fn table(rows: &[Row]) -> (String, bool) {
    let alone = rows.iter().find(|row| row.scenario == Scenario::Alone).and_then(|row| row.b_latency);
    let ms = |latency: Option<Latency>, pick: fn(&Latency) -> f64| {
        latency.map_or_else(|| "—".to_owned(), |latency| format!("{:.1}", pick(&latency)))
    };
    let mut text = String::from(
        "| tenant A | B p50 ms | B p99 ms | B p99 / alone | /healthz p99 ms | peak RSS MiB | B lost | A calls | targets |\n\
         |---|---|---|---|---|---|---|---|---|\n",
    );
    let mut all_held = true;
    for row in rows {
        let b_p99 = row.b_latency.map(|l| l.p99_ms);
        let allowed = alone.map(|alone| (2.0 * alone.p99_ms).max(alone.p99_ms + 25.0));
        let held = b_p99.zip(allowed).is_some_and(|(p99, allowed)| p99 <= allowed)
            && row.healthz.is_some_and(|h| h.p99_ms < 50.0)
            && row.healthz_failed == 0
            && row.b_lost == 0;
        all_held &= held;
        let ratio = b_p99
            .zip(alone)
            .map_or_else(|| "—".to_owned(), |(p99, alone)| format!("{:.2}", p99 / alone.p99_ms));
        text.push_str(&format!(
            "| {} | {} | {} | {ratio} | {} | {:.0} | {} | {} | {} |\n",
            row.scenario.name(),
            ms(row.b_latency, |l| l.p50_ms),
            ms(row.b_latency, |l| l.p99_ms),
            ms(row.healthz, |l| l.p99_ms),
            row.peak_rss_mib,
            row.b_lost,
            ran(&row.a_outcomes),
            if held { "held" } else { "**missed**" },
        ));
    }
    (text, all_held)
}
