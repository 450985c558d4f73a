//! A double-entry ledger. Every posting is a set of legs in one currency whose amounts
//! sum to zero; an account's balance is the sum of its legs and nothing else. The ledger
//! keeps a cached balance per account (updated in the same step that appends the legs,
//! so a balance read is O(1)) and, for customer accounts, the ordered entry list with
//! running balances and per-direction indexes (so a page of transactions is O(page)).
//! [`Ledger::verify`] recomputes everything from the postings.
//!
//! Sign convention: a leg's amount is seen from the account holder's side. Positive is a
//! credit (money in for the holder), negative a debit. For the bank's own (internal)
//! accounts that reads as "the bank's side of the movement", so the sum of all legs of
//! every currency is zero.

use crate::CoreError;
use crate::model::{Direction, TxKind};
use crate::money::Currency;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;

/// Index of an account in the ledger.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LedgerAccountId(pub u32);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Leg {
    pub account: LedgerAccountId,
    /// Minor units; positive credit, negative debit.
    pub amount: i64,
}

/// A posting to be applied. Times are unix seconds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PostingRequest {
    pub booking: i64,
    pub value: i64,
    pub kind: TxKind,
    /// Index into the bank's counterparty table.
    pub counterparty: Option<u32>,
    /// Index into the bank's merchant table.
    pub merchant: Option<u32>,
    /// An external reference (an M-Pesa receipt, a payer reference); when absent the
    /// bank derives one from the posting id.
    pub reference: Option<Box<str>>,
    pub legs: Vec<Leg>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Posting {
    pub id: u32,
    pub booking: i64,
    pub value: i64,
    pub kind: TxKind,
    pub counterparty: Option<u32>,
    pub merchant: Option<u32>,
    pub reference: Option<Box<str>>,
    pub legs: Vec<Leg>,
}

/// One leg as it appears on a customer account's statement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    pub posting: u32,
    /// Index of the leg within its posting.
    pub leg: u16,
    pub amount: i64,
    pub booking: i64,
    /// Balance of the account after this entry.
    pub running: i64,
}

#[derive(Debug, Clone)]
struct AccountState {
    currency: Currency,
    balance: i64,
    keeps_entries: bool,
    entries: Vec<Entry>,
    /// Positions in `entries` of the credits / debits, in booking order.
    credits: Vec<u32>,
    debits: Vec<u32>,
}

#[derive(Debug, Clone, Default)]
pub struct Ledger {
    accounts: Vec<AccountState>,
    postings: Vec<Posting>,
    customer_entries: usize,
}

/// A contiguous run of a customer account's entries (or of one direction's index),
/// selected by booking time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub start: usize,
    pub end: usize,
}

impl Window {
    pub fn len(&self) -> usize {
        self.end - self.start
    }

    pub fn is_empty(&self) -> bool {
        self.end == self.start
    }
}

impl Ledger {
    pub fn new() -> Self {
        Self::default()
    }

    /// Opens an account. Customer accounts keep their entry list (statements); the
    /// bank's internal accounts keep only the cached balance.
    pub fn open_account(&mut self, currency: Currency, keeps_entries: bool) -> LedgerAccountId {
        let id = LedgerAccountId(self.accounts.len() as u32);
        self.accounts.push(AccountState {
            currency,
            balance: 0,
            keeps_entries,
            entries: Vec::new(),
            credits: Vec::new(),
            debits: Vec::new(),
        });
        id
    }

    pub fn account_count(&self) -> usize {
        self.accounts.len()
    }

    /// Number of entries on accounts that keep statements.
    pub fn customer_entry_count(&self) -> usize {
        self.customer_entries
    }

    pub fn postings(&self) -> &[Posting] {
        &self.postings
    }

    pub fn posting(&self, id: u32) -> Option<&Posting> {
        self.postings.get(id as usize)
    }

    fn state(&self, id: LedgerAccountId) -> Result<&AccountState, CoreError> {
        self.accounts
            .get(id.0 as usize)
            .ok_or(CoreError::UnknownLedgerAccount(id.0))
    }

    pub fn currency(&self, id: LedgerAccountId) -> Result<Currency, CoreError> {
        Ok(self.state(id)?.currency)
    }

