//! The uploaded notifiers: what the notifier API changes and the service
//! runs.
//!
//! An upload is checked (scheme claim, size, grants, limits), compiled by
//! the [`Compiler`] child, loaded into the sandbox, stored as a new
//! immutable version and made live in the [`Registry`], in that order: a
//! version that cannot run is never stored, and a stored version is live
//! on this host as soon as the upload answers. Changes are applied one at
//! a time, so the live plugin is always the store's active version.
//! At start, every active version is loaded; one that cannot be (corrupt,
//! no longer compiles) disables that notifier with its error, and the
//! others work. Changes made on other hosts arrive through
//! [`super::changes`] and are applied from the store the same way.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use tocsin_core::alarm::{Alarm, Delivery, check_field_size};
use tocsin_core::caps::{MAX_DRY_RUNS, MAX_SECRETS};
use tocsin_core::hosts::{host_key, validate_host_entry};
use tocsin_core::limits::{LimitOverrides, Limits};
use tocsin_core::tenancy::Caller;
use tocsin_core::tenancy::{self, ClaimError, Owner, TenantConfig};
use tokio::sync::{Mutex as AsyncMutex, Semaphore, mpsc};

use super::{Origin, PlatformGrants, Registry, scheme_of, spec_for};
use crate::capabilities::secrets::{
    BoundSecret, SecretBox, SecretPrefix, SecretValue, SharedSecrets, is_secret_name,
};
use crate::sandbox::artifacts::Compiler;
use crate::sandbox::validate::LoadError;
use crate::sandbox::{Plugin, Sandbox};
use crate::store::{NewVersion, NotifierRow, SealedSecret, Store, StoreError, VersionRow};

/// Why a notifier request was refused.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    /// No such notifier, or one the caller may not see.
    #[error("no notifier {0}")]
    NotFound(String),
    /// No such version of a notifier.
    #[error("notifier {scheme} has no version {version}")]
    NoSuchVersion {
        /// The notifier.
        scheme: String,
        /// The version asked for.
        version: i64,
    },
    /// No such secret of a notifier.
    #[error("notifier {scheme} has no secret {name}")]
    NoSuchSecret {
        /// The notifier.
        scheme: String,
        /// The secret asked for.
        name: String,
    },
    /// The scheme cannot be claimed.
    #[error(transparent)]
    Claim(#[from] ClaimError),
    /// The component is larger than `uploads.max_component_bytes`.
    #[error("the component has {size} bytes or more; uploads may have at most {max}")]
    TooLarge {
        /// Its size.
        size: usize,
        /// The maximum.
        max: u64,
    },
    /// A requested grant or limit is not allowed.
    #[error("{0}")]
    Invalid(String),
    /// The component is not a notifier tocsin will run.
    #[error(transparent)]
    Refused(#[from] LoadError),
    /// The notifier has no live version on this host (disabled).
    #[error("notifier {0} is not live on this host: activate a version that loads")]
    NotLive(String),
    /// A tenant quota would be exceeded.
    #[error("quota exceeded: {0}")]
    Quota(String),
    /// Too many dry runs at once; try again shortly.
    #[error("{MAX_DRY_RUNS} dry runs are running; try again shortly")]
    Busy,
    /// Another host changed the notifier at the same moment.
    #[error("notifier {0} was changed concurrently; try again")]
    Conflict(String),
    /// The database failed.
    #[error(transparent)]
    Store(StoreError),
}

impl CatalogError {
    /// Whether the failure may pass by itself (the database, a compiler
    /// that ran out of time on a busy host), so a later sync tries again.
    pub fn is_passing(&self) -> bool {
        matches!(
            self,
            CatalogError::Store(
                StoreError::Database(_) | StoreError::Migration(_) | StoreError::Connection(_)
            ) | CatalogError::Refused(LoadError::CompileLimit(_))
        )
    }
}

impl From<StoreError> for CatalogError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::Taken(scheme) => CatalogError::Claim(ClaimError::Unavailable(scheme)),
            StoreError::Quota(why) => CatalogError::Quota(why),
            StoreError::Conflict(scheme) => CatalogError::Conflict(scheme),
            other => CatalogError::Store(other),
        }
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

