//! The HTTP API of `tocsin serve` (`api.listen`): liveness and readiness
//! for everyone; Prometheus metrics for holders of the metrics token, or
//! without the series that name tenants for everyone when there is none;
//! the notifier API under `/v1` for holders of a token ([`auth`]), with
//! errors as JSON ([`error`]).

pub mod auth;
pub mod error;
mod limits;
pub mod notifiers;
pub mod tls;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use axum::Router;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum_server::tls_rustls::RustlsConfig;
use serde::{Deserialize, Serialize};
use serde_json::json;
use tocsin_core::tenancy::{TenantConfig, TokenHash};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use self::error::ApiError;
use crate::intake::Status;
use crate::metrics::{Metrics, View};
use crate::registry::catalog::Catalog;
use crate::throttle::{Rate, Throttle, ThrottleLimits};

/// The OpenAPI document of these routes, served at `/v1/openapi.json`.
pub(crate) const OPENAPI: &str = include_str!("openapi.json");

/// The OpenMetrics text content type prometheus-client writes.
const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The HTTP API of `tocsin serve`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ApiConfig {
    /// Address of the API (`/healthz`, `/readyz`, `/metrics`, `/v1/…`).
    pub listen: SocketAddr,
    /// SHA-256 (hex) of the operator's bearer token: it may manage every
    /// notifier. None: no operator access through the API.
    pub operator_token_sha256: Option<TokenHash>,
    /// SHA-256 (hex) of the token `/metrics` asks for (Prometheus's
    /// `authorization` credentials); the operator's token serves too. None:
    /// `/metrics` answers everyone, without the series that name tenants,
    /// and the operator's token gets them all.
    pub metrics_token_sha256: Option<TokenHash>,
    /// PEM certificate chain (leaf first) of the API over TLS; with
    /// `tls_key_file`. None: plain HTTP, which tokens and secrets cross in
    /// clear text (logged as a warning unless `listen` is loopback).
    pub tls_cert_file: Option<PathBuf>,
    /// PEM private key of `tls_cert_file`.
    pub tls_key_file: Option<PathBuf>,
    /// Requests to `/v1` a minute, per caller (a tenant, the operator);
    /// past it and the burst, 429 `rate_limited` with `Retry-After`.
    pub requests_per_minute: u32,
    /// Requests per caller before the rate applies.
    pub request_burst: u32,
    /// Requests per caller being answered at once; past it, 429 `busy`.
    pub requests_at_once: u32,
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            operator_token_sha256: None,
            metrics_token_sha256: None,
            tls_cert_file: None,
            tls_key_file: None,
            requests_per_minute: 600,
            request_burst: 100,
            requests_at_once: 8,
        }
    }
}

impl ApiConfig {
    /// Checks the section's own rules.
    ///
    /// # Errors
    /// What is wrong, naming the option.
    pub fn validate(&self) -> Result<(), String> {
        if self.requests_per_minute == 0 || self.request_burst == 0 || self.requests_at_once == 0 {
            return Err(
                "api.requests_per_minute, api.request_burst and api.requests_at_once must be at least 1"
                    .into(),
            );
        }
        match (&self.tls_cert_file, &self.tls_key_file) {
            (Some(_), None) => Err("api.tls_cert_file is set without api.tls_key_file".into()),
            (None, Some(_)) => Err("api.tls_key_file is set without api.tls_cert_file".into()),
            _ => Ok(()),
        }
    }

    /// The limits of each caller's requests.
    pub fn request_limits(&self) -> ThrottleLimits {
        ThrottleLimits {
            rate: Some(Rate { per_minute: self.requests_per_minute, burst: self.request_burst }),
            // Callers are bounded by the configuration; each holds its own.
            places: usize::MAX,
            places_per_key: usize::try_from(self.requests_at_once).unwrap_or(usize::MAX),
        }
    }

    /// The TLS server configuration, when the API speaks TLS.
    ///
    /// # Errors
    /// [`tls::TlsSetupError`] when the files are unusable.
    pub fn tls(&self) -> Result<Option<Arc<rustls::ServerConfig>>, tls::TlsSetupError> {
        match (&self.tls_cert_file, &self.tls_key_file) {
            (Some(cert), Some(key)) => tls::server_config(cert, key).map(Some),
            _ => Ok(None),
        }
    }
}

