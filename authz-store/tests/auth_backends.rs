//! The authentication-factor suite on both SQL backends (PostgreSQL when
//! `WEKEZA_TEST_POSTGRES_URL` is set).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use authz_store::SqlStore;
use authz_store::testsuite_auth::auth_suite;

async fn twice(store: std::sync::Arc<SqlStore>) {
    auth_suite(&*store).await;
    auth_suite(&*store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_sqlite() {
    authz_store::testsuite::on_sqlite(twice).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_postgres() {
    authz_store::testsuite::on_postgres(twice).await;
}