/// Whether a notifier runs on this host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum LiveState {
    /// Its active version is live.
    Live {
        /// That version.
        version: i64,
    },
    /// Its active version could not be loaded: deliveries to its scheme
    /// fail as an unknown scheme would, until a version that loads is
    /// activated.
    Disabled {
        /// The version that failed.
        version: i64,
        /// Why.
        error: String,
    },
}

/// One notifier as the API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct NotifierView {
    /// Scheme, owner, active version, times.
    #[serde(flatten)]
    pub row: NotifierRow,
    /// Whether it runs on the host that answers.
    pub live: Option<LiveState>,
    /// The OpenStack projects whose alarms may use it: its tenant's
    /// `project_ids` (none: every project, for the operator's). What
    /// aodh-tocsin lets aodh's API accept.
    pub projects: Option<Vec<String>>,
    /// Its versions, oldest first (only in a single notifier's view).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub versions: Option<Vec<VersionRow>>,
}

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

/// What the catalog is configured with.
#[derive(Debug, Clone)]
pub struct CatalogSettings {
    /// What an upload may be.
    pub uploads: UploadsConfig,
    /// The tenants: their prefixes, quotas and projects.
    pub tenants: BTreeMap<String, TenantConfig>,
    /// What the platform grants plugins, uploads included.
    pub grants: PlatformGrants,
    /// Longest field of an alarm (`intake.max_field_bytes`): a dry run's
    /// alarm is held to it too.
    pub max_field_bytes: usize,
}

/// The uploaded notifiers of this host.
#[derive(Debug)]
pub struct Catalog {
    settings: CatalogSettings,
    store: Store,
    compiler: Compiler,
    sandbox: Arc<Sandbox>,
    registry: Arc<Registry>,
    live: Mutex<HashMap<String, (i64, LiveState)>>,
    secrets: Mutex<HashMap<String, SharedSecrets>>,
    secret_box: SecretBox,
    one_at_a_time: AsyncMutex<()>,
    dry_runs: Semaphore,
    outbox: mpsc::UnboundedSender<String>,
}

impl Catalog {
    /// A catalog over `store`, loading into `sandbox` and `registry`; the
    /// scheme of every change made here is sent to `outbox` (for the other
    /// hosts, see [`super::changes`]).
    pub fn new(
        settings: CatalogSettings,
        store: Store,
        compiler: Compiler,
        secret_box: SecretBox,
        sandbox: Arc<Sandbox>,
        registry: Arc<Registry>,
        outbox: mpsc::UnboundedSender<String>,
    ) -> Self {
        Catalog {
            settings,
            store,
            compiler,
            sandbox,
            registry,
            live: Mutex::default(),
            secrets: Mutex::default(),
            secret_box,
            one_at_a_time: AsyncMutex::new(()),
            dry_runs: Semaphore::new(MAX_DRY_RUNS),
            outbox,
        }
    }

    /// Brings every notifier in line with the store: loads what is not
    /// live at its active version, takes out what is gone, reads the
    /// secrets again, and removes compiled artifacts no stored version
    /// needs. Returns how many are live and how many disabled.
    ///
    /// # Errors
    /// [`CatalogError::Store`] when the database cannot be read.
    pub async fn sync_all(&self) -> Result<(usize, usize), CatalogError> {
        let _one_at_a_time = self.one_at_a_time.lock().await;
        let rows = self.store.notifiers().await?;
        let stored: std::collections::HashSet<&str> = rows.iter().map(|row| row.scheme.as_str()).collect();
        let gone: Vec<String> =
            self.live_states().keys().filter(|s| !stored.contains(s.as_str())).cloned().collect();
        for scheme in gone {
            self.forget(&scheme);
        }
        let removed = self.compiler.retain(&self.store.stored_digests().await?);
        if removed > 0 {
            tracing::info!(removed, "registry: Removed compiled artifacts no stored version needs.");
        }
        let (mut live, mut disabled) = (0, 0);
        for row in &rows {
            self.refresh_secrets(&row.scheme).await?;
            match self.sync_row(row).await {
                Some(LiveState::Live { .. }) => live += 1,
                Some(LiveState::Disabled { .. }) => disabled += 1,
                None => {}
            }
        }
        Ok((live, disabled))
    }

