//! A notifier's secrets: stored sealed, named but never shown, and filled
//! into its requests' headers for the URLs each is bound to.

use std::sync::Arc;

use tocsin_core::caps::MAX_SECRETS;
use tocsin_core::tenancy::Caller;

use super::{Catalog, CatalogError};
use crate::capabilities::secrets::{BoundSecret, SecretPrefix, SecretValue, SharedSecrets, is_secret_name};
use crate::store::{NotifierRow, SealedSecret};

impl Catalog {
    /// Stores `scheme`'s secret `name`, for URLs under `url_prefix`, and
    /// puts it in use at once.
    ///
    /// # Errors
    /// [`CatalogError::NotFound`], [`CatalogError::Invalid`] for a bad name
    /// or value (the message never holds the value), [`CatalogError::Quota`].
    pub(crate) async fn put_secret(
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
    pub(crate) async fn delete_secret(
        &self,
        caller: &Caller,
        scheme: &str,
        name: &str,
    ) -> Result<(), CatalogError> {
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
    pub(crate) async fn secret_names(
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
    pub(super) async fn refresh_secrets(&self, scheme: &str) -> Result<(), CatalogError> {
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
    pub(super) fn secret_slot(&self, scheme: &str) -> SharedSecrets {
        let mut slots = self.secrets.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        Arc::clone(slots.entry(scheme.to_owned()).or_default())
    }
}
