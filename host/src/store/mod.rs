//! The notifier store: uploaded components and their metadata, versioned,
//! in SQL through sqlx.
//!
//! Configured as OpenStack services configure theirs (`[database]
//! connection`): an SQLite file in `uploads.state_path` by default
//! (embedded, nothing to install), PostgreSQL when several hosts share the
//! notifiers. Both run the versioned migrations of `host/migrations/`
//! at start. Versions are immutable; a scheme points at its active one.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sqlx::any::{AnyPoolOptions, install_default_drivers};
use sqlx::{AnyPool, Row as _};
use tocsin_core::limits::LimitOverrides;
use tocsin_core::tenancy::Owner;

/// Connections kept to the database.
const MAX_CONNECTIONS: u32 = 8;

/// oslo.db's `[database]` options, as OpenStack services read them.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DatabaseConfig {
    /// SQLAlchemy-style URL: `sqlite:////var/lib/tocsin/tocsin.sqlite`
    /// (absolute path after the fourth slash, relative after the third),
    /// or `postgresql://user:pass@host:5432/tocsin` (a `+driver` suffix
    /// such as `postgresql+psycopg2` is accepted) when several hosts share
    /// the notifiers. Empty: `tocsin.sqlite` in `uploads.state_path`.
    pub connection: String,
}

impl DatabaseConfig {
    /// Checks the section's own rules: a connection URL tocsin can use.
    ///
    /// # Errors
    /// What is wrong, naming the option.
    pub fn validate(&self) -> Result<(), String> {
        Connection::parse(&self.connection).map(drop).map_err(|error| format!("database.connection: {error}"))
    }
}

/// Why the store failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// `database.connection` is not a URL tocsin can use.
    #[error("{0}")]
    Connection(String),
    /// The database refused or failed a statement.
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    /// The migrations could not run.
    #[error("database migration: {0}")]
    Migration(#[from] sqlx::migrate::MigrateError),
    /// A stored value is not what tocsin wrote.
    #[error("corrupt database entry for {scheme}: {detail}")]
    Corrupt {
        /// The notifier.
        scheme: String,
        /// What is wrong.
        detail: String,
    },
    /// The scheme belongs to someone else.
    #[error("scheme {0} is owned by someone else")]
    Taken(String),
    /// A quota would be exceeded.
    #[error("{0}")]
    Quota(String),
    /// Another writer (another host) changed the same notifier at the same
    /// moment: a key it added is taken.
    #[error("notifier {0} was changed concurrently")]
    Conflict(String),
}

/// Where the notifiers are stored: `database.connection`, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Connection {
    /// `tocsin.sqlite` in `uploads.state_path` (an empty `connection`).
    Default,
    /// An SQLite file.
    Sqlite(PathBuf),
    /// A PostgreSQL URL, as sqlx takes it.
    Postgres(String),
}

impl Connection {
    /// Parses oslo.db's SQLAlchemy-style URL.
    ///
    /// # Errors
    /// A message naming what is unsupported (MySQL, in-memory SQLite).
    pub fn parse(url: &str) -> Result<Connection, String> {
        if url.is_empty() {
            return Ok(Connection::Default);
        }
        let (scheme, rest) = url
            .split_once("://")
            .ok_or("expected <dialect>://…, e.g. sqlite:////var/lib/tocsin/tocsin.sqlite")?;
        let dialect = scheme.split_once('+').map_or(scheme, |(dialect, _driver)| dialect);
        match dialect {
            "sqlite" => match rest.strip_prefix('/') {
                Some(path) if !path.is_empty() => Ok(Connection::Sqlite(PathBuf::from(path))),
                _ => Err("an in-memory SQLite database would lose the notifiers on restart: give a file, \
                          sqlite:////absolute/path or sqlite:///relative/path"
                    .into()),
            },
            "postgresql" | "postgres" => Ok(Connection::Postgres(format!("postgres://{rest}"))),
            other => Err(format!("the {other} dialect is not supported: use sqlite or postgresql")),
        }
    }
}

