//! The sandbox bank: customers, accounts and reference data around a [`Ledger`], with
//! the indexes the read paths need (id → account, customer → accounts, external
//! subject → customer). [`Bank`] is the single-threaded builder and query engine;
//! [`SandboxBank`] puts it behind a lock and implements [`crate::CoreBank`].

use crate::CoreError;
use crate::ledger::{Entry, Ledger, LedgerAccountId, Leg, Posting, PostingRequest};
use crate::model::*;
use crate::money::{Currency, Money};
use std::collections::{BTreeMap, HashMap};
use std::sync::RwLock;
use time::{OffsetDateTime, UtcOffset};

/// East Africa Time: the sandbox renders date-times in Nairobi's offset.
pub const EAT: UtcOffset = time::macros::offset!(+3);

/// Upper bound on one page, whatever the caller asks.
pub const MAX_PAGE: usize = 1000;

/// The bank's own ledger accounts, one per currency each.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum InternalAccount {
    /// Money arriving from / leaving to other banks and mobile-money operators.
    Clearing,
    /// Card scheme settlement.
    CardSettlement,
    InterestExpense,
    FeeIncome,
    /// The bank's FX position (one per currency; a conversion posts to two).
    FxPosition,
    /// Balances brought in when accounts were migrated / opened.
    OpeningEquity,
}

#[derive(Debug, Clone)]
struct AccountRecord {
    account: Account,
    ledger: LedgerAccountId,
}

#[derive(Debug, Clone, Default)]
pub struct Bank {
    ledger: Ledger,
    customers: Vec<Customer>,
    customer_index: HashMap<String, usize>,
    by_username: HashMap<String, usize>,
    subjects: HashMap<String, usize>,
    accounts: Vec<AccountRecord>,
    account_index: HashMap<String, usize>,
    accounts_by_customer: Vec<Vec<usize>>,
    beneficiaries: HashMap<usize, Vec<Beneficiary>>,
    standing_orders: HashMap<usize, Vec<StandingOrder>>,
    counterparties: Vec<Counterparty>,
    merchants: Vec<Merchant>,
    internal: BTreeMap<(InternalAccount, Currency), LedgerAccountId>,
}

fn ts(secs: i64) -> Result<OffsetDateTime, CoreError> {
    OffsetDateTime::from_unix_timestamp(secs)
        .map(|t| t.to_offset(EAT))
        .map_err(|_| CoreError::InvalidPosting("timestamp out of range"))
}

impl Bank {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn ledger(&self) -> &Ledger {
        &self.ledger
    }

    // ---- building -------------------------------------------------------------------

    /// Adds a customer; its username is also registered as an external subject.
    pub fn add_customer(&mut self, customer: Customer) -> Result<(), CoreError> {
        if self.customer_index.contains_key(&customer.id)
            || self.by_username.contains_key(&customer.username)
        {
            return Err(CoreError::Duplicate(customer.id));
        }
        let idx = self.customers.len();
        self.customer_index.insert(customer.id.clone(), idx);
        self.by_username.insert(customer.username.clone(), idx);
        self.customers.push(customer);
        self.accounts_by_customer.push(Vec::new());
        Ok(())
    }

    /// Maps an external subject (the authorization server's `sub`) to a bank customer.
    pub fn link_customer(&mut self, subject: &str, customer_id: &str) -> Result<(), CoreError> {
        let idx = *self
            .customer_index
            .get(customer_id)
            .ok_or_else(|| CoreError::UnknownCustomer(customer_id.to_owned()))?;
        self.subjects.insert(subject.to_owned(), idx);
        Ok(())
    }

    pub fn open_account(&mut self, account: Account) -> Result<LedgerAccountId, CoreError> {
        let cidx = *self
            .customer_index
            .get(&account.customer_id)
            .ok_or_else(|| CoreError::UnknownCustomer(account.customer_id.clone()))?;
        if self.account_index.contains_key(&account.id) {
            return Err(CoreError::Duplicate(account.id));
        }
        let ledger = self.ledger.open_account(account.currency, true);
        let idx = self.accounts.len();
        self.account_index.insert(account.id.clone(), idx);
        self.accounts_by_customer[cidx].push(idx);
        self.accounts.push(AccountRecord { account, ledger });
        Ok(ledger)
    }

    /// The bank's internal account for `kind` in `currency`, opened on first use.
    pub fn internal(&mut self, kind: InternalAccount, currency: Currency) -> LedgerAccountId {
        if let Some(id) = self.internal.get(&(kind, currency)) {
            return *id;
        }
        let id = self.ledger.open_account(currency, false);
        self.internal.insert((kind, currency), id);
        id
    }

