//! Crash test of the real binary (issue 7): `wekeza run` (the platform plus its `wekeza
//! rs` child) on SQLite, or PostgreSQL + Redis with `WEKEZA_TEST_BACKEND=scaled`. A TPP
//! prepares authorised payment consents through the real journey (consent POST, PAR, a
//! pool customer signs in and approves, code exchange), then fires every payment at once
//! over mTLS; after the first acknowledgements (201) both processes are SIGKILLed. The
//! platform restarts on the same data, and then:
//! * every payment acknowledged before the kill is there, once, unchanged;
//! * replaying every request with its idempotency key answers the original payment for
//!   the acknowledged ones, and each consent ends with exactly one payment;
//! * the ledger balances (entries sum to zero, every posting balanced, cached balances
//!   equal to the entries) and nothing is half-applied.
//!
//! Needs the binary: `WEKEZA_BIN`, else `$CARGO_TARGET_DIR/debug/wekeza` (build it with
//! `cargo build -p authz-server`). Run: `cargo test -p wekeza-tests --test crash`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use authz_store::{PaymentStore, SqlStore};
use fapi_conformance::browser::{Customer, param, totp};
use fapi_conformance::tpp::{now, uuid_like};
use fapi_conformance::{Kit, Pkce, Tpp};
use serde_json::{Value, json};
use sqlx::{AssertSqlSafe, Connection, Executor};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// Payments in the burst (each needs its own pool customer: one TOTP step each).
const PAYMENTS: usize = 40;
/// Acknowledgements seen before the kill.
const KILL_AFTER: usize = 8;

fn binary() -> PathBuf {
    if let Ok(b) = std::env::var("WEKEZA_BIN") {
        return PathBuf::from(b);
    }
    let target = std::env::var("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"));
    let b = target.join("debug/wekeza");
    assert!(
        b.exists(),
        "{} not found: build it with `cargo build -p authz-server` or set WEKEZA_BIN",
        b.display()
    );
    b
}