/// One notifier: a scheme, its owner and its active version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NotifierRow {
    /// The action URL scheme it serves.
    pub scheme: String,
    /// Its tenant; none for the operator's.
    pub tenant: Option<String>,
    /// The version deliveries run.
    pub active_version: Option<i64>,
    /// When it was first uploaded (Unix ms).
    pub created_at_ms: i64,
    /// When it last changed (Unix ms).
    pub updated_at_ms: i64,
}

impl NotifierRow {
    /// Who owns it.
    pub fn owner(&self) -> Owner {
        Owner::from_tenant(self.tenant.clone())
    }
}

/// One immutable version of a notifier, without its bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionRow {
    /// 1, 2, … per scheme.
    pub version: i64,
    /// SHA-256 of the component, hex.
    pub sha256: String,
    /// Size of the component in bytes.
    pub size_bytes: i64,
    /// What the component imports.
    pub imports: Vec<String>,
    /// Hosts granted besides the action URL's.
    pub allow_hosts: Vec<String>,
    /// Limits set at upload (the rest are the defaults).
    pub limits: LimitOverrides,
    /// When it was uploaded (Unix ms).
    pub created_at_ms: i64,
}

/// A version to add.
#[derive(Debug)]
pub(crate) struct NewVersion<'a> {
    /// The scheme.
    pub scheme: &'a str,
    /// Who owns the scheme (must match an existing one's owner).
    pub owner: &'a Owner,
    /// The component's bytes.
    pub component: &'a [u8],
    /// Metadata: sha256, imports, grants and limits (`version` and
    /// `created_at_ms` are assigned by the store).
    pub meta: VersionRow,
    /// For a tenant: at most this many notifiers and bytes in all.
    pub quota: Option<(u32, u64)>,
    /// Versions kept per notifier: the newest this many (at least 2), and
    /// the active one; older ones are deleted when a new one is added.
    pub versions_kept: u32,
}

/// The store; cheap to clone.
#[derive(Debug, Clone)]
pub struct Store {
    pool: AnyPool,
}

impl Store {
    /// Connects to `connection` (with `state_path` for the default SQLite
    /// file, created as needed) and runs the migrations.
    ///
    /// # Errors
    /// [`StoreError`]: unusable URL, unreachable database, failed migration.
    pub async fn open(connection: &str, state_path: &Path) -> Result<Store, StoreError> {
        install_default_drivers();
        let url = match Connection::parse(connection).map_err(StoreError::Connection)? {
            Connection::Default => sqlite_url(&state_path.join("tocsin.sqlite")),
            Connection::Sqlite(path) => sqlite_url(&path),
            Connection::Postgres(url) => url,
        };
        let pool = AnyPoolOptions::new().max_connections(MAX_CONNECTIONS).connect(&url).await?;
        sqlx::migrate!("./migrations").run(&pool).await?;
        Ok(Store { pool })
    }

