//! The durable payment ledger (issue 7, ADR 0011): ledger accounts and double-entry
//! postings, domestic payments with their status history, and TPP idempotency keys, in
//! the same SQLite / PostgreSQL database as the consents.
//!
//! Money moves only inside [`SqlStore::execute_payment`] (a payment) and the clearing
//! step [`PaymentStore::advance_clearing`] (settlement or return). Each is ONE database
//! transaction that writes everything a payment changes: the consent (AUTH → COND), the
//! guarded debit, the credit leg, the payment row and its status line, the consent audit
//! line, the idempotency key and the TPP's `resource-update` events (outbox, ADR 0012).
//! A crash before the commit leaves none of it; after, all.
//!
//! Concurrency: the debit is a single guarded statement
//! (`UPDATE … SET balance = balance - $amt WHERE … AND balance - $amt >= -overdraft_limit`),
//! which PostgreSQL evaluates under the row lock (a racing debit re-checks the guard on
//! the committed row) and SQLite under its database write lock. Every transaction here
//! starts with a write, so SQLite takes the write lock first and waits (busy_timeout)
//! instead of failing on a lock upgrade.

use crate::sql::{col, db_err};
use async_trait::async_trait;
use sqlx::any::AnyRow;
use sqlx::{Any, AnyPool, AssertSqlSafe, Transaction};
use std::collections::HashSet;

use crate::{AuditEntry, ConsentRecord, SqlStore, StoreError, StoreResult};

/// How long an idempotency key is remembered (UK OB: 24 hours).
pub const IDEMPOTENCY_TTL_SECS: i64 = 24 * 3600;

/// A customer account as the ledger holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LedgerAccount {
    pub id: String,
    /// `customer` or `internal`.
    pub kind: String,
    /// The core bank's customer id (customer accounts).
    pub customer_id: Option<String>,
    pub scheme: Option<String>,
    pub identification: Option<String>,
    pub name: String,
    pub currency: String,
    /// Booked balance in minor units (customer accounts; internal accounts: sum of entries).
    pub balance: i64,
    /// The balance may go down to `-overdraft_limit`.
    pub overdraft_limit: i64,
    pub opening_balance: i64,
    pub updated_at: i64,
}

impl LedgerAccount {
    /// What can still be paid out: balance plus the arranged overdraft.
    pub fn available(&self) -> i64 {
        self.balance.saturating_add(self.overdraft_limit)
    }
}

/// A customer account to open in the ledger with its opening balance (from the core bank).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LedgerAccountSeed {
    pub id: String,
    pub customer_id: String,
    pub scheme: String,
    pub identification: String,
    pub name: String,
    pub currency: String,
    pub opening_balance: i64,
    pub overdraft_limit: i64,
}

/// An `x-idempotency-key` as remembered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyRecord {
    pub client_id: String,
    pub key: String,
    /// SHA-256 (hex) over the endpoint and the exact request body.
    pub request_hash: String,
    /// The resource the first request created (consent or payment id).
    pub resource_id: String,
    pub created_at: i64,
    pub expires_at: i64,
}

/// A domestic payment.
#[derive(Debug, Clone, PartialEq)]
pub struct PaymentRecord {
    pub id: String,
    pub consent_id: String,
    pub client_id: String,
    /// The customer (authorization server subject) whose consent it executes.
    pub customer_id: String,
    pub debtor_account_id: String,
    /// The ledger account credited (a customer account here, or the clearing account).
    pub creditor_account_id: Option<String>,
    /// Whether the creditor is at another bank (settles through the clearing).
    pub external: bool,
    pub amount: i64,
    pub currency: String,
    /// ISO 20022 status (`ACSC`, `ACSP`, `RJCT`).
    pub status: String,
    pub status_reason: Option<String>,
    /// The OB Initiation, Risk and anything else the API renders.
    pub details: serde_json::Value,
    /// For external payments: `settle` or `reject` (the sandbox clearing's answer).
    pub clearing_outcome: Option<String>,
    /// When the clearing worker should move it on.
    pub next_action_at: Option<i64>,
    pub created_at: i64,
    pub updated_at: i64,
}

/// One status a payment went through.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusLine {
    pub at: i64,
    pub status: String,
    pub reason: Option<String>,
}

