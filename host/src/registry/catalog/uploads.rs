//! Uploads: a new version is checked (claim, size, grants, limits),
//! compiled by the compiler child, loaded, stored and made live, in that
//! order, so a version that cannot run is never stored.

use std::path::PathBuf;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tocsin_core::hosts::validate_host_entry;
use tocsin_core::limits::{LimitOverrides, Limits};
use tocsin_core::tenancy::{self, Caller, ClaimError};

use super::{Catalog, CatalogError, sha256_hex};
use crate::store::{NewVersion, VersionRow};

/// Uploaded notifiers: size, compilation limits, the limits a tenant may
/// ask for, and where compiled artifacts live.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct UploadsConfig {
    /// Directory of tocsin's own files (oslo's `state_path`): the default
    /// SQLite database and the cache of compiled notifiers.
    pub state_path: PathBuf,
    /// Largest component accepted, in bytes.
    pub max_component_bytes: u64,
    /// CPU seconds the compiler process may use for one upload.
    pub compile_cpu_seconds: u64,
    /// Address space of the compiler process, in bytes.
    pub compile_memory_bytes: u64,
    /// Wall-clock time one compilation may take, in ms; then it is killed.
    pub compile_timeout_ms: u64,
    /// The most an uploaded notifier's limits may be: an upload may set
    /// each of its limits at most this high.
    pub max_limits: Limits,
    /// Versions kept per notifier: the newest this many (at least 2) and
    /// the active one, for rolling back; older ones are deleted when a new
    /// one is uploaded.
    pub versions_kept: u32,
    /// The key tenants' secrets are encrypted with (32 bytes, made when
    /// missing); hosts sharing a database must share it. Default:
    /// `secrets.key` in `state_path`.
    pub secrets_key_file: Option<PathBuf>,
}

impl Default for UploadsConfig {
    fn default() -> Self {
        UploadsConfig {
            state_path: PathBuf::from("/var/lib/tocsin"),
            max_component_bytes: 16 << 20,
            compile_cpu_seconds: 60,
            compile_memory_bytes: 2 << 30,
            compile_timeout_ms: 120_000,
            max_limits: Limits::default(),
            versions_kept: 10,
            secrets_key_file: None,
        }
    }
}

impl UploadsConfig {
    /// Checks the section's own rules.
    ///
    /// # Errors
    /// What is wrong, naming the option.
    pub fn validate(&self) -> Result<(), String> {
        if self.compile_cpu_seconds == 0 || self.compile_memory_bytes == 0 || self.compile_timeout_ms == 0 {
            return Err(
                "uploads.compile_cpu_seconds, compile_memory_bytes and compile_timeout_ms must be above 0"
                    .into(),
            );
        }
        if self.versions_kept < 2 {
            return Err("uploads.versions_kept must be at least 2 (the newest and the one before)".into());
        }
        Ok(())
    }
}

/// What an upload asks for besides the component.
#[derive(Debug, Clone, Default)]
pub struct UploadRequest {
    /// Hosts the notifier may call besides its action URL's.
    pub allow_hosts: Vec<String>,
    /// Limits, each at most the operator's `uploads.max_limits`.
    pub limits: LimitOverrides,
}

impl Catalog {
    /// The largest component an upload may be (`uploads.max_component_bytes`).
    pub(crate) fn max_component_bytes(&self) -> u64 {
        self.settings.uploads.max_component_bytes
    }

    /// Uploads a new version of `scheme` and makes it live.
    ///
    /// # Errors
    /// [`CatalogError`]: the claim, size, grants, limits, component or
    /// quota is refused, or the database failed.
    pub async fn upload(
        &self,
        caller: &Caller,
        scheme: &str,
        component: &[u8],
        request: UploadRequest,
    ) -> Result<VersionRow, CatalogError> {
        let existing = self.store.notifier(scheme).await?;
        let owner = match &existing {
            Some(row) if caller.may_manage(&row.owner()) => row.owner(),
            Some(_) => return Err(ClaimError::Unavailable(scheme.to_owned()).into()),
            None => tenancy::claim(caller, scheme, &self.settings.tenants)?,
        };
        let max = self.settings.uploads.max_component_bytes;
        if u64::try_from(component.len()).unwrap_or(u64::MAX) > max {
            return Err(CatalogError::TooLarge { size: component.len(), max });
        }
        self.check_request(scheme, &request)?;
        let sha256 = sha256_hex(component);
        let meta = VersionRow {
            version: 0,
            sha256,
            size_bytes: 0,
            imports: Vec::new(),
            allow_hosts: request.allow_hosts,
            limits: request.limits,
            created_at_ms: 0,
        };
        let plugin = self.load(scheme, &owner, &meta, component).await?;
        let meta = VersionRow { imports: plugin.info().imports.clone(), ..meta };
        let quota = owner
            .tenant()
            .and_then(|tenant| self.settings.tenants.get(tenant))
            .map(|tenant| (tenant.max_notifiers, tenant.max_total_bytes));
        let _one_at_a_time = self.one_at_a_time.lock().await;
        let versions_kept = self.settings.uploads.versions_kept;
        let new = NewVersion { scheme, owner: &owner, component, meta, quota, versions_kept };
        let stored = self.store.add_version(new).await?;
        // The store set the notifier's `updated_at_ms` to the version's time.
        self.make_live(scheme, stored.created_at_ms, stored.version, Arc::new(plugin));
        self.announce(scheme);
        tracing::info!(
            plugin = scheme, tenant = owner.tenant().unwrap_or(""), version = stored.version,
            sha256 = %stored.sha256, size_bytes = stored.size_bytes, outcome = "live",
            "registry: Uploaded notifier is live."
        );
        Ok(stored)
    }

    fn check_request(&self, scheme: &str, request: &UploadRequest) -> Result<(), CatalogError> {
        for host in &request.allow_hosts {
            validate_host_entry(host).map_err(CatalogError::Invalid)?;
        }
        let max = self.settings.uploads.max_limits;
        let asked = serde_json::to_value(request.limits).unwrap_or_default();
        let allowed = serde_json::to_value(max).unwrap_or_default();
        if let serde_json::Value::Object(asked) = asked {
            for (name, value) in asked.iter().filter(|(_, value)| !value.is_null()) {
                let most = allowed.get(name).and_then(serde_json::Value::as_u64).unwrap_or(0);
                if value.as_u64().unwrap_or(u64::MAX) > most {
                    return Err(CatalogError::Invalid(format!(
                        "limit {name} = {value} exceeds the operator's maximum of {most} (uploads.max_limits)"
                    )));
                }
            }
        }
        let limits = self.settings.grants.limits_for(scheme).with(&request.limits);
        self.settings.grants.bounds.check(scheme, &limits).map_err(CatalogError::Invalid)
    }
}
