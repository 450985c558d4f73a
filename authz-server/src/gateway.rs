//! The gateway in front of every API (issue 9, ADR 0015): plans, rate limits and quotas,
//! and metering, on the AS back channel (PAR, token, userinfo, introspection,
//! revocation, registration) and every resource-server route. Discovery, JWKS, health
//! and the API documents are neither limited nor metered.
//!
//! One route layer ([`layer`]) per listener does three things:
//! 1. refuses callers whose *unauthenticated* budget is spent (per certificate
//!    thumbprint, or source address without a certificate; in process), so a flood of
//!    requests that never authenticate is cut off before any signature is checked;
//! 2. opens a per-request ticket (a task-local) that the authentication code fills in
//!    through [`admit`] / [`admit_oauth`] once it knows the client: the client's plan
//!    then decides (client rate, org rate, org daily quota; Redis in scaled mode, in
//!    process otherwise), and the answer carries `RateLimit-*` headers
//!    (draft-ietf-httpapi-ratelimit-headers-06) on success and refusal alike;
//! 3. records the call (client, org, plan, route template, method, status, latency,
//!    bytes) into a bounded queue that a background writer drains in multi-row inserts;
//!    a full queue drops the record and counts it (`wekeza_metering_dropped_total`).
//!
//! A request that never reached [`admit`] spends from its caller's unauthenticated
//! budget instead.

use crate::clock::Clock;
use crate::config::{Config, PlanConfig};
use crate::tls::TlsInfo;
use authz_core::{ErrorCode, OAuthError, OAuthResult};
use authz_store::rate_counters::{
    AdmitKeys, AdmitLimits, Decision, MemoryCounters, Rate, RateCounters, RedisCounters, Scope,
    ScopeState,
};
use authz_store::{ApiCall, ClientPlan, UsageStore};
use axum::body::HttpBody;
use axum::extract::{ConnectInfo, MatchedPath, Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, watch};

pub const RATELIMIT_LIMIT: HeaderName = HeaderName::from_static("ratelimit-limit");
pub const RATELIMIT_REMAINING: HeaderName = HeaderName::from_static("ratelimit-remaining");
pub const RATELIMIT_RESET: HeaderName = HeaderName::from_static("ratelimit-reset");
pub const RATELIMIT_POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");

/// How errors are shaped on a listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavour {
    /// RFC 6749 JSON (`temporarily_unavailable`, 429): the AS back channel.
    OAuth,
    /// The UK OB error schema: the resource server.
    OpenBanking,
}

/// What [`layer`] needs: the gateway, the metering label of the server and its errors.
#[derive(Clone)]
pub struct LayerCtx {
    pub gateway: Arc<Gateway>,
    /// `as` or `rs` in `api_calls.server`.
    pub server: &'static str,
    pub flavour: Flavour,
}

/// A refusal by the caller's plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub retry_after_secs: u64,
    pub message: String,
}

/// Per instance: the plans, the counters, the plan cache and the metering queue.
pub struct Gateway {
    enabled: bool,
    plans: BTreeMap<String, PlanConfig>,
    counters: Arc<dyn RateCounters>,
    unauthenticated: Rate,
    anon: Mutex<HashMap<String, i64>>,
    epoch: Instant,
    usage: Arc<dyn UsageStore>,
    plan_cache: RwLock<HashMap<String, (Instant, ClientPlan)>>,
    plan_ttl: Duration,
    meter: Option<mpsc::Sender<ApiCall>>,
    dropped: AtomicU64,
    retention_ms: i64,
    clock: Arc<dyn Clock>,
}

const ANON_SWEEP_AT: usize = 50_000;
const PLAN_CACHE_MAX: usize = 10_000;