/// Everything [`PaymentStore::execute_payment`] writes.
#[derive(Debug, Clone)]
pub struct PaymentExecution {
    /// The payment as it will be stored when the money moves; `status`, `status_reason`,
    /// `creditor_account_id`, `external` and `next_action_at` are decided in the
    /// transaction.
    pub payment: PaymentRecord,
    pub creditor_scheme: String,
    pub creditor_identification: String,
    /// Seconds the payment stays in ACSP when the creditor is at another bank, and what
    /// the clearing then does (`settle` / `reject`).
    pub clearing_after_secs: i64,
    pub clearing_outcome: String,
    /// The consent's details after consumption (with the payment id).
    pub consent_details: serde_json::Value,
    /// The consent counts as authorised only if it was authorised (its row last changed)
    /// after this instant: `now − authorised lifetime` (ADR 0019), so a consent past its
    /// lifetime is refused here even before the housekeeping sweep expires it.
    /// `i64::MIN` = no lifetime.
    pub consent_authorised_after: i64,
    pub audit: AuditEntry,
    pub idempotency: IdempotencyRecord,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Executed {
    /// Committed: the payment (ACSC, ACSP, or RJCT with its reason when the money could
    /// not move; the consent is consumed either way).
    Done(Box<PaymentRecord>),
    /// The idempotency key is already in use by this client (live): nothing written.
    KeyInUse(IdempotencyRecord),
    /// The consent is not authorised (any more), or not this client's / customer's:
    /// nothing written.
    ConsentNotAuthorised,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Created {
    Done,
    KeyInUse(IdempotencyRecord),
}

/// What [`PaymentStore::ledger_check`] finds: all zero / empty when the ledger is sound.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LedgerCheck {
    /// Sum of every entry (0 in a double-entry ledger).
    pub entries_sum: i64,
    pub entries: i64,
    /// Postings whose entries do not sum to zero.
    pub unbalanced_postings: Vec<String>,
    /// Customer accounts whose cached balance differs from opening + their entries.
    pub balance_mismatches: Vec<String>,
}

/// Payments and their ledger. Implemented by [`SqlStore`].
#[async_trait]
pub trait PaymentStore: Send + Sync {
    /// Opens a customer account with its opening posting (debit opening equity, credit
    /// the account) unless it exists. Returns whether it was opened now. Idempotent and
    /// safe when several processes seed at once.
    async fn seed_ledger_account(&self, seed: &LedgerAccountSeed, now: i64) -> StoreResult<bool>;
    async fn ledger_account(&self, id: &str) -> StoreResult<Option<LedgerAccount>>;
    /// A live idempotency key of `client_id`.
    async fn find_idempotency(
        &self,
        client_id: &str,
        key: &str,
        now: i64,
    ) -> StoreResult<Option<IdempotencyRecord>>;
    /// Inserts a (payment) consent with its first audit line and the idempotency key, in
    /// one transaction.
    async fn create_consent_idempotent(
        &self,
        consent: &ConsentRecord,
        audit: &AuditEntry,
        idempotency: &IdempotencyRecord,
    ) -> StoreResult<Created>;
    /// Executes a payment: see the module documentation. The one place a payment's
    /// writes are committed.
    async fn execute_payment(&self, x: &PaymentExecution) -> StoreResult<Executed>;
    async fn find_payment(&self, id: &str) -> StoreResult<Option<PaymentRecord>>;
    async fn payment_status_log(&self, id: &str) -> StoreResult<Vec<StatusLine>>;
    /// Moves at most `limit` due external payments (ACSP, `next_action_at <= now`) to
    /// ACSC, or to RJCT with the money returned to the debtor, each in one transaction.
    /// Returns how many moved.
    async fn advance_clearing(&self, now: i64, limit: i64) -> StoreResult<usize>;
    /// Double-entry invariants over the whole ledger (tests, operations).
    async fn ledger_check(&self) -> StoreResult<LedgerCheck>;
    /// External payments of `client_id` still in clearing (ACSP), newest first (the
    /// portal's sandbox tools, ADR 0014).
    async fn payments_in_clearing(
        &self,
        client_id: &str,
        limit: i64,
    ) -> StoreResult<Vec<PaymentRecord>>;
    /// Clears one ACSP payment of `client_id` now instead of at its due time, through the
    /// clearing worker's own step (its stored outcome, the return on rejection, the
    /// events). `None` when it is not that client's or not in clearing: nothing written.
    async fn clear_now(
        &self,
        id: &str,
        client_id: &str,
        now: i64,
    ) -> StoreResult<Option<PaymentRecord>>;
}

pub(crate) fn json_text(v: &serde_json::Value) -> StoreResult<String> {
    serde_json::to_string(v).map_err(|e| StoreError::Corrupt(e.to_string()))
}

const ACCOUNT_COLUMNS: &str = "id, kind, customer_id, scheme, identification, name, currency, \
     balance, overdraft_limit, opening_balance, updated_at";

fn account_from_row(r: &AnyRow) -> StoreResult<LedgerAccount> {
    Ok(LedgerAccount {
        id: col(r, "id")?,
        kind: col(r, "kind")?,
        customer_id: col(r, "customer_id")?,
        scheme: col(r, "scheme")?,
        identification: col(r, "identification")?,
        name: col(r, "name")?,
        currency: col(r, "currency")?,
        balance: col(r, "balance")?,
        overdraft_limit: col(r, "overdraft_limit")?,
        opening_balance: col(r, "opening_balance")?,
        updated_at: col(r, "updated_at")?,
    })
}

pub(crate) const PAYMENT_COLUMNS: &str = "id, consent_id, client_id, customer_id, debtor_account_id, \
     creditor_account_id, external, amount, currency, status, status_reason, details, \
     clearing_outcome, next_action_at, created_at, updated_at";

pub(crate) fn payment_from_row(r: &AnyRow) -> StoreResult<PaymentRecord> {
    let details: String = col(r, "details")?;
    Ok(PaymentRecord {
        id: col(r, "id")?,
        consent_id: col(r, "consent_id")?,
        client_id: col(r, "client_id")?,
        customer_id: col(r, "customer_id")?,
        debtor_account_id: col(r, "debtor_account_id")?,
        creditor_account_id: col(r, "creditor_account_id")?,
        external: col::<i64>(r, "external")? != 0,
        amount: col(r, "amount")?,
        currency: col(r, "currency")?,
        status: col(r, "status")?,
        status_reason: col(r, "status_reason")?,
        details: serde_json::from_str(&details)
            .map_err(|e| StoreError::Corrupt(format!("payments.details: {e}")))?,
        clearing_outcome: col(r, "clearing_outcome")?,
        next_action_at: col(r, "next_action_at")?,
        created_at: col(r, "created_at")?,
        updated_at: col(r, "updated_at")?,
    })
}

fn idem_from_row(r: &AnyRow) -> StoreResult<IdempotencyRecord> {
    Ok(IdempotencyRecord {
        client_id: col(r, "client_id")?,
        key: col(r, "idem_key")?,
        request_hash: col(r, "request_hash")?,
        resource_id: col(r, "resource_id")?,
        created_at: col(r, "created_at")?,
        expires_at: col(r, "expires_at")?,
    })
}

/// The bank's internal account of `purpose` in `currency`.
pub fn internal_account_id(purpose: &str, currency: &str) -> String {
    format!("internal:{purpose}:{currency}")
}

pub(crate) type Tx<'a> = Transaction<'a, Any>;

/// Internal account ids seen committed in this store's database.
pub(crate) type KnownAccounts = std::sync::Arc<std::sync::Mutex<HashSet<String>>>;

pub(crate) async fn ensure_internal(
    tx: &mut Tx<'_>,
    purpose: &str,
    currency: &str,
    now: i64,
) -> StoreResult<String> {
    ensure_internal_known(tx, None, purpose, currency, now).await
}

/// [`ensure_internal`], skipping the statement when `known` already saw the account. An
/// insert that found the row (0 rows) proves it committed: an uncommitted concurrent
/// insert would have made this one wait for its outcome.
pub(crate) async fn ensure_internal_known(
    tx: &mut Tx<'_>,
    known: Option<&KnownAccounts>,
    purpose: &str,
    currency: &str,
    now: i64,
) -> StoreResult<String> {
    let id = internal_account_id(purpose, currency);
    if let Some(k) = known
        && k.lock().is_ok_and(|k| k.contains(&id))
    {
        return Ok(id);
    }
    let n = sqlx::query(
        "INSERT INTO ledger_accounts (id, kind, name, currency, created_at, updated_at) \
         VALUES ($1, 'internal', $2, $3, $4, $4) ON CONFLICT (id) DO NOTHING",
    )
    .bind(id.clone())
    .bind(format!("{purpose} {currency}"))
    .bind(currency.to_owned())
    .bind(now)
    .execute(&mut **tx)
    .await
    .map_err(db_err)?
    .rows_affected();
    if n == 0
        && let Some(k) = known
        && let Ok(mut k) = k.lock()
    {
        k.insert(id.clone());
    }
    Ok(id)
}

/// One posting with its legs; the legs must sum to zero (checked here, before writing).
/// The legs go in with one statement: a payment is latency-bound on its round trips.
pub(crate) async fn post(
    tx: &mut Tx<'_>,
    kind: &str,
    payment_id: Option<&str>,
    description: &str,
    legs: &[(&str, i64)],
    now: i64,
) -> StoreResult<String> {
    let sum = legs
        .iter()
        .try_fold(0i64, |s, (_, a)| s.checked_add(*a))
        .ok_or_else(|| StoreError::Conflict("posting overflows".into()))?;
    if sum != 0 || legs.len() < 2 {
        return Err(StoreError::Conflict("posting legs do not balance".into()));
    }
    let id = format!("pst-{}", uuid::Uuid::new_v4());
    sqlx::query(
        "INSERT INTO ledger_postings (id, kind, payment_id, at, description) \
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(id.clone())
    .bind(kind.to_owned())
    .bind(payment_id.map(str::to_owned))
    .bind(now)
    .bind(description.to_owned())
    .execute(&mut **tx)
    .await
    .map_err(db_err)?;
    // ($1 posting, $2 at, then account/amount pairs); legs keep their order (`seq`).
    let values: Vec<String> = (0..legs.len())
        .map(|i| format!("($1, ${}, ${}, $2)", 3 + 2 * i, 4 + 2 * i))
        .collect();
    let mut q = sqlx::query(AssertSqlSafe(format!(
        "INSERT INTO ledger_entries (posting_id, account_id, amount, at) VALUES {}",
        values.join(", ")
    )))
    .bind(id.clone())
    .bind(now);
    for (account, amount) in legs {
        q = q.bind((*account).to_owned()).bind(*amount);
    }
    q.execute(&mut **tx).await.map_err(db_err)?;
    Ok(id)
}

async fn log_status(
    tx: &mut Tx<'_>,
    payment_id: &str,
    at: i64,
    status: &str,
    reason: Option<&str>,
) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO payment_status_log (payment_id, at, status, reason) VALUES ($1, $2, $3, $4)",
    )
    .bind(payment_id.to_owned())
    .bind(at)
    .bind(status.to_owned())
    .bind(reason.map(str::to_owned))
    .execute(&mut **tx)
    .await
    .map_err(db_err)?;
    Ok(())
}

