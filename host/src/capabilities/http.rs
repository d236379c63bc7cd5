//! The `http` capability: the host performs a plugin's HTTP request with
//! reqwest, behind the grant check and the egress policy.
//!
//! Checks for each request, before anything leaves the host: the call's
//! deadline and request count, the method, headers (no `host` or
//! hop-by-hop headers) and body size, the URL (http/https, no user info),
//! the host grant (the action URL's host or one granted to the plugin),
//! the address policy, and the TLS option. Each redirect hop (only when
//! the operator sets `http.max_redirects`) is checked again, never
//! downgrades https to http, drops credentials when it changes origin, and
//! a header with a secret where the secret's URL prefix stops covering it.
//! A refusal is an `http-error` value the plugin receives, never a trap;
//! an egress refusal says nothing of the address ([`EGRESS_DENIAL`],
//! [`NAME_UNREACHABLE`]), which goes to the operator's log. Environment
//! proxies are ignored.
//!
//! The operator's exceptions to the address policy apply only to hosts the
//! operator granted the plugin by name, and the operator's REST-notifier TLS
//! settings (client certificate, CA bundle, `rest_notifier_ssl_verify`) and
//! webhook signing secrets ([`super::signing`]) only to the built-in `http`
//! notifier: tenant plugins never present the operator's certificate or get
//! its signature.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue};
use reqwest::{Client, Method, StatusCode, Url};
use serde::{Deserialize, Serialize};
use tocsin_core::bindings::tocsin::notifier::http::{self as contract, Host, HttpError, Request, Response};
use tocsin_core::caps::{MAX_HEADER_BYTES, MAX_HEADERS, MAX_METHOD_BYTES, MAX_URL_BYTES};
use tocsin_core::hosts::{host_key, url_host_key, validate_host_entry};
use tocsin_core::limits::{Limit, Limits};
use wasmtime::component::{HasData, Linker};

use crate::capabilities::CallReport;
use crate::capabilities::egress::{EgressDenied, EgressPolicy, EgressResolver, LookupFailed, NameLookup};
use crate::capabilities::log::CallIdentity;
use crate::capabilities::refusals::RefusalLog;
use crate::capabilities::secrets::{FilledHeader, SharedSecrets, substitute};
use crate::capabilities::signing::{SIGNATURE_HEADERS, WebhookSecret, signature_headers};

/// What a plugin is told when the egress policy refuses an address it
/// named (an IP literal): not the address's class. The operator's log has
/// the detail.
pub const EGRESS_DENIAL: &str = "the egress policy refused this destination; the operator's log says why";

/// What a plugin is told when a name it asked for does not resolve, or
/// resolves to an address the egress policy refuses: the same words for
/// both, and a retryable `connect`, so that a tenant can neither learn the
/// internal address of a name nor whether an internal name exists. The
/// operator's log tells them apart.
pub const NAME_UNREACHABLE: &str =
    "the name does not resolve to an address this plugin may reach; the operator's log says why";

/// Headers kept when a redirect leads to another origin: nothing that
/// could carry a credential for the first one.
const CROSS_ORIGIN_HEADERS: &[&str] = &["accept", "content-type", "user-agent", "x-openstack-request-id"];

/// Time kept back from the call's deadline when sizing an HTTP timeout, so
/// the plugin sees `timeout` and can report it before the call is killed.
const DEADLINE_MARGIN: Duration = Duration::from_millis(100);

/// Headers a plugin may not set: the host owns routing and framing.
const FORBIDDEN_HEADERS: &[&str] = &[
    "host",
    "connection",
    "keep-alive",
    "transfer-encoding",
    "te",
    "trailer",
    "upgrade",
    "content-length",
    "proxy-authorization",
    "proxy-authenticate",
    "proxy-connection",
];

