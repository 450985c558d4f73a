//! Dynamic client registration storage (RFC 7591 / 7592) over the same SQL backends as
//! [`crate::SqlStore`]: the registration row next to the client row, written together,
//! and deregistration that removes the client and revokes what it was granted in one
//! transaction. Updates and deletes are guarded by the registration access token's
//! digest, so two concurrent management calls with the same token cannot both win.

use crate::sql::db_err;
use async_trait::async_trait;
use sqlx::any::AnyRow;
use sqlx::{Any, Row};

use crate::{ClientRecord, SqlStore, StoreError, StoreResult};

/// What a dynamic registration adds to a client (see migration `0006_registration`).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct RegistrationRecord {
    pub client_id: String,
    /// SHA-256 digest of the registration access token (the token is never stored).
    pub token_digest: String,
    pub software_id: String,
    pub org_id: String,
    /// Registration-only metadata: `jwks_uri`, the software statement and its claims.
    pub metadata: serde_json::Value,
    pub created_at: i64,
    pub updated_at: i64,
}

/// What deregistration did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Deregistered {
    pub consents_revoked: u64,
    pub refresh_tokens_revoked: u64,
}

#[async_trait]
pub trait RegistrationStore: Send + Sync {
    /// Insert the client and its registration in one transaction; an existing client id
    /// is a [`StoreError::Conflict`] (registration never overwrites a client).
    async fn insert_registration(
        &self,
        client: &ClientRecord,
        reg: &RegistrationRecord,
    ) -> StoreResult<()>;
    async fn find_registration(&self, client_id: &str) -> StoreResult<Option<RegistrationRecord>>;
    /// Replace the client's metadata and its registration, only if the registration's
    /// token digest is still `expected_digest`. `false` if it was not (nothing changed).
    async fn update_registration(
        &self,
        client: &ClientRecord,
        reg: &RegistrationRecord,
        expected_digest: &str,
    ) -> StoreResult<bool>;
    /// Remove a registered client, if its token digest is still `expected_digest`: the
    /// client and registration rows go, its live consents become `Revoked` (with an audit
    /// line by `actor`) and its refresh tokens are revoked, all in one transaction.
    /// `None` if there was no such registration.
    async fn delete_registration(
        &self,
        client_id: &str,
        expected_digest: &str,
        actor: &str,
        now: i64,
    ) -> StoreResult<Option<Deregistered>>;
}

fn json(what: &str, v: &serde_json::Value) -> StoreResult<String> {
    serde_json::to_string(v).map_err(|e| StoreError::Corrupt(format!("{what}: {e}")))
}

fn reg_from_row(row: &AnyRow) -> StoreResult<RegistrationRecord> {
    let get = |n: &str| row.try_get::<String, _>(n).map_err(db_err);
    let meta = get("metadata")?;
    Ok(RegistrationRecord {
        client_id: get("client_id")?,
        token_digest: get("token_digest")?,
        software_id: get("software_id")?,
        org_id: get("org_id")?,
        metadata: serde_json::from_str(&meta)
            .map_err(|e| StoreError::Corrupt(format!("client_registrations.metadata: {e}")))?,
        created_at: row.try_get::<i64, _>("created_at").map_err(db_err)?,
        updated_at: row.try_get::<i64, _>("updated_at").map_err(db_err)?,
    })
}

/// Statuses a deregistration ends (the others are final already).
const LIVE: [&str; 2] = ["AwaitingAuthorisation", "Authorised"];

