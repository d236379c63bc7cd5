//! Versions: listing and showing notifiers, activating a version (roll
//! back or forward), deleting a notifier.

use std::sync::Arc;

use tocsin_core::tenancy::Caller;

use super::{Catalog, CatalogError, NotifierView};
use crate::store::NotifierRow;

impl Catalog {
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
}
