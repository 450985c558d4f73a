//! The core bank as payments change it (issue 7, ADR 0011).
//!
//! * [`seed_ledger`]: the sandbox customers' accounts enter the durable ledger with the
//!   in-memory bank's booked balance as their opening balance and their arranged
//!   overdraft as the limit (once: later starts find them and change nothing).
//! * [`LedgerBank`]: a [`CoreBank`] whose balances come from the durable ledger for
//!   accounts that have one, so the account-information API shows what payments did.
//!   Everything else (transactions, parties, …) is the in-memory bank's.

use authz_store::{DurableStore, LedgerAccountSeed, PaymentStore};
use core_bank::{
    Account, AccountId, AccountKind, Balances, Beneficiary, CoreBank, CoreError, Customer, Money,
    Party, SandboxBank, StandingOrder, TransactionPage, TransactionQuery,
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

    async fn transactions(
        &self,
        account_ids: &[AccountId],
        query: &TransactionQuery,
    ) -> Result<TransactionPage, CoreError> {
        self.inner.transactions(account_ids, query).await
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
