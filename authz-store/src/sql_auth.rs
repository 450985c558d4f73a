//! Authentication factors and their audit (issue 6), over the same SQL pool as
//! [`SqlStore`]: TOTP secret replacement (the secret is sealed by the server before it
//! gets here; the store never sees plaintext), single-use recovery codes by digest, the
//! durable sign-in back-off, the sign-in audit trail, and when a consent was last used.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use sqlx::any::AnyRow;

use crate::sql::{col, db_err};
use crate::{SqlStore, StoreResult};

/// One sign-in attempt as audited. `method`: `password`, `totp`, `recovery`, `passkey`;
/// `outcome`: `success`, `failure`, `locked`; `channel`: `interaction` (the login of an
/// authorization) or `dashboard`. `reason` is a short machine word, never a secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthEvent {
    pub customer_id: Option<String>,
    pub at: i64,
    pub method: String,
    pub outcome: String,
    pub reason: String,
    pub channel: String,
    pub client_id: Option<String>,
}

/// How the sign-in back-off grows: `threshold` failures lock the subject for
/// `base_secs`, each further lock doubles it up to `cap_secs`; after `quiet_secs`
/// without a failure the count starts again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackoffPolicy {
    pub threshold: i64,
    pub base_secs: i64,
    pub cap_secs: i64,
    pub quiet_secs: i64,
}

impl BackoffPolicy {
    /// The lock after `lockouts` earlier locks.
    pub fn delay(&self, lockouts: i64) -> i64 {
        let doublings = lockouts.clamp(0, 30) as u32;
        self.base_secs
            .saturating_mul(1i64 << doublings)
            .min(self.cap_secs)
    }
}

#[async_trait]
pub trait AuthStore: Send + Sync {
    /// Every customer's id and stored TOTP secret (for re-sealing at start).
    async fn list_totp_secrets(&self) -> StoreResult<Vec<(String, String)>>;
    /// Replace the stored secret only if it is still `old` (compare-and-set, so a
    /// re-seal racing an enrolment never overwrites the new secret).
    async fn swap_totp_secret(&self, customer_id: &str, old: &str, new: &str) -> StoreResult<bool>;
    /// Enrolment confirmed: the new (sealed) secret, the time-step its confirmation code
    /// used, and a fresh set of recovery code digests, in one transaction. `false` if the
    /// customer does not exist.
    async fn replace_totp(
        &self,
        customer_id: &str,
        sealed_secret: &str,
        confirmed_step: i64,
        recovery_digests: &[String],
        now: i64,
    ) -> StoreResult<bool>;
    /// Replace all of the customer's recovery codes.
    async fn replace_recovery_codes(
        &self,
        customer_id: &str,
        digests: &[String],
        now: i64,
    ) -> StoreResult<()>;
    /// Spend one recovery code: `true` exactly once per unused code.
    async fn use_recovery_code(
        &self,
        customer_id: &str,
        digest: &str,
        now: i64,
    ) -> StoreResult<bool>;
    /// Unused recovery codes left.
    async fn recovery_codes_left(&self, customer_id: &str) -> StoreResult<i64>;

    /// Until when the subject is locked, if it is locked at `now`.
    async fn throttle_locked_until(&self, subject: &str, now: i64) -> StoreResult<Option<i64>>;
    /// Count a failure; returns the new lock's end when this failure started one.
    async fn throttle_failure(
        &self,
        subject: &str,
        now: i64,
        policy: &BackoffPolicy,
    ) -> StoreResult<Option<i64>>;
    /// A successful sign-in forgets the subject's failures and locks.
    async fn throttle_reset(&self, subject: &str) -> StoreResult<()>;

    async fn insert_auth_event(&self, event: &AuthEvent) -> StoreResult<()>;
    /// The customer's most recent sign-in events, newest first.
    async fn list_auth_events(&self, customer_id: &str, limit: i64) -> StoreResult<Vec<AuthEvent>>;

    /// Record that the consent was used at `at` (only moves forward); `false` if nothing
    /// changed.
    async fn record_consent_use(&self, consent_id: &str, at: i64) -> StoreResult<bool>;
    async fn consent_last_used(&self, consent_id: &str) -> StoreResult<Option<i64>>;
}

fn event_from_row(row: &AnyRow) -> StoreResult<AuthEvent> {
    Ok(AuthEvent {
        customer_id: col(row, "customer_id")?,
        at: col(row, "at")?,
        method: col(row, "method")?,
        outcome: col(row, "outcome")?,
        reason: col(row, "reason")?,
        channel: col(row, "channel")?,
        client_id: col(row, "client_id")?,
    })
}

