//! `payments`: domestic payments at the resource server. Phase 1 prepares `--payments`
//! authorised payment consents (consent POST, PAR with the intent, a pool customer signs
//! in and approves, code exchange), each customer once, so the TOTP rule holds; phase 2
//! executes them all (`POST /domestic-payments` with an idempotency key) with
//! `--connections` in flight and reports payments/s and latency. By default every
//! payment leaves the same account (the pool customers share alice's accounts): the worst
//! case for the ledger, one hot debtor row. A server started with
//! `WEKEZA_SANDBOX_LOAD_ACCOUNTS=N` gives the pool customers N banks of their own, so the
//! payments spread over N debtor accounts.

use crate::stats::{CpuSnap, Latency};
use anyhow::{Context, ensure};
use clap::Args;
use fapi_conformance::browser::{Customer, param, totp};
use fapi_conformance::tpp::{now, uuid_like};
use fapi_conformance::{Kit, Pkce, Tpp};
use futures::StreamExt;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Instant;

#[derive(Args, Debug)]
pub struct PayArgs {
    /// Sandbox TPP kit (`certs/sandbox/kit.json`).
    #[arg(long)]
    pub kit: PathBuf,
    /// Payments to prepare and execute (at most `--customers`).
    #[arg(long, default_value_t = 500)]
    pub payments: usize,
    /// Payments in flight in phase 2.
    #[arg(long, default_value_t = 32)]
    pub connections: usize,
    /// Authorisations in flight in phase 1.
    #[arg(long, default_value_t = 8)]
    pub prepare_connections: usize,
    /// Seeded load customers `<prefix>0001`.. (each approves one consent).
    #[arg(long, default_value_t = 3000)]
    pub customers: usize,
    #[arg(long, default_value = "loadtest-")]
    pub customer_prefix: String,
    /// Report the CPU use of the server under test (comma-separated pids are summed).
    #[arg(long, value_delimiter = ',')]
    pub server_pid: Vec<u32>,
    /// The kit client that pays, by its `token_endpoint_auth_method`: `tls_client_auth`
    /// signs its requests with PS256 (answered in PS256), `private_key_jwt` with ES256
    /// (answered in ES256, ADR 0020).
    #[arg(long, default_value = "tls_client_auth")]
    pub client: String,
    /// Sign every payment body (`x-jws-signature`) after the consents are prepared and
    /// before the clock starts, so the load tool's own signing (RSA for PS256) does not
    /// compete with the server for these cores. The signatures are at most a minute old
    /// when sent (the server accepts five); everything else is as without it.
    #[arg(long)]
    pub presign: bool,
}

struct Prepared {
    token: String,
    body: Value,
}

fn consent_body() -> Value {
    json!({
        "Data": {"Initiation": {
            "InstructionIdentification": "LOAD",
            "EndToEndIdentification": "LOAD",
            "InstructedAmount": {"Amount": "0.01", "Currency": "KES"},
            "CreditorAccount": {"SchemeName": "KE.WEKEZA.AccountNumber",
                "Identification": "LOAD-ELSEWHERE", "Name": "Load test payee"}
        }},
        "Risk": {}
    })
}

async fn prepare(
    kit: &Kit,
    tpp: &Tpp,
    cc: &str,
    pisp: &str,
    username: &str,
) -> anyhow::Result<Prepared> {
    let body = consent_body();
    let key = uuid_like();
    let r = tpp
        .resource_with_headers(
            reqwest::Method::POST,
            &format!("{pisp}/domestic-payment-consents"),
            cc,
            Some(&body),
            &[("x-idempotency-key", key.as_str())],
            false,
        )
        .await?;
    ensure!(
        r.status == 201,
        "consent POST answered {}: {}",
        r.status,
        r.body
    );
    let id = r.body["Data"]["ConsentId"]
        .as_str()
        .context("no ConsentId")?
        .to_owned();
    let claims = json!({"id_token": {"openbanking_intent_id": {"value": id, "essential": true}}})
        .to_string();
    let pkce = Pkce::new();
    let par = tpp
        .par(
            &pkce,
            "load",
            "load",
            &[("scope", "openid payments"), ("claims", claims.as_str())],
        )
        .await?;
    ensure!(
        par.status == 201,
        "PAR answered {}: {}",
        par.status,
        par.body
    );
    let agent = Customer::new(&std::fs::read(&kit.ca_cert)?, &kit.issuer)?;
    let login = agent
        .open(&tpp.authorize_url(par.str("request_uri").context("no request_uri")?))
        .await?;
    let otp = totp(&kit.customer.totp_secret, now())?;
    let page = agent
        .sign_in(&login, username, &kit.customer.password, &otp)
        .await?;
    let from = page
        .account_choices()
        .into_iter()
        .next()
        .context("no account to pay from")?;
    let back = agent.decide_accounts(&page, true, &[from.as_str()]).await?;
    let code = param(&back, "code").context("no code")?;
    let t = tpp.exchange_code(&code, &pkce).await?;
    ensure!(
        t.status == 200,
        "code exchange answered {}: {}",
        t.status,
        t.body
    );
    let mut pay = body;
    pay["Data"]["ConsentId"] = json!(id);
    Ok(Prepared {
        token: t.str("access_token").context("no access token")?.to_owned(),
        body: pay,
    })
}