/// Outbound HTTP performed for plugins.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// Timeout of one request attempt when the plugin sets none, in ms.
    pub timeout_ms: u64,
    /// The most a plugin may ask for, in ms.
    pub max_timeout_ms: u64,
    /// Redirects followed per request; 0 (the default) follows none. Each
    /// hop is checked against the egress policy again.
    pub max_redirects: u32,
    /// Idle connections kept open per receiving host, for reuse by later
    /// deliveries (one pool per TLS and egress setting, shared by all
    /// plugins); 0 opens a new connection for every request.
    pub pool_max_idle_per_host: usize,
    /// Aodh's `rest_notifier_ssl_verify`: verify TLS certificates unless a
    /// plugin allowed to do so switches it off for one request.
    pub rest_notifier_ssl_verify: bool,
    /// Aodh's `rest_notifier_ca_bundle_certificate_path`: PEM bundle of
    /// extra trusted CAs.
    pub rest_notifier_ca_bundle_certificate_path: Option<PathBuf>,
    /// Aodh's `rest_notifier_certificate_file`: client certificate (PEM),
    /// with its private key unless `rest_notifier_certificate_key` is set.
    pub rest_notifier_certificate_file: Option<PathBuf>,
    /// Aodh's `rest_notifier_certificate_key`: the certificate's private
    /// key (PEM), when it is not in the certificate file.
    pub rest_notifier_certificate_key: Option<PathBuf>,
    /// Aodh's `rest_notifier_max_retries`: when set, the retries of
    /// `http`/`https` actions (attempts = retries + 1; Aodh's default 0
    /// means one attempt). When absent, the delivery policy's
    /// `delivery.max_attempts` applies, so a failed POST is retried rather
    /// than lost as Aodh's default does.
    pub rest_notifier_max_retries: Option<u32>,
    /// Signed webhooks: per action host, the secrets the built-in `http`
    /// notifier's deliveries to it are signed with (Standard Webhooks).
    pub signing: BTreeMap<String, SigningKeys>,
}

/// The Standard Webhooks secrets of one receiving host.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SigningKeys {
    /// `whsec_…` secrets, newest first; during a key rotation, the new and
    /// the old one, so receivers accept either. Each adds a signature. One
    /// secret may be given as a plain string.
    #[serde(deserialize_with = "super::signing::one_or_more")]
    pub secrets: Vec<WebhookSecret>,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            timeout_ms: 10_000,
            max_timeout_ms: 10_000,
            max_redirects: 0,
            pool_max_idle_per_host: 32,
            rest_notifier_ssl_verify: true,
            rest_notifier_ca_bundle_certificate_path: None,
            rest_notifier_certificate_file: None,
            rest_notifier_certificate_key: None,
            rest_notifier_max_retries: None,
            signing: BTreeMap::new(),
        }
    }
}

impl HttpConfig {
    /// Checks the section's own rules.
    ///
    /// # Errors
    /// What is wrong, naming the option.
    pub fn validate(&self) -> Result<(), String> {
        if self.timeout_ms > self.max_timeout_ms {
            return Err(format!(
                "http.timeout_ms ({}) exceeds http.max_timeout_ms ({})",
                self.timeout_ms, self.max_timeout_ms
            ));
        }
        if self.rest_notifier_certificate_key.is_some() && self.rest_notifier_certificate_file.is_none() {
            return Err("rest_notifier_certificate_key needs rest_notifier_certificate_file".into());
        }
        if let Some((host, _)) = self.signing.iter().find(|(_, keys)| keys.secrets.is_empty()) {
            return Err(format!("http.signing.{host:?} has no secrets"));
        }
        let mut signed_hosts = std::collections::HashSet::new();
        if let Some(host) = self.signing.keys().find(|host| !signed_hosts.insert(host_key(host))) {
            return Err(format!("http.signing.{host:?} names a host already listed"));
        }
        self.signing.keys().try_for_each(|host| validate_host_entry(host))
    }
}

/// Why the HTTP capability could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum HttpSetupError {
    /// A CA bundle, certificate or key file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// reqwest refused the TLS material or settings.
    #[error("cannot build the HTTP client: {0}")]
    Client(#[from] reqwest::Error),
}

/// Which connection pool a request uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct ClientKind {
    /// The operator's REST-notifier TLS settings (built-in `http` only).
    operator_tls: bool,
    /// Verify server certificates.
    verify: bool,
    /// Apply the operator's address exceptions (explicitly granted host).
    exceptions: bool,
}

impl ClientKind {
    fn index(self) -> usize {
        usize::from(self.operator_tls) << 2 | usize::from(self.verify) << 1 | usize::from(self.exceptions)
    }
}

/// The operator's TLS material for the built-in REST notifier.
#[derive(Debug, Default)]
struct OperatorTls {
    roots: Vec<reqwest::Certificate>,
    identity: Option<reqwest::Identity>,
}

/// The process-wide HTTP machinery shared by every call: connection pools
/// per [`ClientKind`], built on first use, and the policy.
#[derive(Debug)]
pub(crate) struct HttpCapability {
    clients: [OnceLock<Client>; 8],
    operator_tls: OperatorTls,
    policy: Arc<EgressPolicy>,
    lookup: Arc<dyn NameLookup>,
    /// Webhook signing secrets by receiving host (see [`host_key`]).
    signing: HashMap<String, Vec<WebhookSecret>>,
    /// Which refusals get a WARN line.
    refusals: RefusalLog,
    config: HttpConfig,
}

