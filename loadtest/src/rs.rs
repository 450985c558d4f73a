//! `rs`: account-information reads at the resource server. Setup (not timed): the kit's
//! sandbox customer grants an account-access consent over every offered account, exactly
//! as a TPP gets one (client_credentials -> account-access-consents -> PAR with the
//! `openbanking_intent_id` claim -> password + TOTP -> accounts ticked -> code -> token).
//! Timed: one persistent HTTP/1.1 mTLS connection per worker, presenting the same
//! client's certificate (the token is bound to it), `GET .../accounts/{id}/balances` or
//! `.../transactions`, closed loop or, with `--rate`, open loop at a fixed aggregate rate.

use crate::stats::{CpuSnap, Latency, parse_duration};
use anyhow::{Context, bail, ensure};
use clap::{Args, ValueEnum};
use fapi_conformance::browser::{Customer, param, totp};
use fapi_conformance::tpp::{now, random, uuid_like};
use fapi_conformance::{Kit, Pkce, Tpp};
use reqwest::header::{ACCEPT, AUTHORIZATION, HeaderValue};
use reqwest::{Certificate, Identity, Method};
use serde_json::json;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Scenario {
    /// `GET /accounts/{AccountId}/balances`, rotating through the shared accounts.
    Balances,
    /// `GET /accounts/{AccountId}/transactions`: the first page.
    Transactions,
}

impl Scenario {
    fn name(self) -> &'static str {
        match self {
            Self::Balances => "balances",
            Self::Transactions => "transactions",
        }
    }
}

#[derive(Args, Debug)]
pub struct RsArgs {
    /// Sandbox TPP kit (`certs/sandbox/kit.json`).
    #[arg(long)]
    pub kit: PathBuf,
    #[arg(long, value_enum, default_value = "balances")]
    pub scenario: Scenario,
    /// Kit client (certificate-bound tokens), by auth method: private_key_jwt or tls_client_auth.
    #[arg(long, default_value = "private_key_jwt")]
    pub client: String,
    #[arg(long, value_parser = parse_duration, default_value = "20s")]
    pub duration: Duration,
    /// Persistent connections (one worker each).
    #[arg(long, default_value_t = 64)]
    pub connections: usize,
    /// Open loop: this many requests per second in total, spread evenly over the
    /// connections; latency counts from each request's scheduled time. Default: closed loop.
    #[arg(long)]
    pub rate: Option<f64>,
    /// Report the CPU use of the server under test (comma-separated pids are summed;
    /// their child processes, e.g. the platform's resource-server child, are added).
    #[arg(long, value_delimiter = ',')]
    pub server_pid: Vec<u32>,
}

const AISP: &str = "/open-banking/v4.0/aisp";
const TOTP_STEP: i64 = 30;
/// Refresh the access token this long before it expires.
const REFRESH_MARGIN: Duration = Duration::from_secs(60);

/// What the setup produced.
struct Grant {
    access_token: String,
    refresh_token: Option<String>,
    expires_in: u64,
    accounts: Vec<String>,
}

fn rs_url(kit: &Kit, path: &str) -> String {
    format!(
        "{}{AISP}{path}",
        kit.resource_base_url.trim_end_matches('/')
    )
}

fn token_of(r: &fapi_conformance::tpp::Reply, what: &str) -> anyhow::Result<String> {
    ensure!(
        r.status.is_success(),
        "{what} answered {}: {}",
        r.status,
        r.body
    );
    Ok(r.str("access_token")
        .with_context(|| format!("{what}: no access_token"))?
        .to_owned())
}

