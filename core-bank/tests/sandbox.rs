//! Properties of the generated sandbox bank: the ledger balances, balances are derived
//! from postings, running balances chain, generation is deterministic, and the query
//! paths (pagination, booking-date windows, directions) return exactly what a brute-force
//! scan of the statement would.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use core_bank::*;
use std::collections::{BTreeMap, HashSet};
use time::macros::{date, datetime};

const TODAY: time::Date = date!(2026 - 11 - 20);

fn sandbox() -> Bank {
    generate(&GeneratorConfig::sandbox(TODAY)).unwrap()
}

/// Every transaction of one account, oldest first, via the public query path.
fn statement(bank: &Bank, id: &str) -> Vec<Transaction> {
    let mut all = Vec::new();
    let mut offset = 0;
    loop {
        let page = bank
            .transactions(
                &[id.to_owned()],
                &TransactionQuery {
                    offset,
                    limit: 500,
                    ..Default::default()
                },
            )
            .unwrap();
        if page.items.is_empty() {
            break;
        }
        offset += page.items.len();
        all.extend(page.items);
    }
    all.reverse();
    all
}

#[test]
fn same_seed_same_bank_other_seed_other_bank() {
    let a = sandbox();
    let b = sandbox();
    assert_eq!(a.digest(), b.digest());
    let mut cfg = GeneratorConfig::sandbox(TODAY);
    cfg.seed ^= 1;
    assert_ne!(generate(&cfg).unwrap().digest(), a.digest());
    // Adding customers leaves the earlier ones untouched (one stream per customer).
    let mut big = GeneratorConfig::sandbox(TODAY);
    big.extra_customers = 3;
    let big = generate(&big).unwrap();
    let alice_a = a.customer_by_username("alice").unwrap().clone();
    let alice_big = big.customer_by_username("alice").unwrap().clone();
    assert_eq!(alice_a, alice_big);
    for acc in a.accounts_of(&alice_a.id) {
        assert_eq!(statement(&a, &acc.id), statement(&big, &acc.id));
    }
}

#[test]
fn ledger_balances_and_cached_balances_match_postings() {
    let mut cfg = GeneratorConfig::sandbox(TODAY);
    cfg.extra_customers = 12;
    let bank = generate(&cfg).unwrap();
    bank.verify().unwrap();
    // Independently of `verify`: every posting's legs sum to zero, and so do all legs of
    // each currency.
    let mut per_currency: BTreeMap<Currency, i64> = BTreeMap::new();
    for p in bank.ledger().postings() {
        assert!(p.legs.len() >= 2);
        assert_eq!(
            p.legs.iter().map(|l| l.amount).sum::<i64>(),
            0,
            "posting {}",
            p.id
        );
        for l in &p.legs {
            *per_currency
                .entry(bank.ledger().currency(l.account).unwrap())
                .or_default() += l.amount;
        }
    }
    assert!(per_currency.len() >= 4, "KES, USD, EUR and GBP all moved");
    assert!(per_currency.values().all(|v| *v == 0), "{per_currency:?}");
    // Balance reads equal the sum of the account's postings.
    for c in bank.customers() {
        for acc in bank.accounts_of(&c.id) {
            let ledger_id = bank.ledger_account(&acc.id).unwrap();
            let from_postings: i64 = bank
                .ledger()
                .postings()
                .iter()
                .flat_map(|p| p.legs.iter())
                .filter(|l| l.account == ledger_id)
                .map(|l| l.amount)
                .sum();
            let b = bank.balances(&acc.id).unwrap();
            assert_eq!(b.booked.minor, from_postings, "{}", acc.id);
            assert_eq!(b.booked.currency, acc.currency);
        }
    }
}

