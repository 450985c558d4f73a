//! Transaction alerts and balance thresholds on consented accounts, incoming credits, the
//! consent expiry sweep and event retention (issue 8, ADR 0018).
//!
//! * [`posted`] runs inside the transaction of every ledger posting that touches a
//!   customer account (payment debits and internal credits, clearing returns, incoming
//!   transfers): for each AUTH account-access consent covering the account whose TPP is
//!   subscribed and whose permissions allow it, a `transaction-created` event (outbox);
//!   for each balance threshold the posting crosses, one `balance-threshold-crossed`.
//!   The balance before is the balance after minus the posting's legs, read under the
//!   account's row lock (PostgreSQL) or the database write lock (SQLite) the posting's
//!   own `UPDATE` took, so racing postings see consecutive balances: each crossing is
//!   seen by exactly one of them.
//! * Payment code calls [`payment_posted`] (one line per posting site), which works out
//!   the counterparty and reference from the payment.

use async_trait::async_trait;
use openbanking::payment::format_minor;
use openbanking::{AccountAccessDetails, Permission};
use serde_json::{Value, json};
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, AssertSqlSafe};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::sql::{SqlStore, col, db_err};
use crate::sql_events::{EventSubscription, NewEvent, due_ms, enqueue_event};
use crate::{StoreError, StoreResult};

/// Platform event type (namespaced, documented in ADR 0018 and the README): a booked
/// credit or debit on an account the TPP's consent covers.
pub const EVENT_TRANSACTION_CREATED: &str = "urn:wekeza:events:transaction-created";
/// Platform event type: an account's booked balance crossed a threshold the TPP set.
pub const EVENT_BALANCE_THRESHOLD: &str = "urn:wekeza:events:balance-threshold-crossed";

/// Thresholds a TPP may keep per account.
pub const MAX_THRESHOLDS: usize = 10;

/// The other side of a transaction, as its alert shows it (Detail consents only).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Party {
    pub name: Option<String>,
    pub scheme: Option<String>,
    pub identification: Option<String>,
}

impl Party {
    fn to_json(&self) -> Value {
        let mut o = serde_json::Map::new();
        for (k, v) in [
            ("SchemeName", &self.scheme),
            ("Identification", &self.identification),
            ("Name", &self.name),
        ] {
            if let Some(v) = v {
                o.insert(k.into(), v.clone().into());
            }
        }
        Value::Object(o)
    }
}

/// Money arriving at a customer account from outside the bank.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IncomingTransfer {
    pub account_id: String,
    /// Minor units, > 0.
    pub amount: i64,
    pub currency: String,
    pub counterparty: Party,
    pub reference: Option<String>,
    pub at: i64,
}

/// What [`AlertStore::credit_incoming`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credited {
    Done {
        transfer_id: String,
        posting_id: String,
        /// Booked balance after the credit, minor units.
        balance: i64,
    },
    /// No customer account with that id in the ledger.
    UnknownAccount,
    /// The account is kept in another currency.
    WrongCurrency,
}

/// A TPP's thresholds on one account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Thresholds {
    pub consent_id: String,
    pub currency: String,
    /// Signed minor units, ascending.
    pub amounts: Vec<i64>,
}

/// What the retention job removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Purged {
    pub deliveries: u64,
    pub attempts: u64,
    pub events: u64,
}

/// Storage behind alerts. Implemented by [`SqlStore`].
#[async_trait]
pub trait AlertStore: Send + Sync {
    /// Replace `client_id`'s thresholds on `account_id` (set under `consent_id`).
    async fn set_thresholds(
        &self,
        client_id: &str,
        account_id: &str,
        t: &Thresholds,
        now: i64,
    ) -> StoreResult<()>;
    /// `client_id`'s thresholds on `account_id`, if any.
    async fn thresholds(
        &self,
        client_id: &str,
        account_id: &str,
    ) -> StoreResult<Option<Thresholds>>;
    /// Remove them; `false` if there were none.
    async fn delete_thresholds(&self, client_id: &str, account_id: &str) -> StoreResult<bool>;
    /// Credit money from outside the bank (through the clearing account) in one
    /// transaction with its alerts.
    async fn credit_incoming(&self, t: &IncomingTransfer) -> StoreResult<Credited>;
    /// Account-access consents still AWAU or AUTH whose expiry is at or before `now`.
    async fn expiring_consents(&self, now: i64, limit: i64) -> StoreResult<Vec<String>>;
    /// Delete finished deliveries (delivered, acked, dead, suppressed) last changed before
    /// `before_ms`, attempts logged before it that belong to no pending delivery, and
    /// events created before it that no delivery refers to any more.
    async fn purge_events(&self, before_ms: i64) -> StoreResult<Purged>;
}