pub(crate) async fn audit(tx: &mut Tx<'_>, a: &AuditEntry) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO consent_audit (consent_id, at, actor, action, detail) \
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(a.consent_id.clone())
    .bind(a.at)
    .bind(a.actor.clone())
    .bind(a.action.clone())
    .bind(a.detail.clone())
    .execute(&mut **tx)
    .await
    .map_err(db_err)?;
    Ok(())
}

/// Claims the idempotency key for this request: `true` when it was free (or only
/// remembered past its expiry, which is then replaced). A live key of another
/// transaction makes PostgreSQL wait for that transaction, so the loser sees the key.
pub(crate) async fn claim_key(tx: &mut Tx<'_>, k: &IdempotencyRecord) -> StoreResult<bool> {
    let n = sqlx::query(
        "INSERT INTO idempotency_keys \
           (client_id, idem_key, request_hash, resource_id, created_at, expires_at) \
         VALUES ($1, $2, $3, $4, $5, $6) \
         ON CONFLICT (client_id, idem_key) DO UPDATE SET \
           request_hash = excluded.request_hash, resource_id = excluded.resource_id, \
           created_at = excluded.created_at, expires_at = excluded.expires_at \
         WHERE idempotency_keys.expires_at <= excluded.created_at",
    )
    .bind(k.client_id.clone())
    .bind(k.key.clone())
    .bind(k.request_hash.clone())
    .bind(k.resource_id.clone())
    .bind(k.created_at)
    .bind(k.expires_at)
    .execute(&mut **tx)
    .await
    .map_err(db_err)?
    .rows_affected();
    Ok(n == 1)
}

