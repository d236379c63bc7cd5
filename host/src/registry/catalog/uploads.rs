//! Uploads: a new version is admitted (the caller's rate), checked (claim,
//! size, grants, limits, quota), admitted to the compile queue, compiled
//! by the compiler child (which checks what it can before compiling),
//! loaded, stored and made live, in that order: what costs the host least
//! is asked first, and a version that cannot run is never stored.

use std::path::PathBuf;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tocsin_core::hosts::validate_host_entry;
use tocsin_core::limits::{LimitOverrides, Limits};
use tocsin_core::tenancy::{self, Caller, ClaimError, Owner};

use super::admission::UploadPermit;
use super::{Catalog, CatalogError, sha256_hex};
use crate::store::{NewVersion, VersionRow};

/// Uploaded notifiers: size, how often, compilation limits and the
/// compiler's confinement, the limits a tenant may ask for, and where
/// compiled artifacts live.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct UploadsConfig {
    /// Directory of tocsin's own files (oslo's `state_path`): the default
    /// SQLite database and the cache of compiled notifiers.
    pub state_path: PathBuf,
    /// Largest component accepted, in bytes.
    pub max_component_bytes: u64,
    /// Uploads a tenant (or the operator) may make per minute, on average;
    /// past it (and `upload_burst`) the API answers 429 with Retry-After.
    pub uploads_per_minute: u32,
    /// Uploads one caller may make at once before `uploads_per_minute`
    /// applies.
    pub upload_burst: u32,
    /// Uploads that may be compiling or waiting to compile at once on this
    /// host; past it the API answers 429 `busy`.
    pub compile_queue: usize,
    /// Of `compile_queue`, how many one tenant (or the operator) may hold,
    /// so that one caller's storm leaves room for the others.
    pub tenant_compile_queue: usize,
    /// Compiler processes running at once; each may use
    /// `compile_memory_bytes` and `compile_threads` CPUs.
    pub compiles_at_once: usize,
    /// Threads one compilation runs on (1: none besides its own).
    pub compile_threads: u32,
    /// CPU seconds the compiler process may use for one component (all its
    /// threads together). A 12–20 MB component (a JavaScript or Python
    /// notifier) needs 15–20.
    pub compile_cpu_seconds: u64,
    /// Address space of the compiler process, in bytes.
    pub compile_memory_bytes: u64,
    /// Wall-clock time one compilation may take, in ms; then it is killed.
    pub compile_timeout_ms: u64,
    /// Largest compiled component read back from the compiler, in bytes.
    /// A 12–20 MB component compiles to about 40 MB.
    pub max_artifact_bytes: u64,
    /// Run the compiler in its own namespaces, as `compiler_user`, under a
    /// seccomp filter. Where that is impossible (not root and no user
    /// namespaces) no tenant's component is compiled, unless this is
    /// `false`: then it runs unconfined, and the service says so at start.
    pub confine_compiler: bool,
    /// The user (name, uid or `uid:gid`) a compiler started by root runs
    /// as; without root the compiler keeps the service's own uid.
    pub compiler_user: String,
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
            uploads_per_minute: 30,
            upload_burst: 10,
            compile_queue: 8,
            tenant_compile_queue: 2,
            compiles_at_once: 1,
            compile_threads: 1,
            compile_cpu_seconds: 30,
            compile_memory_bytes: 2 << 30,
            compile_timeout_ms: 60_000,
            max_artifact_bytes: 64 << 20,
            confine_compiler: true,
            compiler_user: "nobody".into(),
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
        let counts = [
            ("compile_cpu_seconds", self.compile_cpu_seconds),
            ("compile_memory_bytes", self.compile_memory_bytes),
            ("compile_timeout_ms", self.compile_timeout_ms),
            ("max_artifact_bytes", self.max_artifact_bytes),
            ("uploads_per_minute", u64::from(self.uploads_per_minute)),
            ("upload_burst", u64::from(self.upload_burst)),
            ("compile_queue", self.compile_queue as u64),
            ("tenant_compile_queue", self.tenant_compile_queue as u64),
            ("compiles_at_once", self.compiles_at_once as u64),
            ("compile_threads", u64::from(self.compile_threads)),
        ];
        if let Some((name, _)) = counts.iter().find(|(_, value)| *value == 0) {
            return Err(format!("uploads.{name} must be above 0"));
        }
        if self.tenant_compile_queue > self.compile_queue {
            return Err(format!(
                "uploads.tenant_compile_queue ({}) must not exceed uploads.compile_queue ({})",
                self.tenant_compile_queue, self.compile_queue
            ));
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
    /// Admits an upload of `caller`'s before its body is read: its rate,
    /// and a place in the compile queue, held by the permit.
    ///
    /// # Errors
    /// [`CatalogError::RateLimited`] or [`CatalogError::Busy`], logged.
    pub fn admit_upload(&self, caller: &Caller) -> Result<UploadPermit<'_>, CatalogError> {
        self.admission.admit(caller).inspect_err(|error| {
            tracing::info!(
                tenant = caller.tenant().unwrap_or(""), outcome = "refused", error = %error,
                "registry: Refused an upload."
            );
        })
    }

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
        permit: UploadPermit<'_>,
        caller: &Caller,
        scheme: &str,
        component: &[u8],
        request: UploadRequest,
    ) -> Result<VersionRow, CatalogError> {
        let refused = |error: CatalogError| {
            tracing::info!(
                plugin = scheme, tenant = caller.tenant().unwrap_or(""), outcome = "refused", error = %error,
                "registry: Refused an upload."
            );
            error
        };
        let (owner, meta) = self.admit(caller, scheme, component, request).await.map_err(refused)?;
        let plugin = self.load(scheme, &owner, &meta, component).await.map_err(refused)?;
        drop(permit);
        let meta = VersionRow { imports: plugin.info().imports.clone(), ..meta };
        let _one_at_a_time = self.one_at_a_time.lock().await;
        let stored = self.store.add_version(self.new_version(scheme, &owner, component, meta)).await?;
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

    /// What is checked before an upload is compiled: the caller's claim on
    /// the scheme, the size, the grants and limits asked for, and the
    /// tenant's quota with this version counted. Returns the owner and the
    /// version's metadata.
    async fn admit(
        &self,
        caller: &Caller,
        scheme: &str,
        component: &[u8],
        request: UploadRequest,
    ) -> Result<(Owner, VersionRow), CatalogError> {
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
        self.check_request(scheme, &owner, &request)?;
        let meta = VersionRow {
            version: 0,
            sha256: sha256_hex(component),
            size_bytes: 0,
            imports: Vec::new(),
            allow_hosts: request.allow_hosts,
            limits: request.limits,
            created_at_ms: 0,
        };
        // With this host's other changes held off: the check's rolled-back
        // writes would otherwise meet theirs (SQLite has one writer).
        let new = self.new_version(scheme, &owner, component, meta.clone());
        let _one_at_a_time = self.one_at_a_time.lock().await;
        self.store.check_version(&new).await?;
        Ok((owner, meta))
    }

    /// The version the store is asked to add.
    fn new_version<'a>(
        &self,
        scheme: &'a str,
        owner: &'a Owner,
        component: &'a [u8],
        meta: VersionRow,
    ) -> NewVersion<'a> {
        let quota = owner
            .tenant()
            .and_then(|tenant| self.settings.tenants.get(tenant))
            .map(|tenant| (tenant.max_notifiers, tenant.max_total_bytes));
        NewVersion {
            scheme,
            owner,
            component,
            meta,
            quota,
            versions_kept: self.settings.uploads.versions_kept,
        }
    }

    fn check_request(
        &self,
        scheme: &str,
        owner: &Owner,
        request: &UploadRequest,
    ) -> Result<(), CatalogError> {
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
        let limits = self.settings.grants.limits_for(owner, scheme).with(&request.limits);
        self.settings.grants.bounds.check(scheme, &limits).map_err(CatalogError::Invalid)
    }
}