fn rfc3339(t: i64) -> String {
    OffsetDateTime::from_unix_timestamp(t)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_default()
}

/// OB `Amount` object of signed minor units: the magnitude and its indicator.
fn money(minor: i64, currency: &str) -> (Value, &'static str) {
    (
        json!({ "Amount": format_minor(minor.saturating_abs(), currency), "Currency": currency }),
        if minor < 0 { "Debit" } else { "Credit" },
    )
}

async fn client_wants(conn: &mut AnyConnection, client_id: &str, ty: &str) -> StoreResult<bool> {
    let rows = sqlx::query("SELECT event_types FROM event_subscriptions WHERE client_id = $1")
        .bind(client_id.to_owned())
        .fetch_all(&mut *conn)
        .await
        .map_err(db_err)?;
    for r in &rows {
        let types: String = col(r, "event_types")?;
        let types: Vec<String> = serde_json::from_str(&types)
            .map_err(|e| StoreError::Corrupt(format!("event_subscriptions.event_types: {e}")))?;
        let s = EventSubscription {
            id: String::new(),
            client_id: String::new(),
            callback_url: None,
            version: String::new(),
            event_types: types,
            created_at: 0,
            updated_at: 0,
        };
        if s.wants(ty) {
            return Ok(true);
        }
    }
    Ok(false)
}

/// An authorised account-access consent, as alerts need it.
struct LiveConsent {
    id: String,
    client_id: String,
    details: AccountAccessDetails,
}

impl LiveConsent {
    fn from_row(r: &AnyRow, at: i64) -> StoreResult<Option<Self>> {
        let expires_at: Option<i64> = col(r, "expires_at")?;
        let details: String = col(r, "details")?;
        let v: Value = serde_json::from_str(&details)
            .map_err(|e| StoreError::Corrupt(format!("consents.details: {e}")))?;
        let details = AccountAccessDetails::from_value(&v)
            .map_err(|e| StoreError::Corrupt(format!("consents.details: {e}")))?;
        let now = OffsetDateTime::from_unix_timestamp(at).unwrap_or(OffsetDateTime::UNIX_EPOCH);
        // Expired but not swept yet: as good as expired.
        if expires_at.is_some_and(|e| e <= at)
            || details.expiration_date_time.is_some_and(|e| e <= now)
        {
            return Ok(None);
        }
        Ok(Some(Self {
            id: col(r, "id")?,
            client_id: col(r, "client_id")?,
            details,
        }))
    }

    fn covers(&self, account_id: &str) -> bool {
        self.details
            .account_ids
            .as_ref()
            .is_some_and(|a| a.iter().any(|x| x == account_id))
    }

    fn has(&self, p: Permission) -> bool {
        self.details.permissions.contains(&p)
    }

    /// Whether a transaction booked at `at` falls in the consent's transaction window.
    fn in_window(&self, at: i64) -> bool {
        let Ok(t) = OffsetDateTime::from_unix_timestamp(at) else {
            return false;
        };
        self.details
            .transaction_from_date_time
            .is_none_or(|f| f <= t)
            && self.details.transaction_to_date_time.is_none_or(|e| t <= e)
    }
}

/// A customer leg of a posting, as the alerts need it.
#[derive(Debug, Clone)]
pub(crate) struct Leg {
    pub account: String,
    pub amount: i64,
    pub currency: String,
    /// The account's balance after the posting.
    pub after: i64,
    /// Whether any consent index row (`consent_accounts`) / any balance threshold exists
    /// for the account, as the leg's own statement saw it (`RETURNING` counts); `true`
    /// when not known. `false` skips that alert read: nothing can be alerted.
    pub watched: bool,
    pub thresholds: bool,
}

