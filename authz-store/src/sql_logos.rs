//! TPP logos (migration `0007_client_logos`): bytes already checked by
//! `authz_core::logo::check_logo`, stored base64 so both backends share one column type,
//! with their SHA-256 so pages can cache-bust and answer `If-None-Match`.

use async_trait::async_trait;
use base64::Engine as _;
use sha2::{Digest, Sha256};
use sqlx::Any;

use crate::sql::{col, corrupt, db_err};
use crate::{SqlStore, StoreResult};

/// A stored logo.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientLogo {
    pub content_type: String,
    pub bytes: Vec<u8>,
    /// Lower-case hex SHA-256 of `bytes`.
    pub sha256: String,
    pub updated_at: i64,
}

#[async_trait]
pub trait LogoStore: Send + Sync {
    /// Set (or replace) a client's logo. The caller has checked the bytes.
    async fn put_logo(
        &self,
        client_id: &str,
        content_type: &str,
        bytes: &[u8],
        now: i64,
    ) -> StoreResult<ClientLogo>;
    async fn find_logo(&self, client_id: &str) -> StoreResult<Option<ClientLogo>>;
    /// Only the digest: pages build `…/logo?v=<digest>` without loading the bytes.
    async fn logo_digest(&self, client_id: &str) -> StoreResult<Option<String>>;
    /// `false` if the client had no logo.
    async fn delete_logo(&self, client_id: &str) -> StoreResult<bool>;
}

#[async_trait]
impl LogoStore for SqlStore {
    async fn put_logo(
        &self,
        client_id: &str,
        content_type: &str,
        bytes: &[u8],
        now: i64,
    ) -> StoreResult<ClientLogo> {
        let sha256 = hex::encode(Sha256::digest(bytes));
        sqlx::query::<Any>(
            "INSERT INTO client_logos (client_id, content_type, data_b64, sha256, updated_at) \
             VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (client_id) DO UPDATE SET content_type = excluded.content_type, \
             data_b64 = excluded.data_b64, sha256 = excluded.sha256, \
             updated_at = excluded.updated_at",
        )
        .bind(client_id.to_owned())
        .bind(content_type.to_owned())
        .bind(base64::engine::general_purpose::STANDARD.encode(bytes))
        .bind(sha256.clone())
        .bind(now)
        .execute(self.pool())
        .await
        .map_err(db_err)?;
        Ok(ClientLogo {
            content_type: content_type.to_owned(),
            bytes: bytes.to_vec(),
            sha256,
            updated_at: now,
        })
    }

    async fn find_logo(&self, client_id: &str) -> StoreResult<Option<ClientLogo>> {
        let row = sqlx::query::<Any>(
            "SELECT content_type, data_b64, sha256, updated_at FROM client_logos \
             WHERE client_id = $1",
        )
        .bind(client_id.to_owned())
        .fetch_optional(self.pool())
        .await
        .map_err(db_err)?;
        let Some(row) = row else { return Ok(None) };
        let data: String = col(&row, "data_b64")?;
        Ok(Some(ClientLogo {
            content_type: col(&row, "content_type")?,
            bytes: base64::engine::general_purpose::STANDARD
                .decode(data)
                .map_err(|e| corrupt("client_logos.data_b64", e))?,
            sha256: col(&row, "sha256")?,
            updated_at: col(&row, "updated_at")?,
        }))
    }

    async fn logo_digest(&self, client_id: &str) -> StoreResult<Option<String>> {
        let row = sqlx::query::<Any>("SELECT sha256 FROM client_logos WHERE client_id = $1")
            .bind(client_id.to_owned())
            .fetch_optional(self.pool())
            .await
            .map_err(db_err)?;
        row.map(|r| col(&r, "sha256")).transpose()
    }

    async fn delete_logo(&self, client_id: &str) -> StoreResult<bool> {
        let done = sqlx::query::<Any>("DELETE FROM client_logos WHERE client_id = $1")
            .bind(client_id.to_owned())
            .execute(self.pool())
            .await
            .map_err(db_err)?;
        Ok(done.rows_affected() > 0)
    }
}
