//! Crash test of the payment transaction: a child process executes a burst of payments
//! (16 at a time) and prints `ACK <id>` after each commit; the parent SIGKILLs it in the
//! middle of the burst, reopens the database and checks that every acknowledged payment
//! is there exactly once and that nothing is half-applied (a consumed consent without its
//! payment, a payment without its key or posting, an unbalanced posting, a cached balance
//! that disagrees with the entries). SQLite always; PostgreSQL when
//! `WEKEZA_TEST_POSTGRES_URL` is set.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use authz_store::testsuite_payments::{authorised_consent, execution, seed};
use authz_store::{Executed, PaymentStore, SqlStore};
use futures::future::join_all;
use sqlx::{AssertSqlSafe, Connection, Executor};
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

const CHILD_URL: &str = "WEKEZA_CRASH_CHILD_URL";
const CHILD_SCHEMA: &str = "WEKEZA_CRASH_CHILD_SCHEMA";
const ACCOUNT: &str = "crash-debtor";
const CREDITOR: &str = "crash-creditor";

fn unique() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

/// The child's side: only runs when the parent started this binary with the env set.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_child() {
    let Ok(url) = std::env::var(CHILD_URL) else {
        return;
    };
    let schema = std::env::var(CHILD_SCHEMA).ok();
    let s = SqlStore::connect(&url, schema.as_deref()).await.unwrap();
    s.seed_ledger_account(&seed(ACCOUNT, 1_000_000_000, 0, "KES"), 0)
        .await
        .unwrap();
    s.seed_ledger_account(&seed(CREDITOR, 0, 0, "KES"), 0)
        .await
        .unwrap();
    for round in 0..10_000 {
        let mut xs = Vec::new();
        for i in 0..16 {
            let c = authorised_consent(&s, &s, "crash-client", "crash-customer").await;
            let creditor = if i % 2 == 0 {
                "no-crash-creditor"
            } else {
                "elsewhere"
            };
            xs.push(execution(
                "crash-client",
                "crash-customer",
                &c,
                ACCOUNT,
                creditor,
                100 + i,
                &format!("k-{round}-{i}"),
                "settle",
            ));
        }
        let out = join_all(xs.iter().map(|x| s.execute_payment(x))).await;
        for r in out {
            if let Executed::Done(p) = r.unwrap() {
                // Printed only after the commit returned: an acknowledgement.
                println!("ACK {}", p.id);
            }
        }
    }
}

