//! Keeping this host in line with the store: at start, when another host
//! announces a change, and every minute (see [`super::super::changes`]).

use std::sync::Arc;

use super::{Catalog, CatalogError, LiveState, sha256_hex};
use crate::sandbox::Plugin;
use crate::store::{NotifierRow, StoreError};

impl Catalog {
    /// Brings every notifier in line with the store: loads what is not
    /// live at its active version, takes out what is gone, reads the
    /// secrets again, and removes compiled artifacts no stored version
    /// needs. Returns how many are live and how many disabled.
    ///
    /// # Errors
    /// [`CatalogError::Store`] when the database cannot be read.
    pub(crate) async fn sync_all(&self) -> Result<(usize, usize), CatalogError> {
        let _one_at_a_time = self.one_at_a_time.lock().await;
        let rows = self.store.notifiers().await?;
        let stored: std::collections::HashSet<&str> = rows.iter().map(|row| row.scheme.as_str()).collect();
        let gone: Vec<String> =
            self.live_states().keys().filter(|s| !stored.contains(s.as_str())).cloned().collect();
        for scheme in gone {
            self.forget(&scheme);
        }
        let keep = self.store.stored_digests().await?;
        let removed = self.compiler.cache().map_or(0, |cache| cache.retain(&keep));
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

    /// Brings `row`'s live plugin in line with its active version. What
    /// was loaded, or found not to load for a lasting reason, since the
    /// notifier last changed (`updated_at_ms`: an upload, an activation, a
    /// deletion and re-creation) is left as it is; activating a version
    /// again retries it on every host.
    pub(super) async fn sync_row(&self, row: &NotifierRow) -> Option<LiveState> {
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
    pub(super) async fn load_stored(&self, row: &NotifierRow, version: i64) -> Result<Plugin, CatalogError> {
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
}