impl Gateway {
    /// Build the gateway of one process and start its background work (metering writer,
    /// retention job), which ends when `stop` turns true (the writer flushes first).
    pub async fn start(
        cfg: &Config,
        usage: Arc<dyn UsageStore>,
        clock: Arc<dyn Clock>,
        stop: watch::Receiver<bool>,
    ) -> anyhow::Result<(Arc<Self>, Vec<tokio::task::JoinHandle<()>>)> {
        let counters: Arc<dyn RateCounters> = match &cfg.redis_url {
            Some(url) => Arc::new(
                RedisCounters::connect(url, &cfg.redis_key_prefix)
                    .await
                    .map_err(|e| anyhow::anyhow!("redis (rate limits): {e}"))?,
            ),
            None => Arc::new(MemoryCounters::default()),
        };
        let mut tasks = Vec::new();
        let meter = if cfg.metering_enabled {
            let (tx, rx) = mpsc::channel(cfg.metering_queue_capacity);
            tasks.push(tokio::spawn(writer(
                rx,
                usage.clone(),
                cfg.metering_batch_size,
                Duration::from_millis(cfg.metering_flush_ms),
                stop.clone(),
            )));
            Some(tx)
        } else {
            None
        };
        let gw = Arc::new(Self {
            enabled: cfg.gateway_enabled,
            plans: cfg.plans.clone(),
            counters,
            unauthenticated: Rate {
                per_second: cfg.gateway_unauthenticated_per_second,
                burst: cfg.gateway_unauthenticated_burst,
            },
            anon: Mutex::new(HashMap::new()),
            epoch: Instant::now(),
            usage,
            plan_cache: RwLock::new(HashMap::new()),
            plan_ttl: Duration::from_secs(cfg.plan_cache_secs),
            meter,
            dropped: AtomicU64::new(0),
            retention_ms: i64::from(cfg.metering_retention_days) * 86_400_000,
            clock,
        });
        if cfg.metering_enabled {
            tasks.push(tokio::spawn(retention_loop(gw.clone(), stop)));
        }
        Ok((gw, tasks))
    }

    /// Metering records dropped because the queue was full (or a batch failed).
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Delete metered calls older than the retention period (by the platform clock);
    /// returns how many. Runs hourly on its own; public for operators and tests.
    pub async fn run_retention(&self) -> authz_store::StoreResult<u64> {
        let before = self.clock.now_ms() - self.retention_ms;
        self.usage.delete_api_calls_before(before).await
    }

    /// The configured plan of this name (the sandbox plan for an unknown name).
    pub fn plan(&self, name: &str) -> Option<&PlanConfig> {
        self.plans
            .get(name)
            .or_else(|| self.plans.get(authz_store::DEFAULT_PLAN))
    }

    /// The client's plan row (cached per instance), or the default.
    pub async fn client_plan(&self, client_id: &str) -> ClientPlan {
        if !self.plan_ttl.is_zero()
            && let Ok(c) = self.plan_cache.read()
            && let Some((at, p)) = c.get(client_id)
            && at.elapsed() < self.plan_ttl
        {
            return p.clone();
        }
        let p = match self.usage.find_client_plan(client_id).await {
            Ok(Some(p)) => p,
            Ok(None) => ClientPlan::default_for(client_id),
            Err(e) => {
                // Fail open to the most restrictive default rather than refusing traffic.
                tracing::warn!(error = %e, "client plan lookup failed; using the sandbox plan");
                return ClientPlan::default_for(client_id);
            }
        };
        if !self.plan_ttl.is_zero()
            && let Ok(mut c) = self.plan_cache.write()
        {
            if c.len() >= PLAN_CACHE_MAX {
                c.clear();
            }
            c.insert(client_id.to_owned(), (Instant::now(), p.clone()));
        }
        p
    }

    /// Forget a cached plan (after `set_client_plan` on this instance).
    pub fn forget_plan(&self, client_id: &str) {
        if let Ok(mut c) = self.plan_cache.write() {
            c.remove(client_id);
        }
    }