#[test]
fn running_balances_chain_and_end_at_the_booked_balance() {
    let bank = sandbox();
    for c in bank.customers() {
        for acc in bank.accounts_of(&c.id) {
            let st = statement(&bank, &acc.id);
            assert!(!st.is_empty(), "{} has history", acc.id);
            let mut running = 0i64;
            for t in &st {
                running += t.amount.minor;
                assert_eq!(t.running_balance.minor, running, "{}", t.transaction_id);
                // Never beyond the credit line.
                assert!(running >= -acc.credit_limit, "{} over limit", acc.id);
            }
            assert_eq!(bank.balances(&acc.id).unwrap().booked.minor, running);
            let ids: HashSet<_> = st.iter().map(|t| &t.transaction_id).collect();
            assert_eq!(ids.len(), st.len(), "transaction ids are unique");
            let end = TODAY.midnight().assume_offset(EAT);
            assert!(
                st.iter().all(|t| t.booking < end),
                "nothing booked today or later"
            );
        }
    }
}

#[test]
fn credit_card_available_is_limit_minus_debt() {
    let bank = sandbox();
    let alice = bank.customer_by_username("alice").unwrap();
    let card = bank
        .accounts_of(&alice.id)
        .into_iter()
        .find(|a| a.kind == AccountKind::CreditCard)
        .unwrap();
    let b = bank.balances(&card.id).unwrap();
    let debt = -b.booked.minor;
    assert!(debt >= 0);
    assert_eq!(b.available.minor, card.credit_limit - debt);
    let line = b.credit_line.unwrap();
    assert_eq!(line.kind, CreditLineKind::Credit);
    assert_eq!(line.limit.minor, 300_000 * 100);
    // A current account with an arranged overdraft: available = booked + overdraft.
    let cur = bank
        .accounts_of(&alice.id)
        .into_iter()
        .find(|a| a.kind == AccountKind::Current && a.currency == Currency::KES)
        .unwrap();
    let b = bank.balances(&cur.id).unwrap();
    assert_eq!(b.available.minor, b.booked.minor + 50_000 * 100);
    assert_eq!(b.credit_line.unwrap().kind, CreditLineKind::PreAgreed);
}

#[test]
fn alice_has_a_realistic_year() {
    let bank = sandbox();
    let alice = bank.customer_by_username("alice").unwrap();
    let accounts = bank.accounts_of(&alice.id);
    let kinds: Vec<_> = accounts.iter().map(|a| (a.kind, a.currency)).collect();
    assert_eq!(
        kinds,
        [
            (AccountKind::Current, Currency::KES),
            (AccountKind::Savings, Currency::KES),
            (AccountKind::CreditCard, Currency::KES),
            (AccountKind::Current, Currency::USD),
        ]
    );
    let all: Vec<Transaction> = accounts
        .iter()
        .flat_map(|a| statement(&bank, &a.id))
        .collect();
    let count = |k: TxKind| all.iter().filter(|t| t.kind == k).count();
    assert_eq!(count(TxKind::Salary), 12);
    assert!(count(TxKind::Rent) >= 11);
    assert!(count(TxKind::MobileMoneyOut) > 100);
    assert!(count(TxKind::Supermarket) > 50);
    assert!(count(TxKind::Fuel) > 20);
    assert!(count(TxKind::Utilities) > 20);
    assert!(count(TxKind::Airtime) > 40);
    assert!(count(TxKind::Interest) >= 11);
    assert!(count(TxKind::Fee) >= 11);
    assert!(count(TxKind::ForeignIncome) >= 5);
    assert!(count(TxKind::FxConversion) >= 2);
    let spend = all.iter().find(|t| t.kind == TxKind::Supermarket).unwrap();
    let m = spend.merchant.as_ref().unwrap();
    assert_eq!(m.mcc, 5411);
    assert!(
        spend.value < spend.booking,
        "card spends are booked after they are made"
    );
    let mpesa = all
        .iter()
        .find(|t| t.kind == TxKind::MobileMoneyOut)
        .unwrap();
    assert_eq!(
        &*mpesa.counterparty.as_ref().unwrap().scheme,
        "KE.MPESA.MSISDN"
    );
    assert!(mpesa.reference.starts_with('S') && mpesa.reference.len() == 10);
    let first = all.iter().map(|t| t.booking).min().unwrap();
    assert!((TODAY.midnight().assume_offset(EAT) - first).whole_days() >= 364);
    // Reference data consistent with the history.
    let so = bank.standing_orders(&accounts[0].id).unwrap();
    assert_eq!(so.len(), 1);
    assert_eq!(so[0].amount.minor, 45_000 * 100);
    assert!(bank.beneficiaries(&accounts[0].id).unwrap().len() >= 3);
    assert_eq!(
        bank.account_parties(&accounts[0].id).unwrap()[0].name,
        alice.name
    );
}

