//! SQLite and PostgreSQL behind one code path: sqlx's `Any` driver, a schema limited to
//! TEXT/BIGINT columns, `$N` placeholders (which SQLite accepts as numbered parameters) and
//! SQL that both dialects share (`ON CONFLICT .. DO UPDATE .. WHERE`, `RETURNING`, `CASE`).
//! Only connection setup and the migration folder differ per backend.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::migrate::Migrator;
use sqlx::{Any, AnyPool, AssertSqlSafe, Connection, Executor, Row};

use crate::{
    AuditEntry, ClientRecord, ConsentRecord, ConsentStatus, Consumed, CustomerRecord, DurableStore,
    EphemeralStore, PasskeyRecord, RefreshTokenRecord, StoreError, StoreResult,
};

static SQLITE_MIGRATIONS: Migrator = sqlx::migrate!("migrations/sqlite");
static POSTGRES_MIGRATIONS: Migrator = sqlx::migrate!("migrations/postgres");

/// How often (in `put` calls) the ephemeral table sheds expired rows. Readers never rely
/// on it; it only bounds table growth.
const CLEANUP_EVERY: u64 = 256;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    fn name(self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        }
    }
}

pub(crate) fn db_err(e: sqlx::Error) -> StoreError {
    match &e {
        sqlx::Error::Database(d) if d.is_unique_violation() => StoreError::Conflict(d.to_string()),
        _ => StoreError::Database(e.to_string()),
    }
}

pub(crate) fn corrupt(what: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(format!("{what}: {e}"))
}

fn to_json(what: &str, v: &serde_json::Value) -> StoreResult<String> {
    serde_json::to_string(v).map_err(|e| corrupt(what, e))
}

fn from_json(what: &str, s: &str) -> StoreResult<serde_json::Value> {
    serde_json::from_str(s).map_err(|e| corrupt(what, e))
}

pub(crate) fn col<'r, T>(row: &'r AnyRow, name: &str) -> StoreResult<T>
where
    T: sqlx::Decode<'r, Any> + sqlx::Type<Any>,
{
    row.try_get::<T, _>(name).map_err(db_err)
}

/// Schema names are interpolated into DDL and `SET search_path`, so only plain identifiers
/// are accepted.
fn valid_schema(schema: &str) -> bool {
    !schema.is_empty()
        && schema.len() <= 63
        && schema
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !schema.starts_with(|c: char| c.is_ascii_digit())
}

/// Durable store over SQLite or PostgreSQL.
#[derive(Clone)]
pub struct SqlStore {
    pub(crate) pool: AnyPool,
    backend: Backend,
    /// The bank's internal ledger accounts known to exist (committed; they are never
    /// deleted), so a payment skips re-asserting them (`sql_payments::ensure_internal`).
    pub(crate) known_internal: crate::sql_payments::KnownAccounts,
}

impl std::fmt::Debug for SqlStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqlStore")
            .field("backend", &self.backend.name())
            .finish_non_exhaustive()
    }
}

impl SqlStore {
    /// `sqlite://path/to/file.db` (created if missing; WAL, busy_timeout, foreign keys) or
    /// `sqlite::memory:`, or `postgres://...`.
    /// `schema`: for PostgreSQL only, create the schema if missing and use it as search_path
    /// for every pooled connection (test isolation); None = default.
    pub async fn connect(database_url: &str, schema: Option<&str>) -> StoreResult<Self> {
        sqlx::any::install_default_drivers();
        let backend = if database_url.starts_with("sqlite:") {
            Backend::Sqlite
        } else if database_url.starts_with("postgres://")
            || database_url.starts_with("postgresql://")
        {
            Backend::Postgres
        } else {
            return Err(StoreError::Database(
                "unsupported database URL scheme (expected sqlite: or postgres://)".into(),
            ));
        };
        let pool = match backend {
            Backend::Sqlite => connect_sqlite(database_url).await?,
            Backend::Postgres => connect_postgres(database_url, schema).await?,
        };
        let migrator = match backend {
            Backend::Sqlite => &SQLITE_MIGRATIONS,
            Backend::Postgres => &POSTGRES_MIGRATIONS,
        };
        migrator
            .run(&pool)
            .await
            .map_err(|e| StoreError::Database(format!("migration failed: {e}")))?;
        Ok(Self {
            pool,
            backend,
            known_internal: Default::default(),
        })
    }

