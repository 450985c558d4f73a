//! `flow`: the whole code flow per iteration, PAR → authorize → password → OTP → consent
//! → code exchange, each iteration with a fresh no-JS customer agent.

use crate::stats::{CpuSnap, Latency, parse_duration};
use anyhow::{Context, ensure};
use clap::Args;
use fapi_conformance::browser::{Customer, param, totp};
use fapi_conformance::tpp::{now, random};
use fapi_conformance::{Kit, Pkce, Tpp};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Args, Debug)]
pub struct FlowArgs {
    /// Sandbox TPP kit (`certs/sandbox/kit.json`).
    #[arg(long)]
    pub kit: PathBuf,
    #[arg(long, value_parser = parse_duration, default_value = "20s")]
    pub duration: Duration,
    /// Concurrent flows (closed loop).
    #[arg(long, default_value_t = 8)]
    pub connections: usize,
    /// Seeded load customers `<prefix>0001`..; 0 uses only the kit's customer.
    #[arg(long, default_value_t = 3000)]
    pub customers: usize,
    #[arg(long, default_value = "loadtest-")]
    pub customer_prefix: String,
    /// Report the CPU use of the server under test (comma-separated pids are summed).
    #[arg(long, value_delimiter = ',')]
    pub server_pid: Vec<u32>,
}

const STEPS: [&str; 6] = ["par", "authorize", "login", "otp", "consent", "token"];
const TOTP_STEP: i64 = 30;

/// Customers sharing one password and TOTP secret. The server accepts each TOTP
/// time-step once per customer, so a customer is used at most once per step.
struct Customers {
    names: Vec<String>,
    password: String,
    secret: String,
    state: Mutex<(usize, Vec<i64>)>,
}

impl Customers {
    fn lock(&self) -> std::sync::MutexGuard<'_, (usize, Vec<i64>)> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Next customer (round robin) not yet used in the current step.
    async fn pick(&self) -> usize {
        loop {
            let step = now() / TOTP_STEP;
            {
                let mut g = self.lock();
                let n = self.names.len();
                for k in 0..n {
                    let i = (g.0 + k) % n;
                    if g.1[i] < step {
                        g.0 = (i + 1) % n;
                        return i;
                    }
                }
            }
            sleep_to_next_step().await;
        }
    }

    /// A code for customer `i` in a step it has not used yet (waits for one if needed).
    async fn otp(&self, i: usize) -> anyhow::Result<String> {
        loop {
            let t = now();
            {
                let mut g = self.lock();
                if g.1[i] < t / TOTP_STEP {
                    g.1[i] = t / TOTP_STEP;
                    return totp(&self.secret, t);
                }
            }
            sleep_to_next_step().await;
        }
    }
}

async fn sleep_to_next_step() {
    let left = TOTP_STEP - now().rem_euclid(TOTP_STEP);
    tokio::time::sleep(Duration::from_millis(left as u64 * 1000 + 50)).await;
}

struct Tally {
    steps: Vec<Latency>,
    flow: Latency,
    ok: u64,
    failed: u64,
    errors: BTreeMap<String, u64>,
}

impl Tally {
    fn new() -> anyhow::Result<Self> {
        Ok(Self {
            steps: STEPS
                .iter()
                .map(|_| Latency::new())
                .collect::<anyhow::Result<_>>()?,
            flow: Latency::new()?,
            ok: 0,
            failed: 0,
            errors: BTreeMap::new(),
        })
    }
}

struct Shared {
    tpp: Tpp,
    ca: Vec<u8>,
    issuer: String,
    customers: Customers,
}

/// One complete flow; step latencies go to `lat` as they complete.
async fn one_flow(s: &Shared, lat: &mut [Latency]) -> anyhow::Result<()> {
    let tpp = &s.tpp;
    let pkce = Pkce::new();
    let state = random(12);

    let t = Instant::now();
    let par = tpp.par(&pkce, &state, &random(12), &[]).await?;
    ensure!(
        par.status == 201,
        "PAR answered {}: {}",
        par.status,
        par.body
    );
    let request_uri = par.str("request_uri").context("PAR without request_uri")?;
    lat[0].record(t.elapsed());

    let agent = Customer::new(&s.ca, &s.issuer)?;
    let t = Instant::now();
    let login = agent.open(&tpp.authorize_url(request_uri)).await?;
    ensure!(login.status == 200, "authorize answered {}", login.status);
    let csrf = login.csrf().context("login page without csrf")?;
    lat[1].record(t.elapsed());

    let who = s.customers.pick().await;
    let t = Instant::now();
    let r = agent
        .post(
            "/login",
            &[
                ("csrf", csrf.as_str()),
                ("username", s.customers.names[who].as_str()),
                ("password", s.customers.password.as_str()),
            ],
        )
        .await?;
    ensure!(
        r.location.as_deref() == Some("/login/otp"),
        "password step answered {} {:?}",
        r.status,
        r.location
    );
    lat[2].record(t.elapsed());

    let otp = s.customers.otp(who).await?;
    let t = Instant::now();
    let r = agent
        .post(
            "/login/otp",
            &[("csrf", csrf.as_str()), ("otp", otp.as_str())],
        )
        .await?;
    ensure!(
        r.location.as_deref() == Some("/consent"),
        "OTP step answered {} {:?}",
        r.status,
        r.location
    );
    lat[3].record(t.elapsed());

    let t = Instant::now();
    let page = agent.get("/consent").await?;
    ensure!(page.status == 200, "consent page answered {}", page.status);
    let csrf = page.csrf().context("consent page without csrf")?;
    let r = agent
        .post(
            "/consent",
            &[("csrf", csrf.as_str()), ("decision", "approve")],
        )
        .await?;
    ensure!(r.status == 303, "consent answered {}", r.status);
    let back = url::Url::parse(r.location.as_deref().context("no redirect after consent")?)?;
    ensure!(
        param(&back, "state").as_deref() == Some(state.as_str()),
        "state mismatch"
    );
    let code = param(&back, "code").context("no code in the redirect")?;
    lat[4].record(t.elapsed());

    let t = Instant::now();
    let tok = tpp.exchange_code(&code, &pkce).await?;
    ensure!(
        tok.status == 200 && tok.str("access_token").is_some(),
        "code exchange answered {}: {}",
        tok.status,
        tok.body
    );
    lat[5].record(t.elapsed());
    Ok(())
}