    /// The cached balance: O(1).
    pub fn balance(&self, id: LedgerAccountId) -> Result<i64, CoreError> {
        Ok(self.state(id)?.balance)
    }

    pub fn entries(&self, id: LedgerAccountId) -> Result<&[Entry], CoreError> {
        Ok(&self.state(id)?.entries)
    }

    /// Booking time of the latest entry on the account, if any.
    pub fn last_booking(&self, id: LedgerAccountId) -> Result<Option<i64>, CoreError> {
        Ok(self.state(id)?.entries.last().map(|e| e.booking))
    }

    /// Validates and applies a posting; returns its id.
    pub fn post(&mut self, req: PostingRequest) -> Result<u32, CoreError> {
        if req.legs.len() < 2 {
            return Err(CoreError::InvalidPosting(
                "a posting needs at least two legs",
            ));
        }
        if req.legs.len() > usize::from(u16::MAX) {
            return Err(CoreError::InvalidPosting("too many legs"));
        }
        let id = u32::try_from(self.postings.len())
            .map_err(|_| CoreError::InvalidPosting("ledger is full"))?;
        let currency = self.state(req.legs[0].account)?.currency;
        let mut sum: i64 = 0;
        let (mut has_debit, mut has_credit) = (false, false);
        for leg in &req.legs {
            let st = self.state(leg.account)?;
            if st.currency != currency {
                return Err(CoreError::InvalidPosting("legs in more than one currency"));
            }
            if leg.amount == 0 {
                return Err(CoreError::InvalidPosting("zero-amount leg"));
            }
            has_debit |= leg.amount < 0;
            has_credit |= leg.amount > 0;
            sum = sum.checked_add(leg.amount).ok_or(CoreError::Overflow)?;
            if st.keeps_entries && st.entries.last().is_some_and(|e| e.booking > req.booking) {
                return Err(CoreError::InvalidPosting(
                    "booking time earlier than the account's latest entry",
                ));
            }
        }
        if sum != 0 || !has_debit || !has_credit {
            return Err(CoreError::Unbalanced);
        }
        // Check every new balance before changing anything (one account may appear in
        // several legs).
        let mut next: BTreeMap<u32, i64> = BTreeMap::new();
        for leg in &req.legs {
            let cur = match next.get(&leg.account.0) {
                Some(v) => *v,
                None => self.state(leg.account)?.balance,
            };
            next.insert(
                leg.account.0,
                cur.checked_add(leg.amount).ok_or(CoreError::Overflow)?,
            );
        }
        for (i, leg) in req.legs.iter().enumerate() {
            let st = &mut self.accounts[leg.account.0 as usize];
            st.balance += leg.amount;
            if st.keeps_entries {
                let pos = st.entries.len() as u32;
                st.entries.push(Entry {
                    posting: id,
                    leg: i as u16,
                    amount: leg.amount,
                    booking: req.booking,
                    running: st.balance,
                });
                self.customer_entries += 1;
                if leg.amount > 0 {
                    st.credits.push(pos);
                } else {
                    st.debits.push(pos);
                }
            }
        }
        self.postings.push(Posting {
            id,
            booking: req.booking,
            value: req.value,
            kind: req.kind,
            counterparty: req.counterparty,
            merchant: req.merchant,
            reference: req.reference,
            legs: req.legs,
        });
        Ok(id)
    }

    /// Entries of `id` booked in `[from, to]` (inclusive, unix seconds), optionally only
    /// one direction. With a direction, the window indexes [`Ledger::direction_index`].
    /// O(log n).
    pub fn window(
        &self,
        id: LedgerAccountId,
        from: Option<i64>,
        to: Option<i64>,
        direction: Option<Direction>,
    ) -> Result<Window, CoreError> {
        let st = self.state(id)?;
        let booking_at = |pos: usize| -> i64 {
            match direction {
                None => st.entries[pos].booking,
                Some(Direction::Credit) => st.entries[st.credits[pos] as usize].booking,
                Some(Direction::Debit) => st.entries[st.debits[pos] as usize].booking,
            }
        };
        let len = match direction {
            None => st.entries.len(),
            Some(Direction::Credit) => st.credits.len(),
            Some(Direction::Debit) => st.debits.len(),
        };
        let lower = |t: i64| partition(len, |p| booking_at(p) < t);
        let start = from.map_or(0, lower);
        let end = to.map_or(len, |t| partition(len, |p| booking_at(p) <= t));
        Ok(Window {
            start,
            end: end.max(start),
        })
    }