/// One attempt at the whole consent journey.
async fn obtain(kit: &Kit, tpp: &Tpp) -> anyhow::Result<Grant> {
    let cc = token_of(
        &tpp.client_credentials("accounts").await?,
        "client_credentials",
    )?;
    let body = json!({
        "Data": {
            "Permissions": ["ReadAccountsDetail", "ReadBalances", "ReadTransactionsDetail",
                "ReadTransactionsCredits", "ReadTransactionsDebits"],
            "ExpirationDateTime": "2099-01-01T00:00:00Z",
            "TransactionFromDateTime": "2000-01-01T00:00:00Z",
            "TransactionToDateTime": "2099-01-01T00:00:00Z"
        },
        "Risk": {}
    });
    let r = tpp
        .resource(
            Method::POST,
            &rs_url(kit, "/account-access-consents"),
            &cc,
            Some(&body),
        )
        .await?;
    ensure!(
        r.status == 201,
        "account-access-consents answered {}: {}",
        r.status,
        r.body
    );
    let intent = r.body["Data"]["ConsentId"]
        .as_str()
        .context("consent without ConsentId")?
        .to_owned();
    let claims =
        json!({"id_token": {"openbanking_intent_id": {"value": intent, "essential": true}}})
            .to_string();
    let pkce = Pkce::new();
    let state = random(12);
    let par = tpp
        .par(
            &pkce,
            &state,
            &random(12),
            &[("scope", "openid accounts"), ("claims", &claims)],
        )
        .await?;
    ensure!(
        par.status == 201,
        "PAR answered {}: {}",
        par.status,
        par.body
    );
    let request_uri = par.str("request_uri").context("PAR without request_uri")?;

    let customer = Customer::new(&std::fs::read(&kit.ca_cert)?, &kit.issuer)?;
    let login = customer.open(&tpp.authorize_url(request_uri)).await?;
    ensure!(login.status == 200, "authorize answered {}", login.status);
    let c = &kit.customer;
    let otp = totp(&c.totp_secret, now())?;
    let page = customer
        .sign_in(&login, &c.username, &c.password, &otp)
        .await?;
    ensure!(page.status == 200, "consent page answered {}", page.status);
    let accounts = page.account_choices();
    ensure!(!accounts.is_empty(), "the consent page offers no accounts");
    let picked: Vec<&str> = accounts.iter().map(String::as_str).collect();
    let back = customer.decide_accounts(&page, true, &picked).await?;
    ensure!(
        param(&back, "state").as_deref() == Some(state.as_str()),
        "state mismatch"
    );
    let code = param(&back, "code").context("no code in the redirect")?;
    let t = tpp.exchange_code(&code, &pkce).await?;
    let access_token = token_of(&t, "code exchange")?;
    Ok(Grant {
        access_token,
        refresh_token: t.str("refresh_token").map(str::to_owned),
        expires_in: t.body["expires_in"].as_u64().unwrap_or(300),
        accounts,
    })
}

/// The journey, retried in the next TOTP step when a code was already used (the server
/// accepts each step's code once per customer, e.g. two runs within 30 s).
async fn setup(kit: &Kit, tpp: &Tpp) -> anyhow::Result<Grant> {
    let mut last = None;
    for attempt in 1..=3 {
        match obtain(kit, tpp).await {
            Ok(g) => return Ok(g),
            Err(e) => {
                let left = TOTP_STEP - now().rem_euclid(TOTP_STEP);
                println!(
                    "setup attempt {attempt} failed ({e:#}); retrying in the next TOTP step ({left} s)"
                );
                last = Some(e);
                tokio::time::sleep(Duration::from_millis(left as u64 * 1000 + 200)).await;
            }
        }
    }
    Err(last.unwrap_or_else(|| anyhow::anyhow!("setup failed")))
}

/// The current `Authorization` header value, replaced by the refresher.
type Bearer = Arc<RwLock<HeaderValue>>;

fn bearer(token: &str) -> anyhow::Result<HeaderValue> {
    Ok(HeaderValue::from_str(&format!("Bearer {token}"))?)
}

/// Refreshes the access token `REFRESH_MARGIN` before each expiry (refresh_token grant).
async fn refresher(tpp: Tpp, mut rt: String, mut expires_in: u64, current: Bearer) {
    loop {
        let wait = Duration::from_secs(expires_in).saturating_sub(REFRESH_MARGIN);
        tokio::time::sleep(wait.max(Duration::from_secs(1))).await;
        let r = tpp
            .token(&[("grant_type", "refresh_token"), ("refresh_token", &rt)])
            .await;
        match r {
            Ok(r) if r.status.is_success() => {
                let Some(h) = r.str("access_token").and_then(|t| bearer(t).ok()) else {
                    eprintln!("refresh answered without an access token: {}", r.body);
                    return;
                };
                *current.write().unwrap_or_else(|p| p.into_inner()) = h;
                if let Some(n) = r.str("refresh_token") {
                    rt = n.to_owned();
                }
                expires_in = r.body["expires_in"].as_u64().unwrap_or(300);
                println!("access token refreshed (expires in {expires_in} s)");
            }
            Ok(r) => {
                eprintln!("refresh answered {}: {}", r.status, r.body);
                return;
            }
            Err(e) => {
                eprintln!("refresh failed: {e:#}");
                return;
            }
        }
    }
}