    async fn decide(&self, p: &ClientPlan) -> Option<Decision> {
        let plan = self.plan(&p.plan)?;
        let now_ms = self.clock.now_ms();
        let day = now_ms.div_euclid(86_400_000);
        let org = &p.org_id;
        let client_key = format!("{{{org}}}:c:{}", p.client_id);
        let org_key = format!("{{{org}}}:o");
        let quota_key = format!("{{{org}}}:q:{day}");
        let limits = AdmitLimits {
            client: Rate {
                per_second: plan.client_rate_per_second,
                burst: plan.client_burst,
            },
            org: Rate {
                per_second: plan.org_rate_per_second,
                burst: plan.org_burst,
            },
            daily_quota: plan.org_daily_quota,
            quota_reset_ms: (day + 1) * 86_400_000 - now_ms,
        };
        let keys = AdmitKeys {
            client: &client_key,
            org: &org_key,
            quota: &quota_key,
        };
        match self.counters.admit(keys, &limits).await {
            Ok(d) => Some(d),
            Err(e) => {
                // A counter outage must not become an API outage: admit, and say so.
                tracing::warn!(error = %e, "rate-limit counters unavailable; request admitted");
                None
            }
        }
    }

    fn anon_now(&self) -> i64 {
        i64::try_from(self.epoch.elapsed().as_micros()).unwrap_or(i64::MAX)
    }

    /// Milliseconds until `caller` may make another unauthenticated request, if its
    /// budget is spent now (nothing is spent here).
    fn anon_blocked(&self, caller: &str) -> Option<i64> {
        let r = self.unauthenticated;
        if !self.enabled || r.per_second <= 0.0 || r.burst == 0 {
            return None;
        }
        let now = self.anon_now();
        let (t, tau) = anon_params(r);
        let map = self.anon.lock().unwrap_or_else(|e| e.into_inner());
        let tat = map.get(caller).copied().unwrap_or(now).max(now);
        let diff = tat + t - now;
        (diff > tau).then(|| (diff - tau + 999) / 1000)
    }

    /// Spend one unauthenticated request of `caller`.
    fn anon_spend(&self, caller: &str) {
        let r = self.unauthenticated;
        if !self.enabled || r.per_second <= 0.0 || r.burst == 0 {
            return;
        }
        let now = self.anon_now();
        let (t, tau) = anon_params(r);
        let mut map = self.anon.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() >= ANON_SWEEP_AT {
            map.retain(|_, tat| *tat > now);
        }
        let tat = map.get(caller).copied().unwrap_or(now).max(now);
        // Never more than one burst ahead: a flood keeps being refused, not queued.
        map.insert(caller.to_owned(), (tat + t).min(now + tau + t));
    }

    fn record(&self, call: ApiCall) {
        let Some(tx) = &self.meter else { return };
        if tx.try_send(call).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
            if crate::metrics::enabled() {
                metrics::counter!("wekeza_metering_dropped_total").increment(1);
            }
        }
    }
}

fn anon_params(r: Rate) -> (i64, i64) {
    #[allow(clippy::cast_possible_truncation)]
    let t = (1_000_000.0 / r.per_second).clamp(1.0, 1e13) as i64;
    (t, t.saturating_mul(i64::from(r.burst)))
}

/// What the authentication code learnt about the request, for the layer.
struct Admitted {
    plan: ClientPlan,
    decision: Option<Decision>,
    /// `RateLimit-Policy` of the plan.
    policy: String,
}

/// `RateLimit-Policy` (draft -06): every limited scope as `limit;w=seconds`, the window
/// being the time a full burst takes to come back at the sustained rate.
pub fn policy(plan: &PlanConfig) -> String {
    let mut items = Vec::new();
    for (rate, burst) in [
        (plan.client_rate_per_second, plan.client_burst),
        (plan.org_rate_per_second, plan.org_burst),
    ] {
        if rate > 0.0 && burst > 0 {
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
            let w = (f64::from(burst) / rate).ceil().max(1.0) as u64;
            items.push(format!("{burst};w={w}"));
        }
    }
    if plan.org_daily_quota > 0 {
        items.push(format!("{};w=86400", plan.org_daily_quota));
    }
    items.join(", ")
}

struct Ticket {
    gateway: Arc<Gateway>,
    admitted: Mutex<Option<Admitted>>,
}

tokio::task_local! {
    static TICKET: Arc<Ticket>;
}