    pub fn add_counterparty(&mut self, c: Counterparty) -> u32 {
        self.counterparties.push(c);
        (self.counterparties.len() - 1) as u32
    }

    pub fn counterparty(&self, idx: u32) -> Option<&Counterparty> {
        self.counterparties.get(idx as usize)
    }

    pub fn add_merchant(&mut self, m: Merchant) -> u32 {
        self.merchants.push(m);
        (self.merchants.len() - 1) as u32
    }

    pub fn add_beneficiary(&mut self, b: Beneficiary) -> Result<(), CoreError> {
        let idx = self.account_idx(&b.account_id)?;
        self.beneficiaries.entry(idx).or_default().push(b);
        Ok(())
    }

    pub fn add_standing_order(&mut self, s: StandingOrder) -> Result<(), CoreError> {
        let idx = self.account_idx(&s.account_id)?;
        self.standing_orders.entry(idx).or_default().push(s);
        Ok(())
    }

    pub fn post(&mut self, req: PostingRequest) -> Result<u32, CoreError> {
        self.ledger.post(req)
    }

    /// Convenience: a two-leg posting.
    #[allow(clippy::too_many_arguments)]
    pub fn post_transfer(
        &mut self,
        kind: TxKind,
        booking: i64,
        value: i64,
        credit: LedgerAccountId,
        debit: LedgerAccountId,
        amount: i64,
        counterparty: Option<u32>,
        merchant: Option<u32>,
        reference: Option<Box<str>>,
    ) -> Result<u32, CoreError> {
        if amount <= 0 {
            return Err(CoreError::InvalidPosting("amount must be positive"));
        }
        self.ledger.post(PostingRequest {
            booking,
            value,
            kind,
            counterparty,
            merchant,
            reference,
            legs: vec![
                Leg {
                    account: debit,
                    amount: -amount,
                },
                Leg {
                    account: credit,
                    amount,
                },
            ],
        })
    }

    // ---- reading --------------------------------------------------------------------

    fn account_idx(&self, id: &str) -> Result<usize, CoreError> {
        self.account_index
            .get(id)
            .copied()
            .ok_or_else(|| CoreError::UnknownAccount(id.to_owned()))
    }

    pub fn customers(&self) -> &[Customer] {
        &self.customers
    }

    pub fn customer(&self, id: &str) -> Option<&Customer> {
        self.customer_index.get(id).map(|i| &self.customers[*i])
    }

    pub fn customer_by_username(&self, username: &str) -> Option<&Customer> {
        self.by_username.get(username).map(|i| &self.customers[*i])
    }

    /// A linked subject first, then a username.
    pub fn customer_for_subject(&self, subject: &str) -> Option<&Customer> {
        self.subjects
            .get(subject)
            .or_else(|| self.by_username.get(subject))
            .map(|i| &self.customers[*i])
    }

    pub fn accounts_of(&self, customer_id: &str) -> Vec<Account> {
        self.customer_index
            .get(customer_id)
            .map(|c| {
                self.accounts_by_customer[*c]
                    .iter()
                    .map(|a| self.accounts[*a].account.clone())
                    .collect()
            })
            .unwrap_or_default()
    }

    pub fn account(&self, id: &str) -> Option<&Account> {
        self.account_index
            .get(id)
            .map(|i| &self.accounts[*i].account)
    }

    pub fn account_count(&self) -> usize {
        self.accounts.len()
    }

    pub fn ledger_account(&self, id: &str) -> Result<LedgerAccountId, CoreError> {
        Ok(self.accounts[self.account_idx(id)?].ledger)
    }

    /// O(1): the cached ledger balance plus the account's credit line.
    pub fn balances(&self, id: &str) -> Result<Balances, CoreError> {
        let rec = &self.accounts[self.account_idx(id)?];
        let a = &rec.account;
        let booked = self.ledger.balance(rec.ledger)?;
        let credit_line = (a.credit_limit > 0).then(|| CreditLine {
            kind: match a.kind {
                AccountKind::CreditCard => CreditLineKind::Credit,
                _ => CreditLineKind::PreAgreed,
            },
            limit: Money::new(a.credit_limit, a.currency),
            included: true,
        });
        let available = booked
            .checked_add(a.credit_limit)
            .ok_or(CoreError::Overflow)?;
        let as_of = match self.ledger.last_booking(rec.ledger)? {
            Some(t) => ts(t)?,
            None => a.opening_date.midnight().assume_offset(EAT),
        };
        Ok(Balances {
            account_id: a.id.clone(),
            booked: Money::new(booked, a.currency),
            available: Money::new(available, a.currency),
            credit_line,
            as_of,
        })
    }