/// What a payment's posting did to the customer accounts it touched, for the alerts
/// written in the same transaction (so they need not read back what was just written).
#[derive(Debug, Clone)]
pub(crate) struct Posted {
    pub posting_id: String,
    /// The customer legs (with what watches their accounts).
    pub legs: Vec<crate::sql_alerts::Leg>,
    /// The debtor account's scheme, identification and name (what a credited customer
    /// sees as the counterparty).
    pub debtor: (Option<String>, Option<String>, String),
}

/// Steps 3–6 of a payment inside the caller's transaction (which claimed the key and
/// consumed the consent): resolve the creditor, the guarded debit and the credit leg with
/// their posting (or RJCT with AM03 / AM04 and no money moved), the payment row and its
/// first status. Used by [`PaymentStore::execute_payment`] and, once per item, by the
/// file payments (`sql_file_payments.rs`). An `Err` means the caller must roll back.
/// Returns the payment and what its posting did (`None`: rejected, nothing moved).
pub(crate) async fn apply_leg_posted(
    tx: &mut Tx<'_>,
    known: Option<&KnownAccounts>,
    p: &PaymentRecord,
    (creditor_scheme, creditor_identification): (&str, &str),
    clearing_after_secs: i64,
    clearing_outcome: &str,
) -> StoreResult<(PaymentRecord, Option<Posted>)> {
    let now = p.created_at;
    let mut out = p.clone();
    let mut posted = None;
    let reject = |out: &mut PaymentRecord, reason: &str| {
        out.status = "RJCT".into();
        out.status_reason = Some(reason.into());
        out.next_action_at = None;
        out.clearing_outcome = None;
    };
    // 3.–4. The guarded debit: never below the overdraft limit, however many race, and
    // not when the payee is an account of this bank in another currency. It also returns
    // where the money goes (the payee's account here; none: the clearing) and what
    // watches the debtor's account (so the alerts need no reads of their own).
    let debited = sqlx::query(AssertSqlSafe(format!(
        "UPDATE ledger_accounts SET balance = balance - $1, updated_at = $2 \
         WHERE id = $3 AND kind = 'customer' AND currency = $4 \
           AND balance - $1 >= -overdraft_limit \
           AND NOT EXISTS (SELECT 1 FROM ledger_accounts c WHERE c.kind = 'customer' \
             AND c.scheme = $5 AND c.identification = $6 AND c.currency <> $4) \
         RETURNING balance, scheme, identification, name, \
           (SELECT c.id FROM ledger_accounts c WHERE c.kind = 'customer' \
             AND c.scheme = $5 AND c.identification = $6) AS creditor, {}",
        crate::sql_alerts::WATCH_RETURNING
    )))
    .bind(p.amount)
    .bind(now)
    .bind(p.debtor_account_id.clone())
    .bind(p.currency.clone())
    .bind(creditor_scheme.to_owned())
    .bind(creditor_identification.to_owned())
    .fetch_optional(&mut **tx)
    .await
    .map_err(db_err)?;
    match debited {
        None => {
            // Nothing moved; say why: a payee here in another currency, the debtor's
            // currency, or its funds.
            let creditor = sqlx::query(
                "SELECT currency FROM ledger_accounts \
                     WHERE kind = 'customer' AND scheme = $1 AND identification = $2",
            )
            .bind(creditor_scheme.to_owned())
            .bind(creditor_identification.to_owned())
            .fetch_optional(&mut **tx)
            .await
            .map_err(db_err)?;
            out.external = creditor.is_none();
            let payee_currency = match &creditor {
                Some(r) => Some(col::<String>(r, "currency")?),
                None => None,
            };
            if payee_currency.is_some_and(|c| c != p.currency) {
                reject(&mut out, "AM03");
            } else {
                let exists = sqlx::query(
                    "SELECT currency FROM ledger_accounts WHERE id = $1 AND kind = 'customer'",
                )
                .bind(p.debtor_account_id.clone())
                .fetch_optional(&mut **tx)
                .await
                .map_err(db_err)?;
                match exists {
                    None => {
                        // The caller's transaction is dropped, so rolled back.
                        return Err(StoreError::Conflict(format!(
                            "debtor account {} is not in the ledger",
                            p.debtor_account_id
                        )));
                    }
                    Some(r) if col::<String>(&r, "currency")? != p.currency => {
                        reject(&mut out, "AM03")
                    }
                    Some(_) => reject(&mut out, "AM04"),
                }
            }
        }
        Some(d) => {
            let mut legs = vec![crate::sql_alerts::Leg::returned(
                &d,
                &p.debtor_account_id,
                -p.amount,
                &p.currency,
            )?];
            // 5. The credit leg.
            let creditor: Option<String> = col(&d, "creditor")?;
            out.external = creditor.is_none();
            let to = match &creditor {
                Some(id) => {
                    let credited = sqlx::query(AssertSqlSafe(format!(
                        "UPDATE ledger_accounts SET balance = balance + $1, updated_at = $2 \
                             WHERE id = $3 RETURNING balance, {}",
                        crate::sql_alerts::WATCH_RETURNING
                    )))
                    .bind(p.amount)
                    .bind(now)
                    .bind(id.clone())
                    .fetch_one(&mut **tx)
                    .await
                    .map_err(db_err)?;
                    legs.push(crate::sql_alerts::Leg::returned(
                        &credited,
                        id,
                        p.amount,
                        &p.currency,
                    )?);
                    out.status = "ACSC".into();
                    id.clone()
                }
                None => {
                    out.status = "ACSP".into();
                    out.clearing_outcome = Some(clearing_outcome.to_owned());
                    out.next_action_at = Some(now + clearing_after_secs);
                    ensure_internal_known(tx, known, "clearing", &p.currency, now).await?
                }
            };
            out.status_reason = None;
            out.creditor_account_id = Some(to.clone());
            let posting_id = post(
                tx,
                "payment",
                Some(&p.id),
                "domestic payment",
                &[(&p.debtor_account_id, -p.amount), (&to, p.amount)],
                now,
            )
            .await?;
            posted = Some(Posted {
                posting_id,
                legs,
                debtor: (
                    col(&d, "scheme")?,
                    col(&d, "identification")?,
                    col(&d, "name")?,
                ),
            });
        }
    }
    // 6. The payment and its first status.
    sqlx::query(
        "INSERT INTO payments (id, consent_id, client_id, customer_id, debtor_account_id, \
           creditor_account_id, external, amount, currency, status, status_reason, details, \
           clearing_outcome, next_action_at, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $15)",
    )
    .bind(out.id.clone())
    .bind(out.consent_id.clone())
    .bind(out.client_id.clone())
    .bind(out.customer_id.clone())
    .bind(out.debtor_account_id.clone())
    .bind(out.creditor_account_id.clone())
    .bind(i64::from(out.external))
    .bind(out.amount)
    .bind(out.currency.clone())
    .bind(out.status.clone())
    .bind(out.status_reason.clone())
    .bind(json_text(&out.details)?)
    .bind(out.clearing_outcome.clone())
    .bind(out.next_action_at)
    .bind(now)
    .execute(&mut **tx)
    .await
    .map_err(db_err)?;
    log_status(tx, &out.id, now, &out.status, out.status_reason.as_deref()).await?;
    out.updated_at = now;
    Ok((out, posted))
}

