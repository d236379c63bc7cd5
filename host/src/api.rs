//! The HTTP endpoint of `tocsin serve`: liveness, readiness and
//! Prometheus metrics, on a local address (`api.listen`).

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use serde_json::json;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::intake::Status;
use crate::metrics::Metrics;

/// The OpenMetrics text content type prometheus-client writes.
const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// What the endpoints read.
#[derive(Debug, Clone)]
pub struct ApiState {
    /// The service's metrics.
    pub metrics: Arc<Metrics>,
    /// The intake's connection state.
    pub status: Arc<Status>,
}

/// The routes.
pub fn router(state: ApiState) -> Router {
    Router::new()
        .route("/healthz", get(|| async { axum::Json(json!({"status": "ok"})) }))
        .route("/readyz", get(ready))
        .route("/metrics", get(metrics))
        .with_state(state)
}

/// Serves until `shutdown` is cancelled.
///
/// # Errors
/// The listener failed.
pub async fn serve(
    listener: TcpListener,
    state: ApiState,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    axum::serve(listener, router(state)).with_graceful_shutdown(shutdown.cancelled_owned()).await
}

/// Ready when connected to the broker with the consumers running (the
/// built-in notifiers are loaded before the intake starts).
async fn ready(State(state): State<ApiState>) -> impl IntoResponse {
    if state.status.is_consuming() {
        (StatusCode::OK, axum::Json(json!({"status": "ready", "broker": "connected", "notifiers": "loaded"})))
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(json!({"status": "not ready", "broker": "not consuming", "notifiers": "loaded"})),
        )
    }
}

async fn metrics(State(state): State<ApiState>) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, OPENMETRICS)], state.metrics.encode())
}