    /// Ephemeral store sharing this pool (embedded mode).
    pub fn ephemeral(&self) -> SqlEphemeral {
        SqlEphemeral {
            pool: self.pool.clone(),
            puts: Arc::new(AtomicU64::new(0)),
        }
    }

    /// `"sqlite"` or `"postgres"`.
    pub fn backend(&self) -> &'static str {
        self.backend.name()
    }

    /// Delete ephemeral rows and access-token revocations that expired at or before `now`.
    /// Optional housekeeping (e.g. from a periodic task); correctness never depends on it.
    pub async fn purge_expired(&self, now: i64) -> StoreResult<u64> {
        let a = sqlx::query("DELETE FROM ephemeral WHERE expires_at <= $1")
            .bind(now)
            .execute(&self.pool)
            .await
            .map_err(db_err)?
            .rows_affected();
        let b = sqlx::query("DELETE FROM revoked_access_tokens WHERE expires_at <= $1")
            .bind(now)
            .execute(&self.pool)
            .await
            .map_err(db_err)?
            .rows_affected();
        Ok(a + b)
    }

    /// The pool, for the store's other modules (`sql_payments.rs`).
    pub(crate) fn pool(&self) -> &AnyPool {
        &self.pool
    }

    pub(crate) fn backend_kind(&self) -> Backend {
        self.backend
    }

    /// Close the pool, waiting for connections to be returned.
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

async fn connect_sqlite(url: &str) -> StoreResult<AnyPool> {
    let memory = url.contains(":memory:") || url.contains("mode=memory");
    // sqlx opens read-write without create unless told; the contract is "created if missing".
    let url = if memory || url.contains("mode=") {
        url.to_owned()
    } else if url.contains('?') {
        format!("{url}&mode=rwc")
    } else {
        format!("{url}?mode=rwc")
    };
    let opts = AnyPoolOptions::new().after_connect(|conn, _meta| {
        Box::pin(async move {
            // Both are sqlx defaults today; stated explicitly because the audit FK and
            // concurrent writers depend on them.
            conn.execute("PRAGMA foreign_keys = ON").await?;
            conn.execute("PRAGMA busy_timeout = 5000").await?;
            // In WAL mode NORMAL syncs at checkpoints instead of every commit: a crash of
            // the process loses nothing; only an OS crash or power cut can lose the last
            // commits. That trade keeps the per-request replay-cache write off the disk's
            // fsync path (it was the token endpoint's bottleneck). Scaled mode (PostgreSQL)
            // is where full durability guarantees belong.
            conn.execute("PRAGMA synchronous = NORMAL").await?;
            Ok(())
        })
    });
    let opts = if memory {
        // Through `Any`, every new connection re-parses the URL and would get a fresh, empty
        // in-memory database, so keep exactly one connection alive for the pool's lifetime.
        opts.max_connections(1)
            .min_connections(1)
            .idle_timeout(None)
            .max_lifetime(None)
    } else {
        opts.max_connections(8)
    };
    let pool = opts.connect(&url).await.map_err(db_err)?;
    if !memory {
        // WAL is a property of the database file, so setting it once suffices; it lets
        // readers proceed while a writer commits.
        sqlx::query("PRAGMA journal_mode = WAL")
            .fetch_optional(&pool)
            .await
            .map_err(db_err)?;
    }
    Ok(pool)
}

async fn connect_postgres(url: &str, schema: Option<&str>) -> StoreResult<AnyPool> {
    let Some(schema) = schema else {
        return AnyPoolOptions::new()
            .max_connections(16)
            .acquire_timeout(Duration::from_secs(10))
            .connect(url)
            .await
            .map_err(db_err);
    };
    if !valid_schema(schema) {
        return Err(StoreError::Database(format!(
            "invalid schema name {schema:?} (use [A-Za-z_][A-Za-z0-9_]*)"
        )));
    }
    let mut conn = sqlx::AnyConnection::connect(url).await.map_err(db_err)?;
    conn.execute(AssertSqlSafe(format!(
        "CREATE SCHEMA IF NOT EXISTS \"{schema}\""
    )))
    .await
    .map_err(db_err)?;
    conn.close().await.map_err(db_err)?;

    let set_path: Arc<str> = Arc::from(format!("SET search_path TO \"{schema}\""));
    AnyPoolOptions::new()
        .max_connections(16)
        .acquire_timeout(Duration::from_secs(10))
        .after_connect(move |conn, _meta| {
            let stmt = set_path.clone();
            Box::pin(async move {
                conn.execute(AssertSqlSafe(stmt)).await?;
                Ok(())
            })
        })
        .connect(url)
        .await
        .map_err(db_err)
}