/// `RETURNING` columns of a statement updating a `ledger_accounts` row that fill
/// [`Leg::watched`] and [`Leg::thresholds`] without a read of their own.
pub(crate) const WATCH_RETURNING: &str = "(SELECT COUNT(*) FROM consent_accounts w \
     WHERE w.account_id = ledger_accounts.id) AS watchers, \
     (SELECT COUNT(*) FROM balance_thresholds w WHERE w.account_id = ledger_accounts.id) \
     AS thresholds";

impl Leg {
    /// From a row with `balance` and the [`WATCH_RETURNING`] columns.
    pub(crate) fn returned(
        r: &sqlx::any::AnyRow,
        account: &str,
        amount: i64,
        currency: &str,
    ) -> StoreResult<Self> {
        Ok(Self {
            account: account.to_owned(),
            amount,
            currency: currency.to_owned(),
            after: col(r, "balance")?,
            watched: col::<i64>(r, "watchers")? > 0,
            thresholds: col::<i64>(r, "thresholds")? > 0,
        })
    }
}

/// Alerts for ledger posting `posting_id` (booked at `at`), inside the posting's
/// transaction. `counterparty(account)` is the other side as seen from `account`.
pub(crate) async fn posted(
    conn: &mut AnyConnection,
    posting_id: &str,
    at: i64,
    counterparty: &(dyn Fn(&str) -> Party + Send + Sync),
    reference: Option<&str>,
) -> StoreResult<()> {
    let rows = sqlx::query(
        "SELECT e.account_id, e.amount, a.currency, a.balance FROM ledger_entries e \
         JOIN ledger_accounts a ON a.id = e.account_id \
         WHERE e.posting_id = $1 AND a.kind = 'customer' ORDER BY e.seq",
    )
    .bind(posting_id.to_owned())
    .fetch_all(&mut *conn)
    .await
    .map_err(db_err)?;
    let mut legs = Vec::with_capacity(rows.len());
    for r in &rows {
        legs.push(Leg {
            account: col(r, "account_id")?,
            amount: col(r, "amount")?,
            currency: col(r, "currency")?,
            after: col(r, "balance")?,
            watched: true,
            thresholds: true,
        });
    }
    posted_legs(conn, posting_id, legs, at, counterparty, reference).await
}

