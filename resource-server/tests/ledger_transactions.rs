//! `LedgerBank::transactions`: ledger postings merged into the generated history, on
//! every SQL backend (SQLite always, PostgreSQL when `WEKEZA_TEST_POSTGRES_URL` is set).
//! Postings are booked at times inside, before and after the generated history, so the
//! merge (not only "postings first") and every page boundary are exercised.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use authz_store::{AlertStore, Credited, IncomingTransfer, Party, SqlStore};
use core_bank::{
    AccountId, CoreBank, Direction, GeneratorConfig, MAX_PAGE, SandboxBank, Transaction,
    TransactionQuery, generate,
};
use resource_server::ledger::{LedgerBank, seed_ledger};
use std::sync::Arc;
use time::macros::date;

async fn every(bank: &dyn CoreBank, ids: &[AccountId], q: &TransactionQuery) -> Vec<Transaction> {
    let mut out = Vec::new();
    loop {
        let page = bank
            .transactions(
                ids,
                &TransactionQuery {
                    offset: out.len(),
                    limit: MAX_PAGE,
                    ..q.clone()
                },
            )
            .await
            .unwrap();
        if page.items.is_empty() {
            return out;
        }
        out.extend(page.items);
    }
}

async fn credit(store: &SqlStore, account: &str, minor: i64, at: i64) -> String {
    match store
        .credit_incoming(&IncomingTransfer {
            account_id: account.into(),
            amount: minor,
            currency: "KES".into(),
            counterparty: Party {
                name: Some("Sender".into()),
                scheme: Some("KE.OTHERBANK.AccountNumber".into()),
                identification: Some("123".into()),
            },
            reference: Some(format!("REF-{minor}")),
            at,
        })
        .await
        .unwrap()
    {
        Credited::Done { posting_id, .. } => posting_id,
        other => panic!("{other:?}"),
    }
}