async fn insert_codes<'e, E>(exec: E, customer_id: &str, digest: &str, now: i64) -> StoreResult<()>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    sqlx::query("INSERT INTO recovery_codes (customer_id, digest, created_at) VALUES ($1, $2, $3)")
        .bind(customer_id.to_owned())
        .bind(digest.to_owned())
        .bind(now)
        .execute(exec)
        .await
        .map_err(db_err)?;
    Ok(())
}

#[async_trait]
impl AuthStore for SqlStore {
    async fn list_totp_secrets(&self) -> StoreResult<Vec<(String, String)>> {
        sqlx::query("SELECT id, totp_secret FROM customers ORDER BY id")
            .fetch_all(&self.pool)
            .await
            .map_err(db_err)?
            .iter()
            .map(|r| Ok((col(r, "id")?, col(r, "totp_secret")?)))
            .collect()
    }

    async fn swap_totp_secret(&self, customer_id: &str, old: &str, new: &str) -> StoreResult<bool> {
        let done =
            sqlx::query("UPDATE customers SET totp_secret = $3 WHERE id = $1 AND totp_secret = $2")
                .bind(customer_id.to_owned())
                .bind(old.to_owned())
                .bind(new.to_owned())
                .execute(&self.pool)
                .await
                .map_err(db_err)?;
        Ok(done.rows_affected() == 1)
    }

    async fn replace_totp(
        &self,
        customer_id: &str,
        sealed_secret: &str,
        confirmed_step: i64,
        recovery_digests: &[String],
        now: i64,
    ) -> StoreResult<bool> {
        let mut tx = self.pool.begin().await.map_err(db_err)?;
        // The step is set, not advanced: codes of the old secret mean nothing now, and
        // the confirmation code itself must not work again.
        let done =
            sqlx::query("UPDATE customers SET totp_secret = $2, totp_last_step = $3 WHERE id = $1")
                .bind(customer_id.to_owned())
                .bind(sealed_secret.to_owned())
                .bind(confirmed_step)
                .execute(&mut *tx)
                .await
                .map_err(db_err)?;
        if done.rows_affected() != 1 {
            tx.rollback().await.map_err(db_err)?;
            return Ok(false);
        }
        sqlx::query("DELETE FROM recovery_codes WHERE customer_id = $1")
            .bind(customer_id.to_owned())
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        for d in recovery_digests {
            insert_codes(&mut *tx, customer_id, d, now).await?;
        }
        tx.commit().await.map_err(db_err)?;
        Ok(true)
    }

    async fn replace_recovery_codes(
        &self,
        customer_id: &str,
        digests: &[String],
        now: i64,
    ) -> StoreResult<()> {
        let mut tx = self.pool.begin().await.map_err(db_err)?;
        sqlx::query("DELETE FROM recovery_codes WHERE customer_id = $1")
            .bind(customer_id.to_owned())
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        for d in digests {
            insert_codes(&mut *tx, customer_id, d, now).await?;
        }
        tx.commit().await.map_err(db_err)
    }

    async fn use_recovery_code(
        &self,
        customer_id: &str,
        digest: &str,
        now: i64,
    ) -> StoreResult<bool> {
        // The `used_at IS NULL` guard makes check-and-spend one atomic step.
        let done = sqlx::query(
            "UPDATE recovery_codes SET used_at = $3 \
             WHERE customer_id = $1 AND digest = $2 AND used_at IS NULL",
        )
        .bind(customer_id.to_owned())
        .bind(digest.to_owned())
        .bind(now)
        .execute(&self.pool)
        .await
        .map_err(db_err)?;
        Ok(done.rows_affected() == 1)
    }

    async fn recovery_codes_left(&self, customer_id: &str) -> StoreResult<i64> {
        let row = sqlx::query(
            "SELECT COUNT(*) AS n FROM recovery_codes WHERE customer_id = $1 AND used_at IS NULL",
        )
        .bind(customer_id.to_owned())
        .fetch_one(&self.pool)
        .await
        .map_err(db_err)?;
        col(&row, "n")
    }