impl HttpCapability {
    /// Reads the operator's TLS material and checks that it builds; names
    /// are looked up with `lookup`, then judged by `policy`.
    ///
    /// # Errors
    /// [`HttpSetupError`] when TLS files are unreadable or invalid.
    pub fn new(
        config: &HttpConfig,
        policy: Arc<EgressPolicy>,
        lookup: Arc<dyn NameLookup>,
    ) -> Result<Self, HttpSetupError> {
        let read = |path: &std::path::Path| {
            std::fs::read(path)
                .map_err(|source| HttpSetupError::Read { path: path.display().to_string(), source })
        };
        let mut operator_tls = OperatorTls::default();
        if let Some(path) = &config.rest_notifier_ca_bundle_certificate_path {
            operator_tls.roots = reqwest::Certificate::from_pem_bundle(&read(path)?)?;
        }
        if let Some(cert) = &config.rest_notifier_certificate_file {
            // As Aodh: the key in its own file, or in the certificate's.
            let mut pem = read(cert)?;
            if let Some(key) = &config.rest_notifier_certificate_key {
                pem.push(b'\n');
                pem.extend(read(key)?);
            }
            operator_tls.identity = Some(reqwest::Identity::from_pem(&pem)?);
        }
        let signing =
            config.signing.iter().map(|(host, keys)| (host_key(host), keys.secrets.clone())).collect();
        let capability = HttpCapability {
            clients: Default::default(),
            operator_tls,
            policy,
            lookup,
            signing,
            refusals: RefusalLog::default(),
            config: config.clone(),
        };
        if !capability.operator_tls.roots.is_empty() || capability.operator_tls.identity.is_some() {
            // Surface bad TLS material at start-up, not at the first alarm;
            // the client is kept for the requests that use it.
            let kind = ClientKind { operator_tls: true, verify: true, exceptions: false };
            let _ = capability.clients[kind.index()].set(capability.build(kind)?);
        }
        Ok(capability)
    }

    fn build(&self, kind: ClientKind) -> Result<Client, reqwest::Error> {
        let mut builder = Client::builder()
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            // Retries are the delivery policy's. reqwest's default resends
            // only HTTP/2 refusals (not built here), yet clones every
            // request in case it does; `never()` alone still clones (its
            // scope is checked at the retry), the 0 per request does not.
            .retry(reqwest::retry::never().max_retries_per_request(0))
            .dns_resolver(Arc::new(EgressResolver::new(
                Arc::clone(&self.policy),
                Arc::clone(&self.lookup),
                kind.exceptions,
            )))
            .user_agent(concat!("tocsin/", env!("CARGO_PKG_VERSION")))
            .pool_max_idle_per_host(self.config.pool_max_idle_per_host)
            .danger_accept_invalid_certs(!kind.verify);
        if kind.operator_tls {
            if !self.operator_tls.roots.is_empty() {
                // As Aodh's `verify=<bundle>`: trust the bundle only.
                builder = builder.tls_certs_only(self.operator_tls.roots.iter().cloned());
            }
            if let Some(identity) = &self.operator_tls.identity {
                builder = builder.identity(identity.clone());
            }
        }
        builder.build()
    }

    /// Builds, ahead of the first alarm, the clients that plugins' requests
    /// use unless a plugin switches verification off: for the built-in
    /// `http` notifier and for other plugins, to hosts granted by name or
    /// not. Building one loads the system's root certificates (~10 ms);
    /// left to the first request, that is the first alarm's delay, paid
    /// once per worker that sends one before the first build is done. A
    /// client that cannot be built is left to the first request, which
    /// reports why to its plugin.
    pub(crate) fn prepare(&self) {
        for operator_tls in [true, false] {
            for exceptions in [false, true] {
                let kind = ClientKind { operator_tls, verify: self.default_verify(operator_tls), exceptions };
                if let Err(error) = self.client(kind) {
                    tracing::warn!(
                        error = %error, operator_tls, exceptions,
                        "capability.http: Cannot build an HTTP client; its requests will try again and report why."
                    );
                }
            }
        }
    }

