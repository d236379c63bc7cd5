//! Per-caller request limits of the notifier API: a rate
//! (`api.requests_per_minute`, `api.request_burst` at once) and requests
//! being answered at once (`api.requests_at_once`), for each caller a
//! token identifies (each tenant, the operator; per Keystone project once
//! callers are projects).
//!
//! Past either, the answer is 429 at once, with `Retry-After`, before the
//! handler runs: one tenant's storm costs the host a token's hash and a
//! counter per request, and never a place another tenant needs. Who was
//! identified goes on with the request ([`auth::Identified`]); requests
//! without a valid token are left to the handlers, which refuse them.
//! Refusals are counted (`tocsin_api_refusals_total`), not logged one by
//! one, so a storm does not flood the operator's log either.

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::error::ApiError;
use super::{AppState, auth};
use crate::throttle::Refusal;

/// Admits `request` within its caller's limits, or answers 429.
pub(crate) async fn admit(State(state): State<AppState>, mut request: Request, next: Next) -> Response {
    let identified = auth::Identified::of(request.headers(), &state.callers);
    let caller = identified.0.clone();
    request.extensions_mut().insert(identified);
    let Some(caller) = caller else {
        return next.run(request).await;
    };
    let tenant = caller.tenant();
    match state.requests.admit(tenant.unwrap_or_default()) {
        Ok(_answering) => next.run(request).await,
        Err(refusal) => {
            let (reason, error) = match refusal {
                Refusal::Rate { retry_after } => ("rate", ApiError::RateLimited { retry_after }),
                Refusal::Full { held } | Refusal::KeyFull { held } => ("at_once", ApiError::Busy(held)),
            };
            state.metrics.api_refusal(tenant, reason);
            error.into_response()
        }
    }
}