    async fn throttle_locked_until(&self, subject: &str, now: i64) -> StoreResult<Option<i64>> {
        let row = sqlx::query("SELECT locked_until FROM login_throttle WHERE subject = $1")
            .bind(subject.to_owned())
            .fetch_optional(&self.pool)
            .await
            .map_err(db_err)?;
        let until: Option<i64> = row.as_ref().map(|r| col(r, "locked_until")).transpose()?;
        Ok(until.filter(|u| *u > now))
    }

    async fn throttle_failure(
        &self,
        subject: &str,
        now: i64,
        policy: &BackoffPolicy,
    ) -> StoreResult<Option<i64>> {
        // One atomic increment (a quiet period starts the count again); nothing counts
        // while locked, so failures racing the lock cannot earn a second one...
        let row = sqlx::query(
            "INSERT INTO login_throttle (subject, failures, lockouts, locked_until, updated_at) \
             VALUES ($1, 1, 0, 0, $2) \
             ON CONFLICT (subject) DO UPDATE SET \
               failures = CASE WHEN login_throttle.updated_at <= $3 THEN 1 \
                          ELSE login_throttle.failures + 1 END, \
               lockouts = CASE WHEN login_throttle.updated_at <= $3 THEN 0 \
                          ELSE login_throttle.lockouts END, \
               updated_at = $2 \
             WHERE login_throttle.locked_until <= $2 \
             RETURNING failures, lockouts",
        )
        .bind(subject.to_owned())
        .bind(now)
        .bind(now - policy.quiet_secs)
        .fetch_optional(&self.pool)
        .await
        .map_err(db_err)?;
        let Some(row) = row else { return Ok(None) };
        let failures: i64 = col(&row, "failures")?;
        let lockouts: i64 = col(&row, "lockouts")?;
        if failures < policy.threshold {
            return Ok(None);
        }
        // ...then a guarded lock: of concurrent failures past the threshold, only the
        // first resets the count, so one burst earns one lock, not several.
        let until = now + policy.delay(lockouts);
        let done = sqlx::query(
            "UPDATE login_throttle SET failures = 0, lockouts = lockouts + 1, \
             locked_until = $2, updated_at = $3 WHERE subject = $1 AND failures >= $4",
        )
        .bind(subject.to_owned())
        .bind(until)
        .bind(now)
        .bind(policy.threshold)
        .execute(&self.pool)
        .await
        .map_err(db_err)?;
        Ok((done.rows_affected() == 1).then_some(until))
    }

    async fn throttle_reset(&self, subject: &str) -> StoreResult<()> {
        sqlx::query("DELETE FROM login_throttle WHERE subject = $1")
            .bind(subject.to_owned())
            .execute(&self.pool)
            .await
            .map_err(db_err)?;
        Ok(())
    }

    async fn insert_auth_event(&self, e: &AuthEvent) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO auth_events (customer_id, at, method, outcome, reason, channel, \
             client_id) VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(e.customer_id.clone())
        .bind(e.at)
        .bind(e.method.clone())
        .bind(e.outcome.clone())
        .bind(e.reason.clone())
        .bind(e.channel.clone())
        .bind(e.client_id.clone())
        .execute(&self.pool)
        .await
        .map_err(db_err)?;
        Ok(())
    }

    async fn list_auth_events(&self, customer_id: &str, limit: i64) -> StoreResult<Vec<AuthEvent>> {
        sqlx::query(
            "SELECT customer_id, at, method, outcome, reason, channel, client_id \
             FROM auth_events WHERE customer_id = $1 ORDER BY seq DESC LIMIT $2",
        )
        .bind(customer_id.to_owned())
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .map_err(db_err)?
        .iter()
        .map(event_from_row)
        .collect()
    }

    async fn record_consent_use(&self, consent_id: &str, at: i64) -> StoreResult<bool> {
        let done = sqlx::query(
            "UPDATE consents SET last_used_at = $2 \
             WHERE id = $1 AND (last_used_at IS NULL OR last_used_at < $2)",
        )
        .bind(consent_id.to_owned())
        .bind(at)
        .execute(&self.pool)
        .await
        .map_err(db_err)?;
        Ok(done.rows_affected() == 1)
    }

    async fn consent_last_used(&self, consent_id: &str) -> StoreResult<Option<i64>> {
        let row = sqlx::query("SELECT last_used_at FROM consents WHERE id = $1")
            .bind(consent_id.to_owned())
            .fetch_optional(&self.pool)
            .await
            .map_err(db_err)?;
        Ok(row
            .as_ref()
            .map(|r| col::<Option<i64>>(r, "last_used_at"))
            .transpose()?
            .flatten())
    }
}
