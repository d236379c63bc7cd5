//! `/v1/notifiers`: tenants and the operator upload, list, read, activate
//! and delete notifiers, and read their logs. Every route needs a bearer
//! token ([`Caller`]); a tenant sees only its own notifiers (another's
//! answers 404, as a missing one does).

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use futures_util::StreamExt as _;
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Value, json};
use tocsin_contract::json::{PythonJson, opens_object};
use tocsin_core::alarm::Alarm;
use tocsin_core::caps::{MAX_DRY_RUN_BYTES, UPLOAD_BODY_TIME};
use tocsin_core::limits::LimitOverrides;
use tocsin_core::tenancy::Caller;

use super::AppState;
use super::error::ApiError;
use crate::registry::catalog::{CatalogError, UploadRequest};

/// `GET /v1/notifiers`.
pub async fn list(State(state): State<AppState>, caller: Caller) -> Result<impl IntoResponse, ApiError> {
    let notifiers = state.catalog.list(&caller).await?;
    Ok(Json(json!({"host": state.host, "notifiers": notifiers})))
}

/// `GET /v1/notifiers/{scheme}`: the notifier, its versions, and its
/// delivery outcomes counted on the host that answers.
pub async fn show(
    State(state): State<AppState>,
    caller: Caller,
    Path(scheme): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    let notifier = state.catalog.show(&caller, &scheme).await?;
    let deliveries = state.metrics.delivery_counts(&scheme, notifier.row.tenant.as_deref());
    Ok(Json(json!({"host": state.host, "notifier": notifier, "deliveries": deliveries})))
}

/// `PUT /v1/notifiers/{scheme}`: the component as the raw body; query
/// `allow_hosts=a.example,b.example` and any limit by name
/// (`fuel=50000000`, `memory_bytes=…`).
pub async fn upload(
    State(state): State<AppState>,
    caller: Caller,
    Path(scheme): Path<String>,
    Query(query): Query<BTreeMap<String, String>>,
    body: Body,
) -> Result<impl IntoResponse, ApiError> {
    let request = upload_request(query)?;
    let max = state.catalog.max_component_bytes();
    // The caller's rate and a place in the compile queue before the body is
    // read: a storm of uploads is answered without holding their bodies.
    let permit = state.catalog.admit_upload(&caller)?;
    let component =
        tokio::time::timeout(UPLOAD_BODY_TIME, read_component(body, max)).await.map_err(|_| {
            ApiError::BadRequest(format!("the body did not arrive within {} s", UPLOAD_BODY_TIME.as_secs()))
        })??;
    let version = state.catalog.upload(permit, &caller, &scheme, &component, request).await?;
    let notifier = state.catalog.show(&caller, &scheme).await?;
    Ok((StatusCode::CREATED, Json(json!({"host": state.host, "version": version, "notifier": notifier}))))
}

/// `DELETE /v1/notifiers/{scheme}`.
pub async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    Path(scheme): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    state.catalog.delete(&caller, &scheme).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The body of `POST /v1/notifiers/{scheme}/activate`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Activate {
    /// The version to make active.
    pub version: i64,
}

/// `POST /v1/notifiers/{scheme}/activate` with `{"version": n}` (JSON,
/// whatever the content type says).
pub async fn activate(
    State(state): State<AppState>,
    caller: Caller,
    Path(scheme): Path<String>,
    body: Bytes,
) -> Result<impl IntoResponse, ApiError> {
    let Activate { version } = serde_json::from_slice(&body)
        .map_err(|e| ApiError::BadRequest(format!("expected {{\"version\": <number>}}: {e}")))?;
    let notifier = state.catalog.activate(&caller, &scheme, version).await?;
    Ok(Json(json!({"host": state.host, "notifier": notifier})))
}

/// `GET /v1/notifiers/{scheme}/logs`: the recent lines its plugin logged
/// on the host that answers.
pub async fn logs(
    State(state): State<AppState>,
    caller: Caller,
    Path(scheme): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    let lines =
        state.catalog.plugin(&caller, &scheme).await?.map(|plugin| plugin.recent_logs()).unwrap_or_default();
    Ok(Json(json!({"host": state.host, "scheme": scheme, "lines": lines})))
}

/// `GET /v1/notifiers/{scheme}/secrets`: names and times, never values.
pub async fn secrets(
    State(state): State<AppState>,
    caller: Caller,
    Path(scheme): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    let secrets = state.catalog.secret_names(&caller, &scheme).await?;
    Ok(Json(json!({"scheme": scheme, "secrets": secrets})))
}

/// The query of `PUT /v1/notifiers/{scheme}/secrets/{name}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SecretFor {
    /// The URL prefix the secret is for (`https://host[:port]/path`).
    pub url: String,
}

