//! The two notifiers under test, each started fresh for every run with its
//! defaults and only what it needs to reach the run's vhost and the
//! loopback sinks: aodh-notifier (its master and worker processes) and
//! `tocsin serve`.

use std::collections::VecDeque;
use std::io::{BufRead as _, BufReader, Read};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use lapin::Channel;
use lapin::options::QueueDeclareOptions;
use lapin::types::FieldTable;

use crate::load::{Timeline, intake, seq_in};
use crate::procfs;

/// How both notifiers' `log://` line begins (Aodh's words).
const LOG_LINE: &[u8] = b"Notifying alarm";
/// Lines of a notifier's output kept to explain a failure.
const TAIL_LINES: usize = 40;
/// How long a notifier may take to start consuming.
const READY_LIMIT: Duration = Duration::from_secs(60);
/// How long a notifier may take to exit after SIGTERM before it is killed.
const STOP_LIMIT: Duration = Duration::from_secs(10);

/// Which notifier.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// OpenStack's aodh-notifier, from PyPI.
    Aodh,
    /// `tocsin serve`.
    Tocsin,
}

impl Kind {
    /// Its name in the table.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Aodh => "aodh",
            Kind::Tocsin => "tocsin",
        }
    }
}

/// The programs to run.
#[derive(Debug, Clone)]
pub struct Programs {
    /// `aodh-notifier` of the venv.
    pub aodh_notifier: PathBuf,
    /// The `tocsin` binary.
    pub tocsin: PathBuf,
}

/// A running notifier, leader of its own process group; the group is
/// killed when dropped.
#[derive(Debug)]
pub struct Notifier {
    kind: Kind,
    child: Child,
    tail: Arc<Mutex<VecDeque<String>>>,
    killed: bool,
    _dir: tempfile::TempDir,
}