    fn view(&self, rec: &AccountRecord, e: &Entry) -> Result<Transaction, CoreError> {
        let p: &Posting = self
            .ledger
            .posting(e.posting)
            .ok_or(CoreError::InvalidPosting("entry without posting"))?;
        let cur = rec.account.currency;
        let counterparty = p
            .counterparty
            .and_then(|i| self.counterparties.get(i as usize).cloned());
        let merchant = p
            .merchant
            .and_then(|i| self.merchants.get(i as usize).cloned());
        let who = merchant
            .as_ref()
            .map(|m| m.name.clone())
            .or_else(|| counterparty.as_ref().map(|c| c.name.clone()));
        let description = match who {
            Some(w) => format!("{} {}", p.kind.label(), w),
            None => p.kind.label().to_owned(),
        };
        Ok(Transaction {
            transaction_id: format!("T{:09}-{}", e.posting, e.leg),
            account_id: rec.account.id.clone(),
            amount: Money::new(e.amount, cur),
            booking: ts(p.booking)?,
            value: ts(p.value)?,
            kind: p.kind,
            description,
            reference: p
                .reference
                .as_deref()
                .map(str::to_owned)
                .unwrap_or_else(|| format!("WKZ{:010}", p.id)),
            counterparty,
            merchant,
            running_balance: Money::new(e.running, cur),
        })
    }

    /// Transactions of the given accounts, newest first within each account, accounts
    /// in the order given. O(k·log n + page) for k accounts.
    pub fn transactions(
        &self,
        account_ids: &[AccountId],
        q: &TransactionQuery,
    ) -> Result<TransactionPage, CoreError> {
        let from = q.from.map(|t| t.unix_timestamp());
        let to = q.to.map(|t| t.unix_timestamp());
        let limit = q.limit.min(MAX_PAGE);
        let mut windows = Vec::with_capacity(account_ids.len());
        let (mut first, mut last): (Option<i64>, Option<i64>) = (None, None);
        for id in account_ids {
            let rec = &self.accounts[self.account_idx(id)?];
            let entries = self.ledger.entries(rec.ledger)?;
            if let (Some(f), Some(l)) = (entries.first(), entries.last()) {
                first = Some(first.map_or(f.booking, |x| x.min(f.booking)));
                last = Some(last.map_or(l.booking, |x| x.max(l.booking)));
            }
            windows.push((rec, self.ledger.window(rec.ledger, from, to, q.direction)?));
        }
        let total = windows.iter().map(|(_, w)| w.len()).sum();
        let mut skip = q.offset;
        let mut items = Vec::with_capacity(limit.min(total));
        for (rec, w) in windows {
            if items.len() >= limit {
                break;
            }
            if skip >= w.len() {
                skip -= w.len();
                continue;
            }
            // Newest first: position i of the page is end-1-i.
            let mut pos = w.end - skip;
            skip = 0;
            while pos > w.start && items.len() < limit {
                pos -= 1;
                let e = self.ledger.entry_at(rec.ledger, q.direction, pos)?;
                items.push(self.view(rec, e)?);
            }
        }
        Ok(TransactionPage {
            items,
            total,
            first_available: first.map(ts).transpose()?,
            last_available: last.map(ts).transpose()?,
        })
    }

    pub fn beneficiaries(&self, account_id: &str) -> Result<Vec<Beneficiary>, CoreError> {
        let idx = self.account_idx(account_id)?;
        Ok(self.beneficiaries.get(&idx).cloned().unwrap_or_default())
    }

    pub fn standing_orders(&self, account_id: &str) -> Result<Vec<StandingOrder>, CoreError> {
        let idx = self.account_idx(account_id)?;
        Ok(self.standing_orders.get(&idx).cloned().unwrap_or_default())
    }

    fn party_of(c: &Customer, role: Option<AccountRole>) -> Party {
        Party {
            party_id: c.party_id.clone(),
            party_number: c.party_number.clone(),
            name: c.name.clone(),
            full_legal_name: c.name.clone(),
            email: c.email.clone(),
            phone: c.phone.clone(),
            address: c.address.clone(),
            account_role: role,
        }
    }

    pub fn party(&self, customer_id: &str) -> Option<Party> {
        self.customer(customer_id).map(|c| Self::party_of(c, None))
    }

    pub fn account_parties(&self, account_id: &str) -> Result<Vec<Party>, CoreError> {
        let a = &self.accounts[self.account_idx(account_id)?].account;
        Ok(self
            .customer(&a.customer_id)
            .map(|c| vec![Self::party_of(c, Some(AccountRole::Owner))])
            .unwrap_or_default())
    }