fn client_from_row(row: &AnyRow) -> StoreResult<ClientRecord> {
    Ok(ClientRecord {
        client_id: col(row, "client_id")?,
        metadata: from_json("clients.metadata", &col::<String>(row, "metadata")?)?,
        created_at: col(row, "created_at")?,
        updated_at: col(row, "updated_at")?,
    })
}

fn customer_from_row(row: &AnyRow) -> StoreResult<CustomerRecord> {
    Ok(CustomerRecord {
        id: col(row, "id")?,
        username: col(row, "username")?,
        display_name: col(row, "display_name")?,
        password_hash: col(row, "password_hash")?,
        totp_secret: col(row, "totp_secret")?,
        totp_last_step: col(row, "totp_last_step")?,
        created_at: col(row, "created_at")?,
    })
}

fn consent_from_row(row: &AnyRow) -> StoreResult<ConsentRecord> {
    let status: String = col(row, "status")?;
    Ok(ConsentRecord {
        id: col(row, "id")?,
        client_id: col(row, "client_id")?,
        customer_id: col(row, "customer_id")?,
        kind: col(row, "kind")?,
        scopes: col(row, "scopes")?,
        status: ConsentStatus::parse(&status)
            .ok_or_else(|| corrupt("consents.status", format!("unknown status {status:?}")))?,
        details: from_json("consents.details", &col::<String>(row, "details")?)?,
        created_at: col(row, "created_at")?,
        updated_at: col(row, "updated_at")?,
        expires_at: col(row, "expires_at")?,
    })
}

fn audit_from_row(row: &AnyRow) -> StoreResult<AuditEntry> {
    Ok(AuditEntry {
        consent_id: col(row, "consent_id")?,
        at: col(row, "at")?,
        actor: col(row, "actor")?,
        action: col(row, "action")?,
        detail: col(row, "detail")?,
    })
}

fn refresh_from_row(row: &AnyRow) -> StoreResult<RefreshTokenRecord> {
    Ok(RefreshTokenRecord {
        digest: col(row, "digest")?,
        client_id: col(row, "client_id")?,
        consent_id: col(row, "consent_id")?,
        subject: col(row, "subject")?,
        scope: col(row, "scope")?,
        cnf: from_json("refresh_tokens.cnf", &col::<String>(row, "cnf")?)?,
        auth: from_json("refresh_tokens.auth", &col::<String>(row, "auth")?)?,
        created_at: col(row, "created_at")?,
        expires_at: col(row, "expires_at")?,
        revoked_at: col(row, "revoked_at")?,
    })
}

