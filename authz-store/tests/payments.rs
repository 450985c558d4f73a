//! The payment-ledger suite on every SQL backend: SQLite always, PostgreSQL when
//! `WEKEZA_TEST_POSTGRES_URL` is set (CI sets it).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use authz_store::SqlStore;
use authz_store::testsuite::{on_postgres, on_sqlite};
use authz_store::testsuite_payments::{payment_events_suite, payment_race_suite, payment_suite};
use std::sync::Arc;

async fn every_payment_rule(store: Arc<SqlStore>) {
    payment_suite(&*store).await;
    payment_suite(&*store).await;
    payment_events_suite(&*store).await;
    payment_race_suite(&*store, 300).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_payments() {
    on_sqlite(every_payment_rule).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_payments() {
    on_postgres(every_payment_rule).await;
}
