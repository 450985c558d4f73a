//! The core bank as payments change it (issue 7, ADR 0011).
//!
//! * [`seed_ledger`]: the sandbox customers' accounts enter the durable ledger with the
//!   in-memory bank's booked balance as their opening balance and their arranged
//!   overdraft as the limit (once: later starts find them and change nothing).
//! * [`LedgerBank`]: a [`CoreBank`] whose balances come from the durable ledger for
//!   accounts that have one, so the account-information API shows what payments did;
//!   transactions are the in-memory bank's generated history merged with the account's
//!   ledger postings (id = posting id, the alert's `TransactionId`). Everything else
//!   (parties, beneficiaries, …) is the in-memory bank's.

use authz_store::{
    DurableStore, LedgerAccountSeed, LedgerHistoryQuery, LedgerTransaction, PaymentStore,
};
use core_bank::{
    Account, AccountId, AccountKind, Balances, Beneficiary, CoreBank, CoreError, Counterparty,
    Currency, Customer, Direction, Money, Party, SandboxBank, StandingOrder, Transaction,
    TransactionPage, TransactionQuery, TxKind,
};
use std::sync::Arc;
use time::OffsetDateTime;

/// Opens every payment-capable account (current and savings) of the sandbox bank in the
/// ledger. Returns how many were opened now. Safe when several processes start at once.
pub async fn seed_ledger(
    store: &dyn PaymentStore,
    bank: &SandboxBank,
    now: i64,
) -> anyhow::Result<usize> {
    let seeds = bank.read(|b| {
        let mut out = Vec::new();
        for c in b.customers() {
            for a in b.accounts_of(&c.id) {
                if a.kind == AccountKind::CreditCard {
                    continue;
                }
                if let Ok(bal) = b.balances(&a.id) {
                    out.push(LedgerAccountSeed {
                        id: a.id.clone(),
                        customer_id: c.id.clone(),
                        scheme: a.identification.scheme.clone(),
                        identification: a.identification.identification.clone(),
                        name: a.identification.name.clone(),
                        currency: a.currency.code().to_owned(),
                        opening_balance: bal.booked.minor,
                        overdraft_limit: a.credit_limit,
                    });
                }
            }
        }
        out
    });
    let mut opened = 0;
    for s in &seeds {
        if store
            .seed_ledger_account(s, now)
            .await
            .map_err(|e| anyhow::anyhow!("seeding ledger account {}: {e}", s.id))?
        {
            opened += 1;
        }
    }
    Ok(opened)
}

/// Balances from the durable ledger where an account has one; the rest from `inner`.
pub struct LedgerBank {
    inner: Arc<dyn CoreBank>,
    store: Arc<dyn DurableStore>,
}

impl LedgerBank {
    pub fn new(inner: Arc<dyn CoreBank>, store: Arc<dyn DurableStore>) -> Self {
        Self { inner, store }
    }

    /// Positions `skip .. skip + need` of one account's history merged with its postings
    /// `ledger` (newest first, at least its first `skip + need`). At most `ledger.len()`
    /// postings come before position `skip`, so the generated history is read from
    /// `skip - ledger.len()` on, never from its start.
    async fn merged(
        &self,
        id: &AccountId,
        query: &TransactionQuery,
        ledger: &[Transaction],
        skip: usize,
        need: usize,
    ) -> Result<Vec<Transaction>, CoreError> {
        let g0 = skip.saturating_sub(ledger.len());
        let mut generated = Vec::new();
        let mut offset = g0;
        let end = skip + need;
        while offset < end {
            let q = TransactionQuery {
                offset,
                limit: (end - offset).min(core_bank::MAX_PAGE),
                ..query.clone()
            };
            let page = self
                .inner
                .transactions(std::slice::from_ref(id), &q)
                .await?;
            if page.items.is_empty() {
                break;
            }
            offset += page.items.len();
            generated.extend(page.items);
        }
        // Postings that sort before the first generated item read: ties go to the
        // posting (it was booked after the history was generated).
        let newer = |l: &Transaction, g: &Transaction| l.booking >= g.booking;
        let mut i = match (g0, generated.first()) {
            (0, _) => 0,
            (_, Some(g)) => ledger.iter().take_while(|&l| newer(l, g)).count(),
            (_, None) => ledger.len(),
        };
        let mut j = 0;
        let mut pos = g0 + i;
        let mut out = Vec::with_capacity(need);
        while out.len() < need {
            let take_ledger = match (ledger.get(i), generated.get(j)) {
                (Some(l), Some(g)) => newer(l, g),
                (Some(_), None) => true,
                (None, Some(_)) => false,
                (None, None) => break,
            };
            let t = if take_ledger {
                i += 1;
                &ledger[i - 1]
            } else {
                j += 1;
                &generated[j - 1]
            };
            if pos >= skip {
                out.push(t.clone());
            }
            pos += 1;
        }
        Ok(out)
    }
}

fn at(t: Option<i64>) -> Option<OffsetDateTime> {
    t.and_then(|t| OffsetDateTime::from_unix_timestamp(t).ok())
        .map(|t| t.to_offset(core_bank::EAT))
}

