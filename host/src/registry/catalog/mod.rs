//! The uploaded notifiers: what the notifier API changes and the service
//! runs. One [`Catalog`], its use cases one module each: [`uploads`],
//! [`versions`], [`secrets`], [`dry_run`], and [`sync`] with the store.
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

mod admission;
mod dry_run;
mod secrets;
mod sync;
mod uploads;
mod versions;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use serde::Serialize;
use sha2::{Digest as _, Sha256};
use tocsin_core::caps::{MAX_DRY_RUNS, MAX_DRY_RUNS_PER_CALLER};
use tocsin_core::tenancy::{Caller, ClaimError, Owner, TenantConfig};
use tokio::sync::{Mutex as AsyncMutex, mpsc};

use super::{PlatformGrants, Registry, spec_for_upload};
use crate::capabilities::secrets::{SecretBox, SharedSecrets};
use crate::metrics::Metrics;
use crate::sandbox::compiler::Compiler;
use crate::sandbox::validate::LoadError;
use crate::sandbox::{Plugin, Sandbox};
use crate::store::{NotifierRow, Store, StoreError, VersionRow};
use crate::throttle::{Throttle, ThrottleLimits};
use admission::Admission;

pub use uploads::{UploadRequest, UploadsConfig};

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
    /// Too many dry runs, or uploads to compile, at once; try again
    /// shortly.
    #[error("{0}")]
    Busy(String),
    /// The caller made more uploads than `uploads.uploads_per_minute`
    /// allows.
    #[error(
        "too many uploads (uploads.uploads_per_minute); try again in {} ms",
        retry_after.as_millis()
    )]
    RateLimited {
        /// When the next upload would be accepted.
        retry_after: std::time::Duration,
    },
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
    pub(crate) fn is_passing(&self) -> bool {
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
    metrics: Arc<Metrics>,
    live: Mutex<HashMap<String, (i64, LiveState)>>,
    secrets: Mutex<HashMap<String, SharedSecrets>>,
    secret_box: SecretBox,
    one_at_a_time: AsyncMutex<()>,
    dry_runs: Throttle,
    admission: Admission,
    outbox: mpsc::UnboundedSender<String>,
}

/// Where the catalog puts the notifiers it loads.
#[derive(Debug, Clone)]
pub struct Serving {
    /// Loads and runs them.
    pub sandbox: Arc<Sandbox>,
    /// Serves their schemes.
    pub registry: Arc<Registry>,
    /// Counts their deliveries; their series go with them.
    pub metrics: Arc<Metrics>,
}

impl Catalog {
    /// A catalog over `store`, loading into `serving`; the scheme of every
    /// change made here is sent to `outbox` (for the other hosts, see
    /// [`super::changes`]).
    pub fn new(
        settings: CatalogSettings,
        store: Store,
        compiler: Compiler,
        secret_box: SecretBox,
        serving: Serving,
        outbox: mpsc::UnboundedSender<String>,
    ) -> Self {
        let Serving { sandbox, registry, metrics } = serving;
        Catalog {
            admission: Admission::new(&settings.uploads),
            settings,
            store,
            compiler,
            sandbox,
            registry,
            metrics,
            live: Mutex::default(),
            secrets: Mutex::default(),
            secret_box,
            one_at_a_time: AsyncMutex::new(()),
            dry_runs: Throttle::new(ThrottleLimits {
                rate: None,
                places: MAX_DRY_RUNS,
                places_per_key: MAX_DRY_RUNS_PER_CALLER,
            }),
            outbox,
        }
    }

    /// The notifier of `scheme` if the caller may see it.
    async fn visible(&self, caller: &Caller, scheme: &str) -> Result<NotifierRow, CatalogError> {
        match self.store.notifier(scheme).await? {
            Some(row) if caller.may_manage(&row.owner()) => Ok(row),
            _ => Err(CatalogError::NotFound(scheme.to_owned())),
        }
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
        let spec = spec_for_upload(scheme, owner, meta, self.secret_slot(scheme), &self.settings.grants);
        let artifact = self.compiler.artifact(&meta.sha256, component, spec.limits.memory_bytes).await?;
        Ok(self.sandbox.load_artifact(spec, &artifact)?)
    }

    /// Takes `scheme` out of service on this host, its metrics with it.
    fn forget(&self, scheme: &str) {
        // Its calls in flight drop what they count, as its series go here.
        // (A notifier disabled on this host, which the registry drops too,
        // keeps its series: it is not forgotten, nor its plugin retired.)
        if let Some(plugin) = self.registry.remove(scheme) {
            plugin.retire();
        }
        // Its series carry its owner's name: the operator's (none), or the
        // tenant's, which prefixes the scheme.
        self.metrics.forget_plugin(scheme, None);
        if let Some((tenant, _)) = scheme.split_once('-') {
            self.metrics.forget_plugin(scheme, Some(tenant));
        }
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