    /// Whether a request verifies certificates unless its plugin says
    /// otherwise: always, but for the operator's `rest_notifier_ssl_verify`
    /// on the built-in `http` notifier's.
    fn default_verify(&self, operator_tls: bool) -> bool {
        !operator_tls || self.config.rest_notifier_ssl_verify
    }

    fn client(&self, kind: ClientKind) -> Result<Client, HttpError> {
        let slot = &self.clients[kind.index()];
        if let Some(client) = slot.get() {
            return Ok(client.clone());
        }
        let client = self
            .build(kind)
            .map_err(|error| HttpError::Tls(format!("cannot build the HTTP client: {error}")))?;
        Ok(slot.get_or_init(|| client).clone())
    }
}

/// What one plugin may do over HTTP besides reaching its action's host.
#[derive(Debug, Clone, Default)]
pub struct HttpGrants {
    /// Extra hosts (see [`tocsin_core::hosts::host_key`]) the
    /// operator granted the plugin; the operator's address exceptions
    /// apply to these only.
    pub allowed_hosts: Vec<String>,
    /// Extra hosts the plugin's owner asked for when uploading it: the
    /// address policy applies to them without the operator's exceptions,
    /// so a tenant cannot reach what the operator opened for its own
    /// plugins.
    pub requested_hosts: Vec<String>,
    /// May the plugin switch TLS verification off for a request?
    pub allow_insecure_tls: bool,
    /// Use the operator's REST-notifier TLS settings: for the built-in
    /// `http` notifier only.
    pub operator_tls: bool,
    /// Sign requests to hosts the operator has webhook secrets for: for
    /// the built-in `http` notifier only (see [`super::signing`]).
    pub sign_deliveries: bool,
    /// The secrets its owner stored, filled into header placeholders for
    /// the hosts above (see [`super::secrets`]).
    pub secrets: SharedSecrets,
}

/// HTTP state of one call.
#[derive(Debug)]
pub(crate) struct CallHttp {
    /// Whose call it is, for the operator's log of refusals.
    identity: CallIdentity,
    capability: Arc<HttpCapability>,
    grants: Arc<HttpGrants>,
    /// The action URL; its host is granted, worked out at the first request
    /// (most calls, `log://` ones, make none).
    action: Box<str>,
    /// The delivery's id: `webhook-id` of signed requests.
    delivery_id: Box<str>,
    action_host: OnceLock<Option<String>>,
    deadline: Instant,
    max_requests: u32,
    max_request_body: u64,
    max_response_body: u64,
    /// Requests the plugin asked for in this call (refused ones included).
    pub requests: u32,
    /// Limits hit in this call (reported with the call's outcome).
    pub limits_hit: Vec<Limit>,
}

impl CallHttp {
    /// HTTP state for `identity`'s call delivering `delivery_id` to
    /// `action`; no request outlives `deadline`.
    pub fn new(
        identity: CallIdentity,
        capability: Arc<HttpCapability>,
        grants: Arc<HttpGrants>,
        action: &str,
        delivery_id: &str,
        limits: &Limits,
        deadline: Instant,
    ) -> Self {
        CallHttp {
            identity,
            capability,
            grants,
            action: action.into(),
            delivery_id: delivery_id.into(),
            action_host: OnceLock::new(),
            deadline,
            max_requests: limits.http_requests,
            max_request_body: limits.http_request_body_bytes,
            max_response_body: limits.http_response_body_bytes,
            requests: 0,
            limits_hit: Vec::new(),
        }
    }

    /// Ends the call: what it asked for and the limits it hit go to
    /// `report`.
    pub fn finish(&mut self, report: &mut CallReport) {
        report.http_requests = self.requests;
        report.limits_hit.append(&mut self.limits_hit);
    }

    fn hit(&mut self, limit: Limit) {
        if !self.limits_hit.contains(&limit) {
            self.limits_hit.push(limit);
        }
    }