/// `PUT /v1/notifiers/{scheme}/secrets/{name}?url=PREFIX`: the value as the
/// raw body, filled in only for requests to URLs under `PREFIX`.
pub(crate) async fn put_secret(
    State(state): State<AppState>,
    caller: Caller,
    Path((scheme, name)): Path<(String, String)>,
    query: Result<Query<SecretFor>, axum::extract::rejection::QueryRejection>,
    body: Bytes,
) -> Result<impl IntoResponse, ApiError> {
    let Query(SecretFor { url }) = query.map_err(|_| {
        ApiError::BadRequest("a secret is stored for a URL prefix: ?url=https://host[:port]/path".into())
    })?;
    let value = String::from_utf8(body.to_vec())
        .map_err(|_| ApiError::BadRequest("a secret is text (visible ASCII)".into()))?;
    state
        .catalog
        .put_secret(&caller, &scheme, &name, &url, value.trim_end_matches(['\r', '\n']).to_owned())
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `DELETE /v1/notifiers/{scheme}/secrets/{name}`.
pub(crate) async fn delete_secret(
    State(state): State<AppState>,
    caller: Caller,
    Path((scheme, name)): Path<(String, String)>,
) -> Result<impl IntoResponse, ApiError> {
    state.catalog.delete_secret(&caller, &scheme, &name).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The body of `POST /v1/notifiers/{scheme}/dry-run`, all optional; JSON
/// as Python's `json` reads it (`NaN` in `reason_data`, say).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct DryRun<'a> {
    /// The action URL (default `<scheme>://dry-run.invalid/`).
    pub action: Option<String>,
    /// The alarm, with Aodh's fields (default: the sample alarm), read by
    /// [`Alarm::from_json`].
    #[serde(borrow)]
    pub alarm: Option<&'a RawValue>,
}

/// `POST /v1/notifiers/{scheme}/dry-run`: runs the live version once and
/// answers what happened (an empty body runs the sample alarm).
pub async fn dry_run(
    State(state): State<AppState>,
    caller: Caller,
    Path(scheme): Path<String>,
    body: Bytes,
) -> Result<impl IntoResponse, ApiError> {
    if body.len() > MAX_DRY_RUN_BYTES {
        return Err(ApiError::BadRequest(format!(
            "the body has {} bytes; a dry run's may have at most {MAX_DRY_RUN_BYTES}",
            body.len()
        )));
    }
    let expected = |e: &dyn std::fmt::Display| {
        ApiError::BadRequest(format!("expected {{\"action\": …, \"alarm\": …}}: {e}"))
    };
    let text = std::str::from_utf8(&body).map_err(|e| expected(&e))?;
    let json = PythonJson::scan(text).map_err(|e| expected(&e))?;
    let request: DryRun<'_> = if body.is_empty() {
        DryRun::default()
    } else if opens_object(json.readable()) {
        serde_json::from_str(json.readable()).map_err(|e| expected(&e))?
    } else {
        return Err(expected(&"the body is not a JSON object"));
    };
    let alarm = match request.alarm.and_then(|raw| json.original_of(raw.get())) {
        Some(alarm) => Alarm::from_json(alarm).map_err(|e| ApiError::BadRequest(format!("alarm: {e}")))?,
        None => Alarm::sample(),
    };
    let report = state.catalog.dry_run(&caller, &scheme, request.action, &Arc::new(alarm)).await?;
    Ok(Json(json!({"host": state.host, "report": report})))
}

/// Reads the body, refusing it as soon as it exceeds `max` bytes.
async fn read_component(body: Body, max: u64) -> Result<Vec<u8>, ApiError> {
    let mut stream = body.into_data_stream();
    let mut component = Vec::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|error| ApiError::BadRequest(format!("cannot read the body: {error}")))?;
        let size = component.len().saturating_add(chunk.len());
        if u64::try_from(size).unwrap_or(u64::MAX) > max {
            return Err(CatalogError::TooLarge { size, max }.into());
        }
        component.extend_from_slice(&chunk);
    }
    Ok(component)
}

/// Reads the upload's query: `allow_hosts` (comma-separated) and limits by
/// name.
fn upload_request(query: BTreeMap<String, String>) -> Result<UploadRequest, ApiError> {
    let mut request = UploadRequest::default();
    let mut limits = serde_json::Map::new();
    for (name, value) in query {
        if name == "allow_hosts" {
            request.allow_hosts =
                value.split(',').map(str::trim).filter(|host| !host.is_empty()).map(str::to_owned).collect();
        } else {
            let number: u64 = value
                .parse()
                .map_err(|_| ApiError::BadRequest(format!("{name}={value:?}: a limit is a whole number")))?;
            limits.insert(name, Value::from(number));
        }
    }
    request.limits = serde_json::from_value::<LimitOverrides>(Value::Object(limits)).map_err(|error| {
        ApiError::BadRequest(format!("{error}: the query takes allow_hosts and limits by name"))
    })?;
    Ok(request)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_upload_query_reads_hosts_and_limits_and_names_what_it_refuses() {
        let query = |pairs: &[(&str, &str)]| {
            upload_request(pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect())
        };
        let request = query(&[("allow_hosts", "a.example, b.example,"), ("fuel", "5")]).unwrap();
        assert_eq!(request.allow_hosts, ["a.example", "b.example"]);
        assert_eq!(request.limits, LimitOverrides { fuel: Some(5), ..LimitOverrides::default() });
        let unknown = query(&[("fule", "5")]).unwrap_err().to_string();
        assert!(unknown.contains("fule"), "{unknown}");
        let not_a_number = query(&[("fuel", "lots")]).unwrap_err().to_string();
        assert!(not_a_number.contains("whole number"), "{not_a_number}");
    }
}
