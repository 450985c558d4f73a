//! An account's ledger postings as booked transactions (the AIS transaction list).
//!
//! Every movement of money since the ledger opened is a posting (ADR 0011): payment
//! debits and internal payment credits, clearing returns, incoming credits, file payment
//! items. [`LedgerHistoryStore::account_postings`] reads one account's postings (not its
//! opening posting: the in-memory bank's generated history explains the opening balance)
//! with the other side and the reference, worked out the way the transaction alert does
//! (`sql_alerts::payment_posted`): the debtor sees the Initiation's creditor, an internal
//! creditor sees the debtor; an incoming credit its sender. The id of a transaction is its
//! posting id, the `TransactionId` of its alert.

use async_trait::async_trait;
use serde_json::Value;
use sqlx::AssertSqlSafe;

use crate::sql::{SqlStore, col, db_err};
use crate::sql_alerts::Party;
use crate::{StoreError, StoreResult};

/// One account's share of one posting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LedgerTransaction {
    /// The posting id: stable, and the `TransactionId` of the transaction alert.
    pub posting_id: String,
    pub account_id: String,
    /// `payment`, `return` or `incoming`.
    pub kind: String,
    /// Signed minor units: positive is a credit.
    pub amount: i64,
    pub currency: String,
    /// Booking time, unix seconds.
    pub at: i64,
    /// Booked balance of the account after this posting, minor units.
    pub balance_after: i64,
    pub counterparty: Party,
    pub reference: Option<String>,
    pub description: String,
}

/// Which postings [`LedgerHistoryStore::account_postings`] returns.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LedgerHistoryQuery {
    /// Inclusive booking-time bounds, unix seconds.
    pub from: Option<i64>,
    pub to: Option<i64>,
    /// `Some(true)` credits only, `Some(false)` debits only.
    pub credits: Option<bool>,
    /// The newest `limit` matching postings are returned.
    pub limit: i64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LedgerHistory {
    /// Newest first, at most `limit`.
    pub items: Vec<LedgerTransaction>,
    /// Matching postings in all.
    pub total: usize,
    /// Earliest and latest booking time of any of the account's postings (no filter).
    pub first_at: Option<i64>,
    pub last_at: Option<i64>,
}

/// Read side of the ledger for the account-information API. Implemented by [`SqlStore`].
#[async_trait]
pub trait LedgerHistoryStore: Send + Sync {
    /// The postings of customer account `account_id` matching `q`.
    async fn account_postings(
        &self,
        account_id: &str,
        q: &LedgerHistoryQuery,
    ) -> StoreResult<LedgerHistory>;
}

fn str_at(v: &Value, path: &[&str]) -> Option<String> {
    let mut v = v;
    for p in path {
        v = v.get(p)?;
    }
    v.as_str().map(str::to_owned)
}

/// The account's legs of each posting, grouped: `$1` account, `$2`/`$3` booking bounds.
/// A posting that nets to zero on the account moved nothing there and is left out.
fn grouped(direction: &str) -> String {
    format!(
        "SELECT e.posting_id AS posting_id, CAST(SUM(e.amount) AS BIGINT) AS amount, \
           CAST(MAX(e.seq) AS BIGINT) AS seq, lp.at AS at, lp.kind AS kind, \
           lp.payment_id AS payment_id, lp.description AS description \
         FROM ledger_entries e JOIN ledger_postings lp ON lp.id = e.posting_id \
         WHERE e.account_id = $1 AND lp.kind <> 'opening' AND lp.at >= $2 AND lp.at <= $3 \
         GROUP BY e.posting_id, lp.at, lp.kind, lp.payment_id, lp.description \
         HAVING {direction}"
    )
}