    /// Checks the grant and the policy for one destination; returns
    /// whether the operator's exceptions apply (the host was granted to the
    /// plugin by name).
    fn check_destination(&self, url: &Url) -> Result<bool, HttpError> {
        if !matches!(url.scheme(), "http" | "https") {
            return Err(HttpError::InvalidRequest(format!("scheme {:?} is not http or https", url.scheme())));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(HttpError::InvalidRequest(
                "credentials in the URL are refused; send an authorization header".into(),
            ));
        }
        let Some(host) = url.host() else {
            return Err(HttpError::InvalidRequest("the URL has no host".into()));
        };
        let key = url_host_key(&host);
        let explicitly_granted = self.grants.allowed_hosts.contains(&key);
        let action_host = self.action_host.get_or_init(|| {
            // Most plugins call the action URL itself: then it is parsed already.
            if url.as_str() == &*self.action {
                return Some(key.clone());
            }
            Url::parse(&self.action).ok().and_then(|action| action.host().map(|host| url_host_key(&host)))
        });
        let requested = self.grants.requested_hosts.contains(&key);
        if !explicitly_granted && !requested && action_host.as_deref() != Some(key.as_str()) {
            return Err(HttpError::Denied(format!("host {key} is not granted to this plugin")));
        }
        let ip = match host {
            url::Host::Ipv4(ip) => Some(ip.into()),
            url::Host::Ipv6(ip) => Some(ip.into()),
            url::Host::Domain(_) => None,
        };
        if let Some(ip) = ip {
            self.capability.policy.check_ip(&key, ip, explicitly_granted).map_err(|denied| {
                self.log_refusal(&denied);
                HttpError::Denied(EGRESS_DENIAL.into())
            })?;
        }
        Ok(explicitly_granted)
    }

    /// Logs a refusal by the egress policy for the operator, with what
    /// was refused and why (at WARN, once a minute per plugin: see
    /// [`RefusalLog`]).
    fn log_refusal(&self, denied: &EgressDenied) {
        let (plugin, tenant) = (&*self.identity.plugin, self.identity.tenant.as_deref().unwrap_or(""));
        let (host, ip, class) = (denied.host.as_str(), denied.ip, denied.class.name());
        match self.capability.refusals.admit(&self.identity.plugin, Instant::now()) {
            Some(unwritten) => tracing::warn!(
                plugin, tenant, alarm_id = self.identity.alarm_id, host, %ip, class, outcome = "denied",
                unwritten,
                "capability.http: The egress policy refused a plugin's request (unwritten: this plugin's \
                 refusals since its last such line)."
            ),
            None => tracing::debug!(
                plugin, tenant, alarm_id = self.identity.alarm_id, host, %ip, class, outcome = "denied",
                "capability.http: The egress policy refused a plugin's request."
            ),
        }
    }

    /// Maps a reqwest failure to what the plugin is told, looking through
    /// the error's causes for a name that did not resolve or resolved to a
    /// refused address (logged, and told alike as [`NAME_UNREACHABLE`]),
    /// or a TLS failure.
    fn map_error(&self, error: reqwest::Error) -> HttpError {
        describe_failure(error, |unreachable| {
            match unreachable {
                Unreachable::Refused(denied) => self.log_refusal(denied),
                Unreachable::Unresolved(failed) => tracing::debug!(
                    plugin = &*self.identity.plugin, host = failed.host, error = %failed.source,
                    outcome = "unresolved", "capability.http: A plugin's host name does not resolve."
                ),
            }
            HttpError::Connect(NAME_UNREACHABLE.into())
        })
    }

    /// Counts one request (a redirect hop is one) against the per-call cap.
    fn count_request(&mut self) -> Result<(), HttpError> {
        if self.requests >= self.max_requests {
            self.hit(Limit::HttpRequests);
            return Err(HttpError::LimitExceeded(format!(
                "at most {} HTTP requests per call, redirects included",
                self.max_requests
            )));
        }
        self.requests += 1;
        Ok(())
    }

    async fn perform(&mut self, request: Request) -> Result<Response, HttpError> {
        self.count_request()?;
        if request.body.len() as u64 > self.max_request_body {
            self.hit(Limit::HttpRequestBody);
            return Err(HttpError::TooLarge(format!(
                "request body of {} bytes exceeds the limit of {} bytes",
                request.body.len(),
                self.max_request_body
            )));
        }
        if request.method.len() > MAX_METHOD_BYTES || request.url.len() > MAX_URL_BYTES {
            return Err(HttpError::InvalidRequest("method or URL too long".into()));
        }
        let config = &self.capability.config;
        let operator_tls = self.grants.operator_tls;
        let verify = request.options.verify_tls.unwrap_or(self.capability.default_verify(operator_tls));
        if request.options.verify_tls == Some(false) && !self.grants.allow_insecure_tls {
            return Err(HttpError::Denied("this plugin may not switch TLS verification off".into()));
        }
        // One timeout for the request and its redirects, never past the
        // call's deadline: the plugin gets `timeout`, not a killed call.
        let asked = request
            .options
            .timeout_ms
            .map_or(config.timeout_ms, |ms| u64::from(ms).min(config.max_timeout_ms));
        let left = self.deadline.saturating_duration_since(Instant::now()).saturating_sub(DEADLINE_MARGIN);
        let timeout = Duration::from_millis(asked).min(left);
        let method = Method::from_bytes(request.method.as_bytes())
            .map_err(|_| HttpError::InvalidRequest(format!("invalid method {:?}", request.method)))?;
        let url = Url::parse(&request.url)
            .map_err(|error| HttpError::InvalidRequest(format!("invalid URL: {error}")))?;
        let mut headers = parse_headers(&request.headers)?;
        let granted = url.host().is_some_and(|host| {
            let key = url_host_key(&host);
            self.grants.allowed_hosts.contains(&key) || self.grants.requested_hosts.contains(&key)
        });
        let filled = substitute(&mut headers, &self.grants.secrets.load(), &url, granted, MAX_HEADER_BYTES)?;
        let body = Bytes::from(request.body);
        if self.grants.sign_deliveries {
            self.sign(&url, &mut headers, &body);
        }
        let exchange = Exchange { method, url, headers, filled, body, operator_tls, verify };
        tokio::time::timeout(timeout, self.follow(exchange)).await.map_err(|_| HttpError::Timeout)?
    }

