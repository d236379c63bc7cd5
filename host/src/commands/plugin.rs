//! `tocsin plugin …`: the notifier API from the command line, for tenants
//! and the operator. Each command prints the API's JSON answer on stdout
//! (exit 0), or its error message on stderr (exit 1: refused; exit 2: the
//! API could not be reached or the input could not be read).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use serde_json::{Value, json};

use super::Exit;

/// Longest an API request may take (an upload compiles the component).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(300);

/// Where the API is and who calls it.
#[derive(Debug, Clone)]
pub struct ApiTarget {
    /// `http://host:port` of `tocsin serve`'s API.
    pub api: String,
    /// The caller's bearer token.
    pub token: String,
}

/// One `tocsin plugin` command.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum PluginCommand {
    /// Upload a component as a new version of `scheme` and make it live.
    Upload {
        /// The scheme (a tenant's start with its name and a dash: acme-chat).
        scheme: String,
        /// The component (`target/wasm32-wasip2/release/<crate>.wasm`).
        file: PathBuf,
        /// A host it may call besides its action URL's; repeat for several.
        #[arg(long = "allow-host")]
        allow_hosts: Vec<String>,
        /// A limit, `name=value` (e.g. `fuel=50000000`); repeat for several.
        #[arg(long = "limit")]
        limits: Vec<String>,
    },
    /// The caller's notifiers.
    List,
    /// One notifier with its versions.
    Show {
        /// The scheme.
        scheme: String,
    },
    /// Delete a notifier and all its versions.
    Rm {
        /// The scheme.
        scheme: String,
    },
    /// Make a version the active one.
    Activate {
        /// The scheme.
        scheme: String,
        /// The version.
        version: i64,
    },
    /// The notifier's recent log lines on the host that answers.
    Logs {
        /// The scheme.
        scheme: String,
    },
    /// Store a secret with a notifier (the value is read from stdin), list
    /// the names, or delete one. The plugin writes `{{secret:NAME}}` in a
    /// header value; the host fills it in for requests under the secret's
    /// URL prefix, on the plugin's granted hosts.
    Secret {
        /// What to do with the secret.
        #[command(subcommand)]
        command: SecretCommand,
    },
    /// Run the live version once and print what happened.
    DryRun {
        /// The scheme.
        scheme: String,
        /// The action URL (default `<scheme>://dry-run.invalid/`).
        #[arg(long)]
        action: Option<String>,
        /// Alarm JSON file, `-` for stdin (default: the sample alarm).
        #[arg(long)]
        alarm: Option<PathBuf>,
    },
}

/// What `tocsin plugin secret` does.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum SecretCommand {
    /// Store (or replace) secret NAME of SCHEME, for requests to URLs under
    /// `--url`; the value comes from stdin.
    Set {
        /// The scheme.
        scheme: String,
        /// The secret's name.
        name: String,
        /// The URL prefix it is filled in for: `https://host[:port]/path`.
        #[arg(long)]
        url: String,
    },
    /// The names of SCHEME's secrets (never their values).
    List {
        /// The scheme.
        scheme: String,
    },
    /// Delete secret NAME of SCHEME.
    Rm {
        /// The scheme.
        scheme: String,
        /// The secret's name.
        name: String,
    },
}

/// Sends the command's request and prints the answer.
///
/// # Errors
/// The component or alarm cannot be read, the API cannot be reached.
pub async fn run(target: &ApiTarget, command: PluginCommand) -> anyhow::Result<Exit> {
    let client =
        reqwest::Client::builder().timeout(REQUEST_TIMEOUT).build().context("cannot make an HTTP client")?;
    let base = format!("{}/v1/notifiers", target.api.trim_end_matches('/'));
    let request = match command {
        PluginCommand::Upload { scheme, file, allow_hosts, limits } => {
            let bytes = std::fs::read(&file).with_context(|| format!("cannot read {}", file.display()))?;
            let mut url = url::Url::parse(&format!("{base}/{scheme}"))
                .with_context(|| format!("--api {}: not a URL", target.api))?;
            if !allow_hosts.is_empty() {
                url.query_pairs_mut().append_pair("allow_hosts", &allow_hosts.join(","));
            }
            for limit in limits {
                let (name, value) = limit
                    .split_once('=')
                    .with_context(|| format!("--limit {limit}: expected name=value, e.g. fuel=50000000"))?;
                url.query_pairs_mut().append_pair(name, value);
            }
            client.put(url).body(bytes)
        }
        PluginCommand::List => client.get(&base),
        PluginCommand::Show { scheme } => client.get(format!("{base}/{scheme}")),
        PluginCommand::Rm { scheme } => client.delete(format!("{base}/{scheme}")),
        PluginCommand::Activate { scheme, version } => {
            json_post(&client, format!("{base}/{scheme}/activate"), &json!({"version": version}))
        }
        PluginCommand::Logs { scheme } => client.get(format!("{base}/{scheme}/logs")),
        PluginCommand::Secret { command: SecretCommand::Set { scheme, name, url } } => {
            let mut value = String::new();
            std::io::Read::read_to_string(&mut std::io::stdin(), &mut value)
                .context("cannot read the secret from stdin")?;
            let mut put = url::Url::parse(&format!("{base}/{scheme}/secrets/{name}"))
                .with_context(|| format!("--api {}: not a URL", target.api))?;
            put.query_pairs_mut().append_pair("url", &url);
            client.put(put).body(value)
        }
        PluginCommand::Secret { command: SecretCommand::List { scheme } } => {
            client.get(format!("{base}/{scheme}/secrets"))
        }
        PluginCommand::Secret { command: SecretCommand::Rm { scheme, name } } => {
            client.delete(format!("{base}/{scheme}/secrets/{name}"))
        }
        PluginCommand::DryRun { scheme, action, alarm } => {
            let alarm = alarm.map(|path| super::notify::read_alarm(Some(&path))).transpose()?;
            json_post(&client, format!("{base}/{scheme}/dry-run"), &json!({"action": action, "alarm": alarm}))
        }
    };
    let response = request
        .bearer_auth(&target.token)
        .send()
        .await
        .with_context(|| format!("cannot reach the tocsin API at {}", target.api))?;
    let status = response.status();
    let body = response.bytes().await.context("cannot read the API's answer")?;
    if status.is_success() {
        if !body.is_empty() {
            println!("{}", String::from_utf8_lossy(&body));
        }
        return Ok(Exit::Success);
    }
    let answer: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let message = answer["error"]["message"]
        .as_str()
        .map_or_else(|| String::from_utf8_lossy(&body).into_owned(), str::to_owned);
    let code = answer["error"]["code"].as_str().unwrap_or("error");
    eprintln!("tocsin: {status} {code}: {message}");
    Ok(Exit::Failure)
}

fn json_post(client: &reqwest::Client, url: String, body: &Value) -> reqwest::RequestBuilder {
    client.post(url).header(reqwest::header::CONTENT_TYPE, "application/json").body(body.to_string())
}