async fn insert_audit<'e, E>(exec: E, consent_id: &str, audit: &AuditEntry) -> StoreResult<()>
where
    E: Executor<'e, Database = Any>,
{
    sqlx::query(
        "INSERT INTO consent_audit (consent_id, at, actor, action, detail) \
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(consent_id.to_owned())
    .bind(audit.at)
    .bind(audit.actor.clone())
    .bind(audit.action.clone())
    .bind(audit.detail.clone())
    .execute(exec)
    .await
    .map_err(db_err)?;
    Ok(())
}

/// An audit line filed under another consent would corrupt the trail; refuse it.
fn check_audit_target(consent_id: &str, audit: &AuditEntry) -> StoreResult<()> {
    if audit.consent_id == consent_id {
        Ok(())
    } else {
        Err(StoreError::Conflict(format!(
            "audit entry for consent {:?} passed with consent {consent_id:?}",
            audit.consent_id
        )))
    }
}

const CONSENT_COLUMNS: &str = "id, client_id, customer_id, kind, scopes, status, details, \
                               created_at, updated_at, expires_at";

#[async_trait]
impl DurableStore for SqlStore {
    fn payments(&self) -> Option<&dyn crate::PaymentStore> {
        Some(self)
    }

    fn ledger_history(&self) -> Option<&dyn crate::LedgerHistoryStore> {
        Some(self)
    }

    fn consent_lapse(&self) -> Option<&dyn crate::ConsentLapseStore> {
        Some(self)
    }

    fn registrations(&self) -> Option<&dyn crate::RegistrationStore> {
        Some(self)
    }

    fn logos(&self) -> Option<&dyn crate::LogoStore> {
        Some(self)
    }

    fn file_payments(&self) -> Option<&dyn crate::FilePaymentStore> {
        Some(self)
    }

    fn alerts(&self) -> Option<&dyn crate::AlertStore> {
        Some(self)
    }

    fn usage(&self) -> Option<&dyn crate::UsageStore> {
        Some(self)
    }

    fn portal(&self) -> Option<&dyn crate::PortalStore> {
        Some(self)
    }

    async fn ping(&self) -> StoreResult<()> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map_err(db_err)?;
        Ok(())
    }

    async fn upsert_client(&self, client: &ClientRecord) -> StoreResult<()> {
        // `created_at` stays that of the first registration.
        sqlx::query(
            "INSERT INTO clients (client_id, metadata, created_at, updated_at) \
             VALUES ($1, $2, $3, $4) \
             ON CONFLICT (client_id) DO UPDATE SET \
               metadata = excluded.metadata, updated_at = excluded.updated_at",
        )
        .bind(client.client_id.clone())
        .bind(to_json("clients.metadata", &client.metadata)?)
        .bind(client.created_at)
        .bind(client.updated_at)
        .execute(&self.pool)
        .await
        .map_err(db_err)?;
        Ok(())
    }

    async fn find_client(&self, client_id: &str) -> StoreResult<Option<ClientRecord>> {
        sqlx::query(
            "SELECT client_id, metadata, created_at, updated_at FROM clients \
             WHERE client_id = $1",
        )
        .bind(client_id.to_owned())
        .fetch_optional(&self.pool)
        .await
        .map_err(db_err)?
        .as_ref()
        .map(client_from_row)
        .transpose()
    }

    async fn upsert_customer(&self, customer: &CustomerRecord) -> StoreResult<()> {
        // The TOTP step only ever moves forward, even when a customer is re-seeded, so a
        // re-import can never make an already-used code valid again. A username taken by
        // another id surfaces as `StoreError::Conflict`.
        sqlx::query(
            "INSERT INTO customers \
               (id, username, display_name, password_hash, totp_secret, totp_last_step, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) \
             ON CONFLICT (id) DO UPDATE SET \
               username = excluded.username, \
               display_name = excluded.display_name, \
               password_hash = excluded.password_hash, \
               totp_secret = excluded.totp_secret, \
               totp_last_step = CASE WHEN customers.totp_last_step > excluded.totp_last_step \
                                THEN customers.totp_last_step ELSE excluded.totp_last_step END",
        )
        .bind(customer.id.clone())
        .bind(customer.username.clone())
        .bind(customer.display_name.clone())
        .bind(customer.password_hash.clone())
        .bind(customer.totp_secret.clone())
        .bind(customer.totp_last_step)
        .bind(customer.created_at)
        .execute(&self.pool)
        .await
        .map_err(db_err)?;
        Ok(())
    }

    async fn find_customer_by_username(
        &self,
        username: &str,
    ) -> StoreResult<Option<CustomerRecord>> {
        sqlx::query(
            "SELECT id, username, display_name, password_hash, totp_secret, totp_last_step, \
             created_at FROM customers WHERE username = $1",
        )
        .bind(username.to_owned())
        .fetch_optional(&self.pool)
        .await
        .map_err(db_err)?
        .as_ref()
        .map(customer_from_row)
        .transpose()
    }

    async fn find_customer(&self, id: &str) -> StoreResult<Option<CustomerRecord>> {
        sqlx::query(
            "SELECT id, username, display_name, password_hash, totp_secret, totp_last_step, \
             created_at FROM customers WHERE id = $1",
        )
        .bind(id.to_owned())
        .fetch_optional(&self.pool)
        .await
        .map_err(db_err)?
        .as_ref()
        .map(customer_from_row)
        .transpose()
    }

    async fn advance_totp_step(&self, customer_id: &str, step: i64) -> StoreResult<bool> {
        // The comparison inside the UPDATE makes check-and-set one atomic step.
        let done = sqlx::query(
            "UPDATE customers SET totp_last_step = $2 WHERE id = $1 AND totp_last_step < $2",
        )
        .bind(customer_id.to_owned())
        .bind(step)
        .execute(&self.pool)
        .await
        .map_err(db_err)?;
        Ok(done.rows_affected() == 1)
    }

    async fn insert_consent(&self, consent: &ConsentRecord, audit: &AuditEntry) -> StoreResult<()> {
        check_audit_target(&consent.id, audit)?;
        let mut tx = self.pool.begin().await.map_err(db_err)?;
        sqlx::query(
            "INSERT INTO consents (id, client_id, customer_id, kind, scopes, status, details, \
             created_at, updated_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        )
        .bind(consent.id.clone())
        .bind(consent.client_id.clone())
        .bind(consent.customer_id.clone())
        .bind(consent.kind.clone())
        .bind(consent.scopes.clone())
        .bind(consent.status.as_str())
        .bind(to_json("consents.details", &consent.details)?)
        .bind(consent.created_at)
        .bind(consent.updated_at)
        .bind(consent.expires_at)
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
        insert_audit(&mut *tx, &consent.id, audit).await?;
        crate::sql_alerts::consent_written(&mut tx, &consent.id).await?;
        tx.commit().await.map_err(db_err)
    }

    async fn find_consent(&self, id: &str) -> StoreResult<Option<ConsentRecord>> {
        sqlx::query(AssertSqlSafe(format!(
            "SELECT {CONSENT_COLUMNS} FROM consents WHERE id = $1"
        )))
        .bind(id.to_owned())
        .fetch_optional(&self.pool)
        .await
        .map_err(db_err)?
        .as_ref()
        .map(consent_from_row)
        .transpose()
    }

    async fn list_consents_for_customer(
        &self,
        customer_id: &str,
    ) -> StoreResult<Vec<ConsentRecord>> {
        sqlx::query(AssertSqlSafe(format!(
            "SELECT {CONSENT_COLUMNS} FROM consents WHERE customer_id = $1 \
             ORDER BY created_at, id"
        )))
        .bind(customer_id.to_owned())
        .fetch_all(&self.pool)
        .await
        .map_err(db_err)?
        .iter()
        .map(consent_from_row)
        .collect()
    }

    async fn transition_consent(
        &self,
        id: &str,
        from: &[ConsentStatus],
        to: ConsentStatus,
        audit: &AuditEntry,
    ) -> StoreResult<bool> {
        self.update_consent(id, from, to, None, None, audit).await
    }

    async fn update_consent(
        &self,
        id: &str,
        from: &[ConsentStatus],
        to: ConsentStatus,
        customer_id: Option<&str>,
        details: Option<&serde_json::Value>,
        audit: &AuditEntry,
    ) -> StoreResult<bool> {
        check_audit_target(id, audit)?;
        if from.is_empty() {
            return Ok(false);
        }
        let details = details
            .map(|d| to_json("consents.details", d))
            .transpose()?;
        // Placeholders $6.. for the allowed source states; only numbers are interpolated.
        let allowed = (0..from.len())
            .map(|i| format!("${}", i + 6))
            .collect::<Vec<_>>()
            .join(", ");
        let sql = format!(
            "UPDATE consents SET status = $1, updated_at = $2, \
             customer_id = COALESCE($4, customer_id), details = COALESCE($5, details) \
             WHERE id = $3 AND status IN ({allowed})"
        );
        let mut tx = self.pool.begin().await.map_err(db_err)?;
        // The guarded UPDATE is the first statement, so it takes the row (PostgreSQL) or
        // database (SQLite) write lock before anything is read: two racing transitions
        // cannot both see the old state.
        let mut q = sqlx::query(AssertSqlSafe(sql))
            .bind(to.as_str())
            .bind(audit.at)
            .bind(id.to_owned())
            .bind(customer_id.map(str::to_owned))
            .bind(details);
        for s in from {
            q = q.bind(s.as_str());
        }
        let changed = q.execute(&mut *tx).await.map_err(db_err)?.rows_affected();
        if changed != 1 {
            tx.rollback().await.map_err(db_err)?;
            return Ok(false);
        }
        insert_audit(&mut *tx, id, audit).await?;
        // The event notification is part of the change (transactional outbox).
        crate::sql_events::consent_changed(&mut tx, id, from, to, audit).await?;
        crate::sql_alerts::consent_written(&mut tx, id).await?;
        tx.commit().await.map_err(db_err)?;
        Ok(true)
    }

    async fn list_audit(&self, consent_id: &str) -> StoreResult<Vec<AuditEntry>> {
        sqlx::query(
            "SELECT consent_id, at, actor, action, detail FROM consent_audit \
             WHERE consent_id = $1 ORDER BY seq",
        )
        .bind(consent_id.to_owned())
        .fetch_all(&self.pool)
        .await
        .map_err(db_err)?
        .iter()
        .map(audit_from_row)
        .collect()
    }

    async fn insert_refresh_token(&self, token: &RefreshTokenRecord) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO refresh_tokens (digest, client_id, consent_id, subject, scope, cnf, \
             auth, created_at, expires_at, revoked_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        )
        .bind(token.digest.clone())
        .bind(token.client_id.clone())
        .bind(token.consent_id.clone())
        .bind(token.subject.clone())
        .bind(token.scope.clone())
        .bind(to_json("refresh_tokens.cnf", &token.cnf)?)
        .bind(to_json("refresh_tokens.auth", &token.auth)?)
        .bind(token.created_at)
        .bind(token.expires_at)
        .bind(token.revoked_at)
        .execute(&self.pool)
        .await
        .map_err(db_err)?;
        Ok(())
    }

    async fn find_refresh_token(&self, digest: &str) -> StoreResult<Option<RefreshTokenRecord>> {
        sqlx::query(
            "SELECT digest, client_id, consent_id, subject, scope, cnf, auth, created_at, \
             expires_at, revoked_at FROM refresh_tokens WHERE digest = $1",
        )
        .bind(digest.to_owned())
        .fetch_optional(&self.pool)
        .await
        .map_err(db_err)?
        .as_ref()
        .map(refresh_from_row)
        .transpose()
    }

    async fn revoke_refresh_token(&self, digest: &str, now: i64) -> StoreResult<()> {
        // Keeps the first revocation time.
        sqlx::query(
            "UPDATE refresh_tokens SET revoked_at = $2 WHERE digest = $1 AND revoked_at IS NULL",
        )
        .bind(digest.to_owned())
        .bind(now)
        .execute(&self.pool)
        .await
        .map_err(db_err)?;
        Ok(())
    }

    async fn revoke_refresh_tokens_for_consent(
        &self,
        consent_id: &str,
        now: i64,
    ) -> StoreResult<u64> {
        let done = sqlx::query(
            "UPDATE refresh_tokens SET revoked_at = $2 \
             WHERE consent_id = $1 AND revoked_at IS NULL",
        )
        .bind(consent_id.to_owned())
        .bind(now)
        .execute(&self.pool)
        .await
        .map_err(db_err)?;
        Ok(done.rows_affected())
    }

    async fn revoke_access_token(&self, jti: &str, expires_at: i64) -> StoreResult<()> {
        // Idempotent; a repeat never shortens how long the entry is kept.
        sqlx::query(
            "INSERT INTO revoked_access_tokens (jti, expires_at) VALUES ($1, $2) \
             ON CONFLICT (jti) DO UPDATE SET expires_at = \
               CASE WHEN excluded.expires_at > revoked_access_tokens.expires_at \
               THEN excluded.expires_at ELSE revoked_access_tokens.expires_at END",
        )
        .bind(jti.to_owned())
        .bind(expires_at)
        .execute(&self.pool)
        .await
        .map_err(db_err)?;
        Ok(())
    }

    async fn is_access_token_revoked(&self, jti: &str) -> StoreResult<bool> {
        // No expiry check: an entry past its expiry belongs to a token that is rejected as
        // expired anyway, so "revoked" is still a correct answer.
        let row = sqlx::query("SELECT jti FROM revoked_access_tokens WHERE jti = $1")
            .bind(jti.to_owned())
            .fetch_optional(&self.pool)
            .await
            .map_err(db_err)?;
        Ok(row.is_some())
    }

    async fn insert_passkey(&self, passkey: &PasskeyRecord) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO passkeys (credential_id, customer_id, name, credential, sign_count, \
             created_at, last_used_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(passkey.credential_id.clone())
        .bind(passkey.customer_id.clone())
        .bind(passkey.name.clone())
        .bind(to_json("passkeys.credential", &passkey.credential)?)
        .bind(passkey.sign_count)
        .bind(passkey.created_at)
        .bind(passkey.last_used_at)
        .execute(&self.pool)
        .await
        .map_err(db_err)?;
        Ok(())
    }

    async fn list_passkeys(&self, customer_id: &str) -> StoreResult<Vec<PasskeyRecord>> {
        sqlx::query(AssertSqlSafe(format!(
            "SELECT {PASSKEY_COLUMNS} FROM passkeys WHERE customer_id = $1 \
             ORDER BY created_at, credential_id"
        )))
        .bind(customer_id.to_owned())
        .fetch_all(&self.pool)
        .await
        .map_err(db_err)?
        .iter()
        .map(passkey_from_row)
        .collect()
    }

    async fn find_passkey(&self, credential_id: &str) -> StoreResult<Option<PasskeyRecord>> {
        sqlx::query(AssertSqlSafe(format!(
            "SELECT {PASSKEY_COLUMNS} FROM passkeys WHERE credential_id = $1"
        )))
        .bind(credential_id.to_owned())
        .fetch_optional(&self.pool)
        .await
        .map_err(db_err)?
        .as_ref()
        .map(passkey_from_row)
        .transpose()
    }

    async fn record_passkey_use(
        &self,
        credential_id: &str,
        credential: &serde_json::Value,
        sign_count: i64,
        used_at: i64,
    ) -> StoreResult<bool> {
        // The counter guard inside the UPDATE makes check-and-set one atomic step.
        let done = sqlx::query(
            "UPDATE passkeys SET credential = $2, sign_count = $3, last_used_at = $4 \
             WHERE credential_id = $1 AND (sign_count < $3 OR (sign_count = 0 AND $3 = 0))",
        )
        .bind(credential_id.to_owned())
        .bind(to_json("passkeys.credential", credential)?)
        .bind(sign_count)
        .bind(used_at)
        .execute(&self.pool)
        .await
        .map_err(db_err)?;
        Ok(done.rows_affected() == 1)
    }

    async fn rename_passkey(
        &self,
        customer_id: &str,
        credential_id: &str,
        name: &str,
    ) -> StoreResult<bool> {
        let done = sqlx::query(
            "UPDATE passkeys SET name = $3 WHERE customer_id = $1 AND credential_id = $2",
        )
        .bind(customer_id.to_owned())
        .bind(credential_id.to_owned())
        .bind(name.to_owned())
        .execute(&self.pool)
        .await
        .map_err(db_err)?;
        Ok(done.rows_affected() == 1)
    }

    async fn delete_passkey(&self, customer_id: &str, credential_id: &str) -> StoreResult<bool> {
        let done =
            sqlx::query("DELETE FROM passkeys WHERE customer_id = $1 AND credential_id = $2")
                .bind(customer_id.to_owned())
                .bind(credential_id.to_owned())
                .execute(&self.pool)
                .await
                .map_err(db_err)?;
        Ok(done.rows_affected() == 1)
    }
}

