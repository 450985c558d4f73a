//! `token`: client_credentials at the token endpoint, one persistent HTTP/1.1 connection
//! per worker, client assertions signed before the timed window (one unique jti each).

use crate::stats::{CpuSnap, Latency, parse_duration};
use anyhow::{Context, bail};
use clap::Args;
use fapi_conformance::tpp::{ASSERTION_TYPE, Auth, enc, now, random};
use fapi_conformance::{Kit, Tpp};
use fapi_jose::SigningKey;
use reqwest::{Certificate, Identity};
use serde_json::{Value, json};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

#[derive(Args, Debug)]
pub struct TokenArgs {
    /// Sandbox TPP kit (`certs/sandbox/kit.json`): mTLS against its token endpoint alias.
    #[arg(long, required_unless_present = "target_http")]
    pub kit: Option<PathBuf>,
    /// Kit client to use, by auth method: private_key_jwt or tls_client_auth.
    #[arg(long, default_value = "private_key_jwt")]
    pub client: String,
    /// Plain-HTTP base URL/issuer instead of a kit (endpoints from its discovery).
    #[arg(long, conflicts_with = "kit", requires_all = ["client_id", "jwk"])]
    pub target_http: Option<String>,
    /// client_id with --target-http.
    #[arg(long)]
    pub client_id: Option<String>,
    /// Private JWK (EC P-256 or Ed25519) with --target-http.
    #[arg(long)]
    pub jwk: Option<PathBuf>,
    /// scope parameter (default: `accounts` with a kit, `api:read` with --target-http).
    #[arg(long)]
    pub scope: Option<String>,
    #[arg(long, value_parser = parse_duration, default_value = "20s")]
    pub duration: Duration,
    /// Persistent connections, one closed-loop worker each.
    #[arg(long, default_value_t = 64)]
    pub connections: usize,
    /// Assertions to pre-compute (default: --max-rate x duration).
    #[arg(long)]
    pub assertions: Option<usize>,
    /// Highest rate the pre-computed assertions must cover; past them the tool signs inline.
    #[arg(long, default_value_t = 30_000)]
    pub max_rate: usize,
    /// Assertion lifetime (exp - iat), seconds; the peer's scripts use 3600.
    #[arg(long, default_value_t = 3600)]
    pub assertion_ttl: i64,
    /// Report the CPU use of the server under test (comma-separated pids are summed).
    #[arg(long, value_delimiter = ',')]
    pub server_pid: Vec<u32>,
}

/// What one request needs: where, as whom, and how to connect.
struct Target {
    token_url: String,
    issuer: String,
    client_id: String,
    scope: String,
    /// `None` for tls_client_auth.
    key: Option<Arc<SigningKey>>,
    ttl: i64,
    /// CA and client identity PEMs for mTLS; `None` for plain HTTP.
    tls: Option<(Vec<u8>, Vec<u8>)>,
}

impl Target {
    async fn resolve(a: &TokenArgs) -> anyhow::Result<Self> {
        if let Some(base) = &a.target_http {
            let base = base.trim_end_matches('/');
            let disc: Value = reqwest::get(format!("{base}/.well-known/openid-configuration"))
                .await?
                .error_for_status()?
                .json()
                .await?;
            let field = |k: &str| -> anyhow::Result<String> {
                Ok(disc
                    .get(k)
                    .and_then(Value::as_str)
                    .with_context(|| format!("discovery has no {k}"))?
                    .to_owned())
            };
            let jwk_path = a.jwk.as_ref().context("--jwk is required")?;
            let jwk: Value = serde_json::from_slice(
                &std::fs::read(jwk_path)
                    .with_context(|| format!("reading {}", jwk_path.display()))?,
            )?;
            let key = SigningKey::from_private_jwk(&jwk).map_err(|e| anyhow::anyhow!("{e}"))?;
            return Ok(Self {
                token_url: field("token_endpoint")?,
                issuer: field("issuer")?,
                client_id: a.client_id.clone().context("--client-id is required")?,
                scope: a.scope.clone().unwrap_or_else(|| "api:read".into()),
                key: Some(Arc::new(key)),
                ttl: a.assertion_ttl,
                tls: None,
            });
        }
        let kit = Kit::load(a.kit.as_ref().context("--kit or --target-http")?)?;
        let kc = kit.client(&a.client)?;
        let tpp = Tpp::from_kit(&kit, kc).await?;
        let ca = std::fs::read(&kit.ca_cert)?;
        let mut identity = std::fs::read(&kc.cert)?;
        identity.extend(std::fs::read(&kc.key)?);
        Ok(Self {
            token_url: tpp.endpoint("token_endpoint"),
            issuer: tpp.issuer.clone(),
            client_id: tpp.client_id.clone(),
            scope: a.scope.clone().unwrap_or_else(|| "accounts".into()),
            key: match &tpp.auth {
                Auth::PrivateKeyJwt(k) => Some(k.clone()),
                Auth::TlsClientAuth => None,
            },
            ttl: a.assertion_ttl,
            tls: Some((ca, identity)),
        })
    }

