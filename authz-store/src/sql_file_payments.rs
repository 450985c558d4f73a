//! File (bulk) payments on the payment ledger (issue 7, ADR 0016): the uploaded file of a
//! file-payment consent, and the execution of the whole file.
//!
//! [`FilePaymentStore::execute_file_payment`] is ONE database transaction, like a domestic
//! payment's: the idempotency key, the consent AUTH → COND, the file payment row, then
//! every item through the same steps as a domestic payment
//! ([`crate::sql_payments::apply_leg`]: creditor, guarded debit, credit leg and posting, the
//! payment row and its first status), the audit line and the TPP's events. Each item is
//! its own double-entry posting and its own `payments` row, so an item the account cannot
//! fund is `RJCT` (`AM04`) while the others move; the clearing settles or returns each
//! external item like any payment. Either the whole execution is committed or none of it.

use crate::sql::{col, db_err};
use crate::sql_payments::{
    PAYMENT_COLUMNS, Tx, apply_leg_posted, audit, claim_key, json_text, payment_from_row,
};
use crate::{
    AuditEntry, IdempotencyRecord, NewEvent, PaymentRecord, SqlStore, StoreError, StoreResult,
};
use async_trait::async_trait;
use sqlx::AssertSqlSafe;
use sqlx::any::AnyRow;

/// The file a TPP uploaded for a file-payment consent, as received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredFile {
    pub consent_id: String,
    pub file_type: String,
    pub content_type: String,
    /// The file's bytes (UTF-8: both formats are text).
    pub body: String,
    pub file_hash: String,
    pub uploaded_at: i64,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Uploaded {
    Done,
    /// The idempotency key is in use by this client (live): nothing written.
    KeyInUse(IdempotencyRecord),
    /// Not this client's file-payment consent awaiting its file (another upload won, or
    /// the consent moved on): nothing written.
    Refused,
}

/// An executed file.
#[derive(Debug, Clone, PartialEq)]
pub struct FilePaymentRecord {
    pub id: String,
    pub consent_id: String,
    pub client_id: String,
    pub customer_id: String,
    pub debtor_account_id: String,
    pub currency: String,
    pub item_count: i64,
    /// Sum of the items in minor units.
    pub control_sum: i64,
    /// The OB Initiation and anything else the API renders.
    pub details: serde_json::Value,
    pub created_at: i64,
}

/// One payment of the file: the payment row to write and where its money goes.
#[derive(Debug, Clone)]
pub struct FileItem {
    pub payment: PaymentRecord,
    pub creditor_scheme: String,
    pub creditor_identification: String,
    pub clearing_after_secs: i64,
    pub clearing_outcome: String,
}

/// Everything [`FilePaymentStore::execute_file_payment`] writes.
#[derive(Debug, Clone)]
pub struct FileExecution {
    pub file: FilePaymentRecord,
    /// In file order.
    pub items: Vec<FileItem>,
    /// The consent's details after consumption.
    pub consent_details: serde_json::Value,
    /// As [`crate::PaymentExecution::consent_authorised_after`]: the consent's lifetime.
    pub consent_authorised_after: i64,
    pub audit: AuditEntry,
    pub idempotency: IdempotencyRecord,
}

#[derive(Debug, Clone, PartialEq)]
pub enum FileExecuted {
    /// Committed: the file payment and its items (each ACSC, ACSP or RJCT with a reason).
    Done(Box<(FilePaymentRecord, Vec<PaymentRecord>)>),
    KeyInUse(IdempotencyRecord),
    /// The consent is not authorised (any more), or not this client's / customer's.
    ConsentNotAuthorised,
}