const PASSKEY_COLUMNS: &str =
    "credential_id, customer_id, name, credential, sign_count, created_at, last_used_at";

fn passkey_from_row(row: &AnyRow) -> StoreResult<PasskeyRecord> {
    Ok(PasskeyRecord {
        credential_id: col(row, "credential_id")?,
        customer_id: col(row, "customer_id")?,
        name: col(row, "name")?,
        credential: from_json("passkeys.credential", &col::<String>(row, "credential")?)?,
        sign_count: col(row, "sign_count")?,
        created_at: col(row, "created_at")?,
        last_used_at: col(row, "last_used_at")?,
    })
}

/// Ephemeral store in the SQL database (embedded mode). A record is live while
/// `now < expires_at`.
#[derive(Clone)]
pub struct SqlEphemeral {
    pool: AnyPool,
    puts: Arc<AtomicU64>,
}

impl std::fmt::Debug for SqlEphemeral {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqlEphemeral").finish_non_exhaustive()
    }
}

impl SqlEphemeral {
    async fn cleanup(&self, now: i64) {
        let res = sqlx::query("DELETE FROM ephemeral WHERE expires_at <= $1")
            .bind(now)
            .execute(&self.pool)
            .await;
        // Best effort: a failed sweep is retried at the next interval.
        if let Err(e) = res {
            tracing::warn!(error = %e, "ephemeral cleanup failed");
        }
    }
}