    /// Every notifier, by scheme.
    ///
    /// # Errors
    /// [`StoreError::Database`].
    pub async fn notifiers(&self) -> Result<Vec<NotifierRow>, StoreError> {
        let rows = sqlx::query(
            "SELECT scheme, tenant, active_version, created_at_ms, updated_at_ms FROM notifiers ORDER BY scheme",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(notifier_row).collect()
    }

    /// The notifier of `scheme`, if any.
    ///
    /// # Errors
    /// [`StoreError::Database`].
    pub async fn notifier(&self, scheme: &str) -> Result<Option<NotifierRow>, StoreError> {
        let row = sqlx::query(
            "SELECT scheme, tenant, active_version, created_at_ms, updated_at_ms FROM notifiers WHERE scheme = $1",
        )
        .bind(scheme)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(notifier_row).transpose()
    }

    /// The versions of `scheme`, oldest first.
    ///
    /// # Errors
    /// [`StoreError::Database`], or [`StoreError::Corrupt`] for metadata
    /// tocsin did not write.
    pub async fn versions(&self, scheme: &str) -> Result<Vec<VersionRow>, StoreError> {
        let rows = sqlx::query(
            "SELECT version, sha256, size_bytes, imports, allow_hosts, limits, created_at_ms \
             FROM notifier_versions WHERE scheme = $1 ORDER BY version",
        )
        .bind(scheme)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(|row| version_row(scheme, row)).collect()
    }

    /// The SHA-256 of every stored version, of every notifier.
    ///
    /// # Errors
    /// [`StoreError::Database`].
    pub(crate) async fn stored_digests(&self) -> Result<std::collections::HashSet<String>, StoreError> {
        let rows = sqlx::query("SELECT DISTINCT sha256 FROM notifier_versions").fetch_all(&self.pool).await?;
        rows.iter().map(|row| Ok(row.try_get::<String, _>(0)?)).collect()
    }

    /// The bytes of one version.
    ///
    /// # Errors
    /// [`StoreError::Database`].
    pub async fn component(&self, scheme: &str, version: i64) -> Result<Option<Vec<u8>>, StoreError> {
        let row = sqlx::query("SELECT component FROM notifier_versions WHERE scheme = $1 AND version = $2")
            .bind(scheme)
            .bind(version)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(|row| row.try_get::<Vec<u8>, _>(0)).transpose()?)
    }

    /// Adds a version of `new.scheme` (creating the notifier) and makes it
    /// active, in one transaction, deleting versions past
    /// `new.versions_kept` (never the active one). The notifier's
    /// `updated_at_ms` becomes the new version's `created_at_ms`.
    ///
    /// # Errors
    /// [`StoreError::Taken`] when another owner has the scheme,
    /// [`StoreError::Quota`] when the tenant's quota would be exceeded,
    /// [`StoreError::Database`].
    pub(crate) async fn add_version(&self, new: NewVersion<'_>) -> Result<VersionRow, StoreError> {
        let scheme = new.scheme;
        self.add_version_once(new).await.map_err(|error| match error {
            StoreError::Database(sqlx::Error::Database(db)) if db.is_unique_violation() => {
                StoreError::Conflict(scheme.to_owned())
            }
            other => other,
        })
    }

    /// Whether [`Store::add_version`] would take `new` now (its owner's
    /// claim, the tenant's quota), changing nothing: asked before an
    /// upload is compiled, so a refused one costs no compilation.
    ///
    /// # Errors
    /// As [`Store::add_version`].
    pub(crate) async fn check_version(&self, new: &NewVersion<'_>) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        let checked = make_room(&mut tx, new, now_ms()).await;
        tx.rollback().await?;
        checked
    }

    async fn add_version_once(&self, new: NewVersion<'_>) -> Result<VersionRow, StoreError> {
        let mut tx = self.pool.begin().await?;
        match add_version_in(&mut tx, new).await {
            Ok(row) => {
                tx.commit().await?;
                Ok(row)
            }
            Err(error) => {
                // Rolled back now: a dropped transaction rolls back only when
                // its connection is next used, and SQLite meanwhile keeps the
                // lock of what it wrote, so a write on another connection
                // (the next upload) would fail with "database is locked".
                tx.rollback().await?;
                Err(error)
            }
        }
    }