async fn suite(store: Arc<SqlStore>) {
    let gen_bank =
        SandboxBank::new(generate(&GeneratorConfig::sandbox(date!(2026 - 11 - 20))).unwrap());
    let (alice, bob) = gen_bank.read(|b| {
        let a = b.customer_by_username("alice").unwrap().id.clone();
        let o = b.customer_by_username("bob").unwrap().id.clone();
        (b.accounts_of(&a), b.accounts_of(&o))
    });
    let bank = Arc::new(gen_bank);
    seed_ledger(store.as_ref(), &bank, 1_700_000_000)
        .await
        .unwrap();
    let acct = alice[0].id.clone();
    let other = alice[1].id.clone();
    let q = TransactionQuery::default();
    let generated = every(bank.as_ref(), std::slice::from_ref(&acct), &q).await;
    assert!(generated.len() > 20);
    let (newest, oldest) = (
        generated[0].booking.unix_timestamp(),
        generated[generated.len() - 1].booking.unix_timestamp(),
    );
    let mid = generated[generated.len() / 2].booking.unix_timestamp();
    // After, inside (twice, one on a generated item's second), before the history; one
    // on another of alice's accounts, one on bob's.
    let mut postings = Vec::new();
    for (minor, at) in [
        (101, newest + 60),
        (102, mid),
        (103, mid - 3600),
        (104, oldest - 60),
    ] {
        postings.push((credit(&store, &acct, minor, at).await, at));
    }
    let on_other = credit(&store, &other, 105, mid).await;
    let on_bob = credit(&store, &bob[0].id, 106, mid).await;

    let lb = LedgerBank::new(bank.clone(), store.clone());
    let merged = every(&lb, std::slice::from_ref(&acct), &q).await;
    assert_eq!(merged.len(), generated.len() + postings.len());
    // The expected order: newest first, a posting before a generated item of its second.
    let mut expected: Vec<(i64, bool, String)> = postings
        .iter()
        .map(|(id, at)| (*at, true, id.clone()))
        .chain(
            generated
                .iter()
                .map(|t| (t.booking.unix_timestamp(), false, t.transaction_id.clone())),
        )
        .collect();
    expected.sort_by(|a, b| b.0.cmp(&a.0).then(b.1.cmp(&a.1)));
    let got: Vec<&str> = merged.iter().map(|t| t.transaction_id.as_str()).collect();
    let want: Vec<&str> = expected.iter().map(|e| e.2.as_str()).collect();
    assert_eq!(got, want);
    assert!(!got.contains(&on_other.as_str()) && !got.contains(&on_bob.as_str()));
    let p = merged
        .iter()
        .find(|t| t.transaction_id == postings[0].0)
        .unwrap();
    assert_eq!(p.amount.minor, 101);
    assert_eq!(p.reference, "REF-101");
    assert_eq!(p.counterparty.as_ref().unwrap().name.as_ref(), "Sender");
    assert_eq!(p.direction(), Direction::Credit);

    // Every page size, every page: the pages put together are the merged list.
    for size in [1, 3, 7, 50] {
        let mut pages = Vec::new();
        let mut offset = 0;
        loop {
            let page = lb
                .transactions(
                    std::slice::from_ref(&acct),
                    &TransactionQuery {
                        offset,
                        limit: size,
                        ..q.clone()
                    },
                )
                .await
                .unwrap();
            assert_eq!(page.total, merged.len());
            if page.items.is_empty() {
                break;
            }
            offset += page.items.len();
            pages.extend(page.items.into_iter().map(|t| t.transaction_id));
        }
        assert_eq!(pages, want, "page size {size}");
    }

    // Filters: a booking window around the middle posting; credits only.
    let from = time::OffsetDateTime::from_unix_timestamp(mid - 3600).unwrap();
    let to = time::OffsetDateTime::from_unix_timestamp(mid).unwrap();
    let w = TransactionQuery {
        from: Some(from),
        to: Some(to),
        ..q.clone()
    };
    let windowed = every(&lb, std::slice::from_ref(&acct), &w).await;
    let in_window = generated
        .iter()
        .filter(|t| t.booking >= from && t.booking <= to)
        .count();
    assert_eq!(windowed.len(), in_window + 2);
    assert!(windowed.iter().any(|t| t.transaction_id == postings[1].0));
    assert!(windowed.iter().any(|t| t.transaction_id == postings[2].0));
    let c = TransactionQuery {
        direction: Some(Direction::Credit),
        ..q.clone()
    };
    let credits = every(&lb, std::slice::from_ref(&acct), &c).await;
    let gen_credits = every(bank.as_ref(), std::slice::from_ref(&acct), &c).await;
    assert_eq!(credits.len(), gen_credits.len() + postings.len());
    let d = TransactionQuery {
        direction: Some(Direction::Debit),
        ..q.clone()
    };
    let debits = every(&lb, std::slice::from_ref(&acct), &d).await;
    assert!(
        debits
            .iter()
            .all(|t| !postings.iter().any(|p| p.0 == t.transaction_id))
    );

    // Two accounts: account by account, each merged; the total is both.
    let both = [acct.clone(), other.clone()];
    let two = every(&lb, &both, &q).await;
    let other_generated = every(bank.as_ref(), std::slice::from_ref(&other), &q).await;
    assert_eq!(two.len(), merged.len() + other_generated.len() + 1);
    assert_eq!(
        two[..merged.len()]
            .iter()
            .map(|t| t.transaction_id.as_str())
            .collect::<Vec<_>>(),
        want
    );
    assert!(two.iter().any(|t| t.transaction_id == on_other));
    let page = lb
        .transactions(
            &both,
            &TransactionQuery {
                offset: merged.len() - 2,
                limit: 5,
                ..q.clone()
            },
        )
        .await
        .unwrap();
    let ids: Vec<&str> = page
        .items
        .iter()
        .map(|t| t.transaction_id.as_str())
        .collect();
    let slice: Vec<&str> = two[merged.len() - 2..merged.len() + 3]
        .iter()
        .map(|t| t.transaction_id.as_str())
        .collect();
    assert_eq!(ids, slice, "a page across the account boundary");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_ledger_transactions() {
    authz_store::testsuite::on_sqlite(suite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_ledger_transactions() {
    authz_store::testsuite::on_postgres(suite).await;
}