    /// Adds the Standard Webhooks headers when the operator has secrets for
    /// `url`'s host, replacing any the plugin set.
    fn sign(&self, url: &Url, headers: &mut HeaderMap, body: &[u8]) {
        let Some(secrets) = url.host().and_then(|host| self.capability.signing.get(&url_host_key(&host)))
        else {
            return;
        };
        let now = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(0, |since| since.as_secs());
        remove_signature(headers);
        let signed: Result<Vec<(&str, HeaderValue)>, _> =
            signature_headers(secrets, &self.delivery_id, now, body)
                .into_iter()
                .map(|(name, value)| HeaderValue::from_str(&value).map(|value| (name, value)))
                .collect();
        match signed {
            Ok(signed) => {
                for (name, value) in signed {
                    headers.insert(name, value);
                }
            }
            // A delivery id from the broker that is no header value: sent
            // unsigned, which the receiver refuses, rather than half-signed.
            Err(_) => tracing::warn!(
                delivery_id = %self.delivery_id.escape_debug(),
                "capability.http: The delivery id is not a valid header value; sent unsigned."
            ),
        }
    }

    /// Sends the request, then follows redirects as far as the operator
    /// allows, checking each hop as a new request.
    async fn follow(&mut self, mut exchange: Exchange) -> Result<Response, HttpError> {
        let capability = Arc::clone(&self.capability);
        let max_redirects = capability.config.max_redirects;
        let mut redirects = 0;
        loop {
            let exceptions = self.check_destination(&exchange.url)?;
            let kind =
                ClientKind { operator_tls: exchange.operator_tls, verify: exchange.verify, exceptions };
            let sent = capability
                .client(kind)?
                .request(exchange.method.clone(), exchange.url.clone())
                .headers(exchange.headers.clone())
                .body(exchange.body.clone());
            let response = self.exchange(sent).await?;
            let status = StatusCode::from_u16(response.status).unwrap_or(StatusCode::OK);
            let followable = matches!(response.status, 301 | 302 | 303 | 307 | 308);
            let location =
                response.headers.iter().find(|(name, _)| name == "location").map(|(_, v)| v.clone());
            let Some(location) = location.filter(|_| followable && redirects < max_redirects) else {
                return Ok(response);
            };
            redirects += 1;
            self.count_request()?;
            exchange.redirect(status, &location)?;
        }
    }