/// Who may call the API: the hashes of the operator's and the tenants'
/// tokens.
#[derive(Debug, Clone, Default)]
pub struct Callers {
    /// The operator's (`api.operator_token_sha256`); none: no operator
    /// access through the API.
    pub operator: Option<TokenHash>,
    /// The metrics scraper's (`api.metrics_token_sha256`); none:
    /// `/metrics` is public, without tenants' series.
    pub metrics: Option<TokenHash>,
    /// The tenants, by name.
    pub tenants: BTreeMap<String, TenantConfig>,
}

/// What the endpoints read and change.
#[derive(Debug, Clone)]
pub struct AppState {
    /// This host's name (`intake.host`), in every answer.
    pub host: Arc<str>,
    /// Who may call.
    pub callers: Arc<Callers>,
    /// The service's metrics.
    pub metrics: Arc<Metrics>,
    /// The intake's connection state.
    pub status: Arc<Status>,
    /// The uploaded notifiers.
    pub catalog: Arc<Catalog>,
    /// Each caller's request rate and requests at once.
    pub requests: Arc<Throttle>,
}

/// The routes.
pub fn router(state: AppState) -> Router {
    // Uploads are read and capped by the handler itself.
    let uploads = DefaultBodyLimit::disable();
    let notifiers = Router::new()
        .route("/v1/notifiers", get(notifiers::list))
        .route(
            "/v1/notifiers/{scheme}",
            get(notifiers::show).put(notifiers::upload).layer(uploads).delete(notifiers::delete),
        )
        .route("/v1/notifiers/{scheme}/activate", post(notifiers::activate))
        .route("/v1/notifiers/{scheme}/logs", get(notifiers::logs))
        .route("/v1/notifiers/{scheme}/dry-run", post(notifiers::dry_run))
        .route("/v1/notifiers/{scheme}/secrets", get(notifiers::secrets))
        .route(
            "/v1/notifiers/{scheme}/secrets/{name}",
            axum::routing::put(notifiers::put_secret).delete(notifiers::delete_secret),
        )
        .route_layer(axum::middleware::from_fn_with_state(state.clone(), limits::admit));
    Router::new()
        .route("/healthz", get(|| async { axum::Json(json!({"status": "ok"})) }))
        .route("/readyz", get(ready))
        .route("/metrics", get(metrics))
        .route("/v1/openapi.json", get(|| async { ([(header::CONTENT_TYPE, "application/json")], OPENAPI) }))
        .merge(notifiers)
        .with_state(state)
}

/// Serves on `listener`, over TLS with `tls`, until `shutdown` is
/// cancelled; then lets the requests in flight finish.
///
/// # Errors
/// The listener failed.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    tls: Option<Arc<rustls::ServerConfig>>,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let Some(tls) = tls else {
        return axum::serve(listener, router(state)).with_graceful_shutdown(shutdown.cancelled_owned()).await;
    };
    let handle = axum_server::Handle::new();
    tokio::spawn({
        let handle = handle.clone();
        async move {
            shutdown.cancelled().await;
            handle.graceful_shutdown(None);
        }
    });
    axum_server::from_tcp_rustls(listener.into_std()?, RustlsConfig::from_config(tls))?
        .handle(handle)
        .serve(router(state).into_make_service())
        .await
}

/// Ready when connected to the broker with the consumers running (the
/// built-in notifiers are loaded before the intake starts).
async fn ready(State(state): State<AppState>) -> impl IntoResponse {
    if state.status.is_consuming() {
        (StatusCode::OK, axum::Json(json!({"status": "ready", "broker": "connected", "notifiers": "loaded"})))
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(json!({"status": "not ready", "broker": "not consuming", "notifiers": "loaded"})),
        )
    }
}

/// The metrics: all of them for the metrics or the operator's token; for
/// anyone else, none that name a tenant, or nothing when a metrics token is
/// configured.
async fn metrics(State(state): State<AppState>, headers: HeaderMap) -> Result<impl IntoResponse, ApiError> {
    let presented = auth::bearer(&headers).map(TokenHash::of);
    let callers = &state.callers;
    let holds = |hash: Option<&TokenHash>| {
        presented.zip(hash).is_some_and(|(presented, hash)| hash.matches(&presented))
    };
    // Both compared, whatever the first says: the time taken tells nothing.
    let (scraper, operator) = (holds(callers.metrics.as_ref()), holds(callers.operator.as_ref()));
    let view = if scraper | operator {
        View::Whole
    } else if callers.metrics.is_some() {
        return Err(ApiError::Unauthenticated);
    } else {
        View::Public
    };
    Ok(([(header::CONTENT_TYPE, OPENMETRICS)], state.metrics.encode(view)))
}