#[async_trait]
impl LedgerHistoryStore for SqlStore {
    async fn account_postings(
        &self,
        account_id: &str,
        q: &LedgerHistoryQuery,
    ) -> StoreResult<LedgerHistory> {
        let direction = match q.credits {
            Some(true) => "SUM(e.amount) > 0",
            Some(false) => "SUM(e.amount) < 0",
            None => "SUM(e.amount) <> 0",
        };
        let (from, to) = (q.from.unwrap_or(i64::MIN), q.to.unwrap_or(i64::MAX));
        let Some(currency) = sqlx::query_scalar::<_, String>(
            "SELECT currency FROM ledger_accounts WHERE id = $1 AND kind = 'customer'",
        )
        .bind(account_id.to_owned())
        .fetch_optional(self.pool())
        .await
        .map_err(db_err)?
        else {
            return Ok(LedgerHistory::default());
        };
        let total: i64 = sqlx::query_scalar(AssertSqlSafe(format!(
            "SELECT COUNT(*) FROM ({}) g",
            grouped(direction)
        )))
        .bind(account_id.to_owned())
        .bind(from)
        .bind(to)
        .fetch_one(self.pool())
        .await
        .map_err(db_err)?;
        let span = sqlx::query(
            "SELECT CAST(MIN(lp.at) AS BIGINT) AS first_at, CAST(MAX(lp.at) AS BIGINT) AS last_at \
             FROM ledger_entries e JOIN ledger_postings lp ON lp.id = e.posting_id \
             WHERE e.account_id = $1 AND lp.kind <> 'opening'",
        )
        .bind(account_id.to_owned())
        .fetch_one(self.pool())
        .await
        .map_err(db_err)?;
        // The page first (newest `limit`), then the other side and the balance after each
        // (the sum of the account's entries up to the posting's last one: an account's
        // postings are serialised by its row lock, so entry order is booking order).
        let rows = sqlx::query(AssertSqlSafe(format!(
            "SELECT t.posting_id, t.amount, t.at, t.kind, t.description, \
               (SELECT CAST(SUM(x.amount) AS BIGINT) FROM ledger_entries x \
                 WHERE x.account_id = $1 AND x.seq <= t.seq) AS balance_after, \
               p.debtor_account_id, p.details, da.scheme AS d_scheme, \
               da.identification AS d_identification, da.name AS d_name, \
               it.counterparty_name, it.counterparty_scheme, it.counterparty_identification, \
               it.reference AS it_reference \
             FROM ({} ORDER BY lp.at DESC, MAX(e.seq) DESC LIMIT $4) t \
             LEFT JOIN payments p ON t.kind IN ('payment', 'return') AND p.id = t.payment_id \
             LEFT JOIN ledger_accounts da ON da.id = p.debtor_account_id \
             LEFT JOIN incoming_transfers it ON t.kind = 'incoming' AND it.posting_id = t.posting_id \
             ORDER BY t.at DESC, t.seq DESC",
            grouped(direction)
        )))
        .bind(account_id.to_owned())
        .bind(from)
        .bind(to)
        .bind(q.limit.max(0))
        .fetch_all(self.pool())
        .await
        .map_err(db_err)?;
        let mut items = Vec::with_capacity(rows.len());
        for r in &rows {
            let kind: String = col(r, "kind")?;
            let (counterparty, reference) = if kind == "incoming" {
                (
                    Party {
                        name: col::<Option<String>>(r, "counterparty_name")?
                            .filter(|n| !n.is_empty()),
                        scheme: col(r, "counterparty_scheme")?,
                        identification: col(r, "counterparty_identification")?,
                    },
                    col(r, "it_reference")?,
                )
            } else {
                match col::<Option<String>>(r, "details")? {
                    None => (Party::default(), None),
                    Some(details) => {
                        let details: Value = serde_json::from_str(&details)
                            .map_err(|e| StoreError::Corrupt(format!("payments.details: {e}")))?;
                        let init = details.get("Initiation").cloned().unwrap_or(Value::Null);
                        let debtor: Option<String> = col(r, "debtor_account_id")?;
                        let party = if debtor.as_deref() == Some(account_id) {
                            // The debtor's side (the debit, or its return): the payee.
                            Party {
                                name: str_at(&init, &["CreditorAccount", "Name"]),
                                scheme: str_at(&init, &["CreditorAccount", "SchemeName"]),
                                identification: str_at(
                                    &init,
                                    &["CreditorAccount", "Identification"],
                                ),
                            }
                        } else {
                            // An internal creditor: the paying customer's account.
                            Party {
                                name: str_at(&details, &["DebtorName"]).or(col(r, "d_name")?),
                                scheme: col(r, "d_scheme")?,
                                identification: col(r, "d_identification")?,
                            }
                        };
                        let reference = str_at(&init, &["RemittanceInformation", "Reference"])
                            .or_else(|| str_at(&init, &["RemittanceInformation", "Unstructured"]));
                        (party, reference)
                    }
                }
            };
            items.push(LedgerTransaction {
                posting_id: col(r, "posting_id")?,
                account_id: account_id.to_owned(),
                kind,
                amount: col(r, "amount")?,
                currency: currency.clone(),
                at: col(r, "at")?,
                balance_after: col::<Option<i64>>(r, "balance_after")?.unwrap_or_default(),
                counterparty,
                reference,
                description: col(r, "description")?,
            });
        }
        Ok(LedgerHistory {
            items,
            total: usize::try_from(total).unwrap_or_default(),
            first_at: col(&span, "first_at")?,
            last_at: col(&span, "last_at")?,
        })
    }
}
