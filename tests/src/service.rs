//! A real `tocsin serve` process for tests: its configuration written to a
//! temporary file, its JSON log captured, its API address read from that
//! log, and SIGTERM or SIGKILL when the test says so.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::broker::eventually;

/// The service settings tests share: fast retry tiers, loopback egress
/// granted to the built-in `http` notifier,
/// a small pool, the API on a free port. `extra` is appended TOML.
pub fn test_config(transport_url: &str, host: &str, extra: &str) -> String {
    format!(
        r#"
[broker]
transport_url = "{transport_url}"
reconnect_initial_ms = 100
reconnect_max_ms = 1000
rabbit_qos_prefetch_count = 16

[intake]
host = "{host}"
shutdown_grace_ms = 10000

[sandbox]
instances = 16

[dispatch]
concurrency = 16

[delivery]
retry_tiers_ms = [200, 400, 800]
backoff_initial_ms = 100

[egress]
allow_networks = ["127.0.0.1/32"]

[plugins.http]
allow_hosts = ["127.0.0.1"]

[api]
listen = "127.0.0.1:0"
{extra}
"#
    )
}

/// Runs `binary args…` against the broker at `transport_url`, with extra
/// `env`, and returns its stdout; panics with its stderr unless it exits 0.
pub async fn cli(binary: &str, transport_url: &str, args: &[&str], env: &[(&str, &str)]) -> String {
    let output = tokio::process::Command::new(binary)
        .args(args)
        .env("TOCSIN_BROKER__TRANSPORT_URL", transport_url)
        .env("TOCSIN_LOG", "warn")
        .envs(env.iter().copied())
        .output()
        .await
        .unwrap_or_else(|e| panic!("spawn {binary}: {e}"));
    assert!(output.status.success(), "tocsin {args:?}: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// A running `tocsin serve`; killed when dropped. Its uploaded notifiers
/// are kept in its temporary directory unless the configuration names a
/// `state_path`.
#[derive(Debug)]
pub struct Service {
    child: Child,
    log: PathBuf,
    _dir: tempfile::TempDir,
    /// The CA its API's certificate is from, when it speaks TLS.
    ca_pem: Option<String>,
    /// `http://127.0.0.1:port` of its API (`https://` over TLS).
    pub api: String,
}

impl Service {
    /// Starts `binary serve` with `config` and waits until it is ready
    /// (consuming), at most 30 s.
    pub async fn start(binary: &str, config: &str) -> Service {
        Service::start_logging(binary, config, "info").await
    }

    /// [`Service::start`] with the log filter `level` (`TOCSIN_LOG`).
    pub async fn start_logging(binary: &str, config: &str, level: &str) -> Service {
        let service = Service::launch_logging(binary, config, level, None).await;
        service.wait_ready().await
    }

    /// [`Service::start`] for a service whose API speaks TLS with a
    /// certificate from the CA `ca_pem`, which its clients here trust.
    pub async fn start_tls(binary: &str, config: &str, ca_pem: &str) -> Service {
        let service = Service::launch_logging(binary, config, "info", Some(ca_pem.to_owned())).await;
        service.wait_ready().await
    }

    async fn wait_ready(self) -> Service {
        let service = self;
        let ready = eventually(Duration::from_secs(30), async || service.get("/readyz").await.0 == 200).await;
        assert!(ready, "tocsin serve did not get ready: {}", service.log_text());
        service
    }

    /// Starts `binary serve` with `config` and waits only until it logs its
    /// API address (at most 30 s), ready or not: for a service that cannot
    /// reach its broker.
    pub async fn launch(binary: &str, config: &str) -> Service {
        Service::launch_logging(binary, config, "info", None).await
    }

    async fn launch_logging(binary: &str, config: &str, level: &str, ca_pem: Option<String>) -> Service {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
        let config_path = dir.path().join("tocsin.toml");
        std::fs::write(&config_path, config).unwrap_or_else(|e| panic!("write config: {e}"));
        let log = dir.path().join("serve.log");
        let stderr = std::fs::File::create(&log).unwrap_or_else(|e| panic!("log file: {e}"));
        let mut command = Command::new(binary);
        if !config.contains("state_path") {
            // Uploaded notifiers and their artifacts live with the test.
            command.env("TOCSIN_UPLOADS__STATE_PATH", dir.path().join("state"));
        }
        let child = command
            .args(["--log-format", "json", "serve"])
            .env("TOCSIN_CONFIG", &config_path)
            .env("TOCSIN_LOG", level)
            // Tests read the log right after what they cause: every line is
            // written as it comes, not batched.
            .env("TOCSIN_LOG_FLUSH_MS", "0")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {binary}: {e}"));
        let mut service = Service { child, log, _dir: dir, ca_pem, api: String::new() };
        let mut api = None;
        let started = eventually(Duration::from_secs(30), async || {
            api = service.logs().iter().find_map(|line| {
                (line["message"] == "serve: Starting.")
                    .then(|| line["listen"].as_str().map(|listen| (listen.to_owned(), line["tls"] == true)))
                    .flatten()
            });
            api.is_some()
        })
        .await;
        assert!(started, "tocsin serve did not start: {}", service.log_text());
        let (listen, tls) = api.unwrap_or_default();
        service.api = format!("{}://{listen}", if tls { "https" } else { "http" });
        service
    }

    /// A client of its API: trusting only its CA when it speaks TLS.
    pub fn client(&self) -> reqwest::Client {
        let mut builder = reqwest::Client::builder().no_proxy();
        if let Some(pem) = &self.ca_pem {
            let ca = reqwest::Certificate::from_pem(pem.as_bytes()).unwrap_or_else(|e| panic!("CA: {e}"));
            builder = builder.tls_certs_only([ca]);
        }
        builder.build().unwrap_or_else(|e| panic!("client: {e}"))
    }

    /// `GET path` on the API: status and body (0 when unreachable).
    pub async fn get(&self, path: &str) -> (u16, String) {
        self.get_as(None, path).await
    }

    /// `GET path` on the API with bearer `token` (none: anonymously):
    /// status and body (0 when unreachable).
    pub async fn get_as(&self, token: Option<&str>, path: &str) -> (u16, String) {
        let mut request = self.client().get(format!("{}{path}", self.api)).timeout(Duration::from_secs(5));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        match request.send().await {
            Ok(response) => (response.status().as_u16(), response.text().await.unwrap_or_default()),
            Err(_) => (0, String::new()),
        }
    }

    /// `method path` on the API with bearer `token` (none: no
    /// `Authorization` header) and `body`: status and JSON answer (`null`
    /// when the answer is empty or not JSON; status 0 when unreachable).
    pub async fn call(&self, method: &str, path: &str, token: Option<&str>, body: Vec<u8>) -> (u16, Value) {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap_or_else(|e| panic!("method: {e}"));
        let mut request =
            self.client().request(method, format!("{}{path}", self.api)).timeout(Duration::from_secs(120));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        match request.body(body).send().await {
            Ok(response) => {
                let status = response.status().as_u16();
                let bytes = response.bytes().await.unwrap_or_default();
                (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
            }
            Err(_) => (0, Value::Null),
        }
    }

    /// The value of a metric sample line `name{labels}` (0 when absent).
    pub async fn metric(&self, sample: &str) -> f64 {
        self.metric_as(None, sample).await
    }

    /// The value of a metric sample line `name{labels}` as the holder of
    /// `token` reads `/metrics` (0 when absent).
    pub async fn metric_as(&self, token: Option<&str>, sample: &str) -> f64 {
        let (_, text) = self.get_as(token, "/metrics").await;
        text.lines()
            .find_map(|line| line.strip_prefix(sample).and_then(|rest| rest.trim().parse().ok()))
            .unwrap_or(0.0)
    }

    /// The log so far, one JSON object per line.
    pub fn logs(&self) -> Vec<Value> {
        self.log_text().lines().filter_map(|line| serde_json::from_str(line).ok()).collect()
    }

    /// The log so far, as text.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Log lines whose `message` is `message`.
    pub fn lines_with(&self, message: &str) -> Vec<Value> {
        self.logs().into_iter().filter(|line| line["message"] == message).collect()
    }

    /// SIGTERM, then waits up to `limit` for the exit status, yielding to
    /// the test's runtime meanwhile (so its clients can close their
    /// connections to the service's API, as real clients would).
    pub async fn terminate(&mut self, limit: Duration) -> Option<ExitStatus> {
        signal(self.child.id(), "TERM");
        let mut status = None;
        eventually(limit, async || {
            status = self.child.try_wait().ok().flatten();
            status.is_some()
        })
        .await;
        status
    }

    /// SIGKILL, and reaps it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Where its log is.
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// The value of `field` in the kernel's `/proc/<pid>/status` of the
    /// running service (`THP_enabled`, say), if it has that line.
    pub fn proc_status(&self, field: &str) -> Option<String> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).ok()?;
        status.lines().find_map(|line| Some(line.strip_prefix(field)?.strip_prefix(':')?.trim().to_owned()))
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        self.kill();
    }
}

fn signal(pid: u32, name: &str) {
    let _ = Command::new("kill").args([&format!("-{name}"), &pid.to_string()]).status();
}