/// File payments. Implemented by [`SqlStore`].
#[async_trait]
pub trait FilePaymentStore: Send + Sync {
    /// Stores the consent's file with the consent's new details (AWUP → AWAU), the audit
    /// line and the key, in one transaction guarded on the consent awaiting its file.
    async fn upload_file(
        &self,
        client_id: &str,
        file: &StoredFile,
        consent_details: &serde_json::Value,
        audit: &AuditEntry,
        idempotency: &IdempotencyRecord,
    ) -> StoreResult<Uploaded>;
    async fn find_file(&self, consent_id: &str) -> StoreResult<Option<StoredFile>>;
    /// Executes a file: see the module documentation.
    async fn execute_file_payment(&self, x: &FileExecution) -> StoreResult<FileExecuted>;
    async fn find_file_payment(&self, id: &str) -> StoreResult<Option<FilePaymentRecord>>;
    /// The file payment's items, in file order.
    async fn file_payment_items(&self, id: &str) -> StoreResult<Vec<PaymentRecord>>;
}

/// The consent's resource type and link in events.
pub(crate) fn consent_resource(id: &str) -> (&'static str, String) {
    (
        "file-payment-consent",
        format!("/open-banking/v4.0/pisp/file-payment-consents/{id}"),
    )
}

async fn event(
    tx: &mut Tx<'_>,
    client_id: &str,
    consent_id: &str,
    (rid, rty, link): (&str, &str, String),
    txn: &str,
    now: i64,
) -> StoreResult<()> {
    let e = NewEvent {
        client_id: client_id.to_owned(),
        consent_id: Some(consent_id.to_owned()),
        event_type: crate::EVENT_RESOURCE_UPDATE.into(),
        rid: rid.to_owned(),
        rty: rty.to_owned(),
        link,
        detail: serde_json::json!({}),
        txn: txn.to_owned(),
        toe: now,
    };
    crate::enqueue_event(tx, &e, crate::sql_events::due_ms(now)).await?;
    Ok(())
}

fn file_payment_link(id: &str) -> String {
    format!("/open-banking/v4.0/pisp/file-payments/{id}")
}

/// Called by the clearing for every payment it moves: when the payment is an item of a
/// file payment, the TPP gets a `resource-update` of the file payment (whose aggregated
/// status changed) instead of one for the item. Returns whether it was an item.
pub(crate) async fn item_changed(
    tx: &mut Tx<'_>,
    p: &PaymentRecord,
    now: i64,
) -> StoreResult<bool> {
    let row = sqlx::query(
        "SELECT i.file_payment_id, f.consent_id FROM file_payment_items i \
         JOIN file_payments f ON f.id = i.file_payment_id WHERE i.payment_id = $1",
    )
    .bind(p.id.clone())
    .fetch_optional(&mut **tx)
    .await
    .map_err(db_err)?;
    let Some(row) = row else { return Ok(false) };
    let fid: String = col(&row, "file_payment_id")?;
    let consent: String = col(&row, "consent_id")?;
    let txn = format!("txn-{}", uuid::Uuid::new_v4());
    event(
        tx,
        &p.client_id,
        &consent,
        (&fid, "file-payment", file_payment_link(&fid)),
        &txn,
        now,
    )
    .await?;
    Ok(true)
}

const FILE_PAYMENT_COLUMNS: &str = "id, consent_id, client_id, customer_id, debtor_account_id, \
     currency, item_count, control_sum, details, created_at";

fn file_payment_from_row(r: &AnyRow) -> StoreResult<FilePaymentRecord> {
    let details: String = col(r, "details")?;
    Ok(FilePaymentRecord {
        id: col(r, "id")?,
        consent_id: col(r, "consent_id")?,
        client_id: col(r, "client_id")?,
        customer_id: col(r, "customer_id")?,
        debtor_account_id: col(r, "debtor_account_id")?,
        currency: col(r, "currency")?,
        item_count: col(r, "item_count")?,
        control_sum: col(r, "control_sum")?,
        details: serde_json::from_str(&details)
            .map_err(|e| StoreError::Corrupt(format!("file_payments.details: {e}")))?,
        created_at: col(r, "created_at")?,
    })
}