    /// Brings `scheme` in line with the store: another host changed it.
    ///
    /// # Errors
    /// [`CatalogError::Store`] when the database cannot be read.
    pub async fn sync(&self, scheme: &str) -> Result<(), CatalogError> {
        let _one_at_a_time = self.one_at_a_time.lock().await;
        match self.store.notifier(scheme).await? {
            Some(row) => {
                self.refresh_secrets(scheme).await?;
                self.sync_row(&row).await;
            }
            None => self.forget(scheme),
        }
        Ok(())
    }

    /// Stores `scheme`'s secret `name`, for URLs under `url_prefix`, and
    /// puts it in use at once.
    ///
    /// # Errors
    /// [`CatalogError::NotFound`], [`CatalogError::Invalid`] for a bad name
    /// or value (the message never holds the value), [`CatalogError::Quota`].
    pub async fn put_secret(
        &self,
        caller: &Caller,
        scheme: &str,
        name: &str,
        url_prefix: &str,
        value: String,
    ) -> Result<(), CatalogError> {
        let row = self.visible(caller, scheme).await?;
        if !is_secret_name(name) {
            return Err(CatalogError::Invalid(format!(
                "{name:?} is not a secret name: 1 to 64 of a-z, 0-9, '_' and '-'"
            )));
        }
        let value = SecretValue::new(value).map_err(CatalogError::Invalid)?;
        let prefix = SecretPrefix::parse(url_prefix).map_err(CatalogError::Invalid)?;
        let (nonce, ciphertext) = self.secret_box.seal(scheme, name, &prefix, &value);
        let url_prefix = prefix.as_str().to_owned();
        let sealed = SealedSecret { name: name.to_owned(), url_prefix, nonce, ciphertext, updated_at_ms: 0 };
        let _one_at_a_time = self.one_at_a_time.lock().await;
        self.store.put_secret(scheme, &sealed, MAX_SECRETS).await?;
        self.secret_changed(&row, name, "stored").await
    }

    /// Deletes `scheme`'s secret `name`.
    ///
    /// # Errors
    /// [`CatalogError::NotFound`] for the notifier or the secret.
    pub async fn delete_secret(&self, caller: &Caller, scheme: &str, name: &str) -> Result<(), CatalogError> {
        let row = self.visible(caller, scheme).await?;
        let _one_at_a_time = self.one_at_a_time.lock().await;
        if !self.store.delete_secret(scheme, name).await? {
            return Err(CatalogError::NoSuchSecret { scheme: scheme.to_owned(), name: name.to_owned() });
        }
        self.secret_changed(&row, name, "deleted").await
    }

    /// Puts `row`'s changed secrets in use here, tells the other hosts,
    /// and logs the change (never the value).
    async fn secret_changed(
        &self,
        row: &NotifierRow,
        name: &str,
        outcome: &'static str,
    ) -> Result<(), CatalogError> {
        self.refresh_secrets(&row.scheme).await?;
        self.announce(&row.scheme);
        tracing::info!(
            plugin = %row.scheme, tenant = row.tenant.as_deref().unwrap_or(""), secret = name, outcome,
            "registry: A notifier secret changed."
        );
        Ok(())
    }

    /// The names of `scheme`'s secrets and when each was set; never values.
    ///
    /// # Errors
    /// [`CatalogError::NotFound`].
    pub async fn secret_names(
        &self,
        caller: &Caller,
        scheme: &str,
    ) -> Result<Vec<serde_json::Value>, CatalogError> {
        self.visible(caller, scheme).await?;
        let sealed = self.store.secrets(scheme).await?;
        Ok(sealed
            .into_iter()
            .map(|secret| {
                serde_json::json!({"name": secret.name, "url": secret.url_prefix, "updated_at_ms": secret.updated_at_ms})
            })
            .collect())
    }

