//! Dry runs: the live version run once on a sample alarm, as a delivery
//! would run it, with the report a tenant reads.

use std::sync::Arc;

use tocsin_core::alarm::{Alarm, Delivery, check_field_size};
use tocsin_core::tenancy::Caller;

use tocsin_core::caps::{MAX_DRY_RUNS, MAX_DRY_RUNS_PER_CALLER};

use super::{Catalog, CatalogError};
use crate::registry::scheme_of;
use crate::sandbox::Plugin;
use crate::throttle::Refusal;

impl Catalog {
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
        // Dry runs take instance slots outside dispatch's bounds: few at
        // once, and one caller never all of them.
        let _slot = self.dry_runs.admit(caller.tenant().unwrap_or_default()).map_err(|refusal| match refusal {
            Refusal::KeyFull { held } => CatalogError::Busy(format!(
                "{held} of your dry runs are running (at most {MAX_DRY_RUNS_PER_CALLER}); try again when it ends"
            )),
            _ => CatalogError::Busy(format!("{MAX_DRY_RUNS} dry runs are running; try again shortly")),
        })?;
        let delivery = Delivery { tenant: row.tenant, ..Delivery::one_off() };
        let invocation = self.sandbox.invoke(&plugin, &action, alarm, &delivery).await;
        Ok(invocation.report(scheme, &action, alarm, &delivery))
    }
}
