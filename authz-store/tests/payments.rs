//! The payment-ledger suite on every SQL backend: SQLite always, PostgreSQL when
//! `WEKEZA_TEST_POSTGRES_URL` is set (CI sets it).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use authz_store::SqlStore;
use authz_store::testsuite_payments::{payment_events_suite, payment_race_suite, payment_suite};
use futures::FutureExt;
use sqlx::{AssertSqlSafe, Connection, Executor};
use std::panic::AssertUnwindSafe;

fn unique() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_payments() {
    let path = std::env::temp_dir().join(format!("authz-store-pay-{}.db", unique()));
    let url = format!("sqlite://{}", path.display());
    let store = SqlStore::connect(&url, None).await.expect("connect sqlite");
    payment_suite(&store).await;
    payment_suite(&store).await;
    payment_events_suite(&store).await;
    payment_race_suite(&store, 300).await;
    store.close().await;
    for suffix in ["", "-wal", "-shm"] {
        let mut p = path.clone().into_os_string();
        p.push(suffix);
        let _ = std::fs::remove_file(p);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_payments() {
    let Ok(url) = std::env::var("WEKEZA_TEST_POSTGRES_URL") else {
        eprintln!("skipped PostgreSQL backend: WEKEZA_TEST_POSTGRES_URL is not set");
        return;
    };
    let schema = format!("authz_store_pay_{}", unique());
    let outcome = AssertUnwindSafe(async {
        let store = SqlStore::connect(&url, Some(&schema))
            .await
            .expect("connect postgres");
        payment_suite(&store).await;
        payment_suite(&store).await;
        payment_events_suite(&store).await;
        payment_race_suite(&store, 300).await;
        store.close().await;
    })
    .catch_unwind()
    .await;
    let mut conn = sqlx::PgConnection::connect(&url)
        .await
        .expect("admin connection");
    conn.execute(AssertSqlSafe(format!(
        "DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"
    )))
    .await
    .expect("drop schema");
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}