/// One HTTP/1.1 connection presenting the client's certificate.
fn connection(ca: &[u8], identity: &[u8]) -> anyhow::Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .http1_only()
        .pool_max_idle_per_host(1)
        .tcp_nodelay(true)
        .timeout(Duration::from_secs(30))
        .redirect(reqwest::redirect::Policy::none())
        .tls_certs_only([Certificate::from_pem(ca)?])
        .identity(Identity::from_pem(identity)?)
        .build()?)
}

/// One GET: status, body length, and a body excerpt when the status is not 2xx.
async fn get(c: &reqwest::Client, url: &str, auth: &Bearer) -> reqwest::Result<Answer> {
    let h = auth.read().unwrap_or_else(|p| p.into_inner()).clone();
    let r = c
        .get(url)
        .header(AUTHORIZATION, h)
        .header(ACCEPT, "application/json")
        .header("x-fapi-interaction-id", uuid_like())
        .send()
        .await?;
    let status = r.status();
    let body = r.bytes().await?;
    let sample =
        (!status.is_success()).then(|| String::from_utf8_lossy(&body).chars().take(200).collect());
    Ok(Answer {
        status,
        len: body.len(),
        sample,
    })
}

struct Answer {
    status: reqwest::StatusCode,
    len: usize,
    sample: Option<String>,
}

struct Tally {
    /// Closed loop: service time. Open loop: from the scheduled send time.
    lat: Latency,
    /// Open loop only: from the actual send time.
    service: Latency,
    ok: u64,
    non2xx: u64,
    throttled: u64,
    errors: u64,
    bytes: u64,
    /// Open loop: requests sent after their scheduled time because the previous
    /// response on the connection came back late.
    behind: u64,
    sample: Option<String>,
}

impl Tally {
    fn new() -> anyhow::Result<Self> {
        Ok(Self {
            lat: Latency::new()?,
            service: Latency::new()?,
            ok: 0,
            non2xx: 0,
            throttled: 0,
            errors: 0,
            bytes: 0,
            behind: 0,
            sample: None,
        })
    }

    fn add(&mut self, t: Tally) -> anyhow::Result<()> {
        self.lat.add(&t.lat)?;
        self.service.add(&t.service)?;
        self.ok += t.ok;
        self.non2xx += t.non2xx;
        self.throttled += t.throttled;
        self.errors += t.errors;
        self.bytes += t.bytes;
        self.behind += t.behind;
        if self.sample.is_none() {
            self.sample = t.sample;
        }
        Ok(())
    }

    fn note(&mut self, r: reqwest::Result<Answer>) {
        match r {
            Ok(a) => {
                self.bytes += a.len as u64;
                if a.status.is_success() {
                    self.ok += 1;
                } else {
                    self.non2xx += 1;
                    if a.status == reqwest::StatusCode::TOO_MANY_REQUESTS {
                        self.throttled += 1;
                    }
                    if self.sample.is_none() {
                        self.sample =
                            Some(format!("{} {}", a.status, a.sample.unwrap_or_default()));
                    }
                }
            }
            Err(e) => {
                self.errors += 1;
                if self.sample.is_none() {
                    self.sample = Some(format!("transport: {e}"));
                }
            }
        }
    }
}

struct Work {
    urls: Vec<String>,
    auth: Bearer,
}

/// Closed loop: the next request as soon as the previous one answered.
async fn closed(
    c: reqwest::Client,
    w: Arc<Work>,
    first: usize,
    deadline: Instant,
) -> anyhow::Result<Tally> {
    let mut t = Tally::new()?;
    let mut i = first;
    while Instant::now() < deadline {
        let url = &w.urls[i % w.urls.len()];
        i += 1;
        let t0 = Instant::now();
        let r = get(&c, url, &w.auth).await;
        if r.is_ok() {
            t.lat.record(t0.elapsed());
        }
        t.note(r);
    }
    Ok(t)
}