/// The client is known (its token or its client authentication was verified): apply its
/// plan. Outside a gateway-layered request (unit tests, other listeners) this admits.
/// Called more than once in a request, only the first call counts.
pub async fn admit(client_id: &str) -> Result<(), Refusal> {
    let Ok(t) = TICKET.try_with(Arc::clone) else {
        return Ok(());
    };
    if t.admitted
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .is_some()
    {
        return Ok(());
    }
    let gw = &t.gateway;
    let plan = gw.client_plan(client_id).await;
    let decision = if gw.enabled {
        gw.decide(&plan).await
    } else {
        None
    };
    let policy = gw.plan(&plan.plan).map(policy).unwrap_or_default();
    let refusal = decision.and_then(|d| d.refused).map(|(scope, ms)| {
        let what = match scope {
            Scope::Client => "this client's request rate",
            Scope::Org => "the organisation's request rate",
            Scope::Quota => "the organisation's daily quota",
        };
        tracing::info!(client_id, org_id = %plan.org_id, plan = %plan.plan, ?scope, "throttled");
        Refusal {
            retry_after_secs: retry_secs(ms),
            message: format!("{what} on the {} plan is exhausted", plan.plan),
        }
    });
    *t.admitted.lock().unwrap_or_else(|e| e.into_inner()) = Some(Admitted {
        plan,
        decision,
        policy,
    });
    refusal.map_or(Ok(()), Err)
}

/// [`admit`] for the authorization server's endpoints: an OAuth error on refusal.
pub async fn admit_oauth(client_id: &str) -> OAuthResult<()> {
    admit(client_id)
        .await
        .map_err(|r| OAuthError::new(ErrorCode::RateLimited, r.message))
}

fn retry_secs(ms: i64) -> u64 {
    u64::try_from((ms + 999) / 1000).unwrap_or(1).max(1)
}

/// Routes that are never limited or metered even when layered (API documents).
fn exempt(route: &str) -> bool {
    route.ends_with("/openapi.json") || route.contains("/docs")
}

/// `x5t:<thumbprint>` of the connection's certificate, else `ip:<address>`.
fn caller_key(req: &Request) -> String {
    match req.extensions().get::<ConnectInfo<TlsInfo>>() {
        Some(ConnectInfo(i)) => match &i.client_cert {
            Some(c) => format!("x5t:{}", fapi_jose::x5t_s256(c.as_ref())),
            None => format!("ip:{}", i.remote.ip()),
        },
        None => "ip:unknown".to_owned(),
    }
}

