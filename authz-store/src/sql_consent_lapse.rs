//! Payment consents whose lifetime ran out (ADR 0019): the sweeper's one read. The
//! move itself goes through the guarded `update_consent` (its audit line and event in
//! the same transaction), so this is only a candidate list.

use async_trait::async_trait;

use crate::StoreResult;
use crate::sql::{SqlStore, db_err};

#[async_trait]
pub trait ConsentLapseStore: Send + Sync {
    /// Domestic- and file-payment consents AWAU created at or before `awaiting_since`, or
    /// AUTH last changed (authorised) at or before `authorised_since`; at most `limit`,
    /// oldest first.
    async fn lapsed_payment_consents(
        &self,
        awaiting_since: i64,
        authorised_since: i64,
        limit: i64,
    ) -> StoreResult<Vec<String>>;
}

#[async_trait]
impl ConsentLapseStore for SqlStore {
    async fn lapsed_payment_consents(
        &self,
        awaiting_since: i64,
        authorised_since: i64,
        limit: i64,
    ) -> StoreResult<Vec<String>> {
        // `status` leads the `consents_expiry` index, so only live consents are read.
        sqlx::query_scalar::<_, String>(
            "SELECT id FROM consents \
             WHERE kind IN ('domestic-payment', 'file-payment') \
               AND ((status = 'AwaitingAuthorisation' AND created_at <= $1) \
                 OR (status = 'Authorised' AND updated_at <= $2)) \
             ORDER BY updated_at, id LIMIT $3",
        )
        .bind(awaiting_since)
        .bind(authorised_since)
        .bind(limit)
        .fetch_all(self.pool())
        .await
        .map_err(db_err)
    }
}