async fn crash_and_check(url: &str, schema: Option<&str>) {
    let exe = std::env::current_exe().unwrap();
    let mut cmd = Command::new(exe);
    cmd.args([
        "--exact",
        "crash_child",
        "--nocapture",
        "--test-threads",
        "1",
    ])
    .env(CHILD_URL, url)
    .stdout(Stdio::piped())
    .stderr(Stdio::null());
    if let Some(s) = schema {
        cmd.env(CHILD_SCHEMA, s);
    }
    let mut child = cmd.spawn().unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut acked = Vec::new();
    for line in BufReader::new(stdout).lines() {
        let line = line.unwrap();
        if let Some(id) = line.strip_prefix("ACK ") {
            acked.push(id.to_owned());
            if acked.len() >= 300 {
                break;
            }
        }
    }
    // SIGKILL in the middle of the burst: transactions are in flight.
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(
        acked.len() >= 300,
        "the child acknowledged {} payments",
        acked.len()
    );

    let s = SqlStore::connect(url, schema).await.unwrap();
    for id in &acked {
        let p = s.find_payment(id).await.unwrap();
        assert!(p.is_some(), "acknowledged payment {id} lost");
    }
    let check = s.ledger_check().await.unwrap();
    assert_eq!(check.entries_sum, 0, "{check:?}");
    assert!(check.unbalanced_postings.is_empty(), "{check:?}");
    assert!(check.balance_mismatches.is_empty(), "{check:?}");
    assert_eq!(
        scalar(
            url,
            schema,
            "SELECT COUNT(*) FROM consents c WHERE c.kind = 'domestic-payment' \
             AND c.status = 'Consumed' AND NOT EXISTS \
             (SELECT 1 FROM payments p WHERE p.consent_id = c.id)"
        )
        .await,
        0,
        "a consumed consent without its payment"
    );
    assert_eq!(
        scalar(
            url,
            schema,
            "SELECT COUNT(*) FROM payments p WHERE NOT EXISTS \
             (SELECT 1 FROM idempotency_keys k WHERE k.resource_id = p.id)"
        )
        .await,
        0,
        "a payment without its idempotency key"
    );
    assert_eq!(
        scalar(
            url,
            schema,
            "SELECT COUNT(*) FROM payments p WHERE p.status <> 'RJCT' AND NOT EXISTS \
             (SELECT 1 FROM ledger_postings l WHERE l.payment_id = p.id)"
        )
        .await,
        0,
        "an accepted payment without its posting"
    );
    assert_eq!(
        scalar(
            url,
            schema,
            "SELECT COUNT(*) FROM ledger_postings l WHERE l.kind = 'payment' AND NOT EXISTS \
             (SELECT 1 FROM payments p WHERE p.id = l.payment_id)"
        )
        .await,
        0,
        "money moved for a payment that does not exist"
    );
    assert_eq!(
        scalar(
            url,
            schema,
            "SELECT COUNT(*) FROM payments p WHERE NOT EXISTS \
             (SELECT 1 FROM payment_status_log s WHERE s.payment_id = p.id)"
        )
        .await,
        0,
        "a payment without its status line"
    );
    let debtor = s.ledger_account(ACCOUNT).await.unwrap().unwrap();
    let paid = scalar(
        url,
        schema,
        "SELECT CAST(COALESCE(SUM(amount), 0) AS BIGINT) FROM payments WHERE status <> 'RJCT'",
    )
    .await;
    assert_eq!(debtor.balance, 1_000_000_000 - paid);
    s.close().await;
}

async fn scalar(url: &str, schema: Option<&str>, sql: &'static str) -> i64 {
    if url.starts_with("sqlite:") {
        let mut c = sqlx::SqliteConnection::connect(url).await.unwrap();
        sqlx::query_scalar(sql).fetch_one(&mut c).await.unwrap()
    } else {
        let mut c = sqlx::PgConnection::connect(url).await.unwrap();
        if let Some(s) = schema {
            c.execute(AssertSqlSafe(format!("SET search_path TO \"{s}\"")))
                .await
                .unwrap();
        }
        sqlx::query_scalar(sql).fetch_one(&mut c).await.unwrap()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_burst_loses_nothing_acknowledged_sqlite() {
    if std::env::var(CHILD_URL).is_ok() {
        return;
    }
    let path = std::env::temp_dir().join(format!("authz-store-crash-{}.db", unique()));
    let url = format!("sqlite://{}", path.display());
    // Create the schema first, so the child only runs payments.
    SqlStore::connect(&url, None).await.unwrap().close().await;
    crash_and_check(&url, None).await;
    for suffix in ["", "-wal", "-shm"] {
        let mut p = path.clone().into_os_string();
        p.push(suffix);
        let _ = std::fs::remove_file(p);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_burst_loses_nothing_acknowledged_postgres() {
    if std::env::var(CHILD_URL).is_ok() {
        return;
    }
    let Ok(url) = std::env::var("WEKEZA_TEST_POSTGRES_URL") else {
        eprintln!("skipped PostgreSQL backend: WEKEZA_TEST_POSTGRES_URL is not set");
        return;
    };
    let schema = format!("authz_store_crash_{}", unique());
    SqlStore::connect(&url, Some(&schema))
        .await
        .unwrap()
        .close()
        .await;
    crash_and_check(&url, Some(&schema)).await;
    let mut conn = sqlx::PgConnection::connect(&url).await.unwrap();
    conn.execute(AssertSqlSafe(format!(
        "DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"
    )))
    .await
    .unwrap();
}