fn body_bytes(h: &HeaderMap, body: &axum::body::Body) -> i64 {
    let hint = body.size_hint();
    let declared = h
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let n = declared.or(hint.exact()).unwrap_or_else(|| hint.lower());
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// The route layer (see the module documentation).
pub async fn layer(State(ctx): State<LayerCtx>, req: Request, next: Next) -> Response {
    let Some(route) = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
    else {
        return next.run(req).await;
    };
    // Nothing to limit or meter: out of the way entirely (the benchmark's baseline).
    if exempt(&route) || (!ctx.gateway.enabled && ctx.gateway.meter.is_none()) {
        return next.run(req).await;
    }
    let gw = ctx.gateway.clone();
    let started = Instant::now();
    let at_ms = gw.clock.now_ms();
    let method = req.method().as_str().to_owned();
    let req_bytes = body_bytes(req.headers(), req.body());
    let caller = caller_key(&req);
    let interaction = req.headers().get(&crate::metrics::INTERACTION_ID).cloned();

    let (resp, admitted) = if let Some(ms) = gw.anon_blocked(&caller) {
        tracing::info!(%caller, route = %route, "unauthenticated requests throttled");
        let msg = "too many requests that did not authenticate; slow down".to_owned();
        let mut r = refusal_response(ctx.flavour, retry_secs(ms), msg);
        if ctx.flavour == Flavour::OpenBanking {
            echo_interaction_id(&mut r, interaction);
        }
        (r, None)
    } else {
        let ticket = Arc::new(Ticket {
            gateway: gw.clone(),
            admitted: Mutex::new(None),
        });
        let resp = TICKET.scope(ticket.clone(), next.run(req)).await;
        let admitted = ticket
            .admitted
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if admitted.is_none() {
            gw.anon_spend(&caller);
        }
        (resp, admitted)
    };
    let mut resp = resp;
    if let Some(a) = &admitted
        && let Some(d) = &a.decision
    {
        set_ratelimit_headers(resp.headers_mut(), d, &a.policy);
    }
    let status = resp.status().as_u16();
    let resp_bytes = body_bytes(&HeaderMap::new(), resp.body());
    let (client_id, org_id, plan) = match admitted {
        Some(a) => (
            Some(a.plan.client_id),
            Some(a.plan.org_id),
            Some(a.plan.plan),
        ),
        None => (None, None, None),
    };
    gw.record(ApiCall {
        at_ms,
        server: ctx.server.to_owned(),
        client_id,
        org_id,
        plan,
        method,
        endpoint: route,
        status: i64::from(status),
        latency_us: i64::try_from(started.elapsed().as_micros()).unwrap_or(i64::MAX),
        req_bytes,
        resp_bytes,
    });
    resp
}

fn echo_interaction_id(resp: &mut Response, supplied: Option<HeaderValue>) {
    let id = supplied
        .filter(|v| {
            v.to_str()
                .ok()
                .is_some_and(|s| uuid::Uuid::parse_str(s).is_ok())
        })
        .or_else(|| HeaderValue::from_str(&uuid::Uuid::new_v4().to_string()).ok());
    if let Some(v) = id {
        resp.headers_mut().insert(crate::metrics::INTERACTION_ID, v);
    }
}

/// A 429 in the listener's error shape, with `Retry-After`.
pub fn refusal_response(flavour: Flavour, retry_after: u64, message: String) -> Response {
    let mut r = match flavour {
        Flavour::OAuth => {
            crate::http::ApiError(OAuthError::new(ErrorCode::RateLimited, message)).into_response()
        }
        Flavour::OpenBanking => {
            let mut e = resource_server::error::ObError::too_many_requests(retry_after);
            e.message = message.clone();
            if let Some(d) = e.errors.first_mut() {
                d.message = message;
            }
            e.into_response()
        }
    };
    *r.status_mut() = StatusCode::TOO_MANY_REQUESTS;
    r.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(retry_after.max(1)));
    r
}

/// draft-ietf-httpapi-ratelimit-headers-06: `RateLimit-Limit`/`-Remaining`/`-Reset` of
/// the scope closest to refusing (the refusing one on a 429) and `RateLimit-Policy`
/// listing every scope as `limit;w=window-seconds`. A 429 also gets `Retry-After`.
fn set_ratelimit_headers(h: &mut HeaderMap, d: &Decision, policy: &str) {
    let scopes: [(Scope, ScopeState); 3] = [
        (Scope::Client, d.client),
        (Scope::Org, d.org),
        (Scope::Quota, d.quota),
    ];
    let limited = scopes.iter().filter(|(_, s)| s.limit > 0);
    let shown = match d.refused {
        Some((scope, _)) => scopes.iter().find(|(s, _)| *s == scope),
        None => limited.min_by_key(|(_, s)| s.remaining),
    };
    let Some((_, s)) = shown else { return };
    h.insert(RATELIMIT_LIMIT, HeaderValue::from(s.limit));
    h.insert(RATELIMIT_REMAINING, HeaderValue::from(s.remaining));
    h.insert(RATELIMIT_RESET, HeaderValue::from(retry_secs(s.reset_ms)));
    if let Ok(v) = HeaderValue::from_str(policy)
        && !policy.is_empty()
    {
        h.insert(RATELIMIT_POLICY, v);
    }
    if let Some((_, ms)) = d.refused {
        h.insert(header::RETRY_AFTER, HeaderValue::from(retry_secs(ms)));
    }
}