    /// The entry at position `pos` of a window built with the same `direction`.
    pub fn entry_at(
        &self,
        id: LedgerAccountId,
        direction: Option<Direction>,
        pos: usize,
    ) -> Result<&Entry, CoreError> {
        let st = self.state(id)?;
        let idx = match direction {
            None => Some(pos),
            Some(Direction::Credit) => st.credits.get(pos).map(|p| *p as usize),
            Some(Direction::Debit) => st.debits.get(pos).map(|p| *p as usize),
        };
        idx.and_then(|i| st.entries.get(i))
            .ok_or(CoreError::InvalidPosting("entry position out of range"))
    }

    /// Recomputes every balance, running balance and index from the postings alone and
    /// compares with the cached state; checks that each posting balances and that the
    /// legs of each currency sum to zero across the ledger.
    pub fn verify(&self) -> Result<(), String> {
        let mut balances = vec![0i64; self.accounts.len()];
        let mut per_currency: BTreeMap<Currency, i64> = BTreeMap::new();
        let mut expected_entries: Vec<Vec<(u32, u16, i64)>> = vec![Vec::new(); self.accounts.len()];
        for p in &self.postings {
            let mut sum = 0i64;
            for (i, leg) in p.legs.iter().enumerate() {
                let a = leg.account.0 as usize;
                balances[a] += leg.amount;
                sum += leg.amount;
                *per_currency.entry(self.accounts[a].currency).or_default() += leg.amount;
                if self.accounts[a].keeps_entries {
                    expected_entries[a].push((p.id, i as u16, leg.amount));
                }
            }
            if sum != 0 {
                return Err(format!("posting {} does not balance ({sum})", p.id));
            }
        }
        for (c, s) in &per_currency {
            if *s != 0 {
                return Err(format!("legs in {c} sum to {s}, not 0"));
            }
        }
        for (i, st) in self.accounts.iter().enumerate() {
            if st.balance != balances[i] {
                return Err(format!(
                    "account {i}: cached balance {} != ledger sum {}",
                    st.balance, balances[i]
                ));
            }
            if !st.keeps_entries {
                continue;
            }
            let got: Vec<(u32, u16, i64)> = st
                .entries
                .iter()
                .map(|e| (e.posting, e.leg, e.amount))
                .collect();
            if got != expected_entries[i] {
                return Err(format!("account {i}: entries differ from postings"));
            }
            let mut running = 0i64;
            let mut last = i64::MIN;
            for (pos, e) in st.entries.iter().enumerate() {
                running += e.amount;
                if e.running != running {
                    return Err(format!("account {i}: running balance wrong at entry {pos}"));
                }
                if e.booking < last {
                    return Err(format!("account {i}: entries out of booking order"));
                }
                last = e.booking;
                let idx = if e.amount > 0 {
                    &st.credits
                } else {
                    &st.debits
                };
                if idx.binary_search(&(pos as u32)).is_err() {
                    return Err(format!("account {i}: direction index misses entry {pos}"));
                }
            }
            if st.credits.len() + st.debits.len() != st.entries.len() {
                return Err(format!("account {i}: direction index has extra entries"));
            }
        }
        Ok(())
    }

    /// SHA-256 over every posting and account, for determinism checks.
    pub fn digest(&self) -> String {
        let mut h = Sha256::new();
        for a in &self.accounts {
            h.update(a.currency.code().as_bytes());
            h.update([u8::from(a.keeps_entries)]);
        }
        for p in &self.postings {
            h.update(p.id.to_le_bytes());
            h.update(p.booking.to_le_bytes());
            h.update(p.value.to_le_bytes());
            h.update(format!("{:?}", p.kind).as_bytes());
            h.update(p.counterparty.map_or(u32::MAX, |c| c).to_le_bytes());
            h.update(p.merchant.map_or(u32::MAX, |c| c).to_le_bytes());
            h.update(p.reference.as_deref().unwrap_or("").as_bytes());
            h.update([0]);
            for l in &p.legs {
                h.update(l.account.0.to_le_bytes());
                h.update(l.amount.to_le_bytes());
            }
        }
        hex::encode(h.finalize())
    }
}

