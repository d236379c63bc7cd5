//! The `http` capability: the host performs a plugin's HTTP request with
//! reqwest, behind the grant check and the egress policy.
//!
//! Order of checks for each request (and each redirect hop): request
//! count, body size, URL shape, host grant (the action URL's host or one
//! the plugin was granted), address policy, TLS option. A refusal is an
//! `http-error` value the plugin receives, never a trap. Environment
//! proxies are ignored; redirects are followed only when the operator sets
//! `http.max_redirects`.

use std::sync::Arc;
use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderName, HeaderValue, LOCATION};
use reqwest::{Client, Method, StatusCode, Url};

use crate::capabilities::egress::{EgressDenied, EgressPolicy, EgressResolver, normalize_host};
use crate::config::HttpConfig;
use crate::sandbox::bindings::tocsin::notifier::http::{Host, HttpError, Request, Response};
use crate::sandbox::limits::{Limit, Limits};

/// Why the HTTP clients could not be built.
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

/// The process-wide HTTP machinery shared by every call: two connection
/// pools (certificate verification on and off) and the policy.
#[derive(Debug)]
pub struct HttpCapability {
    verified: Client,
    unverified: Client,
    policy: Arc<EgressPolicy>,
    config: HttpConfig,
}

impl HttpCapability {
    /// Builds the clients from the operator's configuration.
    ///
    /// # Errors
    /// [`HttpSetupError`] when TLS files are unreadable or invalid.
    pub fn new(config: &HttpConfig, policy: Arc<EgressPolicy>) -> Result<Self, HttpSetupError> {
        let read = |path: &std::path::Path| {
            std::fs::read(path)
                .map_err(|source| HttpSetupError::Read { path: path.display().to_string(), source })
        };
        let mut roots = Vec::new();
        if let Some(path) = &config.rest_notifier_ca_bundle_certificate_path {
            roots = reqwest::Certificate::from_pem_bundle(&read(path)?)?;
        }
        let identity = match (&config.rest_notifier_certificate_file, &config.rest_notifier_certificate_key) {
            (Some(cert), Some(key)) => {
                let mut pem = read(cert)?;
                pem.push(b'\n');
                pem.extend(read(key)?);
                Some(reqwest::Identity::from_pem(&pem)?)
            }
            _ => None,
        };
        let build = |verify: bool| -> Result<Client, reqwest::Error> {
            let mut builder = Client::builder()
                .no_proxy()
                .redirect(reqwest::redirect::Policy::none())
                .dns_resolver(Arc::new(EgressResolver::new(Arc::clone(&policy))))
                .user_agent(concat!("tocsin/", env!("CARGO_PKG_VERSION")))
                .danger_accept_invalid_certs(!verify);
            for root in &roots {
                builder = builder.add_root_certificate(root.clone());
            }
            if let Some(identity) = &identity {
                builder = builder.identity(identity.clone());
            }
            builder.build()
        };
        Ok(HttpCapability {
            verified: build(true)?,
            unverified: build(false)?,
            policy,
            config: config.clone(),
        })
    }
}

/// What one plugin may do over HTTP besides reaching its action's host.
#[derive(Debug, Clone, Default)]
pub struct HttpGrants {
    /// Extra host names (normalized) the plugin may call.
    pub allowed_hosts: Vec<String>,
    /// May the plugin switch TLS verification off for a request?
    pub allow_insecure_tls: bool,
}

/// HTTP state of one call.
#[derive(Debug)]
pub struct CallHttp {
    capability: Arc<HttpCapability>,
    grants: Arc<HttpGrants>,
    action_host: Option<String>,
    max_requests: u32,
    max_request_body: u64,
    max_response_body: u64,
    /// Requests sent in this call.
    pub requests: u32,
    /// Limits hit in this call (reported with the call's outcome).
    pub limits_hit: Vec<Limit>,
}

impl CallHttp {
    /// HTTP state for one call delivering to `action`.
    pub fn new(
        capability: Arc<HttpCapability>,
        grants: Arc<HttpGrants>,
        action: &str,
        limits: &Limits,
    ) -> Self {
        let action_host = Url::parse(action).ok().and_then(|url| url.host_str().map(normalize_host));
        CallHttp {
            capability,
            grants,
            action_host,
            max_requests: limits.http_requests,
            max_request_body: limits.http_request_body_bytes,
            max_response_body: limits.http_response_body_bytes,
            requests: 0,
            limits_hit: Vec::new(),
        }
    }

    fn hit(&mut self, limit: Limit) {
        if !self.limits_hit.contains(&limit) {
            self.limits_hit.push(limit);
        }
    }

    /// Checks the grant and the policy for one destination.
    fn check_destination(&self, url: &Url) -> Result<(), HttpError> {
        if !matches!(url.scheme(), "http" | "https") {
            return Err(HttpError::InvalidRequest(format!("scheme {:?} is not http or https", url.scheme())));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(HttpError::InvalidRequest(
                "credentials in the URL are refused; send an authorization header".into(),
            ));
        }
        let host = match url.host() {
            Some(host) => host,
            None => return Err(HttpError::InvalidRequest("the URL has no host".into())),
        };
        let name = normalize_host(&host.to_string());
        let bare = name.trim_start_matches('[').trim_end_matches(']');
        let granted = self.action_host.as_deref() == Some(name.as_str())
            || self.grants.allowed_hosts.iter().any(|allowed| allowed == &name || allowed == bare);
        if !granted {
            return Err(HttpError::Denied(format!("host {name} is not granted to this plugin")));
        }
        let ip = match host {
            url::Host::Ipv4(ip) => Some(ip.into()),
            url::Host::Ipv6(ip) => Some(ip.into()),
            url::Host::Domain(_) => None,
        };
        if let Some(ip) = ip {
            self.capability
                .policy
                .check_ip(&name, ip)
                .map_err(|denied| HttpError::Denied(denied.to_string()))?;
        }
        Ok(())
    }