    /// Sends one request and reads the response, capping the body.
    async fn exchange(&mut self, request: reqwest::RequestBuilder) -> Result<Response, HttpError> {
        let mut response = request.send().await.map_err(|error| self.map_error(error))?;
        let too_large =
            |limit: u64| HttpError::TooLarge(format!("response body exceeds the limit of {limit} bytes"));
        if response.content_length().is_some_and(|len| len > self.max_response_body) {
            self.hit(Limit::HttpResponseBody);
            return Err(too_large(self.max_response_body));
        }
        let headers = response
            .headers()
            .iter()
            .map(|(name, value)| {
                (name.as_str().to_owned(), String::from_utf8_lossy(value.as_bytes()).into_owned())
            })
            .collect();
        let status = response.status().as_u16();
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|error| self.map_error(error))? {
            if (body.len() + chunk.len()) as u64 > self.max_response_body {
                self.hit(Limit::HttpResponseBody);
                return Err(too_large(self.max_response_body));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(Response { status, headers, body })
    }
}

/// One request being sent, and how it changes along redirects.
#[derive(Debug)]
struct Exchange {
    method: Method,
    url: Url,
    headers: HeaderMap,
    /// The headers a secret was filled into, checked again at every hop.
    filled: Vec<FilledHeader>,
    /// Shared, so sending it again after a redirect does not copy it.
    body: Bytes,
    operator_tls: bool,
    verify: bool,
}

impl Exchange {
    /// Moves the request to `location` as a client following a redirect
    /// with `status` does, but stricter: never from https to http; a
    /// header with a filled-in secret only where the secret's URL prefix
    /// still covers the new URL (the same origin, another path: checked
    /// again); to another origin only the headers of
    /// [`CROSS_ORIGIN_HEADERS`] that carry no secret, without the
    /// operator's client certificate and with verification back on.
    fn redirect(&mut self, status: StatusCode, location: &str) -> Result<(), HttpError> {
        let next = self
            .url
            .join(location)
            .map_err(|error| HttpError::InvalidRequest(format!("invalid redirect location: {error}")))?;
        if self.url.scheme() == "https" && next.scheme() != "https" {
            return Err(HttpError::Denied(format!("redirect from https to {} refused", next.scheme())));
        }
        let (kept, leaving): (Vec<_>, Vec<_>) =
            std::mem::take(&mut self.filled).into_iter().partition(|header| header.may_go_to(&next));
        for header in leaving {
            self.headers.remove(&header.name);
            tracing::debug!(
                header = %header.name,
                "capability.http: A redirect leaves the URLs a secret is for; its header is not sent on."
            );
        }
        self.filled = kept;
        if next.origin() != self.url.origin() {
            let kept: HeaderMap = std::mem::take(&mut self.headers)
                .into_iter()
                .filter_map(|(name, value)| Some((name?, value)))
                .filter(|(name, value)| {
                    CROSS_ORIGIN_HEADERS.contains(&name.as_str()) && !value.is_sensitive()
                })
                .collect();
            self.headers = kept;
            self.operator_tls = false;
            self.verify = true;
        }
        if status == StatusCode::SEE_OTHER
            || (matches!(status, StatusCode::MOVED_PERMANENTLY | StatusCode::FOUND)
                && self.method == Method::POST)
        {
            self.method = Method::GET;
            self.body = Bytes::new();
            self.headers.remove(CONTENT_TYPE);
            // The signature covered the body that is no longer sent.
            remove_signature(&mut self.headers);
        }
        self.url = next;
        Ok(())
    }
}

/// The interface of `tocsin:notifier` this capability serves.
pub(crate) const INTERFACE: &str = "http";

/// Links `http` into `linker`, with each call's state found by `state`.
///
/// # Errors
/// Only if it is linked twice: a bug.
pub(crate) fn add_to_linker<T: Send + 'static>(
    linker: &mut Linker<T>,
    state: fn(&mut T) -> &mut CallHttp,
) -> wasmtime::Result<()> {
    struct Data;
    impl HasData for Data {
        type Data<'a> = &'a mut CallHttp;
    }
    contract::add_to_linker::<T, Data>(linker, state)
}

impl Host for CallHttp {
    async fn send(&mut self, request: Request) -> wasmtime::Result<Result<Response, HttpError>> {
        let result = self.perform(request).await;
        if let Err(error) = &result {
            tracing::debug!(error = %error, "capability.http: Request failed.");
        }
        Ok(result)
    }
}

/// Removes the Standard Webhooks headers: whatever a plugin set, or a
/// signature the request no longer matches.
fn remove_signature(headers: &mut HeaderMap) {
    for name in SIGNATURE_HEADERS {
        headers.remove(name);
    }
}

fn parse_headers(headers: &[(String, String)]) -> Result<HeaderMap, HttpError> {
    let bytes: usize = headers.iter().map(|(name, value)| name.len() + value.len()).sum();
    if headers.len() > MAX_HEADERS || bytes > MAX_HEADER_BYTES {
        return Err(HttpError::TooLarge(format!(
            "at most {MAX_HEADERS} headers and {MAX_HEADER_BYTES} header bytes per request"
        )));
    }
    let mut map = HeaderMap::with_capacity(headers.len());
    for (name, value) in headers {
        let name = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| HttpError::InvalidRequest("invalid header name".into()))?;
        if FORBIDDEN_HEADERS.contains(&name.as_str()) {
            return Err(HttpError::InvalidRequest(format!(
                "header {name} is set by the host, not by plugins"
            )));
        }
        let value = HeaderValue::from_str(value)
            .map_err(|_| HttpError::InvalidRequest(format!("invalid value for header {name}")))?;
        map.append(name, value);
    }
    Ok(map)
}