/// [`posted`] with the customer legs already known.
pub(crate) async fn posted_legs(
    conn: &mut AnyConnection,
    posting_id: &str,
    rows: Vec<Leg>,
    at: i64,
    counterparty: &(dyn Fn(&str) -> Party + Send + Sync),
    reference: Option<&str>,
) -> StoreResult<()> {
    // Legs per account (a posting could touch one account twice); the last balance seen
    // for an account is its balance after the whole posting.
    let mut legs: Vec<Leg> = Vec::new();
    for leg in rows {
        match legs.iter_mut().find(|l| l.account == leg.account) {
            Some(l) => {
                l.amount += leg.amount;
                l.after = leg.after;
                l.watched |= leg.watched;
                l.thresholds |= leg.thresholds;
            }
            None => legs.push(leg),
        }
    }
    let txn = format!("txn-{posting_id}");
    for l in legs {
        if l.amount == 0 {
            continue;
        }
        if l.watched {
            let party = counterparty(&l.account);
            transaction_alerts(
                conn,
                posting_id,
                &l.account,
                l.amount,
                &l.currency,
                at,
                &party,
                reference,
                &txn,
            )
            .await?;
        }
        if l.thresholds {
            let before = l.after - l.amount;
            threshold_alerts(conn, &l.account, &l.currency, before, l.after, at, &txn).await?;
        }
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
async fn transaction_alerts(
    conn: &mut AnyConnection,
    posting_id: &str,
    account: &str,
    amount: i64,
    currency: &str,
    at: i64,
    party: &Party,
    reference: Option<&str>,
    txn: &str,
) -> StoreResult<()> {
    let rows = sqlx::query(
        "SELECT c.id, c.client_id, c.details, c.expires_at FROM consent_accounts ca \
         JOIN consents c ON c.id = ca.consent_id \
         WHERE ca.account_id = $1 AND c.status = 'Authorised' AND c.kind = 'account-access' \
         ORDER BY c.id",
    )
    .bind(account.to_owned())
    .fetch_all(&mut *conn)
    .await
    .map_err(db_err)?;
    let credit = amount > 0;
    for r in &rows {
        let Some(c) = LiveConsent::from_row(r, at)? else {
            continue;
        };
        let direction = if credit {
            Permission::ReadTransactionsCredits
        } else {
            Permission::ReadTransactionsDebits
        };
        let detail = c.has(Permission::ReadTransactionsDetail);
        if !c.covers(account)
            || !c.has(direction)
            || !(detail || c.has(Permission::ReadTransactionsBasic))
            || !c.in_window(at)
            || !client_wants(conn, &c.client_id, EVENT_TRANSACTION_CREATED).await?
        {
            continue;
        }
        let (amt, indicator) = money(amount, currency);
        let mut body = json!({
            "AccountId": account,
            "TransactionId": posting_id,
            "CreditDebitIndicator": indicator,
            "Status": "Booked",
            "BookingDateTime": rfc3339(at),
            "Amount": amt,
        });
        if detail {
            if let Some(r) = reference {
                body["TransactionReference"] = r.into();
            }
            let side = if credit {
                "DebtorAccount"
            } else {
                "CreditorAccount"
            };
            let p = party.to_json();
            if p.as_object().is_some_and(|o| !o.is_empty()) {
                body[side] = p;
            }
        }
        let event = NewEvent {
            client_id: c.client_id.clone(),
            consent_id: Some(c.id.clone()),
            event_type: EVENT_TRANSACTION_CREATED.into(),
            rid: posting_id.to_owned(),
            rty: "transaction".into(),
            link: format!("/open-banking/v4.0/aisp/accounts/{account}/transactions"),
            detail: body,
            txn: txn.to_owned(),
            toe: at,
        };
        enqueue_event(conn, &event, due_ms(at)).await?;
    }
    Ok(())
}

async fn threshold_alerts(
    conn: &mut AnyConnection,
    account: &str,
    currency: &str,
    before: i64,
    after: i64,
    at: i64,
    txn: &str,
) -> StoreResult<()> {
    // Above = at or over the threshold. Up: before < T <= after; down: after < T <= before.
    let rows = sqlx::query(
        "SELECT t.client_id, t.amount, t.consent_id FROM balance_thresholds t \
         WHERE t.account_id = $1 AND ((t.amount > $2 AND t.amount <= $3) \
           OR (t.amount > $3 AND t.amount <= $2)) ORDER BY t.client_id, t.amount",
    )
    .bind(account.to_owned())
    .bind(before)
    .bind(after)
    .fetch_all(&mut *conn)
    .await
    .map_err(db_err)?;
    for r in &rows {
        let client_id: String = col(r, "client_id")?;
        let threshold: i64 = col(r, "amount")?;
        let consent_id: String = col(r, "consent_id")?;
        let consent = sqlx::query(
            "SELECT id, client_id, details, expires_at FROM consents \
             WHERE id = $1 AND client_id = $2 AND status = 'Authorised' \
               AND kind = 'account-access'",
        )
        .bind(consent_id.clone())
        .bind(client_id.clone())
        .fetch_optional(&mut *conn)
        .await
        .map_err(db_err)?;
        let Some(c) = consent
            .as_ref()
            .map(|r| LiveConsent::from_row(r, at))
            .transpose()?
            .flatten()
        else {
            continue;
        };
        if !c.covers(account)
            || !c.has(Permission::ReadBalances)
            || !client_wants(conn, &client_id, EVENT_BALANCE_THRESHOLD).await?
        {
            continue;
        }
        let (t_amt, t_ind) = money(threshold, currency);
        let (b_amt, b_ind) = money(after, currency);
        let body = json!({
            "AccountId": account,
            "Direction": if after < before { "Below" } else { "Above" },
            "Threshold": {"Amount": t_amt, "CreditDebitIndicator": t_ind},
            "Balance": {
                "Amount": b_amt,
                "CreditDebitIndicator": b_ind,
                "Type": "InterimBooked",
                "DateTime": rfc3339(at),
            },
        });
        let event = NewEvent {
            client_id: client_id.clone(),
            consent_id: Some(consent_id),
            event_type: EVENT_BALANCE_THRESHOLD.into(),
            rid: account.to_owned(),
            rty: "account-balance".into(),
            link: format!("/open-banking/v4.0/aisp/accounts/{account}/balances"),
            detail: body,
            txn: txn.to_owned(),
            toe: at,
        };
        enqueue_event(conn, &event, due_ms(at)).await?;
    }
    Ok(())
}

async fn exec(conn: &mut AnyConnection, sql: &str, bound: i64) -> StoreResult<u64> {
    Ok(sqlx::query(AssertSqlSafe(sql.to_owned()))
        .bind(bound)
        .execute(&mut *conn)
        .await
        .map_err(db_err)?
        .rows_affected())
}

fn str_at(v: &Value, path: &[&str]) -> Option<String> {
    let mut v = v;
    for p in path {
        v = v.get(p)?;
    }
    v.as_str().map(str::to_owned)
}

/// Hook for payment code: the alerts of payment `payment_id`'s posting of `kind`
/// (`payment`, `return`), if it made one, inside the payment's transaction. The debtor
/// sees the creditor of the Initiation; an internal creditor sees the debtor.
pub(crate) async fn payment_posted(
    conn: &mut AnyConnection,
    payment_id: &str,
    kind: &str,
    at: i64,
) -> StoreResult<()> {
    let Some(posting) = sqlx::query_scalar::<_, String>(
        "SELECT id FROM ledger_postings WHERE payment_id = $1 AND kind = $2",
    )
    .bind(payment_id.to_owned())
    .bind(kind.to_owned())
    .fetch_optional(&mut *conn)
    .await
    .map_err(db_err)?
    else {
        return Ok(());
    };
    let Some(p) = sqlx::query(
        "SELECT p.debtor_account_id, p.details, a.scheme, a.identification, a.name \
         FROM payments p LEFT JOIN ledger_accounts a ON a.id = p.debtor_account_id \
         WHERE p.id = $1",
    )
    .bind(payment_id.to_owned())
    .fetch_optional(&mut *conn)
    .await
    .map_err(db_err)?
    else {
        return Ok(());
    };
    let debtor_id: String = col(&p, "debtor_account_id")?;
    let details: String = col(&p, "details")?;
    let details: Value = serde_json::from_str(&details)
        .map_err(|e| StoreError::Corrupt(format!("payments.details: {e}")))?;
    let (side, reference) = payment_sides(
        &details,
        debtor_id,
        (
            col(&p, "scheme")?,
            col(&p, "identification")?,
            col(&p, "name")?,
        ),
    );
    posted(conn, &posting, at, &side, reference.as_deref()).await
}

/// [`payment_posted`] for the payment whose posting was just written, from what the
/// writer already holds (no reads back).
pub(crate) async fn payment_legs_posted(
    conn: &mut AnyConnection,
    payment: &crate::PaymentRecord,
    posted: crate::sql_payments::Posted,
    at: i64,
) -> StoreResult<()> {
    let (scheme, identification, name) = posted.debtor;
    let (side, reference) = payment_sides(
        &payment.details,
        payment.debtor_account_id.clone(),
        (scheme, identification, Some(name)),
    );
    posted_legs(
        conn,
        &posted.posting_id,
        posted.legs,
        at,
        &side,
        reference.as_deref(),
    )
    .await
}

/// A payment's counterparty as seen from each account it touched, and its reference.
fn payment_sides(
    details: &Value,
    debtor_id: String,
    (scheme, identification, name): (Option<String>, Option<String>, Option<String>),
) -> (impl Fn(&str) -> Party + Send + Sync + use<>, Option<String>) {
    let init = details.get("Initiation").cloned().unwrap_or(Value::Null);
    let creditor = Party {
        name: str_at(&init, &["CreditorAccount", "Name"]),
        scheme: str_at(&init, &["CreditorAccount", "SchemeName"]),
        identification: str_at(&init, &["CreditorAccount", "Identification"]),
    };
    let debtor = Party {
        name: str_at(details, &["DebtorName"]).or(name),
        scheme,
        identification,
    };
    let reference = str_at(&init, &["RemittanceInformation", "Reference"])
        .or_else(|| str_at(&init, &["RemittanceInformation", "Unstructured"]));
    let side = move |account: &str| {
        if account == debtor_id {
            creditor.clone()
        } else {
            debtor.clone()
        }
    };
    (side, reference)
}

/// Hook for consent writers: an authorised account-access consent's accounts enter the
/// index alerts look consents up by (same transaction as the consent write).
pub(crate) async fn consent_written(conn: &mut AnyConnection, id: &str) -> StoreResult<()> {
    let Some(r) = sqlx::query(
        "SELECT details FROM consents WHERE id = $1 AND kind = 'account-access' \
         AND status = 'Authorised'",
    )
    .bind(id.to_owned())
    .fetch_optional(&mut *conn)
    .await
    .map_err(db_err)?
    else {
        return Ok(());
    };
    let details: String = col(&r, "details")?;
    let v: Value = serde_json::from_str(&details)
        .map_err(|e| StoreError::Corrupt(format!("consents.details: {e}")))?;
    let Some(ids) = v.get("account_ids").and_then(Value::as_array) else {
        return Ok(());
    };
    for a in ids.iter().filter_map(Value::as_str) {
        sqlx::query(
            "INSERT INTO consent_accounts (account_id, consent_id) VALUES ($1, $2) \
             ON CONFLICT (account_id, consent_id) DO NOTHING",
        )
        .bind(a.to_owned())
        .bind(id.to_owned())
        .execute(&mut *conn)
        .await
        .map_err(db_err)?;
    }
    Ok(())
}

#[async_trait]
impl AlertStore for SqlStore {
    async fn set_thresholds(
        &self,
        client_id: &str,
        account_id: &str,
        t: &Thresholds,
        now: i64,
    ) -> StoreResult<()> {
        let mut tx = self.pool().begin().await.map_err(db_err)?;
        sqlx::query("DELETE FROM balance_thresholds WHERE client_id = $1 AND account_id = $2")
            .bind(client_id.to_owned())
            .bind(account_id.to_owned())
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        for a in &t.amounts {
            sqlx::query(
                "INSERT INTO balance_thresholds \
                 (client_id, account_id, amount, currency, consent_id, created_at) \
                 VALUES ($1, $2, $3, $4, $5, $6) \
                 ON CONFLICT (client_id, account_id, amount) DO NOTHING",
            )
            .bind(client_id.to_owned())
            .bind(account_id.to_owned())
            .bind(*a)
            .bind(t.currency.clone())
            .bind(t.consent_id.clone())
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        }
        tx.commit().await.map_err(db_err)
    }

    async fn thresholds(
        &self,
        client_id: &str,
        account_id: &str,
    ) -> StoreResult<Option<Thresholds>> {
        let rows = sqlx::query(
            "SELECT amount, currency, consent_id FROM balance_thresholds \
             WHERE client_id = $1 AND account_id = $2 ORDER BY amount",
        )
        .bind(client_id.to_owned())
        .bind(account_id.to_owned())
        .fetch_all(self.pool())
        .await
        .map_err(db_err)?;
        let Some(first) = rows.first() else {
            return Ok(None);
        };
        Ok(Some(Thresholds {
            consent_id: col(first, "consent_id")?,
            currency: col(first, "currency")?,
            amounts: rows
                .iter()
                .map(|r| col::<i64>(r, "amount"))
                .collect::<StoreResult<_>>()?,
        }))
    }

    async fn delete_thresholds(&self, client_id: &str, account_id: &str) -> StoreResult<bool> {
        let n =
            sqlx::query("DELETE FROM balance_thresholds WHERE client_id = $1 AND account_id = $2")
                .bind(client_id.to_owned())
                .bind(account_id.to_owned())
                .execute(self.pool())
                .await
                .map_err(db_err)?
                .rows_affected();
        Ok(n > 0)
    }

    async fn credit_incoming(&self, t: &IncomingTransfer) -> StoreResult<Credited> {
        if t.amount <= 0 {
            return Err(StoreError::Conflict(
                "an incoming credit must be positive".into(),
            ));
        }
        let mut tx = self.pool().begin().await.map_err(db_err)?;
        // The write comes first (SQLite takes its write lock; PostgreSQL the row lock).
        let n = sqlx::query(
            "UPDATE ledger_accounts SET balance = balance + $1, updated_at = $2 \
             WHERE id = $3 AND kind = 'customer' AND currency = $4",
        )
        .bind(t.amount)
        .bind(t.at)
        .bind(t.account_id.clone())
        .bind(t.currency.clone())
        .execute(&mut *tx)
        .await
        .map_err(db_err)?
        .rows_affected();
        if n != 1 {
            let exists = sqlx::query_scalar::<_, String>(
                "SELECT currency FROM ledger_accounts WHERE id = $1 AND kind = 'customer'",
            )
            .bind(t.account_id.clone())
            .fetch_optional(&mut *tx)
            .await
            .map_err(db_err)?;
            tx.rollback().await.map_err(db_err)?;
            return Ok(match exists {
                None => Credited::UnknownAccount,
                Some(_) => Credited::WrongCurrency,
            });
        }
        let transfer_id = format!("itr-{}", uuid::Uuid::new_v4());
        let clearing =
            crate::sql_payments::ensure_internal(&mut tx, "clearing", &t.currency, t.at).await?;
        let posting_id = crate::sql_payments::post(
            &mut tx,
            "incoming",
            Some(&transfer_id),
            "incoming transfer",
            &[(&clearing, -t.amount), (&t.account_id, t.amount)],
            t.at,
        )
        .await?;
        sqlx::query(
            "INSERT INTO incoming_transfers (id, account_id, amount, currency, \
             counterparty_name, counterparty_scheme, counterparty_identification, reference, \
             posting_id, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        )
        .bind(transfer_id.clone())
        .bind(t.account_id.clone())
        .bind(t.amount)
        .bind(t.currency.clone())
        .bind(t.counterparty.name.clone().unwrap_or_default())
        .bind(t.counterparty.scheme.clone())
        .bind(t.counterparty.identification.clone())
        .bind(t.reference.clone())
        .bind(posting_id.clone())
        .bind(t.at)
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
        let sender = t.counterparty.clone();
        let side = move |_: &str| sender.clone();
        posted(&mut tx, &posting_id, t.at, &side, t.reference.as_deref()).await?;
        let balance =
            sqlx::query_scalar::<_, i64>("SELECT balance FROM ledger_accounts WHERE id = $1")
                .bind(t.account_id.clone())
                .fetch_one(&mut *tx)
                .await
                .map_err(db_err)?;
        tx.commit().await.map_err(db_err)?;
        Ok(Credited::Done {
            transfer_id,
            posting_id,
            balance,
        })
    }

    async fn expiring_consents(&self, now: i64, limit: i64) -> StoreResult<Vec<String>> {
        sqlx::query_scalar::<_, String>(
            "SELECT id FROM consents WHERE status IN ('Authorised', 'AwaitingAuthorisation') \
             AND kind = 'account-access' AND expires_at IS NOT NULL AND expires_at <= $1 \
             ORDER BY expires_at, id LIMIT $2",
        )
        .bind(now)
        .bind(limit)
        .fetch_all(self.pool())
        .await
        .map_err(db_err)
    }

    async fn purge_events(&self, before_ms: i64) -> StoreResult<Purged> {
        let mut tx = self.pool().begin().await.map_err(db_err)?;
        let attempts = exec(
            &mut tx,
            "DELETE FROM event_delivery_attempts WHERE at_ms < $1 AND NOT EXISTS ( \
               SELECT 1 FROM event_deliveries d \
               WHERE d.subscription_id = event_delivery_attempts.subscription_id \
                 AND d.event_id = event_delivery_attempts.event_id AND d.state = 'pending')",
            before_ms,
        )
        .await?;
        let deliveries = exec(
            &mut tx,
            "DELETE FROM event_deliveries WHERE state <> 'pending' AND updated_at_ms < $1",
            before_ms,
        )
        .await?;
        let events = exec(
            &mut tx,
            "DELETE FROM event_outbox WHERE created_at < $1 AND NOT EXISTS ( \
               SELECT 1 FROM event_deliveries d WHERE d.event_id = event_outbox.id)",
            before_ms.div_euclid(1000),
        )
        .await?;
        tx.commit().await.map_err(db_err)?;
        Ok(Purged {
            deliveries,
            attempts,
            events,
        })
    }
}
