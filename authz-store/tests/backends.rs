//! Runs the shared suites against every backend. SQLite always runs; PostgreSQL and Redis run
//! when `WEKEZA_TEST_POSTGRES_URL` / `WEKEZA_TEST_REDIS_URL` are set (CI sets both).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use authz_store::testsuite::{durable_suite, ephemeral_suite};
use authz_store::testsuite_registration::registration_suite;
use authz_store::{DurableStore, RedisEphemeral, SqlStore};
use std::panic::AssertUnwindSafe;

use futures::FutureExt;
use sqlx::{AssertSqlSafe, Connection, Executor};

fn unique() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

struct TempDb(std::path::PathBuf);

impl Drop for TempDb {
    fn drop(&mut self) {
        for suffix in ["", "-wal", "-shm"] {
            let mut p = self.0.clone().into_os_string();
            p.push(suffix);
            let _ = std::fs::remove_file(p);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_file() {
    let path = std::env::temp_dir().join(format!("authz-store-test-{}.db", unique()));
    let _cleanup = TempDb(path.clone());
    let url = format!("sqlite://{}", path.display());
    let store = SqlStore::connect(&url, None).await.expect("connect sqlite");
    assert_eq!(store.backend(), "sqlite");
    durable_suite(&store).await;
    ephemeral_suite(&store.ephemeral()).await;
    // twice: the suites must not depend on a clean database
    durable_suite(&store).await;
    ephemeral_suite(&store.ephemeral()).await;
    registration_suite(&store).await;
    store.close().await;

    // reopening runs the (already applied) migrations again and sees the data
    let again = SqlStore::connect(&url, None).await.expect("reopen sqlite");
    again.ping().await.expect("ping");
    assert!(again.purge_expired(i64::MAX).await.expect("purge") > 0);
    again.close().await;

    let mut raw = sqlx::SqliteConnection::connect(&url)
        .await
        .expect("raw sqlite");
    let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
        .fetch_one(&mut raw)
        .await
        .expect("journal_mode");
    assert_eq!(mode, "wal");
    raw.close().await.expect("close raw sqlite");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_memory() {
    let store = SqlStore::connect("sqlite::memory:", None)
        .await
        .expect("connect in-memory sqlite");
    durable_suite(&store).await;
    ephemeral_suite(&store.ephemeral()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejects_unknown_scheme_and_bad_schema() {
    assert!(
        SqlStore::connect("mysql://localhost/x", None)
            .await
            .is_err()
    );
    assert!(
        SqlStore::connect("postgres://127.0.0.1:1/x", Some("bad\"name"))
            .await
            .is_err()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres() {
    let Ok(url) = std::env::var("WEKEZA_TEST_POSTGRES_URL") else {
        eprintln!("skipped PostgreSQL backend: WEKEZA_TEST_POSTGRES_URL is not set");
        return;
    };
    let schema = format!("authz_store_test_{}", unique());
    // Run the suites under catch_unwind so the schema is dropped even when one fails.
    let outcome = AssertUnwindSafe(async {
        let store = SqlStore::connect(&url, Some(&schema))
            .await
            .expect("connect postgres");
        assert_eq!(store.backend(), "postgres");
        durable_suite(&store).await;
        ephemeral_suite(&store.ephemeral()).await;
        durable_suite(&store).await;
        ephemeral_suite(&store.ephemeral()).await;
        registration_suite(&store).await;
        store.close().await;
    })
    .catch_unwind()
    .await;

    let mut conn = sqlx::PgConnection::connect(&url)
        .await
        .expect("admin connection");
    let tables: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM information_schema.tables WHERE table_schema = $1",
    )
    .bind(&schema)
    .fetch_one(&mut conn)
    .await
    .expect("count tables");
    conn.execute(AssertSqlSafe(format!(
        "DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"
    )))
    .await
    .expect("drop schema");
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
    assert!(tables >= 7, "tables live in the test schema ({tables})");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis() {
    let Ok(url) = std::env::var("WEKEZA_TEST_REDIS_URL") else {
        eprintln!("skipped Redis backend: WEKEZA_TEST_REDIS_URL is not set");
        return;
    };
    let prefix = format!("authz-store-test-{}", unique());
    let store = RedisEphemeral::connect(&url, &prefix)
        .await
        .expect("connect redis");
    ephemeral_suite(&store).await;
    ephemeral_suite(&store).await;

    // Leftovers would expire on their own within minutes; remove them now anyway.
    let client = redis::Client::open(url.as_str()).expect("redis client");
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .expect("redis connection");
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}:*"))
        .query_async(&mut conn)
        .await
        .expect("list test keys");
    if !keys.is_empty() {
        let _: i64 = redis::cmd("DEL")
            .arg(&keys)
            .query_async(&mut conn)
            .await
            .expect("delete test keys");
    }
}