#[async_trait]
impl FilePaymentStore for SqlStore {
    async fn upload_file(
        &self,
        client_id: &str,
        f: &StoredFile,
        consent_details: &serde_json::Value,
        a: &AuditEntry,
        k: &IdempotencyRecord,
    ) -> StoreResult<Uploaded> {
        if a.consent_id != f.consent_id || k.resource_id != f.consent_id {
            return Err(StoreError::Conflict(
                "audit / key for another consent".into(),
            ));
        }
        let mut tx = self.pool().begin().await.map_err(db_err)?;
        if !claim_key(&mut tx, k).await? {
            tx.rollback().await.map_err(db_err)?;
            return Ok(Uploaded::KeyInUse(self.key_in_use(k).await?));
        }
        // The consent row first: concurrent uploads queue on its lock (PostgreSQL).
        let moved = sqlx::query(
            "UPDATE consents SET details = $2, updated_at = $3 \
             WHERE id = $1 AND client_id = $4 AND kind = 'file-payment' \
               AND status = 'AwaitingAuthorisation'",
        )
        .bind(f.consent_id.clone())
        .bind(json_text(consent_details)?)
        .bind(f.uploaded_at)
        .bind(client_id.to_owned())
        .execute(&mut *tx)
        .await
        .map_err(db_err)?
        .rows_affected();
        let stored = if moved == 1 {
            sqlx::query(
                "INSERT INTO file_payment_files \
                   (consent_id, file_type, content_type, body, file_hash, uploaded_at) \
                 VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (consent_id) DO NOTHING",
            )
            .bind(f.consent_id.clone())
            .bind(f.file_type.clone())
            .bind(f.content_type.clone())
            .bind(f.body.clone())
            .bind(f.file_hash.clone())
            .bind(f.uploaded_at)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?
            .rows_affected()
        } else {
            0
        };
        if stored != 1 {
            tx.rollback().await.map_err(db_err)?;
            return Ok(Uploaded::Refused);
        }
        audit(&mut tx, a).await?;
        tx.commit().await.map_err(db_err)?;
        Ok(Uploaded::Done)
    }

    async fn find_file(&self, consent_id: &str) -> StoreResult<Option<StoredFile>> {
        let row = sqlx::query(
            "SELECT consent_id, file_type, content_type, body, file_hash, uploaded_at \
             FROM file_payment_files WHERE consent_id = $1",
        )
        .bind(consent_id.to_owned())
        .fetch_optional(self.pool())
        .await
        .map_err(db_err)?;
        let Some(r) = row else { return Ok(None) };
        Ok(Some(StoredFile {
            consent_id: col(&r, "consent_id")?,
            file_type: col(&r, "file_type")?,
            content_type: col(&r, "content_type")?,
            body: col(&r, "body")?,
            file_hash: col(&r, "file_hash")?,
            uploaded_at: col(&r, "uploaded_at")?,
        }))
    }