    /// One HTTP/1.1 connection's client (the pool holds exactly one idle connection).
    fn connection(&self) -> anyhow::Result<reqwest::Client> {
        let mut b = reqwest::Client::builder()
            .http1_only()
            .pool_max_idle_per_host(1)
            .tcp_nodelay(true)
            .timeout(Duration::from_secs(30))
            .redirect(reqwest::redirect::Policy::none());
        if let Some((ca, id)) = &self.tls {
            b = b
                .tls_certs_only([Certificate::from_pem(ca)?])
                .identity(Identity::from_pem(id)?);
        }
        Ok(b.build()?)
    }

    /// A complete form body; a fresh assertion with this `jti` for private_key_jwt.
    fn body(&self, jti: &str) -> anyhow::Result<String> {
        let mut s = format!(
            "grant_type=client_credentials&scope={}&client_id={}",
            enc(&self.scope),
            enc(&self.client_id)
        );
        if let Some(k) = &self.key {
            let t = now();
            let claims = json!({"iss": self.client_id, "sub": self.client_id, "aud": self.issuer,
                "jti": jti, "iat": t, "exp": t + self.ttl});
            let a = k
                .sign_jwt(Some("JWT"), &claims)
                .map_err(|e| anyhow::anyhow!("signing: {e}"))?;
            s.push_str("&client_assertion_type=");
            s.push_str(&enc(ASSERTION_TYPE));
            s.push_str("&client_assertion=");
            s.push_str(&a);
        }
        Ok(s)
    }
}

/// Pre-computed bodies, each handed out once; past the end, bodies are signed inline.
struct Bodies {
    target: Arc<Target>,
    run: String,
    list: Vec<String>,
    next: AtomicUsize,
    inline: AtomicU64,
}

impl Bodies {
    fn precompute(target: Arc<Target>, n: usize) -> anyhow::Result<Self> {
        let run = random(6);
        if target.key.is_none() {
            // tls_client_auth: every body is the same, nothing to sign.
            let one = target.body("")?;
            return Ok(Self {
                target,
                run,
                list: vec![one],
                next: AtomicUsize::new(0),
                inline: AtomicU64::new(0),
            });
        }
        let threads = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1);
        let chunk = n.div_ceil(threads).max(1);
        let list = std::thread::scope(|s| -> anyhow::Result<Vec<String>> {
            let handles: Vec<_> = (0..threads)
                .map(|t| {
                    let (target, run) = (&target, &run);
                    s.spawn(move || -> anyhow::Result<Vec<String>> {
                        (t * chunk..((t + 1) * chunk).min(n))
                            .map(|i| target.body(&format!("{run}-{i}")))
                            .collect()
                    })
                })
                .collect();
            let mut out = Vec::with_capacity(n);
            for h in handles {
                out.extend(
                    h.join()
                        .map_err(|_| anyhow::anyhow!("generator thread panicked"))??,
                );
            }
            Ok(out)
        })?;
        Ok(Self {
            target,
            run,
            list,
            next: AtomicUsize::new(0),
            inline: AtomicU64::new(0),
        })
    }

    fn take(&self) -> anyhow::Result<String> {
        if self.target.key.is_none() {
            return Ok(self.list.first().cloned().unwrap_or_default());
        }
        let i = self.next.fetch_add(1, Ordering::Relaxed);
        match self.list.get(i) {
            Some(b) => Ok(b.clone()),
            None => {
                self.inline.fetch_add(1, Ordering::Relaxed);
                self.target.body(&format!("{}-{i}", self.run))
            }
        }
    }
}

struct Tally {
    lat: Latency,
    ok: u64,
    non2xx: u64,
    errors: u64,
    sample: Option<String>,
}

async fn send(
    c: &reqwest::Client,
    url: &str,
    body: String,
) -> reqwest::Result<(reqwest::StatusCode, String)> {
    let r = c
        .post(url)
        .header(
            reqwest::header::CONTENT_TYPE,
            "application/x-www-form-urlencoded",
        )
        .body(body)
        .send()
        .await?;
    let status = r.status();
    Ok((status, r.text().await?))
}

async fn worker(
    c: reqwest::Client,
    url: Arc<str>,
    bodies: Arc<Bodies>,
    deadline: Instant,
) -> anyhow::Result<Tally> {
    let mut t = Tally {
        lat: Latency::new()?,
        ok: 0,
        non2xx: 0,
        errors: 0,
        sample: None,
    };
    while Instant::now() < deadline {
        let body = bodies.take()?;
        let t0 = Instant::now();
        match send(&c, &url, body).await {
            Ok((status, text)) => {
                t.lat.record(t0.elapsed());
                if status.is_success() {
                    t.ok += 1;
                } else {
                    t.non2xx += 1;
                    if t.sample.is_none() {
                        t.sample = Some(format!(
                            "{status} {}",
                            text.chars().take(200).collect::<String>()
                        ));
                    }
                }
            }
            Err(e) => {
                t.errors += 1;
                if t.sample.is_none() {
                    t.sample = Some(format!("transport: {e}"));
                }
            }
        }
    }
    Ok(t)
}