/// Open loop: request `k` of this connection is due at `start + k * interval`. Its
/// latency counts from when it was due if the previous response came back late
/// (no coordinated omission), else from when it was sent (no timer jitter).
async fn open(
    c: reqwest::Client,
    w: Arc<Work>,
    first: usize,
    start: Instant,
    interval: Duration,
    deadline: Instant,
) -> anyhow::Result<Tally> {
    let mut t = Tally::new()?;
    let mut i = first;
    let mut due = start;
    while due < deadline {
        let now = Instant::now();
        let from = if now < due {
            tokio::time::sleep_until(due.into()).await;
            Instant::now()
        } else {
            if now.duration_since(due) > Duration::from_millis(1) {
                t.behind += 1;
            }
            due
        };
        let url = &w.urls[i % w.urls.len()];
        i += 1;
        let sent = Instant::now();
        let r = get(&c, url, &w.auth).await;
        if r.is_ok() {
            t.lat.record(from.elapsed());
            t.service.record(sent.elapsed());
        }
        t.note(r);
        due += interval;
    }
    Ok(t)
}

/// `pids` plus their child processes (the platform runs the RS as a child), deduplicated.
fn with_children(pids: &[u32]) -> Vec<u32> {
    let mut out: Vec<u32> = Vec::new();
    for &p in pids {
        if !out.contains(&p) {
            out.push(p);
        }
        let tasks = std::fs::read_dir(format!("/proc/{p}/task"))
            .into_iter()
            .flatten()
            .flatten();
        for task in tasks {
            let kids = std::fs::read_to_string(task.path().join("children")).unwrap_or_default();
            for k in kids
                .split_whitespace()
                .filter_map(|k| k.parse::<u32>().ok())
            {
                if !out.contains(&k) {
                    out.push(k);
                }
            }
        }
    }
    out
}