impl SqlStore {
    pub(crate) async fn key_in_use(&self, k: &IdempotencyRecord) -> StoreResult<IdempotencyRecord> {
        // The key was live at claim time; read it outside the rolled-back transaction.
        self.find_idempotency(&k.client_id, &k.key, k.created_at)
            .await?
            .ok_or_else(|| StoreError::Conflict("idempotency key vanished".into()))
    }

    fn payments_pool(&self) -> &AnyPool {
        self.pool()
    }

    /// One due external payment to its final state, in its own transaction; `false` if
    /// another worker had it.
    async fn clear_one(&self, id: &str, now: i64) -> StoreResult<bool> {
        let mut tx = self.payments_pool().begin().await.map_err(db_err)?;
        if clear_in(&mut tx, id, now).await? {
            tx.commit().await.map_err(db_err)?;
            Ok(true)
        } else {
            tx.rollback().await.map_err(db_err)?;
            Ok(false)
        }
    }
}

#[async_trait]
impl PaymentStore for SqlStore {
    async fn seed_ledger_account(&self, s: &LedgerAccountSeed, now: i64) -> StoreResult<bool> {
        let mut tx = self.payments_pool().begin().await.map_err(db_err)?;
        let n = sqlx::query(
            "INSERT INTO ledger_accounts (id, kind, customer_id, scheme, identification, name, \
               currency, balance, overdraft_limit, opening_balance, created_at, updated_at) \
             VALUES ($1, 'customer', $2, $3, $4, $5, $6, $7, $8, $7, $9, $9) \
             ON CONFLICT (id) DO NOTHING",
        )
        .bind(s.id.clone())
        .bind(s.customer_id.clone())
        .bind(s.scheme.clone())
        .bind(s.identification.clone())
        .bind(s.name.clone())
        .bind(s.currency.clone())
        .bind(s.opening_balance)
        .bind(s.overdraft_limit)
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(db_err)?
        .rows_affected();
        if n != 1 {
            tx.rollback().await.map_err(db_err)?;
            return Ok(false);
        }
        let equity = ensure_internal(&mut tx, "opening-equity", &s.currency, now).await?;
        if s.opening_balance != 0 {
            post(
                &mut tx,
                "opening",
                None,
                "opening balance from the core bank",
                &[(&equity, -s.opening_balance), (&s.id, s.opening_balance)],
                now,
            )
            .await?;
        }
        tx.commit().await.map_err(db_err)?;
        Ok(true)
    }