/// A port free now, below the kernel's ephemeral range (32768+): the server binds it
/// again after each SIGKILL, and an outgoing connection of this test (or of anything else)
/// could otherwise be handed the same number in between.
fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU16, Ordering};
    // Distinct per call within this process; the start varies with the process id.
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let start = (std::process::id() % 10_000) as u16;
    loop {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        assert!(n < 10_000, "no free port below 32768");
        let port = 20_000 + (start + n) % 12_000;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

struct Setup {
    dir: PathBuf,
    ports: [u16; 3],
    /// DATABASE_URL, schema, REDIS_URL for the scaled backend.
    scaled: Option<(String, String, String)>,
}

impl Setup {
    fn start(&self) -> Child {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("wekeza.log"))
            .unwrap();
        let mut cmd = Command::new(binary());
        cmd.current_dir(&self.dir)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("HOME", &self.dir)
            .env("RUST_LOG", "warn")
            .env("NO_COLOR", "1")
            .env("WEKEZA_WEB_PORT", self.ports[0].to_string())
            .env("WEKEZA_MTLS_PORT", self.ports[1].to_string())
            .env("WEKEZA_RS_PORT", self.ports[2].to_string())
            .env("WEKEZA_SANDBOX_LOAD_CUSTOMERS", PAYMENTS.to_string())
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        if let Some((db, schema, redis)) = &self.scaled {
            cmd.env("DATABASE_URL", db)
                .env("WEKEZA_DATABASE_SCHEMA", schema)
                .env("REDIS_URL", redis)
                .env("WEKEZA_REDIS_KEY_PREFIX", schema);
        }
        cmd.spawn().unwrap()
    }

    fn log_tail(&self) -> String {
        let s = std::fs::read_to_string(self.dir.join("wekeza.log")).unwrap_or_default();
        let lines: Vec<&str> = s.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    /// The kit once the AS and the RS both answer.
    async fn ready(&self, child: &mut Child) -> Kit {
        let kit_path = self.dir.join("certs/sandbox/kit.json");
        for _ in 0..600 {
            if let Some(status) = child.try_wait().unwrap() {
                panic!("wekeza exited ({status}):\n{}", self.log_tail());
            }
            if let Ok(kit) = Kit::load(&kit_path)
                && let Ok(ca) = std::fs::read(&kit.ca_cert)
            {
                let http = fapi_conformance::tpp::https_client(&ca, None).unwrap();
                let as_up = http
                    .get(format!("{}/healthz", kit.issuer))
                    .send()
                    .await
                    .is_ok_and(|r| r.status().is_success());
                // Any HTTP answer (401 without a certificate) means the RS serves.
                let rs_up = http
                    .get(format!(
                        "{}/open-banking/v4.0/aisp/accounts",
                        kit.resource_base_url
                    ))
                    .send()
                    .await
                    .is_ok();
                if as_up && rs_up {
                    return kit;
                }
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        panic!("wekeza did not become ready:\n{}", self.log_tail());
    }
}

/// SIGKILL the platform and its `wekeza rs` child, by their pids (the child first
/// found through /proc, so it cannot outlive the parent and see its stdin close).
fn kill_group(child: &mut Child) {
    let pid = child.id();
    let children =
        std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap_or_default();
    let mut pids: Vec<String> = children.split_whitespace().map(str::to_owned).collect();
    pids.push(pid.to_string());
    assert!(pids.iter().all(|p| p.parse::<u32>().is_ok_and(|n| n > 1)));
    let st = Command::new("kill")
        .arg("-KILL")
        .args(&pids)
        .status()
        .unwrap();
    assert!(st.success(), "kill {pids:?}");
    child.wait().unwrap();
}

struct Prepared {
    token: String,
    body: Value,
    key: String,
}

fn consent_body() -> Value {
    json!({
        "Data": {"Initiation": {
            "InstructionIdentification": "CRASH",
            "EndToEndIdentification": "CRASH",
            "InstructedAmount": {"Amount": "1.25", "Currency": "KES"},
            "CreditorAccount": {"SchemeName": "KE.WEKEZA.AccountNumber",
                "Identification": "CRASH-ELSEWHERE", "Name": "Crash test payee"}
        }},
        "Risk": {}
    })
}

async fn prepare(kit: &Kit, tpp: &Tpp, cc: &str, username: &str) -> Prepared {
    let pisp = format!("{}/open-banking/v4.0/pisp", kit.resource_base_url);
    let body = consent_body();
    let r = tpp
        .resource_with_headers(
            reqwest::Method::POST,
            &format!("{pisp}/domestic-payment-consents"),
            cc,
            Some(&body),
            &[("x-idempotency-key", uuid_like().as_str())],
            false,
        )
        .await
        .unwrap();
    assert_eq!(r.status, 201, "{}", r.body);
    let id = r.body["Data"]["ConsentId"].as_str().unwrap().to_owned();
    let claims = json!({"id_token": {"openbanking_intent_id": {"value": id, "essential": true}}})
        .to_string();
    let pkce = Pkce::new();
    let par = tpp
        .par(
            &pkce,
            "crash",
            "crash",
            &[("scope", "openid payments"), ("claims", claims.as_str())],
        )
        .await
        .unwrap();
    assert_eq!(par.status, 201, "{}", par.body);
    let agent = Customer::new(&std::fs::read(&kit.ca_cert).unwrap(), &kit.issuer).unwrap();
    let login = agent
        .open(&tpp.authorize_url(par.str("request_uri").unwrap()))
        .await
        .unwrap();
    let otp = totp(&kit.customer.totp_secret, now()).unwrap();
    let page = agent
        .sign_in(&login, username, &kit.customer.password, &otp)
        .await
        .unwrap();
    let from = page.account_choices().into_iter().next().unwrap();
    let back = agent
        .decide_accounts(&page, true, &[from.as_str()])
        .await
        .unwrap();
    let code = param(&back, "code").unwrap();
    let t = tpp.exchange_code(&code, &pkce).await.unwrap();
    assert_eq!(t.status, 200, "{}", t.body);
    let mut pay = body;
    pay["Data"]["ConsentId"] = json!(id);
    Prepared {
        token: t.str("access_token").unwrap().to_owned(),
        body: pay,
        key: uuid_like(),
    }
}

async fn pay(tpp: &Tpp, kit: &Kit, p: &Prepared) -> anyhow::Result<fapi_conformance::tpp::Reply> {
    tpp.resource_with_headers(
        reqwest::Method::POST,
        &format!(
            "{}/open-banking/v4.0/pisp/domestic-payments",
            kit.resource_base_url
        ),
        &p.token,
        Some(&p.body),
        &[("x-idempotency-key", p.key.as_str())],
        false,
    )
    .await
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
async fn sigkill_of_the_real_server_mid_burst_loses_and_doubles_nothing() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let id = uuid::Uuid::new_v4().simple().to_string();
    let dir = std::env::temp_dir().join(format!("wkz-crash-{id}"));
    std::fs::create_dir_all(&dir).unwrap();
    let scaled = (std::env::var("WEKEZA_TEST_BACKEND").as_deref() == Ok("scaled")).then(|| {
        (
            std::env::var("WEKEZA_TEST_POSTGRES_URL").expect("WEKEZA_TEST_POSTGRES_URL"),
            format!("crash_{}", &id[..16]),
            std::env::var("WEKEZA_TEST_REDIS_URL").expect("WEKEZA_TEST_REDIS_URL"),
        )
    });
    let setup = Setup {
        dir: dir.clone(),
        ports: [free_port(), free_port(), free_port()],
        scaled,
    };
    let mut child = setup.start();
    let kit = setup.ready(&mut child).await;
    let tpp = Tpp::from_kit(&kit, kit.client("tls_client_auth").unwrap())
        .await
        .unwrap();
    let cc = tpp.client_credentials("payments").await.unwrap();
    let cc = cc.str("access_token").unwrap().to_owned();
    let pool = kit.customer_pool.clone().expect("a customer pool");
    let mut prepared = Vec::new();
    for n in 1..=PAYMENTS {
        prepared.push(prepare(&kit, &tpp, &cc, &pool.username(n as u32)).await);
    }

    // The burst: every payment in flight at once; kill after the first acknowledgements.
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let prepared = std::sync::Arc::new(prepared);
    for i in 0..PAYMENTS {
        let (tpp, kit, prepared, tx) = (tpp.clone(), kit.clone(), prepared.clone(), tx.clone());
        tokio::spawn(async move {
            let r = pay(&tpp, &kit, &prepared[i]).await;
            let _ = tx.send((i, r));
        });
    }
    drop(tx);
    let mut acked: BTreeMap<usize, String> = BTreeMap::new();
    let mut answered = 0;
    while let Some((i, r)) = rx.recv().await {
        answered += 1;
        if let Ok(r) = r
            && r.status == 201
        {
            acked.insert(
                i,
                r.body["Data"]["DomesticPaymentId"]
                    .as_str()
                    .unwrap()
                    .to_owned(),
            );
            if acked.len() >= KILL_AFTER {
                break;
            }
        }
    }
    kill_group(&mut child);
    // Whatever was still in flight got its answer (a broken connection) or none.
    while let Some((i, r)) = rx.recv().await {
        answered += 1;
        if let Ok(r) = r
            && r.status == 201
        {
            acked.insert(
                i,
                r.body["Data"]["DomesticPaymentId"]
                    .as_str()
                    .unwrap()
                    .to_owned(),
            );
        }
    }
    assert!(acked.len() >= KILL_AFTER, "{} acknowledged", acked.len());
    assert!(
        acked.len() < PAYMENTS,
        "every payment was acknowledged before the kill: not mid-burst"
    );
    eprintln!(
        "killed with {} of {PAYMENTS} payments acknowledged ({answered} answered)",
        acked.len()
    );

    // Restart on the same data.
    let mut child = setup.start();
    let kit = setup.ready(&mut child).await;
    let tpp = Tpp::from_kit(&kit, kit.client("tls_client_auth").unwrap())
        .await
        .unwrap();
    let mut ids = BTreeSet::new();
    for (i, p) in prepared.iter().enumerate() {
        let r = pay(&tpp, &kit, p).await.unwrap();
        assert_eq!(r.status, 201, "payment {i} after the restart: {}", r.body);
        let pid = r.body["Data"]["DomesticPaymentId"]
            .as_str()
            .unwrap()
            .to_owned();
        if let Some(before) = acked.get(&i) {
            assert_eq!(&pid, before, "the replay answers the acknowledged payment");
        }
        assert!(ids.insert(pid), "two consents answered the same payment");
    }
    kill_group(&mut child);

    // The data: every payment once, the ledger balanced, nothing half-applied.
    let (url, schema) = match &setup.scaled {
        Some((db, schema, _)) => (db.clone(), Some(schema.clone())),
        None => (format!("sqlite://{}/data/wekeza.db", dir.display()), None),
    };
    let schema = schema.as_deref();
    let s = SqlStore::connect(&url, schema).await.unwrap();
    for id in &ids {
        assert!(s.find_payment(id).await.unwrap().is_some(), "{id} lost");
    }
    let check = s.ledger_check().await.unwrap();
    assert_eq!(check.entries_sum, 0, "{check:?}");
    assert!(check.unbalanced_postings.is_empty(), "{check:?}");
    assert!(check.balance_mismatches.is_empty(), "{check:?}");
    s.close().await;
    let count = |sql| scalar(&url, schema, sql);
    assert_eq!(
        count("SELECT COUNT(*) FROM payments").await,
        PAYMENTS as i64,
        "one payment per consent"
    );
    assert_eq!(
        count(
            "SELECT COUNT(*) FROM consents c WHERE c.kind = 'domestic-payment' \
             AND c.status = 'Consumed' AND NOT EXISTS \
             (SELECT 1 FROM payments p WHERE p.consent_id = c.id)"
        )
        .await,
        0,
        "a consumed consent without its payment"
    );
    assert_eq!(
        count(
            "SELECT COUNT(*) FROM payments p WHERE p.status <> 'RJCT' AND NOT EXISTS \
             (SELECT 1 FROM ledger_postings l WHERE l.payment_id = p.id)"
        )
        .await,
        0,
        "an accepted payment without its posting"
    );
    assert_eq!(
        count(
            "SELECT COUNT(*) FROM payments p WHERE NOT EXISTS \
             (SELECT 1 FROM idempotency_keys k WHERE k.resource_id = p.id)"
        )
        .await,
        0,
        "a payment without its idempotency key"
    );
    if let Some((db, schema, _)) = &setup.scaled {
        let mut c = sqlx::PgConnection::connect(db).await.unwrap();
        c.execute(AssertSqlSafe(format!("DROP SCHEMA \"{schema}\" CASCADE")))
            .await
            .unwrap();
    }
    let _ = std::fs::remove_dir_all(&dir);
}