    /// Makes `version` of `scheme` the active one, if the notifier is still
    /// the one created at `created_at_ms` (not deleted and made again
    /// meanwhile). Returns its new `updated_at_ms`; none when there is no
    /// such notifier or version.
    ///
    /// # Errors
    /// [`StoreError::Database`].
    pub async fn activate(
        &self,
        scheme: &str,
        created_at_ms: i64,
        version: i64,
    ) -> Result<Option<i64>, StoreError> {
        let mut tx = self.pool.begin().await?;
        let exists = sqlx::query(
            "SELECT 1 FROM notifier_versions v JOIN notifiers n ON n.scheme = v.scheme \
             WHERE v.scheme = $1 AND v.version = $2 AND n.created_at_ms = $3",
        )
        .bind(scheme)
        .bind(version)
        .bind(created_at_ms)
        .fetch_optional(&mut *tx)
        .await?
        .is_some();
        let now = now_ms();
        if exists {
            activate_in(&mut tx, scheme, version, now).await?;
        }
        tx.commit().await?;
        Ok(exists.then_some(now))
    }

    /// Deletes `scheme` with all its versions and secrets. False when there
    /// was none.
    ///
    /// # Errors
    /// [`StoreError::Database`].
    pub async fn delete(&self, scheme: &str) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("DELETE FROM notifier_secrets WHERE scheme = $1").bind(scheme).execute(&mut *tx).await?;
        sqlx::query("DELETE FROM notifier_versions WHERE scheme = $1").bind(scheme).execute(&mut *tx).await?;
        let deleted =
            sqlx::query("DELETE FROM notifiers WHERE scheme = $1").bind(scheme).execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(deleted.rows_affected() > 0)
    }
}

/// One stored secret, encrypted.
#[derive(Debug, Clone)]
pub struct SealedSecret {
    /// Its name.
    pub name: String,
    /// The URLs it is for.
    pub url_prefix: String,
    /// The nonce it was sealed with.
    pub nonce: Vec<u8>,
    /// The ciphertext.
    pub ciphertext: Vec<u8>,
    /// When it was last set (Unix ms).
    pub updated_at_ms: i64,
}

impl Store {
    /// Sets `scheme`'s secret (insert or replace), refusing a new one past
    /// `max` secrets.
    ///
    /// # Errors
    /// [`StoreError::Quota`] past `max`, [`StoreError::Database`].
    pub(crate) async fn put_secret(
        &self,
        scheme: &str,
        secret: &SealedSecret,
        max: usize,
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        let count = sqlx::query("SELECT COUNT(*) FROM notifier_secrets WHERE scheme = $1 AND name <> $2")
            .bind(scheme)
            .bind(&secret.name)
            .fetch_one(&mut *tx)
            .await?
            .try_get::<i64, _>(0)?;
        if usize::try_from(count).unwrap_or(usize::MAX) >= max {
            return Err(StoreError::Quota(format!(
                "notifier {scheme} has {count} secrets, the most it may have"
            )));
        }
        sqlx::query("DELETE FROM notifier_secrets WHERE scheme = $1 AND name = $2")
            .bind(scheme)
            .bind(&secret.name)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO notifier_secrets (scheme, name, url_prefix, nonce, ciphertext, updated_at_ms) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(scheme)
        .bind(&secret.name)
        .bind(&secret.url_prefix)
        .bind(&secret.nonce)
        .bind(&secret.ciphertext)
        .bind(now_ms())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Deletes one secret. False when there was none.
    ///
    /// # Errors
    /// [`StoreError::Database`].
    pub(crate) async fn delete_secret(&self, scheme: &str, name: &str) -> Result<bool, StoreError> {
        let deleted = sqlx::query("DELETE FROM notifier_secrets WHERE scheme = $1 AND name = $2")
            .bind(scheme)
            .bind(name)
            .execute(&self.pool)
            .await?;
        Ok(deleted.rows_affected() > 0)
    }

    /// The secrets of `scheme`, by name.
    ///
    /// # Errors
    /// [`StoreError::Database`].
    pub async fn secrets(&self, scheme: &str) -> Result<Vec<SealedSecret>, StoreError> {
        let rows = sqlx::query(
            "SELECT name, url_prefix, nonce, ciphertext, updated_at_ms FROM notifier_secrets \
             WHERE scheme = $1 ORDER BY name",
        )
        .bind(scheme)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(SealedSecret {
                    name: row.try_get(0)?,
                    url_prefix: row.try_get(1)?,
                    nonce: row.try_get(2)?,
                    ciphertext: row.try_get(3)?,
                    updated_at_ms: row.try_get(4)?,
                })
            })
            .collect()
    }
}