/// Drains the metering queue into multi-row inserts: a batch is written when full or
/// `flush` after its first record; on stop, whatever is queued is written.
async fn writer(
    mut rx: mpsc::Receiver<ApiCall>,
    usage: Arc<dyn UsageStore>,
    batch: usize,
    flush: Duration,
    mut stop: watch::Receiver<bool>,
) {
    let mut buf: Vec<ApiCall> = Vec::with_capacity(batch);
    let mut deadline = tokio::time::Instant::now() + flush;
    loop {
        tokio::select! {
            m = rx.recv() => match m {
                Some(c) => {
                    if buf.is_empty() {
                        deadline = tokio::time::Instant::now() + flush;
                    }
                    buf.push(c);
                    if buf.len() >= batch {
                        write(&*usage, &mut buf).await;
                    }
                }
                None => break,
            },
            _ = tokio::time::sleep_until(deadline), if !buf.is_empty() => {
                write(&*usage, &mut buf).await;
            }
            _ = stopped(&mut stop) => break,
        }
    }
    while let Ok(c) = rx.try_recv() {
        buf.push(c);
        if buf.len() >= batch {
            write(&*usage, &mut buf).await;
        }
    }
    write(&*usage, &mut buf).await;
}

/// Resolves once `stop` is true (the watch guard never lives across an await).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|v| *v).await;
}

async fn write(usage: &dyn UsageStore, buf: &mut Vec<ApiCall>) {
    if buf.is_empty() {
        return;
    }
    if let Err(e) = usage.insert_api_calls(buf).await {
        tracing::warn!(error = %e, rows = buf.len(), "metering batch lost");
        if crate::metrics::enabled() {
            metrics::counter!("wekeza_metering_dropped_total").increment(buf.len() as u64);
        }
    }
    buf.clear();
}

/// Hourly retention (and once at start).
async fn retention_loop(gw: Arc<Gateway>, mut stop: watch::Receiver<bool>) {
    loop {
        match gw.run_retention().await {
            Ok(0) => {}
            Ok(n) => tracing::info!(rows = n, "old metered calls deleted"),
            Err(e) => tracing::warn!(error = %e, "metering retention failed"),
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(3600)) => {}
            _ = stopped(&mut stop) => return,
        }
    }
}

/// A resource-server token verifier that applies the caller's plan once the token is
/// verified (so an invalid token never spends a client's allowance).
pub struct GatedVerifier(pub Arc<dyn resource_server::TokenVerifier>);

fn throttled(r: Refusal) -> resource_server::AuthError {
    resource_server::AuthError::Throttled(r.retry_after_secs, r.message)
}

#[async_trait::async_trait]
impl resource_server::TokenVerifier for GatedVerifier {
    async fn verify(
        &self,
        authorization: &str,
        cert: Option<&[u8]>,
        dpop: Option<&str>,
        method: &str,
        url: &str,
    ) -> Result<resource_server::Grant, resource_server::AuthError> {
        let g = self
            .0
            .verify(authorization, cert, dpop, method, url)
            .await?;
        admit(&g.client_id).await.map_err(throttled)?;
        Ok(g)
    }

    async fn verify_client(
        &self,
        authorization: &str,
        cert: Option<&[u8]>,
        dpop: Option<&str>,
        method: &str,
        url: &str,
    ) -> Result<resource_server::ClientGrant, resource_server::AuthError> {
        let g = self
            .0
            .verify_client(authorization, cert, dpop, method, url)
            .await?;
        admit(&g.client_id).await.map_err(throttled)?;
        Ok(g)
    }

    async fn verify_client_scope(
        &self,
        authorization: &str,
        cert: Option<&[u8]>,
        dpop: Option<&str>,
        method: &str,
        url: &str,
        scope: &str,
    ) -> Result<resource_server::ClientGrant, resource_server::AuthError> {
        let g = self
            .0
            .verify_client_scope(authorization, cert, dpop, method, url, scope)
            .await?;
        admit(&g.client_id).await.map_err(throttled)?;
        Ok(g)
    }