    async fn execute_file_payment(&self, x: &FileExecution) -> StoreResult<FileExecuted> {
        let f = &x.file;
        let now = f.created_at;
        if x.audit.consent_id != f.consent_id || x.idempotency.resource_id != f.id {
            return Err(StoreError::Conflict(
                "audit / key for another file payment".into(),
            ));
        }
        let mut tx = self.pool().begin().await.map_err(db_err)?;
        // 1. The key: a second request with it waits here for the first to finish.
        if !claim_key(&mut tx, &x.idempotency).await? {
            tx.rollback().await.map_err(db_err)?;
            return Ok(FileExecuted::KeyInUse(
                self.key_in_use(&x.idempotency).await?,
            ));
        }
        // 2. The consent, AUTH → COND, only if it is this client's and customer's and
        //    within its lifetime.
        let consumed = sqlx::query(
            "UPDATE consents SET status = 'Consumed', updated_at = $2, details = $3 \
             WHERE id = $1 AND status = 'Authorised' AND kind = 'file-payment' \
               AND client_id = $4 AND customer_id = $5 AND updated_at > $6",
        )
        .bind(f.consent_id.clone())
        .bind(now)
        .bind(json_text(&x.consent_details)?)
        .bind(f.client_id.clone())
        .bind(f.customer_id.clone())
        .bind(x.consent_authorised_after)
        .execute(&mut *tx)
        .await
        .map_err(db_err)?
        .rows_affected();
        if consumed != 1 {
            tx.rollback().await.map_err(db_err)?;
            return Ok(FileExecuted::ConsentNotAuthorised);
        }
        // 3. The file payment, then each item as its own payment and posting, in order.
        sqlx::query(
            "INSERT INTO file_payments (id, consent_id, client_id, customer_id, \
               debtor_account_id, currency, item_count, control_sum, details, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        )
        .bind(f.id.clone())
        .bind(f.consent_id.clone())
        .bind(f.client_id.clone())
        .bind(f.customer_id.clone())
        .bind(f.debtor_account_id.clone())
        .bind(f.currency.clone())
        .bind(f.item_count)
        .bind(f.control_sum)
        .bind(json_text(&f.details)?)
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
        let mut done = Vec::with_capacity(x.items.len());
        for (seq, item) in x.items.iter().enumerate() {
            let (out, posted) = apply_leg_posted(
                &mut tx,
                Some(&self.known_internal),
                &item.payment,
                (&item.creditor_scheme, &item.creditor_identification),
                item.clearing_after_secs,
                &item.clearing_outcome,
            )
            .await?;
            // Each item's posting alerts the accounts' TPPs like any payment (ADR 0018),
            // from the posting's own legs (no reads back).
            if let Some(posted) = posted {
                crate::sql_alerts::payment_legs_posted(&mut tx, &out, posted, now).await?;
            }
            sqlx::query(
                "INSERT INTO file_payment_items (file_payment_id, seq, payment_id) \
                 VALUES ($1, $2, $3)",
            )
            .bind(f.id.clone())
            .bind(seq as i64)
            .bind(out.id.clone())
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
            done.push(out);
        }
        audit(&mut tx, &x.audit).await?;
        // 4. The TPP's events (consent consumed, file payment created), in this
        // transaction: they exist exactly when the execution does.
        let txn = format!("txn-{}", uuid::Uuid::new_v4());
        let (rty, link) = consent_resource(&f.consent_id);
        event(
            &mut tx,
            &f.client_id,
            &f.consent_id,
            (&f.consent_id, rty, link),
            &txn,
            now,
        )
        .await?;
        event(
            &mut tx,
            &f.client_id,
            &f.consent_id,
            (&f.id, "file-payment", file_payment_link(&f.id)),
            &txn,
            now,
        )
        .await?;
        tx.commit().await.map_err(db_err)?;
        Ok(FileExecuted::Done(Box::new((f.clone(), done))))
    }

    async fn find_file_payment(&self, id: &str) -> StoreResult<Option<FilePaymentRecord>> {
        sqlx::query(AssertSqlSafe(format!(
            "SELECT {FILE_PAYMENT_COLUMNS} FROM file_payments WHERE id = $1"
        )))
        .bind(id.to_owned())
        .fetch_optional(self.pool())
        .await
        .map_err(db_err)?
        .as_ref()
        .map(file_payment_from_row)
        .transpose()
    }

    async fn file_payment_items(&self, id: &str) -> StoreResult<Vec<PaymentRecord>> {
        // One query for the whole file: the item rows joined to their payments.
        let cols = PAYMENT_COLUMNS
            .split(',')
            .map(|c| format!("p.{}", c.trim()))
            .collect::<Vec<_>>()
            .join(", ");
        sqlx::query(AssertSqlSafe(format!(
            "SELECT {cols} FROM file_payment_items i JOIN payments p ON p.id = i.payment_id \
             WHERE i.file_payment_id = $1 ORDER BY i.seq"
        )))
        .bind(id.to_owned())
        .fetch_all(self.pool())
        .await
        .map_err(db_err)?
        .iter()
        .map(payment_from_row)
        .collect()
    }
}