/// [`Store::add_version`]'s work in `tx`, which the caller commits or
/// rolls back.
async fn add_version_in(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    new: NewVersion<'_>,
) -> Result<VersionRow, StoreError> {
    let now = now_ms();
    make_room(tx, &new, now).await?;
    let size = i64::try_from(new.component.len()).unwrap_or(i64::MAX);
    let latest = sqlx::query("SELECT COALESCE(MAX(version), 0) FROM notifier_versions WHERE scheme = $1")
        .bind(new.scheme)
        .fetch_one(&mut **tx)
        .await?;
    let version = latest.try_get::<i64, _>(0)? + 1;
    let meta = VersionRow { version, size_bytes: size, created_at_ms: now, ..new.meta };
    sqlx::query(
        "INSERT INTO notifier_versions \
         (scheme, version, sha256, size_bytes, component, imports, allow_hosts, limits, created_at_ms) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    )
    .bind(new.scheme)
    .bind(version)
    .bind(&meta.sha256)
    .bind(size)
    .bind(new.component)
    .bind(to_json(&meta.imports))
    .bind(to_json(&meta.allow_hosts))
    .bind(to_json(&meta.limits))
    .bind(now)
    .execute(&mut **tx)
    .await?;
    activate_in(tx, new.scheme, version, now).await?;
    Ok(meta)
}

/// What comes before a version is added, in `tx`: the owner's claim, the
/// notifier's row when it is new, the versions it no longer keeps, and
/// the tenant's quota with the new version counted.
async fn make_room(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    new: &NewVersion<'_>,
    now: i64,
) -> Result<(), StoreError> {
    let existing = sqlx::query("SELECT tenant FROM notifiers WHERE scheme = $1")
        .bind(new.scheme)
        .fetch_optional(&mut **tx)
        .await?;
    let existing_is_none = existing.is_none();
    let size = i64::try_from(new.component.len()).unwrap_or(i64::MAX);
    match existing {
        Some(row) => {
            let tenant: Option<String> = row.try_get(0)?;
            if Owner::from_tenant(tenant) != *new.owner {
                return Err(StoreError::Taken(new.scheme.to_owned()));
            }
            // Make room: keep the active version and the newest ones, so
            // that with the new one the newest `versions_kept` remain. The
            // newest always stays, so version numbers only grow.
            sqlx::query(
                "DELETE FROM notifier_versions WHERE scheme = $1 \
                 AND version <> COALESCE((SELECT active_version FROM notifiers WHERE scheme = $1), 0) \
                 AND version NOT IN (SELECT version FROM notifier_versions WHERE scheme = $1 \
                                     ORDER BY version DESC LIMIT $2)",
            )
            .bind(new.scheme)
            .bind(i64::from(new.versions_kept.max(2) - 1))
            .execute(&mut **tx)
            .await?;
        }
        None => {
            sqlx::query(
                "INSERT INTO notifiers (scheme, tenant, active_version, created_at_ms, updated_at_ms) \
                 VALUES ($1, $2, NULL, $3, $3)",
            )
            .bind(new.scheme)
            .bind(new.owner.tenant())
            .bind(now)
            .execute(&mut **tx)
            .await?;
        }
    }
    if let Some((max_notifiers, max_bytes)) = new.quota {
        let tenant = new.owner.tenant().unwrap_or_default();
        let usage = sqlx::query(
            "SELECT (SELECT COUNT(*) FROM notifiers WHERE tenant = $1), \
             (SELECT CAST(COALESCE(SUM(v.size_bytes), 0) AS BIGINT) FROM notifier_versions v \
              JOIN notifiers n ON n.scheme = v.scheme WHERE n.tenant = $1)",
        )
        .bind(tenant)
        .fetch_one(&mut **tx)
        .await?;
        let (count, bytes): (i64, i64) = (usage.try_get(0)?, usage.try_get(1)?);
        // The count includes this notifier now: a new one may not be past the quota.
        if existing_is_none && count > i64::from(max_notifiers) {
            return Err(StoreError::Quota(format!(
                "tenant {tenant} has {} notifiers, its quota is {max_notifiers}",
                count - 1
            )));
        }
        if bytes.saturating_add(size) > i64::try_from(max_bytes).unwrap_or(i64::MAX) {
            return Err(StoreError::Quota(format!(
                "tenant {tenant} stores {bytes} bytes of notifiers; {size} more would exceed its quota of {max_bytes} \
                 (delete notifiers; each keeps its last uploads.versions_kept versions)"
            )));
        }
    }
    Ok(())
}

async fn activate_in(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    scheme: &str,
    version: i64,
    now: i64,
) -> Result<(), StoreError> {
    sqlx::query("UPDATE notifiers SET active_version = $1, updated_at_ms = $2 WHERE scheme = $3")
        .bind(version)
        .bind(now)
        .bind(scheme)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

fn sqlite_url(path: &Path) -> String {
    format!("sqlite://{}?mode=rwc", path.display())
}

fn now_ms() -> i64 {
    jiff::Timestamp::now().as_millisecond()
}

fn to_json<T: Serialize>(value: &T) -> String {
    serde_json::to_string(value).unwrap_or_default()
}

fn notifier_row(row: &sqlx::any::AnyRow) -> Result<NotifierRow, StoreError> {
    Ok(NotifierRow {
        scheme: row.try_get(0)?,
        tenant: row.try_get(1)?,
        active_version: row.try_get(2)?,
        created_at_ms: row.try_get(3)?,
        updated_at_ms: row.try_get(4)?,
    })
}

fn version_row(scheme: &str, row: &sqlx::any::AnyRow) -> Result<VersionRow, StoreError> {
    let json = |index: usize| -> Result<String, StoreError> { Ok(row.try_get::<String, _>(index)?) };
    let corrupt = |what: &str, error: serde_json::Error| StoreError::Corrupt {
        scheme: scheme.to_owned(),
        detail: format!("{what}: {error}"),
    };
    Ok(VersionRow {
        version: row.try_get(0)?,
        sha256: row.try_get(1)?,
        size_bytes: row.try_get(2)?,
        imports: serde_json::from_str(&json(3)?).map_err(|e| corrupt("imports", e))?,
        allow_hosts: serde_json::from_str(&json(4)?).map_err(|e| corrupt("allow_hosts", e))?,
        limits: serde_json::from_str(&json(5)?).map_err(|e| corrupt("limits", e))?,
        created_at_ms: row.try_get(6)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_urls_read_as_oslo_db_writes_them() {
        assert_eq!(Connection::parse(""), Ok(Connection::Default));
        assert_eq!(
            Connection::parse("sqlite:////var/lib/tocsin/t.sqlite"),
            Ok(Connection::Sqlite("/var/lib/tocsin/t.sqlite".into()))
        );
        assert_eq!(Connection::parse("sqlite:///t.sqlite"), Ok(Connection::Sqlite("t.sqlite".into())));
        assert_eq!(
            Connection::parse("postgresql+psycopg2://u:p@db:5432/tocsin"),
            Ok(Connection::Postgres("postgres://u:p@db:5432/tocsin".into()))
        );
        assert!(Connection::parse("sqlite://").unwrap_err().contains("in-memory"));
        assert!(Connection::parse("mysql+pymysql://u@h/d").unwrap_err().contains("mysql"));
        assert!(Connection::parse("tocsin.sqlite").is_err());
    }

    fn meta(sha: &str) -> VersionRow {
        VersionRow {
            version: 0,
            sha256: sha.into(),
            size_bytes: 0,
            imports: vec!["tocsin:notifier/log@0.1.0".into()],
            allow_hosts: vec!["chat.example".into()],
            limits: LimitOverrides { fuel: Some(5), ..LimitOverrides::default() },
            created_at_ms: 0,
        }
    }

    #[tokio::test]
    async fn versions_are_numbered_activated_owned_and_counted_against_quotas() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open("", dir.path()).await.unwrap();
        let owner = &Owner::Tenant("acme".into());
        let add = |scheme, owner, component| {
            store.add_version(NewVersion {
                scheme,
                owner,
                component,
                meta: meta("ab"),
                quota: Some((2, 10)),
                versions_kept: 10,
            })
        };
        let first = add("acme-chat", owner, b"1234").await.unwrap();
        let second = add("acme-chat", owner, b"5678").await.unwrap();
        assert_eq!((first.version, second.version, second.size_bytes), (1, 2, 4));
        assert_eq!(store.notifier("acme-chat").await.unwrap().unwrap().active_version, Some(2));
        let versions = store.versions("acme-chat").await.unwrap();
        assert_eq!(versions.len(), 2);
        assert_eq!(versions[0].limits.fuel, Some(5));
        assert_eq!(versions[0].allow_hosts, ["chat.example"]);
        assert_eq!(store.component("acme-chat", 1).await.unwrap().unwrap(), b"1234");

        let other = &Owner::Tenant("globex".into());
        assert!(matches!(add("acme-chat", other, b"x").await, Err(StoreError::Taken(_))));
        let quota = add("acme-pager", owner, b"abc").await.unwrap_err();
        assert!(quota.to_string().contains("10"), "bytes quota: {quota}");
        add("acme-pager", owner, b"ab").await.unwrap();
        let quota = add("acme-third", owner, b"").await.unwrap_err();
        assert!(quota.to_string().contains("2 notifiers"), "count quota: {quota}");

        let created = store.notifier("acme-chat").await.unwrap().unwrap().created_at_ms;
        assert!(store.activate("acme-chat", created, 1).await.unwrap().is_some());
        assert!(store.activate("acme-chat", created, 9).await.unwrap().is_none());
        assert!(store.activate("acme-chat", created - 1, 1).await.unwrap().is_none(), "another notifier");
        assert_eq!(store.notifier("acme-chat").await.unwrap().unwrap().active_version, Some(1));
        assert!(store.delete("acme-chat").await.unwrap());
        assert!(!store.delete("acme-chat").await.unwrap());
        assert!(store.versions("acme-chat").await.unwrap().is_empty());

        let reopened = Store::open("", dir.path()).await.unwrap();
        let schemes: Vec<String> =
            reopened.notifiers().await.unwrap().into_iter().map(|n| n.scheme).collect();
        assert_eq!(schemes, ["acme-pager"]);
    }

    #[tokio::test]
    async fn old_versions_are_pruned_but_never_the_active_one() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open("", dir.path()).await.unwrap();
        let owner = &Owner::Operator;
        let add = || {
            store.add_version(NewVersion {
                scheme: "pager",
                owner,
                component: b"x",
                meta: meta("ab"),
                quota: None,
                versions_kept: 3,
            })
        };
        let kept = async || -> Vec<i64> {
            store.versions("pager").await.unwrap().iter().map(|v| v.version).collect()
        };
        for _ in 0..4 {
            add().await.unwrap();
        }
        assert_eq!(kept().await, [2, 3, 4]);
        let created = store.notifier("pager").await.unwrap().unwrap().created_at_ms;
        assert!(store.activate("pager", created, 2).await.unwrap().is_some());
        add().await.unwrap();
        assert_eq!(kept().await, [2, 3, 4, 5], "the active version stays");
        add().await.unwrap();
        assert_eq!(kept().await, [4, 5, 6], "numbers only grow");
    }
}