    async fn verify_customer_scope(
        &self,
        authorization: &str,
        cert: Option<&[u8]>,
        dpop: Option<&str>,
        method: &str,
        url: &str,
        scope: &str,
    ) -> Result<resource_server::CustomerToken, resource_server::AuthError> {
        let t = self
            .0
            .verify_customer_scope(authorization, cert, dpop, method, url, scope)
            .await?;
        admit(&t.client_id).await.map_err(throttled)?;
        Ok(t)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call() -> ApiCall {
        ApiCall {
            at_ms: 0,
            server: "rs".into(),
            client_id: None,
            org_id: None,
            plan: None,
            method: "GET".into(),
            endpoint: "/x".into(),
            status: 200,
            latency_us: 1,
            req_bytes: 0,
            resp_bytes: 0,
        }
    }

    #[tokio::test]
    #[allow(clippy::unwrap_used)]
    async fn a_full_metering_queue_drops_and_counts_and_the_writer_batches() {
        let sql = authz_store::SqlStore::connect("sqlite::memory:", None)
            .await
            .unwrap();
        let usage: Arc<dyn UsageStore> = Arc::new(sql);
        let (tx, rx) = mpsc::channel(2);
        let gw = Gateway {
            enabled: true,
            plans: crate::config::default_plans(),
            counters: Arc::new(MemoryCounters::default()),
            unauthenticated: Rate::UNLIMITED,
            anon: Mutex::new(HashMap::new()),
            epoch: Instant::now(),
            usage: usage.clone(),
            plan_cache: RwLock::new(HashMap::new()),
            plan_ttl: Duration::ZERO,
            meter: Some(tx),
            dropped: AtomicU64::new(0),
            retention_ms: 1,
            clock: Arc::new(crate::clock::SystemClock),
        };
        // Nobody drains yet: two fit, the third is dropped and counted.
        for _ in 0..3 {
            gw.record(call());
        }
        assert_eq!(gw.dropped(), 1);
        // The writer stores what was queued when it is told to stop.
        let (stop_tx, stop) = watch::channel(false);
        let w = tokio::spawn(writer(rx, usage.clone(), 10, Duration::from_secs(60), stop));
        let _ = stop_tx.send(true);
        w.await.unwrap();
        let all = filter_all();
        assert_eq!(usage.list_api_calls(&all, 10).await.unwrap().len(), 2);
    }

    fn filter_all() -> authz_store::UsageFilter {
        authz_store::UsageFilter {
            org_id: None,
            client_id: None,
            from_ms: i64::MIN / 2,
            to_ms: i64::MAX / 2,
        }
    }

    #[test]
    fn headers_show_the_scope_closest_to_refusal() {
        let d = Decision {
            refused: None,
            client: ScopeState {
                limit: 10,
                remaining: 7,
                reset_ms: 300,
            },
            org: ScopeState {
                limit: 20,
                remaining: 2,
                reset_ms: 1_800,
            },
            quota: ScopeState {
                limit: 1000,
                remaining: 990,
                reset_ms: 3_600_000,
            },
        };
        let mut h = HeaderMap::new();
        set_ratelimit_headers(&mut h, &d, "10;w=1, 20;w=2, 1000;w=86400");
        assert_eq!(h[RATELIMIT_LIMIT], "20");
        assert_eq!(h[RATELIMIT_REMAINING], "2");
        assert_eq!(h[RATELIMIT_RESET], "2");
        assert_eq!(h[RATELIMIT_POLICY], "10;w=1, 20;w=2, 1000;w=86400");
        assert!(h.get(header::RETRY_AFTER).is_none());
        let refused = Decision {
            refused: Some((Scope::Quota, 3_600_000)),
            ..d
        };
        let mut h = HeaderMap::new();
        set_ratelimit_headers(&mut h, &refused, "");
        assert_eq!(h[RATELIMIT_LIMIT], "1000");
        assert_eq!(h[header::RETRY_AFTER], "3600");
        let plan = PlanConfig {
            client_rate_per_second: 0.5,
            client_burst: 3,
            org_rate_per_second: 0.0,
            org_burst: 0,
            org_daily_quota: 500,
            price_per_1000_minor: 0,
        };
        assert_eq!(policy(&plan), "3;w=6, 500;w=86400");
    }
}