/// First position in `0..len` for which `pred` is false (pred must be monotone).
fn partition(len: usize, pred: impl Fn(usize) -> bool) -> usize {
    let (mut lo, mut hi) = (0usize, len);
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        if pred(mid) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    lo
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn req(booking: i64, legs: Vec<(LedgerAccountId, i64)>) -> PostingRequest {
        PostingRequest {
            booking,
            value: booking,
            kind: TxKind::Fee,
            counterparty: None,
            merchant: None,
            reference: None,
            legs: legs
                .into_iter()
                .map(|(account, amount)| Leg { account, amount })
                .collect(),
        }
    }

    #[test]
    fn unbalanced_mixed_currency_and_one_legged_postings_are_refused() {
        let mut l = Ledger::new();
        let a = l.open_account(Currency::KES, true);
        let b = l.open_account(Currency::KES, false);
        let u = l.open_account(Currency::USD, false);
        assert_eq!(
            l.post(req(1, vec![(a, 10), (b, -9)])),
            Err(CoreError::Unbalanced)
        );
        assert!(matches!(
            l.post(req(1, vec![(a, 10), (u, -10)])),
            Err(CoreError::InvalidPosting(_))
        ));
        assert!(matches!(
            l.post(req(1, vec![(a, 10)])),
            Err(CoreError::InvalidPosting(_))
        ));
        assert!(matches!(
            l.post(req(1, vec![(a, 0), (b, 0)])),
            Err(CoreError::InvalidPosting(_))
        ));
        assert_eq!(
            l.post(req(1, vec![(a, i64::MAX), (b, -i64::MAX), (a, 1), (b, -1)])),
            Err(CoreError::Overflow)
        );
        // Nothing was applied by the refused postings.
        assert_eq!(l.balance(a).unwrap(), 0);
        assert!(l.postings().is_empty());
        l.verify().unwrap();
    }

    #[test]
    fn multi_leg_posting_balances_and_updates_running_balances() {
        let mut l = Ledger::new();
        let cust = l.open_account(Currency::KES, true);
        let clearing = l.open_account(Currency::KES, false);
        let fees = l.open_account(Currency::KES, false);
        l.post(req(10, vec![(cust, 10_000), (clearing, -10_000)]))
            .unwrap();
        // Send 2,000 with a 33 fee: three legs.
        l.post(req(20, vec![(cust, -2_033), (clearing, 2_000), (fees, 33)]))
            .unwrap();
        assert_eq!(l.balance(cust).unwrap(), 7_967);
        let e = l.entries(cust).unwrap();
        assert_eq!(
            e.iter().map(|e| e.running).collect::<Vec<_>>(),
            [10_000, 7_967]
        );
        l.verify().unwrap();
        // An older booking on the same customer account would break the statement order.
        assert!(l.post(req(15, vec![(cust, 1), (clearing, -1)])).is_err());
    }

    #[test]
    fn windows_select_by_booking_time_and_direction() {
        let mut l = Ledger::new();
        let a = l.open_account(Currency::KES, true);
        let g = l.open_account(Currency::KES, false);
        for t in 0..10i64 {
            let amt = if t % 2 == 0 { 100 } else { -50 };
            l.post(req(t * 10, vec![(a, amt), (g, -amt)])).unwrap();
        }
        let w = l.window(a, Some(20), Some(50), None).unwrap();
        assert_eq!((w.start, w.end), (2, 6));
        let c = l
            .window(a, Some(20), Some(50), Some(Direction::Credit))
            .unwrap();
        assert_eq!(c.len(), 2); // t = 20, 40
        let first = l.entry_at(a, Some(Direction::Credit), c.start).unwrap();
        assert_eq!((first.booking, first.amount), (20, 100));
        let d = l.window(a, None, None, Some(Direction::Debit)).unwrap();
        assert_eq!(d.len(), 5);
        assert!(l.window(a, Some(1000), None, None).unwrap().is_empty());
        assert!(l.window(a, Some(50), Some(20), None).unwrap().is_empty());
    }
}