impl Notifier {
    /// Starts `kind` on the vhost at `transport_url`, `extra` appended to
    /// tocsin's configuration. When `timeline` is given, each `Notifying
    /// alarm` line it writes counts as that alarm's arrival (the `log://`
    /// action).
    ///
    /// # Errors
    /// It cannot be started.
    pub fn start(
        kind: Kind,
        programs: &Programs,
        transport_url: &str,
        timeline: Option<Arc<Timeline>>,
        extra: &str,
    ) -> anyhow::Result<Notifier> {
        let dir = tempfile::tempdir().context("temporary directory")?;
        let mut command = match kind {
            Kind::Aodh => aodh_command(&programs.aodh_notifier, transport_url, dir.path())?,
            Kind::Tocsin => tocsin_command(&programs.tocsin, transport_url, dir.path(), extra)?,
        };
        let mut child = command
            .process_group(0)
            .env("NO_PROXY", "127.0.0.1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("cannot start {}", kind.name()))?;
        let tail = Arc::new(Mutex::new(VecDeque::with_capacity(TAIL_LINES)));
        for output in [
            child.stdout.take().map(|o| Box::new(o) as Box<dyn Read + Send>),
            child.stderr.take().map(|o| Box::new(o) as _),
        ]
        .into_iter()
        .flatten()
        {
            let (tail, timeline) = (Arc::clone(&tail), timeline.clone());
            std::thread::spawn(move || watch(output, &tail, timeline.as_deref()));
        }
        Ok(Notifier { kind, child, tail, killed: false, _dir: dir })
    }

    /// The process and everything below it.
    pub fn processes(&self) -> Vec<u32> {
        procfs::tree(self.child.id())
    }

    /// Waits until the notifier consumes the alarm queue (which exists:
    /// it was filled), looking every millisecond.
    ///
    /// # Errors
    /// It exited, or did not consume within a minute.
    pub async fn consuming(&mut self, channel: &Channel) -> anyhow::Result<()> {
        let name = intake().queue();
        let started = Instant::now();
        while started.elapsed() < READY_LIMIT {
            self.check_running()?;
            let options = QueueDeclareOptions { passive: true, ..QueueDeclareOptions::default() };
            let queue = channel
                .queue_declare(name.as_str().into(), options, FieldTable::default())
                .await
                .with_context(|| format!("the queue {name} is gone"))?;
            if queue.consumer_count() > 0 {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        bail!(
            "{} did not consume {name} within {} s:\n{}",
            self.kind.name(),
            READY_LIMIT.as_secs(),
            self.tail()
        )
    }

    /// An error with its last lines if it has exited.
    ///
    /// # Errors
    /// It is no longer running.
    pub fn check_running(&mut self) -> anyhow::Result<()> {
        if let Some(status) = self.child.try_wait().context("waiting for the notifier")? {
            bail!("{} exited ({status}):\n{}", self.kind.name(), self.tail());
        }
        Ok(())
    }

    /// Its last lines of output.
    pub fn tail(&self) -> String {
        self.tail.lock().map(|tail| tail.iter().cloned().collect::<Vec<_>>().join("\n")).unwrap_or_default()
    }

    /// SIGTERM, then SIGKILL for whatever of it is left after 10 s.
    pub async fn stop(mut self) {
        signal_group("TERM", self.child.id());
        let started = Instant::now();
        while started.elapsed() < STOP_LIMIT && matches!(self.child.try_wait(), Ok(None)) {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        self.kill();
    }

    /// SIGKILL to its process group (workers included), once.
    fn kill(&mut self) {
        if self.killed {
            return;
        }
        signal_group("KILL", self.child.id());
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.killed = true;
    }
}

impl Drop for Notifier {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Sends SIGname to the process group `group` (the notifier was started as
/// its leader, so its workers are in it even once the leader has exited).
fn signal_group(name: &str, group: u32) {
    let _ = Command::new("kill")
        .arg(format!("-{name}"))
        .arg("--")
        .arg(format!("-{group}"))
        .stderr(Stdio::null())
        .status();
}

/// Reads `output` line by line to its end, keeping the last lines and
/// noting arrivals.
fn watch(output: Box<dyn Read + Send>, tail: &Mutex<VecDeque<String>>, timeline: Option<&Timeline>) {
    let mut lines = BufReader::new(output);
    let mut line = Vec::new();
    while lines.read_until(b'\n', &mut line).is_ok_and(|n| n > 0) {
        if let Some(timeline) = timeline
            && memchr::memmem::find(&line, LOG_LINE).is_some()
            && let Some(seq) = seq_in(&line)
        {
            timeline.arrived(seq);
        }
        if let Ok(mut tail) = tail.lock() {
            if tail.len() == TAIL_LINES {
                tail.pop_front();
            }
            tail.push_back(String::from_utf8_lossy(&line).trim_end().to_owned());
        }
        line.clear();
    }
}

/// aodh-notifier with a minimal `aodh.conf`: the broker, and the database
/// option it insists on. Everything else is aodh's default (one worker,
/// batch size 1, INFO to stderr).
fn aodh_command(program: &Path, transport_url: &str, dir: &Path) -> anyhow::Result<Command> {
    let config = dir.join("aodh.conf");
    let database = dir.join("aodh.sqlite");
    std::fs::write(
        &config,
        format!(
            "[DEFAULT]\ntransport_url = {transport_url}\nuse_stderr = true\n\n[database]\nconnection = sqlite:///{}\n",
            database.display()
        ),
    )
    .context("writing aodh.conf")?;
    let mut command = Command::new(program);
    command.arg("--config-file").arg(config);
    Ok(command)
}

/// `tocsin serve` with its defaults, but for the vhost, its state in the
/// run's directory, and the `http` notifier allowed to reach the loopback
/// sinks (tocsin's egress policy refuses loopback by default); then
/// `extra` (the `[api]` section among what it may add).
fn tocsin_command(program: &Path, transport_url: &str, dir: &Path, extra: &str) -> anyhow::Result<Command> {
    let config = dir.join("tocsin.toml");
    std::fs::write(
        &config,
        format!(
            "[broker]\ntransport_url = \"{transport_url}\"\n\n[uploads]\nstate_path = \"{}\"\n\n\
             [egress]\nallow_networks = [\"127.0.0.1/32\"]\n\n\
             [plugins.http]\nallow_hosts = [\"127.0.0.1\"]\n{extra}",
            dir.join("state").display()
        ),
    )
    .context("writing tocsin.toml")?;
    let mut command = Command::new(program);
    command.arg("serve").env("TOCSIN_CONFIG", config).env("TOCSIN_LOG", "info");
    Ok(command)
}
