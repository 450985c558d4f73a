//! The authentication-factor suite on both SQL backends (PostgreSQL when
//! `WEKEZA_TEST_POSTGRES_URL` is set).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use authz_store::SqlStore;
use authz_store::testsuite_auth::auth_suite;
use sqlx::{AssertSqlSafe, Connection, Executor};

fn unique() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_sqlite() {
    let path = std::env::temp_dir().join(format!("authz-auth-test-{}.db", unique()));
    let url = format!("sqlite://{}", path.display());
    let store = SqlStore::connect(&url, None).await.expect("connect sqlite");
    auth_suite(&store).await;
    auth_suite(&store).await;
    store.close().await;
    for suffix in ["", "-wal", "-shm"] {
        let mut p = path.clone().into_os_string();
        p.push(suffix);
        let _ = std::fs::remove_file(p);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_postgres() {
    let Ok(url) = std::env::var("WEKEZA_TEST_POSTGRES_URL") else {
        eprintln!("skipped PostgreSQL backend: WEKEZA_TEST_POSTGRES_URL is not set");
        return;
    };
    let schema = format!("authz_auth_test_{}", unique());
    let store = SqlStore::connect(&url, Some(&schema))
        .await
        .expect("connect postgres");
    let outcome = futures::FutureExt::catch_unwind(std::panic::AssertUnwindSafe(async {
        auth_suite(&store).await;
        auth_suite(&store).await;
    }))
    .await;
    store.close().await;
    let mut conn = sqlx::PgConnection::connect(&url).await.expect("admin");
    conn.execute(AssertSqlSafe(format!(
        "DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"
    )))
    .await
    .expect("drop schema");
    if let Err(p) = outcome {
        std::panic::resume_unwind(p);
    }
}