#[async_trait]
impl RegistrationStore for SqlStore {
    async fn insert_registration(
        &self,
        client: &ClientRecord,
        reg: &RegistrationRecord,
    ) -> StoreResult<()> {
        let mut tx = self.pool.begin().await.map_err(db_err)?;
        // A plain INSERT: a duplicate client id is a unique violation, i.e. a Conflict.
        sqlx::query::<Any>(
            "INSERT INTO clients (client_id, metadata, created_at, updated_at) \
             VALUES ($1, $2, $3, $4)",
        )
        .bind(client.client_id.clone())
        .bind(json("clients.metadata", &client.metadata)?)
        .bind(client.created_at)
        .bind(client.updated_at)
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
        sqlx::query::<Any>(
            "INSERT INTO client_registrations (client_id, token_digest, software_id, org_id, \
             metadata, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(reg.client_id.clone())
        .bind(reg.token_digest.clone())
        .bind(reg.software_id.clone())
        .bind(reg.org_id.clone())
        .bind(json("client_registrations.metadata", &reg.metadata)?)
        .bind(reg.created_at)
        .bind(reg.updated_at)
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
        tx.commit().await.map_err(db_err)
    }

    async fn find_registration(&self, client_id: &str) -> StoreResult<Option<RegistrationRecord>> {
        sqlx::query::<Any>(
            "SELECT client_id, token_digest, software_id, org_id, metadata, created_at, \
             updated_at FROM client_registrations WHERE client_id = $1",
        )
        .bind(client_id.to_owned())
        .fetch_optional(&self.pool)
        .await
        .map_err(db_err)?
        .as_ref()
        .map(reg_from_row)
        .transpose()
    }

    async fn update_registration(
        &self,
        client: &ClientRecord,
        reg: &RegistrationRecord,
        expected_digest: &str,
    ) -> StoreResult<bool> {
        let mut tx = self.pool.begin().await.map_err(db_err)?;
        let done = sqlx::query::<Any>(
            "UPDATE client_registrations SET token_digest = $1, software_id = $2, org_id = $3, \
             metadata = $4, updated_at = $5 WHERE client_id = $6 AND token_digest = $7",
        )
        .bind(reg.token_digest.clone())
        .bind(reg.software_id.clone())
        .bind(reg.org_id.clone())
        .bind(json("client_registrations.metadata", &reg.metadata)?)
        .bind(reg.updated_at)
        .bind(reg.client_id.clone())
        .bind(expected_digest.to_owned())
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
        if done.rows_affected() != 1 {
            tx.rollback().await.map_err(db_err)?;
            return Ok(false);
        }
        let done = sqlx::query::<Any>(
            "UPDATE clients SET metadata = $1, updated_at = $2 WHERE client_id = $3",
        )
        .bind(json("clients.metadata", &client.metadata)?)
        .bind(client.updated_at)
        .bind(client.client_id.clone())
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
        if done.rows_affected() != 1 {
            tx.rollback().await.map_err(db_err)?;
            return Ok(false);
        }
        tx.commit().await.map_err(db_err)?;
        Ok(true)
    }

    async fn delete_registration(
        &self,
        client_id: &str,
        expected_digest: &str,
        actor: &str,
        now: i64,
    ) -> StoreResult<Option<Deregistered>> {
        let mut tx = self.pool.begin().await.map_err(db_err)?;
        let gone = sqlx::query::<Any>(
            "DELETE FROM client_registrations WHERE client_id = $1 AND token_digest = $2",
        )
        .bind(client_id.to_owned())
        .bind(expected_digest.to_owned())
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
        if gone.rows_affected() != 1 {
            tx.rollback().await.map_err(db_err)?;
            return Ok(None);
        }
        sqlx::query::<Any>("DELETE FROM clients WHERE client_id = $1")
            .bind(client_id.to_owned())
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        sqlx::query::<Any>("DELETE FROM client_logos WHERE client_id = $1")
            .bind(client_id.to_owned())
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        let ids: Vec<String> = sqlx::query::<Any>(
            "SELECT id FROM consents WHERE client_id = $1 AND status IN ($2, $3) ORDER BY id",
        )
        .bind(client_id.to_owned())
        .bind(LIVE[0])
        .bind(LIVE[1])
        .fetch_all(&mut *tx)
        .await
        .map_err(db_err)?
        .iter()
        .map(|r| r.try_get::<String, _>("id").map_err(db_err))
        .collect::<StoreResult<_>>()?;
        for id in &ids {
            sqlx::query::<Any>(
                "UPDATE consents SET status = 'Revoked', updated_at = $1 WHERE id = $2",
            )
            .bind(now)
            .bind(id.clone())
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
            sqlx::query::<Any>(
                "INSERT INTO consent_audit (consent_id, at, actor, action, detail) \
                 VALUES ($1, $2, $3, 'revoked', 'client deregistered')",
            )
            .bind(id.clone())
            .bind(now)
            .bind(actor.to_owned())
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        }
        let rts = sqlx::query::<Any>(
            "UPDATE refresh_tokens SET revoked_at = $1 WHERE client_id = $2 AND revoked_at IS NULL",
        )
        .bind(now)
        .bind(client_id.to_owned())
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
        tx.commit().await.map_err(db_err)?;
        Ok(Some(Deregistered {
            consents_revoked: ids.len() as u64,
            refresh_tokens_revoked: rts.rows_affected(),
        }))
    }
}