    async fn perform(&mut self, request: Request) -> Result<Response, HttpError> {
        let capability = Arc::clone(&self.capability);
        let config = &capability.config;
        if request.body.len() as u64 > self.max_request_body {
            self.hit(Limit::HttpRequestBody);
            return Err(HttpError::TooLarge(format!(
                "request body of {} bytes exceeds the limit of {} bytes",
                request.body.len(),
                self.max_request_body
            )));
        }
        let verify = request.options.verify_tls.unwrap_or(config.rest_notifier_ssl_verify);
        if request.options.verify_tls == Some(false) && !self.grants.allow_insecure_tls {
            return Err(HttpError::Denied("this plugin may not switch TLS verification off".into()));
        }
        let timeout = Duration::from_millis(
            request
                .options
                .timeout_ms
                .map_or(config.timeout_ms, |ms| u64::from(ms).min(config.max_timeout_ms)),
        );
        let mut method = Method::from_bytes(request.method.as_bytes())
            .map_err(|_| HttpError::InvalidRequest(format!("invalid method {:?}", request.method)))?;
        let mut url = Url::parse(&request.url)
            .map_err(|error| HttpError::InvalidRequest(format!("invalid URL: {error}")))?;
        let headers = parse_headers(&request.headers)?;
        let mut body = request.body;
        let client = if verify { &capability.verified } else { &capability.unverified };
        let mut redirects = 0;
        loop {
            if self.requests >= self.max_requests {
                self.hit(Limit::HttpRequests);
                return Err(HttpError::LimitExceeded(format!(
                    "at most {} HTTP requests per call",
                    self.max_requests
                )));
            }
            self.check_destination(&url)?;
            self.requests += 1;
            let sent =
                client.request(method.clone(), url.clone()).headers(headers.clone()).body(body.clone());
            let response = tokio::time::timeout(timeout, self.exchange(sent))
                .await
                .map_err(|_| HttpError::Timeout)??;
            let location =
                response.headers.iter().find(|(name, _)| name == LOCATION.as_str()).map(|(_, v)| v.clone());
            let status = StatusCode::from_u16(response.status).unwrap_or(StatusCode::OK);
            match location {
                Some(location) if status.is_redirection() && redirects < config.max_redirects => {
                    redirects += 1;
                    url = url.join(&location).map_err(|error| {
                        HttpError::InvalidRequest(format!("invalid redirect location: {error}"))
                    })?;
                    if status == StatusCode::SEE_OTHER
                        || (matches!(status, StatusCode::MOVED_PERMANENTLY | StatusCode::FOUND)
                            && method == Method::POST)
                    {
                        method = Method::GET;
                        body = Vec::new();
                    }
                }
                _ => return Ok(response),
            }
        }
    }

    /// Sends one request and reads the response, capping the body.
    async fn exchange(&mut self, request: reqwest::RequestBuilder) -> Result<Response, HttpError> {
        let mut response = request.send().await.map_err(map_error)?;
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
        while let Some(chunk) = response.chunk().await.map_err(map_error)? {
            if (body.len() + chunk.len()) as u64 > self.max_response_body {
                self.hit(Limit::HttpResponseBody);
                return Err(too_large(self.max_response_body));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(Response { status, headers, body })
    }
}

impl Host for CallHttp {
    async fn send(&mut self, request: Request) -> wasmtime::Result<Result<Response, HttpError>> {
        let method = request.method.clone();
        let result = self.perform(request).await;
        if let Err(error) = &result {
            tracing::debug!(method, error = %error, "capability.http: request failed.");
        }
        Ok(result)
    }
}

fn parse_headers(headers: &[(String, String)]) -> Result<HeaderMap, HttpError> {
    let mut map = HeaderMap::with_capacity(headers.len());
    for (name, value) in headers {
        let name = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| HttpError::InvalidRequest(format!("invalid header name {name:?}")))?;
        let value = HeaderValue::from_str(value)
            .map_err(|_| HttpError::InvalidRequest(format!("invalid value for header {name}")))?;
        map.append(name, value);
    }
    Ok(map)
}

/// Maps a reqwest failure to what the plugin is told, looking through the
/// error's causes for a policy refusal or a TLS failure.
fn map_error(error: reqwest::Error) -> HttpError {
    let mut detail = error.to_string();
    let mut source = std::error::Error::source(&error);
    let mut tls = false;
    while let Some(cause) = source {
        if let Some(denied) = cause.downcast_ref::<EgressDenied>() {
            return HttpError::Denied(denied.to_string());
        }
        let io_inner = cause.downcast_ref::<std::io::Error>().and_then(|io| io.get_ref());
        tls |= cause.is::<rustls::Error>() || io_inner.is_some_and(|inner| inner.is::<rustls::Error>());
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