    /// Ledger verification plus the cached balances the read path serves.
    pub fn verify(&self) -> Result<(), String> {
        self.ledger.verify()?;
        for rec in &self.accounts {
            let sum: i64 = self
                .ledger
                .entries(rec.ledger)
                .map_err(|e| e.to_string())?
                .iter()
                .map(|e| e.amount)
                .sum();
            let b = self.balances(&rec.account.id).map_err(|e| e.to_string())?;
            if b.booked.minor != sum {
                return Err(format!(
                    "{}: booked balance != sum of entries",
                    rec.account.id
                ));
            }
        }
        Ok(())
    }

    /// Ledger digest plus the static data (customers, accounts), for determinism checks.
    pub fn digest(&self) -> String {
        use sha2::{Digest, Sha256};
        let mut h = Sha256::new();
        h.update(self.ledger.digest().as_bytes());
        for c in &self.customers {
            h.update(format!("{c:?}").as_bytes());
        }
        for a in &self.accounts {
            h.update(format!("{:?}", a.account).as_bytes());
        }
        for c in &self.counterparties {
            h.update(format!("{c:?}").as_bytes());
        }
        for m in &self.merchants {
            h.update(format!("{m:?}").as_bytes());
        }
        let mut so: Vec<_> = self.standing_orders.iter().collect();
        so.sort_by_key(|(k, _)| **k);
        h.update(format!("{so:?}").as_bytes());
        let mut be: Vec<_> = self.beneficiaries.iter().collect();
        be.sort_by_key(|(k, _)| **k);
        h.update(format!("{be:?}").as_bytes());
        hex::encode(h.finalize())
    }

    /// Customer-visible transactions (entries on customer accounts). O(1).
    pub fn transaction_count(&self) -> usize {
        self.ledger.customer_entry_count()
    }
}

/// The sandbox bank as a shared service: reads take a read lock; linking subjects (and,
/// later, payments) take the write lock.
#[derive(Debug, Default)]
pub struct SandboxBank {
    inner: RwLock<Bank>,
}

impl SandboxBank {
    pub fn new(bank: Bank) -> Self {
        Self {
            inner: RwLock::new(bank),
        }
    }

    /// Runs `f` with read access. A poisoned lock is still readable: the bank's state
    /// changes only through `Ledger::post`, which validates before mutating.
    pub fn read<T>(&self, f: impl FnOnce(&Bank) -> T) -> T {
        let g = self.inner.read().unwrap_or_else(|e| e.into_inner());
        f(&g)
    }

    pub fn write<T>(&self, f: impl FnOnce(&mut Bank) -> T) -> T {
        let mut g = self.inner.write().unwrap_or_else(|e| e.into_inner());
        f(&mut g)
    }

    /// Maps an external subject id (the AS's `sub`) to a bank customer.
    pub fn link_customer(&self, subject: &str, customer_id: &str) -> Result<(), CoreError> {
        self.write(|b| b.link_customer(subject, customer_id))
    }
}

#[async_trait::async_trait]
impl crate::CoreBank for SandboxBank {
    async fn customer_for_subject(&self, subject: &str) -> Result<Option<Customer>, CoreError> {
        Ok(self.read(|b| b.customer_for_subject(subject).cloned()))
    }

    async fn accounts(&self, customer_id: &str) -> Result<Vec<Account>, CoreError> {
        Ok(self.read(|b| b.accounts_of(customer_id)))
    }

    async fn account(&self, account_id: &str) -> Result<Option<Account>, CoreError> {
        Ok(self.read(|b| b.account(account_id).cloned()))
    }

    async fn balances(&self, account_id: &str) -> Result<Balances, CoreError> {
        self.read(|b| b.balances(account_id))
    }

    async fn transactions(
        &self,
        account_ids: &[AccountId],
        query: &TransactionQuery,
    ) -> Result<TransactionPage, CoreError> {
        self.read(|b| b.transactions(account_ids, query))
    }

    async fn beneficiaries(&self, account_id: &str) -> Result<Vec<Beneficiary>, CoreError> {
        self.read(|b| b.beneficiaries(account_id))
    }

    async fn standing_orders(&self, account_id: &str) -> Result<Vec<StandingOrder>, CoreError> {
        self.read(|b| b.standing_orders(account_id))
    }

    async fn party(&self, customer_id: &str) -> Result<Option<Party>, CoreError> {
        Ok(self.read(|b| b.party(customer_id)))
    }

    async fn account_parties(&self, account_id: &str) -> Result<Vec<Party>, CoreError> {
        self.read(|b| b.account_parties(account_id))
    }
}