pub async fn run(a: PayArgs) -> anyhow::Result<()> {
    ensure!(
        a.connections > 0 && a.prepare_connections > 0,
        "connections must be at least 1"
    );
    ensure!(
        a.payments <= a.customers.max(1),
        "--payments must not exceed --customers (one approval per customer and TOTP step)"
    );
    let kit = Kit::load(&a.kit)?;
    let tpp = Tpp::from_kit(&kit, kit.client(&a.client)?).await?;
    let pisp = format!(
        "{}/open-banking/v4.0/pisp",
        kit.resource_base_url.trim_end_matches('/')
    );
    let cc = tpp.client_credentials("payments").await?;
    ensure!(
        cc.status == 200,
        "client credentials answered {}",
        cc.status
    );
    let cc = cc.str("access_token").context("no token")?.to_owned();
    let names: Vec<String> = if a.customers == 0 {
        vec![kit.customer.username.clone()]
    } else {
        (1..=a.payments)
            .map(|i| format!("{}{i:04}", a.customer_prefix))
            .collect()
    };
    println!(
        "payments: preparing {} authorised consents ({} in flight)",
        names.len(),
        a.prepare_connections
    );
    let t0 = Instant::now();
    let prepared: Vec<anyhow::Result<Prepared>> = futures::stream::iter(names.iter())
        .map(|u| prepare(&kit, &tpp, &cc, &pisp, u))
        .buffer_unordered(a.prepare_connections)
        .collect()
        .await;
    let mut ready = Vec::new();
    let mut errors: BTreeMap<String, u64> = BTreeMap::new();
    for p in prepared {
        match p {
            Ok(p) => ready.push(p),
            Err(e) => {
                *errors
                    .entry(format!("{e:#}").chars().take(160).collect())
                    .or_default() += 1
            }
        }
    }
    println!(
        "prepared {} in {:.1} s (failed {})",
        ready.len(),
        t0.elapsed().as_secs_f64(),
        errors.values().sum::<u64>()
    );

    let target = format!("{pisp}/domestic-payments");
    // (exact body bytes, their signature) per payment, when signed up front.
    let signed: Vec<Option<(Vec<u8>, String)>> = ready
        .iter()
        .map(|p| {
            if !a.presign {
                return Ok(None);
            }
            let bytes = serde_json::to_vec(&p.body)?;
            let sig = tpp
                .jws_signature(&bytes)
                .context("the kit client has no signing key")?;
            Ok(Some((bytes, sig)))
        })
        .collect::<anyhow::Result<_>>()?;
    let cpu0 = CpuSnap::take(&a.server_pid)?;
    let start = Instant::now();
    let results: Vec<anyhow::Result<(std::time::Duration, String)>> =
        futures::stream::iter(ready.iter().zip(&signed))
            .map(|(p, signed)| {
                let target = target.clone();
                let tpp = &tpp;
                async move {
                    let key = uuid_like();
                    let t = Instant::now();
                    let r = match signed {
                        Some((bytes, sig)) => {
                            tpp.resource_raw(
                                reqwest::Method::POST,
                                &target,
                                &p.token,
                                bytes,
                                &[
                                    ("x-idempotency-key", key.as_str()),
                                    ("x-jws-signature", sig.as_str()),
                                ],
                            )
                            .await?
                            .0
                        }
                        None => {
                            tpp.resource_with_headers(
                                reqwest::Method::POST,
                                &target,
                                &p.token,
                                Some(&p.body),
                                &[("x-idempotency-key", key.as_str())],
                                false,
                            )
                            .await?
                        }
                    };
                    let d = t.elapsed();
                    ensure!(r.status == 201, "payment answered {}: {}", r.status, r.body);
                    Ok((
                        d,
                        r.body["Data"]["Status"].as_str().unwrap_or("?").to_owned(),
                    ))
                }
            })
            .buffer_unordered(a.connections)
            .collect()
            .await;
    let elapsed = start.elapsed().as_secs_f64();
    let cpu = cpu0.since(&a.server_pid)?;
    let mut lat = Latency::new()?;
    let mut statuses: BTreeMap<String, u64> = BTreeMap::new();
    for r in results {
        match r {
            Ok((d, s)) => {
                lat.record(d);
                *statuses.entry(s).or_default() += 1;
            }
            Err(e) => {
                *errors
                    .entry(format!("{e:#}").chars().take(160).collect())
                    .or_default() += 1
            }
        }
    }
    let ok = lat.count();
    let ps = ok as f64 / elapsed;
    println!("{ok} payments in {elapsed:.2} s = {ps:.1} payments/s; statuses {statuses:?}");
    println!("p50 {:.2} ms, p99 {:.2} ms", lat.ms(0.5), lat.ms(0.99));
    println!("{}", cpu.line());
    for (msg, count) in errors.iter().take(5) {
        println!("failure x{count}: {msg}");
    }
    println!(
        "RESULT scenario=payments conns={} payments={ok} secs={elapsed:.2} payments_s={ps:.1} p50_ms={:.2} p99_ms={:.2} failed={} {} client={} presign={}",
        a.connections,
        lat.ms(0.5),
        lat.ms(0.99),
        errors.values().sum::<u64>(),
        cpu.kv(),
        a.client,
        a.presign
    );
    Ok(())
}