    async fn ledger_account(&self, id: &str) -> StoreResult<Option<LedgerAccount>> {
        let row = sqlx::query(AssertSqlSafe(format!(
            "SELECT {ACCOUNT_COLUMNS} FROM ledger_accounts WHERE id = $1"
        )))
        .bind(id.to_owned())
        .fetch_optional(self.payments_pool())
        .await
        .map_err(db_err)?;
        let Some(row) = row else { return Ok(None) };
        let mut a = account_from_row(&row)?;
        if a.kind != "customer" {
            a.balance = sqlx::query_scalar::<_, i64>(
                "SELECT CAST(COALESCE(SUM(amount), 0) AS BIGINT) FROM ledger_entries \
                 WHERE account_id = $1",
            )
            .bind(id.to_owned())
            .fetch_one(self.payments_pool())
            .await
            .map_err(db_err)?;
        }
        Ok(Some(a))
    }

    async fn find_idempotency(
        &self,
        client_id: &str,
        key: &str,
        now: i64,
    ) -> StoreResult<Option<IdempotencyRecord>> {
        sqlx::query(
            "SELECT client_id, idem_key, request_hash, resource_id, created_at, expires_at \
             FROM idempotency_keys WHERE client_id = $1 AND idem_key = $2 AND expires_at > $3",
        )
        .bind(client_id.to_owned())
        .bind(key.to_owned())
        .bind(now)
        .fetch_optional(self.payments_pool())
        .await
        .map_err(db_err)?
        .as_ref()
        .map(idem_from_row)
        .transpose()
    }