/// Why a name could not be reached.
enum Unreachable<'a> {
    /// It resolved to an address the policy refuses.
    Refused(&'a EgressDenied),
    /// It did not resolve.
    Unresolved(&'a LookupFailed),
}

/// Maps a reqwest failure to what the plugin is told, looking through the
/// error's causes for a TLS failure or a name that could not be reached,
/// which `unreachable` answers.
fn describe_failure(
    error: reqwest::Error,
    unreachable: impl FnOnce(Unreachable<'_>) -> HttpError,
) -> HttpError {
    // The URL may hold secrets (a token in the query): never repeat it.
    let error = error.without_url();
    let mut detail = error.to_string();
    let mut source = std::error::Error::source(&error);
    let mut tls = false;
    while let Some(cause) = source {
        if let Some(refusal) = cause.downcast_ref::<EgressDenied>() {
            return unreachable(Unreachable::Refused(refusal));
        }
        if let Some(failed) = cause.downcast_ref::<LookupFailed>() {
            return unreachable(Unreachable::Unresolved(failed));
        }
        tls |= is_tls_failure(cause);
        detail.push_str(": ");
        detail.push_str(&cause.to_string());
        source = cause.source();
    }
    if error.is_timeout() {
        HttpError::Timeout
    } else if tls {
        HttpError::Tls(detail)
    } else if error.is_builder() {
        HttpError::InvalidRequest(detail)
    } else {
        HttpError::Connect(detail)
    }
}

/// Whether `cause` is a rustls error, possibly wrapped in (nested)
/// `io::Error`s, whose `source()` skips the error they wrap.
fn is_tls_failure(cause: &(dyn std::error::Error + 'static)) -> bool {
    let mut current = cause;
    loop {
        if current.is::<rustls::Error>() {
            return true;
        }
        match current.downcast_ref::<std::io::Error>().and_then(std::io::Error::get_ref) {
            Some(inner) => current = inner,
            None => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routing_and_framing_headers_are_refused() {
        for name in ["Host", "transfer-encoding", "Content-Length", "proxy-authorization"] {
            let headers = [(name.to_owned(), "x".to_owned())];
            assert!(matches!(parse_headers(&headers), Err(HttpError::InvalidRequest(_))), "{name}");
        }
        let headers = [("authorization".to_owned(), "Basic eA==".to_owned())];
        assert_eq!(parse_headers(&headers).unwrap().len(), 1);
    }

    #[test]
    fn tls_failures_are_found_inside_nested_io_errors() {
        let rustls_error = rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer);
        let nested =
            std::io::Error::other(std::io::Error::new(std::io::ErrorKind::InvalidData, rustls_error));
        assert!(is_tls_failure(&nested));
        assert!(!is_tls_failure(&std::io::Error::other("connection reset")));
    }

    #[test]
    fn prepare_builds_the_clients_of_unmodified_requests_ahead_of_them() {
        // The operator switched verification off for the REST notifier.
        let config = HttpConfig { rest_notifier_ssl_verify: false, ..HttpConfig::default() };
        let policy = Arc::new(EgressPolicy::new(Vec::new(), Vec::<String>::new()));
        let capability =
            HttpCapability::new(&config, policy, Arc::new(crate::capabilities::egress::SystemLookup))
                .unwrap();
        assert!(capability.clients.iter().all(|slot| slot.get().is_none()));
        capability.prepare();
        let kind = |operator_tls, verify, exceptions| ClientKind { operator_tls, verify, exceptions }.index();
        let mut expected = vec![
            kind(true, false, false),
            kind(true, false, true),
            kind(false, true, false),
            kind(false, true, true),
        ];
        expected.sort_unstable();
        let built: Vec<usize> = (0..8).filter(|index| capability.clients[*index].get().is_some()).collect();
        assert_eq!(built, expected);
    }

    #[test]
    fn every_client_kind_has_its_own_slot() {
        let mut seen = std::collections::HashSet::new();
        for bits in 0..8u8 {
            let kind =
                ClientKind { operator_tls: bits & 4 != 0, verify: bits & 2 != 0, exceptions: bits & 1 != 0 };
            assert!(seen.insert(kind.index()));
            assert!(kind.index() < 8);
        }
    }
}