pub async fn run(a: RsArgs) -> anyhow::Result<()> {
    ensure!(a.connections > 0, "--connections must be at least 1");
    if let Some(r) = a.rate {
        ensure!(r.is_finite() && r > 0.0, "--rate must be positive");
    }
    let kit = Kit::load(&a.kit)?;
    let kc = kit.client(&a.client)?;
    let tpp = Tpp::from_kit(&kit, kc).await?;
    let ca = std::fs::read(&kit.ca_cert)?;
    let mut identity = std::fs::read(&kc.cert)?;
    identity.extend(std::fs::read(&kc.key)?);

    let t = Instant::now();
    let grant = setup(&kit, &tpp).await?;
    println!(
        "setup: consent over {} account(s) for {} in {:.1} s, access token expires in {} s{}",
        grant.accounts.len(),
        kit.customer.username,
        t.elapsed().as_secs_f64(),
        grant.expires_in,
        if grant.refresh_token.is_some() {
            " (refreshed before expiry)"
        } else {
            " (no refresh token: runs longer than that will fail)"
        }
    );
    let auth: Bearer = Arc::new(RwLock::new(bearer(&grant.access_token)?));
    let refresh = grant
        .refresh_token
        .clone()
        .map(|rt| tokio::spawn(refresher(tpp.clone(), rt, grant.expires_in, auth.clone())));

    let leaf = match a.scenario {
        Scenario::Balances => "balances",
        Scenario::Transactions => "transactions",
    };
    let urls: Vec<String> = grant
        .accounts
        .iter()
        .map(|id| rs_url(&kit, &format!("/accounts/{id}/{leaf}")))
        .collect();
    let work = Arc::new(Work { urls, auth });
    let mode = match a.rate {
        Some(r) => format!("open loop at {r:.0} req/s"),
        None => "closed loop".to_owned(),
    };
    println!(
        "rs {}: {} client_id={} over mTLS HTTP/1.1, {} accounts, {} connections, {mode}, {:.0} s",
        a.scenario.name(),
        work.urls.first().map(String::as_str).unwrap_or(""),
        tpp.client_id,
        work.urls.len(),
        a.connections,
        a.duration.as_secs_f64()
    );

    // Sanity, then open every connection (TLS handshake included) before the clock starts.
    let probe = connection(&ca, &identity)?;
    let r = get(&probe, &work.urls[0], &work.auth).await?;
    if !r.status.is_success() {
        bail!(
            "sanity request answered {}: {}",
            r.status,
            r.sample.unwrap_or_default()
        );
    }
    println!("sanity: {}, {} bytes", r.status, r.len);
    drop(probe);
    let mut clients = Vec::with_capacity(a.connections);
    for _ in 0..a.connections {
        clients.push(connection(&ca, &identity)?);
    }
    let warm = futures::future::join_all(
        clients
            .iter()
            .enumerate()
            .map(|(i, c)| get(c, &work.urls[i % work.urls.len()], &work.auth)),
    )
    .await;
    let warm_ok = warm
        .iter()
        .filter(|r| matches!(r, Ok(a) if a.status.is_success()))
        .count();
    println!(
        "warm-up: {warm_ok}/{} connections answered 2xx",
        a.connections
    );

    let pids = with_children(&a.server_pid);
    if !pids.is_empty() {
        println!(
            "server pids accounted: {}",
            pids.iter()
                .map(u32::to_string)
                .collect::<Vec<_>>()
                .join(",")
        );
    }
    let cpu0 = CpuSnap::take(&pids)?;
    let start = Instant::now();
    let deadline = start + a.duration;
    let n = a.connections;
    let handles: Vec<_> = clients
        .into_iter()
        .enumerate()
        .map(|(i, c)| match a.rate {
            None => tokio::spawn(closed(c, work.clone(), i, deadline)),
            Some(rate) => {
                // Each connection sends every n/rate s, the connections evenly staggered.
                let interval = Duration::from_secs_f64(n as f64 / rate);
                let offset = interval.mul_f64(i as f64 / n as f64);
                tokio::spawn(open(c, work.clone(), i, start + offset, interval, deadline))
            }
        })
        .collect();
    let mut total = Tally::new()?;
    for h in handles {
        total.add(h.await??)?;
    }
    let elapsed = start.elapsed().as_secs_f64();
    let cpu = cpu0.since(&pids)?;
    if let Some(h) = refresh {
        h.abort();
    }
    let done = total.ok + total.non2xx;
    let rps = done as f64 / elapsed;
    let us_per_req = cpu
        .server
        .filter(|_| done > 0)
        .map(|s| s * elapsed * 1e6 / done as f64);

    println!(
        "{done} responses in {elapsed:.2} s = {rps:.0} req/s  (2xx {}, non-2xx {}, of which 429 {}, transport errors {}), {:.1} KiB/response",
        total.ok,
        total.non2xx,
        total.throttled,
        total.errors,
        total.bytes as f64 / done.max(1) as f64 / 1024.0
    );
    println!(
        "latency ms{}: p50 {:.2}  p90 {:.2}  p99 {:.2}  p99.9 {:.2}  max {:.2}",
        if a.rate.is_some() {
            " (from scheduled send)"
        } else {
            ""
        },
        total.lat.ms(0.5),
        total.lat.ms(0.9),
        total.lat.ms(0.99),
        total.lat.ms(0.999),
        total.lat.max_ms()
    );
    if a.rate.is_some() {
        println!(
            "service time ms: p50 {:.2}  p99 {:.2}; {} requests sent late because the previous response was late",
            total.service.ms(0.5),
            total.service.ms(0.99),
            total.behind
        );
    }
    println!(
        "{}{}",
        cpu.line(),
        us_per_req.map_or(String::new(), |u| format!("  server CPU {u:.0} µs/request"))
    );
    if let Some(s) = &total.sample {
        println!("first failure: {s}");
    }
    if total.throttled > 0 {
        println!(
            "NOTE: {} responses were 429: the client's gateway plan (WEKEZA_PLANS, WEKEZA_GATEWAY_ENABLED) or the RS rate limit (WEKEZA_RS_RATE_LIMIT_PER_SECOND) refused them",
            total.throttled
        );
    }
    println!(
        "RESULT scenario=rs_{} mode={} target_rate={} conns={n} accounts={} secs={elapsed:.2} responses={done} req_s={rps:.0} ok={} non2xx={} status_429={} errors={} p50_ms={:.2} p90_ms={:.2} p99_ms={:.2} p999_ms={:.2} max_ms={:.2} service_p99_ms={:.2} late={} bytes_per_resp={:.0} server_us_per_req={} {}",
        a.scenario.name(),
        if a.rate.is_some() { "open" } else { "closed" },
        a.rate.map_or("na".to_owned(), |r| format!("{r:.0}")),
        work.urls.len(),
        total.ok,
        total.non2xx,
        total.throttled,
        total.errors,
        total.lat.ms(0.5),
        total.lat.ms(0.9),
        total.lat.ms(0.99),
        total.lat.ms(0.999),
        total.lat.max_ms(),
        if a.rate.is_some() {
            total.service.ms(0.99)
        } else {
            total.lat.ms(0.99)
        },
        total.behind,
        total.bytes as f64 / done.max(1) as f64,
        us_per_req.map_or("na".to_owned(), |u| format!("{u:.0}")),
        cpu.kv()
    );
    Ok(())
}