async fn worker(s: Arc<Shared>, deadline: Instant) -> anyhow::Result<Tally> {
    let mut t = Tally::new()?;
    while Instant::now() < deadline {
        let t0 = Instant::now();
        match one_flow(&s, &mut t.steps).await {
            Ok(()) => {
                t.flow.record(t0.elapsed());
                t.ok += 1;
            }
            Err(e) => {
                t.failed += 1;
                let msg: String = format!("{e:#}").chars().take(160).collect();
                *t.errors.entry(msg).or_default() += 1;
                // Do not spin on a persistent failure.
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    Ok(t)
}

pub async fn run(a: FlowArgs) -> anyhow::Result<()> {
    ensure!(a.connections > 0, "--connections must be at least 1");
    let kit = Kit::load(&a.kit)?;
    let tpp = Tpp::from_kit(&kit, kit.client("private_key_jwt")?).await?;
    let names: Vec<String> = if a.customers == 0 {
        vec![kit.customer.username.clone()]
    } else {
        (1..=a.customers)
            .map(|i| format!("{}{i:04}", a.customer_prefix))
            .collect()
    };
    // Random start, so a rerun within the same 30 s step is unlikely to reuse a customer.
    let start_at = rand::random::<u64>() as usize % names.len();
    let n = names.len();
    let shared = Arc::new(Shared {
        tpp,
        ca: std::fs::read(&kit.ca_cert)?,
        issuer: kit.issuer.clone(),
        customers: Customers {
            names,
            password: kit.customer.password.clone(),
            secret: kit.customer.totp_secret.clone(),
            state: Mutex::new((start_at, vec![0; n])),
        },
    });
    println!(
        "flow: issuer {} client {} customers {n}, {} concurrent flows, {:.0} s",
        kit.issuer,
        shared.tpp.client_id,
        a.connections,
        a.duration.as_secs_f64()
    );

    let cpu0 = CpuSnap::take(&a.server_pid)?;
    let start = Instant::now();
    let deadline = start + a.duration;
    let handles: Vec<_> = (0..a.connections)
        .map(|_| tokio::spawn(worker(shared.clone(), deadline)))
        .collect();
    let mut total = Tally::new()?;
    for h in handles {
        let t = h.await??;
        for (acc, s) in total.steps.iter_mut().zip(&t.steps) {
            acc.add(s)?;
        }
        total.flow.add(&t.flow)?;
        total.ok += t.ok;
        total.failed += t.failed;
        for (k, v) in t.errors {
            *total.errors.entry(k).or_default() += v;
        }
    }
    let elapsed = start.elapsed().as_secs_f64();
    let cpu = cpu0.since(&a.server_pid)?;
    let fps = total.ok as f64 / elapsed;

    println!(
        "{} flows completed in {elapsed:.2} s = {fps:.1} flows/s  (failed {})",
        total.ok, total.failed
    );
    println!(
        "{:<10} {:>8} {:>9} {:>9}",
        "step", "count", "p50 ms", "p99 ms"
    );
    let mut kv = String::new();
    for (name, l) in STEPS
        .iter()
        .zip(&total.steps)
        .chain([(&"flow", &total.flow)])
    {
        println!(
            "{name:<10} {:>8} {:>9.2} {:>9.2}",
            l.count(),
            l.ms(0.5),
            l.ms(0.99)
        );
        kv.push_str(&format!(
            " {name}_p50_ms={:.2} {name}_p99_ms={:.2}",
            l.ms(0.5),
            l.ms(0.99)
        ));
    }
    println!("{}", cpu.line());
    for (msg, count) in total.errors.iter().take(5) {
        println!("failure x{count}: {msg}");
    }
    println!(
        "RESULT scenario=flow conns={} secs={elapsed:.2} flows={} flows_s={fps:.1} failed={}{kv} {}",
        a.connections,
        total.ok,
        total.failed,
        cpu.kv()
    );
    Ok(())
}