pub async fn run(a: TokenArgs) -> anyhow::Result<()> {
    anyhow::ensure!(a.connections > 0, "--connections must be at least 1");
    let target = Arc::new(Target::resolve(&a).await?);
    let secs = a.duration.as_secs_f64();
    println!(
        "token: {} client_id={} scope={:?} auth={} over {}, {} connections, {:.0} s",
        target.token_url,
        target.client_id,
        target.scope,
        if target.key.is_some() {
            "private_key_jwt"
        } else {
            "tls_client_auth"
        },
        if target.tls.is_some() {
            "mTLS, HTTP/1.1"
        } else {
            "plain HTTP/1.1"
        },
        a.connections,
        secs
    );

    // Sanity: one request with its own assertion must succeed.
    let probe = target.connection()?;
    let (status, text) = send(
        &probe,
        &target.token_url,
        target.body(&format!("sanity-{}", random(9)))?,
    )
    .await?;
    if !status.is_success() {
        bail!("sanity request answered {status}: {text}");
    }
    let tok: Value = serde_json::from_str(&text).context("token response is not JSON")?;
    let at = tok
        .get("access_token")
        .and_then(Value::as_str)
        .unwrap_or("");
    let jwt_alg = fapi_jose::Unverified::parse(at)
        .ok()
        .and_then(|u| u.alg().ok())
        .map(|a| a.as_str());
    println!(
        "sanity: {status}, access token {}",
        jwt_alg.map_or("opaque".to_owned(), |a| format!("JWT {a}"))
    );
    drop(probe);

    let n = a
        .assertions
        .unwrap_or((a.max_rate as f64 * secs).ceil() as usize)
        + a.connections;
    let t = Instant::now();
    let bodies = Arc::new(Bodies::precompute(target.clone(), n)?);
    println!(
        "pre-computed {n} request bodies in {:.1} s",
        t.elapsed().as_secs_f64()
    );

    // Open every connection (TLS handshake included) before the clock starts.
    let url: Arc<str> = Arc::from(target.token_url.as_str());
    let mut clients = Vec::with_capacity(a.connections);
    for _ in 0..a.connections {
        clients.push(target.connection()?);
    }
    let warm = futures::future::join_all(clients.iter().map(|c| {
        let url = url.clone();
        let bodies = bodies.clone();
        async move {
            send(c, &url, bodies.take()?)
                .await
                .map_err(anyhow::Error::from)
        }
    }))
    .await;
    let warm_ok = warm
        .iter()
        .filter(|r| matches!(r, Ok((s, _)) if s.is_success()))
        .count();
    println!(
        "warm-up: {warm_ok}/{} connections answered 2xx",
        a.connections
    );

    let cpu0 = CpuSnap::take(&a.server_pid)?;
    let start = Instant::now();
    let deadline = start + a.duration;
    let handles: Vec<_> = clients
        .into_iter()
        .map(|c| tokio::spawn(worker(c, url.clone(), bodies.clone(), deadline)))
        .collect();
    let mut total = Tally {
        lat: Latency::new()?,
        ok: 0,
        non2xx: 0,
        errors: 0,
        sample: None,
    };
    for h in handles {
        let t = h.await??;
        total.lat.add(&t.lat)?;
        total.ok += t.ok;
        total.non2xx += t.non2xx;
        total.errors += t.errors;
        total.sample = total.sample.or(t.sample);
    }
    let elapsed = start.elapsed().as_secs_f64();
    let cpu = cpu0.since(&a.server_pid)?;
    let done = total.ok + total.non2xx;
    let rps = done as f64 / elapsed;
    let inline = bodies.inline.load(Ordering::Relaxed);

    println!(
        "{done} responses in {elapsed:.2} s = {rps:.0} req/s  (2xx {}, non-2xx {}, transport errors {})",
        total.ok, total.non2xx, total.errors
    );
    println!(
        "latency ms: p50 {:.2}  p90 {:.2}  p99 {:.2}  max {:.2}",
        total.lat.ms(0.5),
        total.lat.ms(0.9),
        total.lat.ms(0.99),
        total.lat.max_ms()
    );
    println!("{}", cpu.line());
    if let Some(s) = &total.sample {
        println!("first failure: {s}");
    }
    if inline > 0 {
        println!(
            "WARNING: pre-computed assertions exhausted, {inline} signed inline (raise --max-rate)"
        );
    }
    println!(
        "RESULT scenario=token conns={} secs={elapsed:.2} responses={done} req_s={rps:.0} ok={} non2xx={} errors={} p50_ms={:.2} p90_ms={:.2} p99_ms={:.2} max_ms={:.2} inline_signed={inline} {}",
        a.connections,
        total.ok,
        total.non2xx,
        total.errors,
        total.lat.ms(0.5),
        total.lat.ms(0.9),
        total.lat.ms(0.99),
        total.lat.max_ms(),
        cpu.kv()
    );
    Ok(())
}