/// A ledger posting as the core bank's booked transaction; `None` for a currency the
/// sandbox does not hold (never written: ledger accounts are opened from the bank's).
fn as_transaction(l: &LedgerTransaction) -> Option<Transaction> {
    let currency = Currency::parse(&l.currency)?;
    let booking = at(Some(l.at))?;
    let p = &l.counterparty;
    let counterparty = p.identification.as_ref().map(|ident| Counterparty {
        name: p.name.clone().unwrap_or_default().into(),
        scheme: p.scheme.clone().unwrap_or_default().into(),
        identification: ident.clone().into(),
    });
    let description = match (l.kind.as_str(), p.name.as_deref()) {
        ("return", Some(n)) => format!("Returned payment to {n}"),
        ("incoming", Some(n)) => format!("Transfer from {n}"),
        (_, Some(n)) if l.amount < 0 => format!("Payment to {n}"),
        (_, Some(n)) => format!("Payment from {n}"),
        _ => l.description.clone(),
    };
    Some(Transaction {
        transaction_id: l.posting_id.clone(),
        account_id: l.account_id.clone(),
        amount: Money::new(l.amount, currency),
        booking,
        value: booking,
        kind: TxKind::Payment,
        description,
        reference: l.reference.clone().unwrap_or_default(),
        counterparty,
        merchant: None,
        running_balance: Money::new(l.balance_after, currency),
    })
}

#[async_trait::async_trait]
impl CoreBank for LedgerBank {
    async fn customer_for_subject(&self, subject: &str) -> Result<Option<Customer>, CoreError> {
        self.inner.customer_for_subject(subject).await
    }

    async fn accounts(&self, customer_id: &str) -> Result<Vec<Account>, CoreError> {
        self.inner.accounts(customer_id).await
    }

    async fn account(&self, account_id: &str) -> Result<Option<Account>, CoreError> {
        self.inner.account(account_id).await
    }

    async fn balances(&self, account_id: &str) -> Result<Balances, CoreError> {
        let mut b = self.inner.balances(account_id).await?;
        let Some(p) = self.store.payments() else {
            return Ok(b);
        };
        let l = p
            .ledger_account(account_id)
            .await
            .map_err(|e| CoreError::Unavailable(e.to_string()))?;
        if let Some(l) = l
            && l.currency == b.booked.currency.code()
        {
            let cur = b.booked.currency;
            b.booked = Money::new(l.balance, cur);
            b.available = Money::new(l.available(), cur);
            if let Ok(t) = OffsetDateTime::from_unix_timestamp(l.updated_at)
                && t > b.as_of
            {
                b.as_of = t.to_offset(core_bank::EAT);
            }
        }
        Ok(b)
    }

    /// The in-memory bank's history merged with the account's ledger postings (payments,
    /// returns, incoming transfers), newest first per account, accounts in the order
    /// asked for (the in-memory bank's own order), `offset`/`limit` over the merged list.
    async fn transactions(
        &self,
        account_ids: &[AccountId],
        query: &TransactionQuery,
    ) -> Result<TransactionPage, CoreError> {
        let Some(h) = self.store.ledger_history() else {
            return self.inner.transactions(account_ids, query).await;
        };
        let unavailable = |e: authz_store::StoreError| CoreError::Unavailable(e.to_string());
        let limit = query.limit.min(core_bank::MAX_PAGE);
        // Merged positions before offset + limit hold at most that many postings.
        let want = query.offset.saturating_add(limit);
        let lq = LedgerHistoryQuery {
            from: query.from.map(OffsetDateTime::unix_timestamp),
            to: query.to.map(OffsetDateTime::unix_timestamp),
            credits: query.direction.map(|d| d == Direction::Credit),
            limit: i64::try_from(want).unwrap_or(i64::MAX),
        };
        let mut per = Vec::with_capacity(account_ids.len());
        let (mut first, mut last) = (None::<OffsetDateTime>, None::<OffsetDateTime>);
        let mut total = 0;
        for id in account_ids {
            let counts = TransactionQuery {
                offset: 0,
                limit: 0,
                ..query.clone()
            };
            let g = self
                .inner
                .transactions(std::slice::from_ref(id), &counts)
                .await?;
            let l = h.account_postings(id, &lq).await.map_err(unavailable)?;
            let ledger: Vec<Transaction> = l.items.iter().filter_map(as_transaction).collect();
            for t in [g.first_available, at(l.first_at)].into_iter().flatten() {
                first = Some(first.map_or(t, |f| f.min(t)));
            }
            for t in [g.last_available, at(l.last_at)].into_iter().flatten() {
                last = Some(last.map_or(t, |x| x.max(t)));
            }
            total += g.total + l.total;
            per.push((id, g.total, l.total, ledger));
        }
        let mut skip = query.offset;
        let mut items = Vec::with_capacity(limit.min(total));
        for (id, g_total, l_total, ledger) in per {
            if items.len() >= limit {
                break;
            }
            let n = g_total + l_total;
            if skip >= n {
                skip -= n;
                continue;
            }
            let need = (limit - items.len()).min(n - skip);
            let page = self.merged(id, query, &ledger, skip, need).await?;
            items.extend(page);
            skip = 0;
        }
        Ok(TransactionPage {
            items,
            total,
            first_available: first,
            last_available: last,
        })
    }

    async fn beneficiaries(&self, account_id: &str) -> Result<Vec<Beneficiary>, CoreError> {
        self.inner.beneficiaries(account_id).await
    }

    async fn standing_orders(&self, account_id: &str) -> Result<Vec<StandingOrder>, CoreError> {
        self.inner.standing_orders(account_id).await
    }

    async fn party(&self, customer_id: &str) -> Result<Option<Party>, CoreError> {
        self.inner.party(customer_id).await
    }

    async fn account_parties(&self, account_id: &str) -> Result<Vec<Party>, CoreError> {
        self.inner.account_parties(account_id).await
    }
}