#[async_trait]
impl EphemeralStore for SqlEphemeral {
    async fn put(
        &self,
        ns: &str,
        key: &str,
        value: &str,
        expires_at: i64,
        now: i64,
    ) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO ephemeral (ns, item_key, item_value, expires_at, consumed) \
             VALUES ($1, $2, $3, $4, 0) \
             ON CONFLICT (ns, item_key) DO UPDATE SET \
               item_value = excluded.item_value, expires_at = excluded.expires_at, consumed = 0",
        )
        .bind(ns.to_owned())
        .bind(key.to_owned())
        .bind(value.to_owned())
        .bind(expires_at)
        .execute(&self.pool)
        .await
        .map_err(db_err)?;
        if self.puts.fetch_add(1, Ordering::Relaxed) % CLEANUP_EVERY == CLEANUP_EVERY - 1 {
            self.cleanup(now).await;
        }
        Ok(())
    }

    async fn get(&self, ns: &str, key: &str, now: i64) -> StoreResult<Option<String>> {
        let row = sqlx::query(
            "SELECT item_value FROM ephemeral \
             WHERE ns = $1 AND item_key = $2 AND expires_at > $3",
        )
        .bind(ns.to_owned())
        .bind(key.to_owned())
        .bind(now)
        .fetch_optional(&self.pool)
        .await
        .map_err(db_err)?;
        row.as_ref().map(|r| col(r, "item_value")).transpose()
    }

    async fn take(&self, ns: &str, key: &str, now: i64) -> StoreResult<Option<String>> {
        // A single DELETE .. RETURNING: of concurrent callers only the one whose DELETE
        // removed the row gets it back. Expired rows are removed too, but not returned.
        let row = sqlx::query(
            "DELETE FROM ephemeral WHERE ns = $1 AND item_key = $2 \
             RETURNING item_value, expires_at",
        )
        .bind(ns.to_owned())
        .bind(key.to_owned())
        .fetch_optional(&self.pool)
        .await
        .map_err(db_err)?;
        let Some(row) = row else { return Ok(None) };
        let expires_at: i64 = col(&row, "expires_at")?;
        if expires_at <= now {
            return Ok(None);
        }
        col(&row, "item_value").map(Some)
    }

    async fn delete(&self, ns: &str, key: &str) -> StoreResult<()> {
        sqlx::query("DELETE FROM ephemeral WHERE ns = $1 AND item_key = $2")
            .bind(ns.to_owned())
            .bind(key.to_owned())
            .execute(&self.pool)
            .await
            .map_err(db_err)?;
        Ok(())
    }

    async fn insert_if_absent(
        &self,
        ns: &str,
        key: &str,
        value: &str,
        expires_at: i64,
        now: i64,
    ) -> StoreResult<bool> {
        // One statement: insert, or overwrite only a row that has already expired. A live
        // row makes the DO UPDATE's WHERE false, so nothing is affected.
        let done = sqlx::query(
            "INSERT INTO ephemeral (ns, item_key, item_value, expires_at, consumed) \
             VALUES ($1, $2, $3, $4, 0) \
             ON CONFLICT (ns, item_key) DO UPDATE SET \
               item_value = excluded.item_value, expires_at = excluded.expires_at, consumed = 0 \
             WHERE ephemeral.expires_at <= $5",
        )
        .bind(ns.to_owned())
        .bind(key.to_owned())
        .bind(value.to_owned())
        .bind(expires_at)
        .bind(now)
        .execute(&self.pool)
        .await
        .map_err(db_err)?;
        Ok(done.rows_affected() == 1)
    }

    async fn consume(&self, ns: &str, key: &str, now: i64) -> StoreResult<Consumed> {
        // The flag flip is a single guarded UPDATE, so exactly one caller sees Fresh. If it
        // misses, a read tells Replayed from Missing; a row that is live but unconsumed at
        // that point was (re)written in between, so the flip is retried.
        for _ in 0..3 {
            let fresh = sqlx::query(
                "UPDATE ephemeral SET consumed = 1 \
                 WHERE ns = $1 AND item_key = $2 AND consumed = 0 AND expires_at > $3 \
                 RETURNING item_value",
            )
            .bind(ns.to_owned())
            .bind(key.to_owned())
            .bind(now)
            .fetch_optional(&self.pool)
            .await
            .map_err(db_err)?;
            if let Some(row) = fresh {
                return Ok(Consumed::Fresh(col(&row, "item_value")?));
            }
            let seen = sqlx::query(
                "SELECT item_value, consumed FROM ephemeral \
                 WHERE ns = $1 AND item_key = $2 AND expires_at > $3",
            )
            .bind(ns.to_owned())
            .bind(key.to_owned())
            .bind(now)
            .fetch_optional(&self.pool)
            .await
            .map_err(db_err)?;
            match seen {
                None => return Ok(Consumed::Missing),
                Some(row) if col::<i64>(&row, "consumed")? != 0 => {
                    return Ok(Consumed::Replayed(col(&row, "item_value")?));
                }
                Some(_) => continue,
            }
        }
        Err(StoreError::Conflict(format!(
            "consume of {ns}/… kept racing with concurrent writes"
        )))
    }

    async fn ping(&self) -> StoreResult<()> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map_err(db_err)?;
        Ok(())
    }
}