    async fn create_consent_idempotent(
        &self,
        c: &ConsentRecord,
        a: &AuditEntry,
        k: &IdempotencyRecord,
    ) -> StoreResult<Created> {
        if a.consent_id != c.id || k.resource_id != c.id {
            return Err(StoreError::Conflict(
                "audit / key for another consent".into(),
            ));
        }
        let mut tx = self.payments_pool().begin().await.map_err(db_err)?;
        if !claim_key(&mut tx, k).await? {
            tx.rollback().await.map_err(db_err)?;
            return Ok(Created::KeyInUse(self.key_in_use(k).await?));
        }
        sqlx::query(
            "INSERT INTO consents (id, client_id, customer_id, kind, scopes, status, details, \
             created_at, updated_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        )
        .bind(c.id.clone())
        .bind(c.client_id.clone())
        .bind(c.customer_id.clone())
        .bind(c.kind.clone())
        .bind(c.scopes.clone())
        .bind(c.status.as_str())
        .bind(json_text(&c.details)?)
        .bind(c.created_at)
        .bind(c.updated_at)
        .bind(c.expires_at)
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
        audit(&mut tx, a).await?;
        tx.commit().await.map_err(db_err)?;
        Ok(Created::Done)
    }

    async fn execute_payment(&self, x: &PaymentExecution) -> StoreResult<Executed> {
        let p = &x.payment;
        let now = p.created_at;
        if x.audit.consent_id != p.consent_id || x.idempotency.resource_id != p.id {
            return Err(StoreError::Conflict(
                "audit / key for another payment".into(),
            ));
        }
        let mut tx = self.payments_pool().begin().await.map_err(db_err)?;
        // 1. The key: a second request with it waits here for the first to finish.
        if !claim_key(&mut tx, &x.idempotency).await? {
            tx.rollback().await.map_err(db_err)?;
            return Ok(Executed::KeyInUse(self.key_in_use(&x.idempotency).await?));
        }
        // 2. The consent, AUTH → COND, only if it is this client's and customer's and
        //    within its lifetime.
        let consumed = sqlx::query(
            "UPDATE consents SET status = 'Consumed', updated_at = $2, details = $3 \
             WHERE id = $1 AND status = 'Authorised' AND kind = 'domestic-payment' \
               AND client_id = $4 AND customer_id = $5 AND updated_at > $6",
        )
        .bind(p.consent_id.clone())
        .bind(now)
        .bind(json_text(&x.consent_details)?)
        .bind(p.client_id.clone())
        .bind(p.customer_id.clone())
        .bind(x.consent_authorised_after)
        .execute(&mut *tx)
        .await
        .map_err(db_err)?
        .rows_affected();
        if consumed != 1 {
            tx.rollback().await.map_err(db_err)?;
            return Ok(Executed::ConsentNotAuthorised);
        }
        // 3.–6. The money and the payment row (shared with the file payments' items).
        let (out, posted) = apply_leg_posted(
            &mut tx,
            Some(&self.known_internal),
            &x.payment,
            (&x.creditor_scheme, &x.creditor_identification),
            x.clearing_after_secs,
            &x.clearing_outcome,
        )
        .await?;
        // The consent's audit line.
        audit(&mut tx, &x.audit).await?;
        if let Some(posted) = posted {
            crate::sql_alerts::payment_legs_posted(&mut tx, &out, posted, now).await?;
        }
        // 7. The TPP's events, in this transaction: they exist exactly when the payment
        // does (a rolled-back attempt or an idempotent replay writes none).
        let txn = format!("txn-{}", uuid::Uuid::new_v4());
        let mut events = Vec::with_capacity(2);
        events.extend(crate::sql_events::payment_consent_consumed_event(
            &out.client_id,
            &out.consent_id,
            &txn,
            now,
        ));
        events.push(crate::sql_events::payment_changed_event(
            &out.client_id,
            &out.consent_id,
            &out.id,
            &txn,
            now,
        ));
        crate::sql_events::enqueue_events(&mut tx, &events, crate::sql_events::due_ms(now)).await?;
        tx.commit().await.map_err(db_err)?;
        Ok(Executed::Done(Box::new(out)))
    }

    async fn find_payment(&self, id: &str) -> StoreResult<Option<PaymentRecord>> {
        sqlx::query(AssertSqlSafe(format!(
            "SELECT {PAYMENT_COLUMNS} FROM payments WHERE id = $1"
        )))
        .bind(id.to_owned())
        .fetch_optional(self.payments_pool())
        .await
        .map_err(db_err)?
        .as_ref()
        .map(payment_from_row)
        .transpose()
    }

    async fn payment_status_log(&self, id: &str) -> StoreResult<Vec<StatusLine>> {
        sqlx::query(
            "SELECT at, status, reason FROM payment_status_log WHERE payment_id = $1 ORDER BY seq",
        )
        .bind(id.to_owned())
        .fetch_all(self.payments_pool())
        .await
        .map_err(db_err)?
        .iter()
        .map(|r| {
            Ok(StatusLine {
                at: col(r, "at")?,
                status: col(r, "status")?,
                reason: col(r, "reason")?,
            })
        })
        .collect()
    }

    async fn advance_clearing(&self, now: i64, limit: i64) -> StoreResult<usize> {
        let ids: Vec<String> = if self.backend() == "postgres" {
            // Claim due rows without waiting on rows another worker holds: SKIP LOCKED
            // hands each worker a disjoint batch. The claim lives only as long as this
            // statement's transaction, so each payment is then moved by the guarded
            // update in `clear_one`, which settles any overlap.
            let mut tx = self.payments_pool().begin().await.map_err(db_err)?;
            let rows = sqlx::query(
                "SELECT id FROM payments WHERE status = 'ACSP' AND next_action_at <= $1 \
                 ORDER BY next_action_at LIMIT $2 FOR UPDATE SKIP LOCKED",
            )
            .bind(now)
            .bind(limit)
            .fetch_all(&mut *tx)
            .await
            .map_err(db_err)?;
            let mut ids = Vec::with_capacity(rows.len());
            for r in &rows {
                ids.push(col::<String>(r, "id")?);
            }
            let mut moved = 0;
            for id in &ids {
                if clear_in(&mut tx, id, now).await? {
                    moved += 1;
                }
            }
            tx.commit().await.map_err(db_err)?;
            return Ok(moved);
        } else {
            // SQLite: a single writer at a time anyway; candidates are read first and each
            // moved by its own guarded transaction.
            sqlx::query_scalar::<_, String>(
                "SELECT id FROM payments WHERE status = 'ACSP' AND next_action_at <= $1 \
                 ORDER BY next_action_at LIMIT $2",
            )
            .bind(now)
            .bind(limit)
            .fetch_all(self.payments_pool())
            .await
            .map_err(db_err)?
        };
        let mut moved = 0;
        for id in ids {
            if self.clear_one(&id, now).await? {
                moved += 1;
            }
        }
        Ok(moved)
    }

    async fn ledger_check(&self) -> StoreResult<LedgerCheck> {
        let pool = self.payments_pool();
        let entries_sum = sqlx::query_scalar::<_, i64>(
            "SELECT CAST(COALESCE(SUM(amount), 0) AS BIGINT) FROM ledger_entries",
        )
        .fetch_one(pool)
        .await
        .map_err(db_err)?;
        let entries = sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM ledger_entries")
            .fetch_one(pool)
            .await
            .map_err(db_err)?;
        let unbalanced_postings = sqlx::query_scalar::<_, String>(
            "SELECT posting_id FROM ledger_entries GROUP BY posting_id HAVING SUM(amount) <> 0",
        )
        .fetch_all(pool)
        .await
        .map_err(db_err)?;
        let balance_mismatches = sqlx::query_scalar::<_, String>(
            "SELECT a.id FROM ledger_accounts a WHERE a.kind = 'customer' AND a.balance <> \
               (SELECT CAST(COALESCE(SUM(e.amount), 0) AS BIGINT) FROM ledger_entries e \
                WHERE e.account_id = a.id)",
        )
        .fetch_all(pool)
        .await
        .map_err(db_err)?;
        Ok(LedgerCheck {
            entries_sum,
            entries,
            unbalanced_postings,
            balance_mismatches,
        })
    }

    async fn payments_in_clearing(
        &self,
        client_id: &str,
        limit: i64,
    ) -> StoreResult<Vec<PaymentRecord>> {
        sqlx::query(AssertSqlSafe(format!(
            "SELECT {PAYMENT_COLUMNS} FROM payments WHERE client_id = $1 AND status = 'ACSP' \
             ORDER BY created_at DESC, id LIMIT $2"
        )))
        .bind(client_id.to_owned())
        .bind(limit)
        .fetch_all(self.payments_pool())
        .await
        .map_err(db_err)?
        .iter()
        .map(payment_from_row)
        .collect()
    }

    async fn clear_now(
        &self,
        id: &str,
        client_id: &str,
        now: i64,
    ) -> StoreResult<Option<PaymentRecord>> {
        let mut tx = self.payments_pool().begin().await.map_err(db_err)?;
        // Due now, guarded by owner and status (the first write: SQLite's write lock,
        // PostgreSQL's row lock), then the worker's step in the same transaction.
        let n = sqlx::query(
            "UPDATE payments SET next_action_at = $1 \
             WHERE id = $2 AND client_id = $3 AND status = 'ACSP'",
        )
        .bind(now)
        .bind(id.to_owned())
        .bind(client_id.to_owned())
        .execute(&mut *tx)
        .await
        .map_err(db_err)?
        .rows_affected();
        if n != 1 || !clear_in(&mut tx, id, now).await? {
            tx.rollback().await.map_err(db_err)?;
            return Ok(None);
        }
        tx.commit().await.map_err(db_err)?;
        self.find_payment(id).await
    }
}

/// Moves one due external payment to its final state inside `tx`: the guarded status
/// change first (this transaction's first write on SQLite; the row lock on PostgreSQL), so
/// one worker wins per payment; on rejection the money goes back to the debtor in the
/// same transaction.
async fn clear_in(tx: &mut Tx<'_>, id: &str, now: i64) -> StoreResult<bool> {
    let row = sqlx::query(AssertSqlSafe(format!(
        "UPDATE payments SET \
           status = CASE WHEN clearing_outcome = 'reject' THEN 'RJCT' ELSE 'ACSC' END, \
           status_reason = CASE WHEN clearing_outcome = 'reject' THEN 'AC04' ELSE NULL END, \
           next_action_at = NULL, updated_at = $2 \
         WHERE id = $1 AND status = 'ACSP' AND next_action_at <= $2 \
         RETURNING {PAYMENT_COLUMNS}"
    )))
    .bind(id.to_owned())
    .bind(now)
    .fetch_optional(&mut **tx)
    .await
    .map_err(db_err)?;
    let Some(row) = row else { return Ok(false) };
    let p = payment_from_row(&row)?;
    if p.status == "RJCT" {
        let clearing = ensure_internal(tx, "clearing", &p.currency, now).await?;
        sqlx::query(
            "UPDATE ledger_accounts SET balance = balance + $1, updated_at = $2 WHERE id = $3",
        )
        .bind(p.amount)
        .bind(now)
        .bind(p.debtor_account_id.clone())
        .execute(&mut **tx)
        .await
        .map_err(db_err)?;
        post(
            tx,
            "return",
            Some(&p.id),
            "payment returned by the creditor's bank",
            &[(&clearing, -p.amount), (&p.debtor_account_id, p.amount)],
            now,
        )
        .await?;
    }
    log_status(tx, &p.id, now, &p.status, p.status_reason.as_deref()).await?;
    crate::sql_alerts::payment_posted(tx, &p.id, "return", now).await?;
    // A file payment's item: the TPP hears of its file payment instead (ADR 0016).
    if crate::sql_file_payments::item_changed(tx, &p, now).await? {
        return Ok(true);
    }
    crate::sql_events::payment_changed(
        tx,
        &p.client_id,
        &p.consent_id,
        &p.id,
        &format!("txn-{}", uuid::Uuid::new_v4()),
        now,
    )
    .await?;
    Ok(true)
}