#[test]
fn pages_partition_the_result_and_date_windows_are_inclusive() {
    let bank = sandbox();
    let alice = bank.customer_by_username("alice").unwrap();
    let ids: Vec<String> = bank
        .accounts_of(&alice.id)
        .into_iter()
        .map(|a| a.id)
        .collect();
    let from = datetime!(2026-03-01 00:00 +3);
    let to = datetime!(2026-05-31 23:59:59 +3);
    for direction in [None, Some(Direction::Credit), Some(Direction::Debit)] {
        // Brute force over the full statements.
        let expected: Vec<Transaction> = ids
            .iter()
            .flat_map(|id| {
                let mut s = statement(&bank, id);
                s.reverse();
                s
            })
            .filter(|t| t.booking >= from && t.booking <= to)
            .filter(|t| direction.is_none_or(|d| t.direction() == d))
            .collect();
        assert!(expected.len() > 10, "{direction:?}: {}", expected.len());
        let mut got = Vec::new();
        let mut offset = 0;
        loop {
            let p = bank
                .transactions(
                    &ids,
                    &TransactionQuery {
                        from: Some(from),
                        to: Some(to),
                        direction,
                        offset,
                        limit: 7,
                    },
                )
                .unwrap();
            assert_eq!(p.total, expected.len());
            assert!(p.items.len() <= 7);
            if p.items.is_empty() {
                break;
            }
            offset += p.items.len();
            got.extend(p.items);
        }
        assert_eq!(got, expected, "direction {direction:?}");
    }
    // Boundary instants are included.
    let st = statement(&bank, &ids[0]);
    let t = st[st.len() / 2].booking;
    let p = bank
        .transactions(
            &ids[..1],
            &TransactionQuery {
                from: Some(t),
                to: Some(t),
                limit: 100,
                ..Default::default()
            },
        )
        .unwrap();
    assert!(p.total >= 1 && p.items.iter().all(|x| x.booking == t));
    // Past the end: empty page, total still known.
    let p = bank
        .transactions(
            &ids,
            &TransactionQuery {
                offset: 1_000_000,
                limit: 10,
                ..Default::default()
            },
        )
        .unwrap();
    assert!(p.items.is_empty() && p.total > 0);
    assert!(
        bank.transactions(&["nope".to_owned()], &TransactionQuery::default())
            .is_err()
    );
}

#[test]
fn subjects_map_to_customers() {
    let bank = SandboxBank::new(sandbox());
    let alice = bank.read(|b| b.customer_by_username("alice").unwrap().id.clone());
    // The username works as a subject out of the box; an AS subject id is linked.
    assert_eq!(
        bank.read(|b| b.customer_for_subject("alice").map(|c| c.id.clone())),
        Some(alice.clone())
    );
    assert!(bank.read(|b| b.customer_for_subject("0f3a-sub").is_none()));
    bank.link_customer("0f3a-sub", &alice).unwrap();
    assert_eq!(
        bank.read(|b| b.customer_for_subject("0f3a-sub").map(|c| c.id.clone())),
        Some(alice)
    );
    assert!(bank.link_customer("x", "CUS-nope").is_err());
}