    /// Reads `scheme`'s secrets from the store into its live set. One that
    /// cannot be decrypted (another key) is left out and logged: a request
    /// that needs it then fails, naming it.
    async fn refresh_secrets(&self, scheme: &str) -> Result<(), CatalogError> {
        let mut values = std::collections::BTreeMap::new();
        for sealed in self.store.secrets(scheme).await? {
            let opened = SecretPrefix::parse(&sealed.url_prefix).and_then(|prefix| {
                let value = self.secret_box.unseal(
                    scheme,
                    &sealed.name,
                    &prefix,
                    &sealed.nonce,
                    &sealed.ciphertext,
                )?;
                Ok(BoundSecret { value, prefix })
            });
            match opened {
                Ok(bound) => {
                    values.insert(sealed.name, bound);
                }
                Err(error) => tracing::error!(
                    plugin = scheme, secret = %sealed.name, error = %error, outcome = "failed",
                    "registry: Cannot decrypt a notifier secret; is uploads.secrets_key_file the one the other hosts use?"
                ),
            }
        }
        self.secret_slot(scheme).store(Arc::new(values));
        Ok(())
    }

    /// The live secret set of `scheme`, shared by every version loaded.
    fn secret_slot(&self, scheme: &str) -> SharedSecrets {
        let mut slots = self.secrets.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        Arc::clone(slots.entry(scheme.to_owned()).or_default())
    }

    /// The largest component an upload may be (`uploads.max_component_bytes`).
    pub fn max_component_bytes(&self) -> u64 {
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

    /// Makes `version` of `scheme` the active one (roll back or forward).
    ///
    /// # Errors
    /// [`CatalogError::NotFound`], [`CatalogError::NoSuchVersion`], or the
    /// version no longer loads.
    pub async fn activate(
        &self,
        caller: &Caller,
        scheme: &str,
        version: i64,
    ) -> Result<NotifierView, CatalogError> {
        let row = self.visible(caller, scheme).await?;
        let plugin = self.load_stored(&row, version).await?;
        let _one_at_a_time = self.one_at_a_time.lock().await;
        // Only if it is still the notifier whose version was loaded.
        let Some(changed_at_ms) = self.store.activate(scheme, row.created_at_ms, version).await? else {
            return Err(CatalogError::NoSuchVersion { scheme: scheme.to_owned(), version });
        };
        self.make_live(scheme, changed_at_ms, version, Arc::new(plugin));
        self.announce(scheme);
        tracing::info!(
            plugin = scheme,
            tenant = row.tenant.as_deref().unwrap_or(""),
            version,
            outcome = "live",
            "registry: Activated a notifier version."
        );
        drop(_one_at_a_time);
        self.show(caller, scheme).await
    }

    /// Deletes `scheme` with all its versions and takes it out of service.
    ///
    /// # Errors
    /// [`CatalogError::NotFound`], [`CatalogError::Store`].
    pub async fn delete(&self, caller: &Caller, scheme: &str) -> Result<(), CatalogError> {
        let row = self.visible(caller, scheme).await?;
        let _one_at_a_time = self.one_at_a_time.lock().await;
        self.store.delete(scheme).await?;
        self.forget(scheme);
        self.announce(scheme);
        tracing::info!(
            plugin = scheme,
            tenant = row.tenant.as_deref().unwrap_or(""),
            outcome = "deleted",
            "registry: Deleted a notifier."
        );
        Ok(())
    }

    /// The notifiers the caller may see.
    ///
    /// # Errors
    /// [`CatalogError::Store`].
    pub async fn list(&self, caller: &Caller) -> Result<Vec<NotifierView>, CatalogError> {
        let rows = self.store.notifiers().await?;
        let live = self.live_states().clone();
        Ok(rows
            .into_iter()
            .filter(|row| caller.may_manage(&row.owner()))
            .map(|row| NotifierView {
                live: live.get(&row.scheme).map(|(_, state)| state.clone()),
                projects: self.projects_of(&row),
                row,
                versions: None,
            })
            .collect())
    }

    /// The projects whose alarms may use `row`'s notifier; none for the
    /// operator's (every project).
    fn projects_of(&self, row: &NotifierRow) -> Option<Vec<String>> {
        let tenant = row.tenant.as_ref()?;
        Some(self.settings.tenants.get(tenant).map(|tenant| tenant.project_ids.clone()).unwrap_or_default())
    }

    /// One notifier with its versions.
    ///
    /// # Errors
    /// [`CatalogError::NotFound`] also when it is another tenant's.
    pub async fn show(&self, caller: &Caller, scheme: &str) -> Result<NotifierView, CatalogError> {
        let row = self.visible(caller, scheme).await?;
        let versions = self.store.versions(scheme).await?;
        let live = self.live_states().get(scheme).map(|(_, state)| state.clone());
        let projects = self.projects_of(&row);
        Ok(NotifierView { row, live, projects, versions: Some(versions) })
    }

    /// The live plugin of `scheme` on this host, if the caller may see it.
    ///
    /// # Errors
    /// [`CatalogError::NotFound`].
    pub async fn plugin(&self, caller: &Caller, scheme: &str) -> Result<Option<Arc<Plugin>>, CatalogError> {
        self.visible(caller, scheme).await?;
        Ok(self.registry.uploaded(scheme))
    }

    /// Runs the live version of `scheme` once, for `action` (by default
    /// `<scheme>://dry-run.invalid/`) and `alarm`, as a delivery would, and
    /// reports what happened: outcome, error, cost, log lines.
    ///
    /// # Errors
    /// [`CatalogError::NotFound`], [`CatalogError::NotLive`], or
    /// [`CatalogError::Invalid`] for an action of another scheme.
    pub async fn dry_run(
        &self,
        caller: &Caller,
        scheme: &str,
        action: Option<String>,
        alarm: &Arc<Alarm>,
    ) -> Result<serde_json::Value, CatalogError> {
        let row = self.visible(caller, scheme).await?;
        let plugin =
            self.registry.uploaded(scheme).ok_or_else(|| CatalogError::NotLive(scheme.to_owned()))?;
        let action = action.unwrap_or_else(|| format!("{scheme}://dry-run.invalid/"));
        let max_field_bytes = self.settings.max_field_bytes;
        alarm
            .check_field_sizes(max_field_bytes)
            .and_then(|()| check_field_size("action", &action, max_field_bytes))
            .map_err(|too_long| CatalogError::Invalid(format!("a dry run's {too_long}")))?;
        if scheme_of(&action).ok().as_deref() != Some(scheme) {
            return Err(CatalogError::Invalid(format!(
                "the action of a dry run of {scheme} is a {scheme}:// URL"
            )));
        }
        // Dry runs take instance slots outside dispatch's bounds: few at once.
        let _slot = self.dry_runs.try_acquire().map_err(|_| CatalogError::Busy)?;
        let delivery = Delivery { tenant: row.tenant, ..Delivery::one_off() };
        let invocation = self.sandbox.invoke(&plugin, &action, alarm, &delivery).await;
        Ok(invocation.report(scheme, &action, alarm, &delivery))
    }

    /// The notifier of `scheme` if the caller may see it.
    async fn visible(&self, caller: &Caller, scheme: &str) -> Result<NotifierRow, CatalogError> {
        match self.store.notifier(scheme).await? {
            Some(row) if caller.may_manage(&row.owner()) => Ok(row),
            _ => Err(CatalogError::NotFound(scheme.to_owned())),
        }
    }

    /// Brings `row`'s live plugin in line with its active version. What
    /// was loaded, or found not to load for a lasting reason, since the
    /// notifier last changed (`updated_at_ms`: an upload, an activation, a
    /// deletion and re-creation) is left as it is; activating a version
    /// again retries it on every host.
    async fn sync_row(&self, row: &NotifierRow) -> Option<LiveState> {
        let Some(version) = row.active_version else {
            self.forget(&row.scheme);
            return None;
        };
        if let Some((changed_at_ms, state)) = self.live_states().get(&row.scheme)
            && *changed_at_ms == row.updated_at_ms
        {
            return Some(state.clone());
        }
        match self.load_stored(row, version).await {
            Ok(plugin) => {
                self.make_live(&row.scheme, row.updated_at_ms, version, Arc::new(plugin));
                Some(LiveState::Live { version })
            }
            Err(error) => {
                tracing::error!(
                    plugin = %row.scheme, tenant = row.tenant.as_deref().unwrap_or(""), version,
                    error = %error, outcome = "disabled",
                    "registry: Cannot load a stored notifier; it is disabled until a version that loads is activated."
                );
                self.registry.remove(&row.scheme);
                let state = LiveState::Disabled { version, error: error.to_string() };
                // A passing failure (the database, a busy compiler) is tried
                // again at the next sync; a lasting one is not.
                let changed_at_ms = if error.is_passing() { i64::MIN } else { row.updated_at_ms };
                self.live_states().insert(row.scheme.clone(), (changed_at_ms, state.clone()));
                Some(state)
            }
        }
    }

    /// Loads `version` of `row`'s notifier from the store, checking that
    /// its bytes are the ones uploaded.
    async fn load_stored(&self, row: &NotifierRow, version: i64) -> Result<Plugin, CatalogError> {
        let missing = || CatalogError::NoSuchVersion { scheme: row.scheme.clone(), version };
        let versions = self.store.versions(&row.scheme).await?;
        let meta = versions.into_iter().find(|meta| meta.version == version).ok_or_else(missing)?;
        let component = self.store.component(&row.scheme, version).await?.ok_or_else(missing)?;
        if sha256_hex(&component) != meta.sha256 {
            return Err(CatalogError::Store(StoreError::Corrupt {
                scheme: row.scheme.clone(),
                detail: format!("the bytes of version {version} do not match its sha256"),
            }));
        }
        self.load(&row.scheme, &row.owner(), &meta, &component).await
    }

    /// Compiles (through the cache) and loads one version, sharing the
    /// scheme's secret set (read by `sync`/`sync_all`, which every host runs
    /// before serving, and on every secret change).
    async fn load(
        &self,
        scheme: &str,
        owner: &Owner,
        meta: &VersionRow,
        component: &[u8],
    ) -> Result<Plugin, CatalogError> {
        let artifact = self.compiler.artifact(&meta.sha256, component).await?;
        let mut spec =
            spec_for(scheme, Origin::External, owner.tenant().map(str::to_owned), &self.settings.grants);
        spec.grants.secrets = self.secret_slot(scheme);
        spec.limits = spec.limits.with(&meta.limits);
        spec.grants.requested_hosts = meta.allow_hosts.iter().map(|host| host_key(host)).collect();
        Ok(self.sandbox.load_artifact(spec, &artifact)?)
    }

    /// Takes `scheme` out of service on this host.
    fn forget(&self, scheme: &str) {
        self.registry.remove(scheme);
        self.live_states().remove(scheme);
        self.secrets.lock().unwrap_or_else(std::sync::PoisonError::into_inner).remove(scheme);
    }

    /// Tells the other hosts that `scheme` changed.
    fn announce(&self, scheme: &str) {
        // The feed outlives the catalog's users; if it is gone, the service
        // is stopping and other hosts catch up when they next sync.
        let _ = self.outbox.send(scheme.to_owned());
    }

    /// Puts `plugin`, `version` of the notifier as it was at
    /// `changed_at_ms`, in service for `scheme`.
    fn make_live(&self, scheme: &str, changed_at_ms: i64, version: i64, plugin: Arc<Plugin>) {
        self.registry.install(scheme, plugin);
        self.live_states().insert(scheme.to_owned(), (changed_at_ms, LiveState::Live { version }));
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

    /// What runs here, by scheme: the notifier's `updated_at_ms` when it was
    /// loaded (any change since makes the next sync load it again) and its
    /// state.
    fn live_states(&self) -> std::sync::MutexGuard<'_, HashMap<String, (i64, LiveState)>> {
        self.live.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

fn sha256_hex(bytes: &[u8]) -> String {
    format!("{:x}", Sha256::digest(bytes))
}
