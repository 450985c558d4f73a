//! Event notification delivery: Security Event Tokens (RFC 8417), the callback address
//! policy, and the dispatcher that drains the outbox.
//!
//! * [`SetSigner`] turns an outbox event into a signed SET with the platform's events key
//!   (its public half is in the authorization server's JWKS; ADR 0012).
//! * [`CallbackPolicy`] refuses callbacks on loopback, private, link-local and other
//!   non-public addresses unless the deployment allows them. It is applied when a
//!   subscription is written and again on every delivery: the HTTP client resolves names
//!   through [`PolicyResolver`], which hands the connector only the addresses it checked,
//!   so a name that re-resolves to an internal address (DNS rebinding) is never reached.
//! * [`spawn_dispatcher`] claims due deliveries (a lease per delivery; `SKIP LOCKED` on
//!   PostgreSQL), POSTs them as `application/jwt`, and records each attempt: 2xx =
//!   delivered; otherwise exponential back-off with jitter until the retry horizon, then
//!   dead-letter. Events about anything but a consent itself are suppressed once that
//!   consent is no longer authorised.

use authz_store::{
    AttemptResult, ClaimedDelivery, ConsentStatus, DeliveryState, EventRecord, EventStore,
};
use fapi_jose::SigningKey;
use rand::Rng;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};
use time::OffsetDateTime;
use tokio::sync::watch;

/// Media type of a SET in a callback (UK OB real-time notification).
pub const SET_CONTENT_TYPE: &str = "application/jwt";
/// RFC 8417 §2.3 explicit typing.
pub const SET_TYP: &str = "secevent+jwt";

/// Signs outbox events as SETs.
pub struct SetSigner {
    pub key: Arc<SigningKey>,
    /// `iss`: the platform (the authorization server's issuer).
    pub issuer: String,
    /// The resource server's base URL: `sub` and the resource links are under it.
    pub rs_base: String,
}

impl SetSigner {
    /// The SET for `event`, issued at `iat` (unix seconds). The `jti` is the event id,
    /// the same on every attempt, so receivers can de-duplicate; callers pass the event's
    /// `created_at` as `iat`, so a retry carries the same claims as the first attempt.
    pub fn sign(&self, event: &EventRecord, iat: i64) -> Result<String, fapi_jose::JoseError> {
        let e = &event.event;
        let link = format!("{}{}", self.rs_base, e.link);
        let mut body = serde_json::Map::new();
        body.insert(
            "subject".into(),
            serde_json::json!({
                "subject_type": "http://openbanking.org.uk/rid_http://openbanking.org.uk/rty",
                "http://openbanking.org.uk/rid": e.rid,
                "http://openbanking.org.uk/rty": e.rty,
                "http://openbanking.org.uk/rlk": [{"version": "v4.0", "link": link}],
            }),
        );
        if let serde_json::Value::Object(extra) = &e.detail {
            for (k, v) in extra {
                body.insert(k.clone(), v.clone());
            }
        }
        let mut events = serde_json::Map::new();
        events.insert(e.event_type.clone(), serde_json::Value::Object(body));
        let claims = serde_json::json!({
            "iss": self.issuer,
            "iat": iat,
            "jti": event.id,
            "aud": e.client_id,
            "sub": link,
            "txn": e.txn,
            "toe": e.toe,
            "events": events,
        });
        self.key.sign_jwt(Some(SET_TYP), &claims)
    }
}

/// May this event still go to its TPP? Events about a consent itself (its authorisation,
/// revocation, expiry) always do; events about anything the consent covers only while
/// it is authorised, or consumed (a payment consent is consumed by its payment, whose
/// later status changes still belong to the TPP). Revoked, expired or rejected: no.
pub fn deliverable(event: &EventRecord, consent_status: Option<ConsentStatus>) -> bool {
    match &event.event.consent_id {
        None => true,
        Some(c) if *c == event.event.rid => true,
        Some(_) => matches!(
            consent_status,
            Some(ConsentStatus::Authorised | ConsentStatus::Consumed)
        ),
    }
}

// ---- callback address policy ----------------------------------------------------------

/// Which callback addresses may be called.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CallbackPolicy {
    /// Allow loopback, private, link-local and other internal addresses (sandbox only).
    pub allow_private: bool,
}

/// A publicly routable unicast address. Everything an attacker could use to reach the
/// platform's own network is not: loopback, RFC 1918, CGNAT, link-local (cloud metadata
/// at 169.254.169.254), unique-local, unspecified, multicast, broadcast, documentation
/// and benchmarking ranges, and IPv4 inside IPv6 (mapped / compatible / NAT64 prefixes).
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            !(v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_multicast()
                || v4.is_broadcast()
                || v4.is_documentation()
                || o[0] == 0
                || (o[0] == 100 && (64..128).contains(&o[1]))
                || (o[0] == 192 && o[1] == 0 && o[2] == 0)
                || (o[0] == 198 && (o[1] == 18 || o[1] == 19))
                || o[0] >= 240)
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public(IpAddr::V4(v4));
            }
            let s = v6.segments();
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (s[0] & 0xfe00) == 0xfc00
                || (s[0] & 0xffc0) == 0xfe80
                || (s[0] == 0x2001 && s[1] == 0x0db8)
                || (s[0] == 0x64 && s[1] == 0xff9b)
                || s[..6].iter().all(|x| *x == 0))
        }
    }
}

impl CallbackPolicy {
    pub fn allows(&self, ip: IpAddr) -> bool {
        self.allow_private || is_public(ip)
    }

    /// Check a callback URL when a subscription is written: `https`, a host, no
    /// credentials or fragment, and (unless private addresses are allowed) every address
    /// the host resolves to is public. The answer is a message for the TPP.
    pub async fn check_url(&self, raw: &str) -> Result<url::Url, String> {
        let url = url::Url::parse(raw).map_err(|_| "CallbackUrl is not a URL".to_owned())?;
        if url.scheme() != "https" {
            return Err("CallbackUrl must use https".into());
        }
        if !url.username().is_empty() || url.password().is_some() || url.fragment().is_some() {
            return Err("CallbackUrl must not carry credentials or a fragment".into());
        }
        let host = match url.host() {
            Some(url::Host::Domain(d)) => d.to_owned(),
            Some(url::Host::Ipv4(ip)) => return self.literal(url.clone(), IpAddr::V4(ip)),
            Some(url::Host::Ipv6(ip)) => return self.literal(url.clone(), IpAddr::V6(ip)),
            None => return Err("CallbackUrl has no host".into()),
        };
        if self.allow_private {
            return Ok(url);
        }
        let port = url.port_or_known_default().unwrap_or(443);
        let addrs: Vec<SocketAddr> = tokio::time::timeout(
            Duration::from_secs(5),
            tokio::net::lookup_host((host.as_str(), port)),
        )
        .await
        .map_err(|_| "CallbackUrl host did not resolve in time".to_owned())?
        .map_err(|_| "CallbackUrl host does not resolve".to_owned())?
        .collect();
        if addrs.is_empty() || addrs.iter().any(|a| !self.allows(a.ip())) {
            return Err("CallbackUrl must resolve to public addresses only".into());
        }
        Ok(url)
    }

    fn literal(&self, url: url::Url, ip: IpAddr) -> Result<url::Url, String> {
        if self.allows(ip) {
            Ok(url)
        } else {
            Err("CallbackUrl must not point at a loopback, private or link-local address".into())
        }
    }
}

/// The delivery client's resolver: resolves, then keeps only the addresses the policy
/// allows. The connector connects to what this returns, never to a second lookup.
pub struct PolicyResolver(pub CallbackPolicy);

impl reqwest::dns::Resolve for PolicyResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let policy = self.0;
        Box::pin(async move {
            let addrs: Vec<SocketAddr> = tokio::net::lookup_host((name.as_str(), 0))
                .await?
                .filter(|a| policy.allows(a.ip()))
                .collect();
            if addrs.is_empty() {
                return Err("the callback host has no address the policy allows".into());
            }
            let it: reqwest::dns::Addrs = Box::new(addrs.into_iter());
            Ok(it)
        })
    }
}

// ---- dispatcher -----------------------------------------------------------------------

#[derive(Debug, Clone)]
pub struct DispatcherConfig {
    pub policy: CallbackPolicy,
    /// Give up (dead-letter) when the next attempt would fall this long after the first.
    pub retry_horizon_ms: i64,
    /// First back-off; doubled per attempt, capped at `retry_max_ms`, then jittered.
    pub retry_base_ms: i64,
    pub retry_max_ms: i64,
    /// Whole-request timeout of one attempt.
    pub timeout_ms: u64,
    /// How often the outbox is looked at when idle.
    pub poll_interval_ms: u64,
    /// Deliveries claimed per round.
    pub batch: i64,
    /// Extra trust anchors for callback servers (PEM), e.g. the sandbox CA.
    pub extra_roots_pem: Vec<Vec<u8>>,
}

impl Default for DispatcherConfig {
    fn default() -> Self {
        Self {
            policy: CallbackPolicy {
                allow_private: false,
            },
            retry_horizon_ms: 24 * 3600 * 1000,
            retry_base_ms: 1000,
            retry_max_ms: 3600 * 1000,
            timeout_ms: 10_000,
            poll_interval_ms: 200,
            batch: 32,
            extra_roots_pem: Vec::new(),
        }
    }
}

impl DispatcherConfig {
    /// A lease outlives the attempt it covers, so a live dispatcher never loses it.
    fn lease_ms(&self) -> i64 {
        self.timeout_ms as i64 * 2 + 5_000
    }

    /// Delay before attempt `attempts + 1`: base·2^(attempts-1), capped, times a random
    /// factor in [0.5, 1] so receivers coming back are not hit by every sender at once.
    pub fn backoff_ms(&self, attempts: i64) -> i64 {
        let exp = attempts.clamp(1, 40) - 1;
        let raw = self
            .retry_base_ms
            .saturating_mul(1_i64 << exp.min(30))
            .min(self.retry_max_ms);
        let f: f64 = rand::rng().random_range(0.5..=1.0);
        ((raw as f64) * f) as i64
    }
}

/// Milliseconds on the platform clock (which tests may have moved).
pub fn now_ms(clock: &dyn crate::Clock) -> i64 {
    let sys = OffsetDateTime::now_utc();
    let offset_s = clock.now().unix_timestamp() - sys.unix_timestamp();
    (sys.unix_timestamp_nanos() / 1_000_000) as i64 + offset_s * 1000
}

/// Wall-clock milliseconds, the time base of delivery leases. Not the platform clock:
/// that one may be moved (tests step it forward 30 s for a fresh TOTP), and a lease that
/// ran out on it while its delivery was still in flight was claimed again and the event
/// POSTed twice. Every dispatcher, in any process, shares this one.
pub fn lease_now_ms() -> i64 {
    (OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64
}

/// The HTTP client deliveries use: no redirects (a redirect could lead anywhere), policy
/// resolver, timeouts, https only.
pub fn delivery_client(cfg: &DispatcherConfig) -> anyhow::Result<reqwest::Client> {
    let mut b = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .https_only(true)
        .timeout(Duration::from_millis(cfg.timeout_ms))
        .connect_timeout(Duration::from_millis(cfg.timeout_ms.min(5_000)))
        .dns_resolver(Arc::new(PolicyResolver(cfg.policy)))
        .user_agent("wekeza-events/1");
    for pem in &cfg.extra_roots_pem {
        for cert in reqwest::Certificate::from_pem_bundle(pem)? {
            b = b.add_root_certificate(cert);
        }
    }
    Ok(b.build()?)
}

pub struct Dispatcher {
    pub store: Arc<dyn EventStore>,
    pub signer: Arc<SetSigner>,
    pub clock: Arc<dyn crate::Clock>,
    pub cfg: DispatcherConfig,
    http: reqwest::Client,
}

impl Dispatcher {
    pub fn new(
        store: Arc<dyn EventStore>,
        signer: Arc<SetSigner>,
        clock: Arc<dyn crate::Clock>,
        cfg: DispatcherConfig,
    ) -> anyhow::Result<Self> {
        let http = delivery_client(&cfg)?;
        Ok(Self {
            store,
            signer,
            clock,
            cfg,
            http,
        })
    }

    /// One round: claim what is due and deliver it. Returns how many were handled.
    pub async fn run_once(&self) -> authz_store::StoreResult<usize> {
        let claimed = self
            .store
            .claim_due_leased(
                now_ms(&*self.clock),
                lease_now_ms(),
                self.cfg.lease_ms(),
                self.cfg.batch,
            )
            .await?;
        let n = claimed.len();
        // Each claimed delivery heads its own subscription's queue, so they can go in
        // parallel without reordering anything.
        let results = futures_util::future::join_all(claimed.iter().map(|d| self.deliver(d))).await;
        for r in results {
            r?;
        }
        Ok(n)
    }

    async fn deliver(&self, d: &ClaimedDelivery) -> authz_store::StoreResult<()> {
        let start_ms = now_ms(&*self.clock);
        if !deliverable(&d.event, d.consent_status) {
            let r = AttemptResult {
                at_ms: start_ms,
                status_code: None,
                error: Some("the consent covering this event is no longer authorised".into()),
                latency_ms: 0,
                new_state: DeliveryState::Suppressed,
                next_attempt_ms: start_ms,
            };
            self.store.record_attempt(d, &r).await?;
            return Ok(());
        }
        let started = Instant::now();
        let (status, error) = match self.attempt(d).await {
            Ok(code) if (200..300).contains(&code) => (Some(code), None),
            Ok(code) => (Some(code), Some(format!("HTTP {code}"))),
            Err(e) => (None, Some(e)),
        };
        let latency_ms = started.elapsed().as_millis() as i64;
        let at_ms = now_ms(&*self.clock);
        let (new_state, next_attempt_ms) = if error.is_none() {
            (DeliveryState::Delivered, at_ms)
        } else {
            let next = at_ms + self.cfg.backoff_ms(d.attempts + 1);
            if next - d.since_ms > self.cfg.retry_horizon_ms {
                (DeliveryState::Dead, at_ms)
            } else {
                (DeliveryState::Pending, next)
            }
        };
        if let Some(e) = &error {
            tracing::info!(subscription = %d.subscription_id, event = %d.event.id, error = %e, state = new_state.as_str(), "event delivery failed");
        }
        let r = AttemptResult {
            at_ms,
            status_code: status.map(i64::from),
            error,
            latency_ms,
            new_state,
            next_attempt_ms,
        };
        if !self.store.record_attempt(d, &r).await? {
            tracing::warn!(event = %d.event.id, "delivery lease lost before the result was recorded");
        }
        Ok(())
    }

    /// POST the SET; the HTTP status, or why there was none.
    async fn attempt(&self, d: &ClaimedDelivery) -> Result<u16, String> {
        let url = url::Url::parse(&d.callback_url).map_err(|_| "bad callback URL".to_owned())?;
        // Names are checked by the resolver; IP literals never reach it.
        let literal = match url.host() {
            Some(url::Host::Ipv4(ip)) => Some(IpAddr::V4(ip)),
            Some(url::Host::Ipv6(ip)) => Some(IpAddr::V6(ip)),
            _ => None,
        };
        if literal.is_some_and(|ip| !self.cfg.policy.allows(ip)) {
            return Err("callback address refused by policy".into());
        }
        let set = self
            .signer
            .sign(&d.event, d.event.created_at)
            .map_err(|e| format!("signing: {e}"))?;
        let resp = self
            .http
            .post(url)
            .header(reqwest::header::CONTENT_TYPE, SET_CONTENT_TYPE)
            .header("x-fapi-interaction-id", uuid::Uuid::new_v4().to_string())
            .body(set)
            .send()
            .await
            .map_err(|e| {
                // The full chain says whether it was DNS policy, connect, TLS or timeout.
                let mut msg = e.to_string();
                let mut src = std::error::Error::source(&e);
                while let Some(s) = src {
                    msg.push_str(": ");
                    msg.push_str(&s.to_string());
                    src = s.source();
                }
                msg
            })?;
        Ok(resp.status().as_u16())
    }
}

/// Deliveries in flight per dispatcher.
const MAX_IN_FLIGHT: usize = 64;

/// Run the dispatcher until `stop` turns true. Each claimed delivery runs as its own
/// task, so a slow receiver holds up only its own subscription's queue; a delivery that
/// finishes wakes the loop, so the next event of that subscription goes out at once.
/// Dropping (aborting) the returned task aborts the deliveries in flight too, like a
/// process exit: their leases run out and another dispatcher takes over.
pub fn spawn_dispatcher(
    d: Dispatcher,
    mut stop: watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    let d = Arc::new(d);
    tokio::spawn(async move {
        let idle = Duration::from_millis(d.cfg.poll_interval_ms);
        let mut inflight = tokio::task::JoinSet::new();
        loop {
            if *stop.borrow() {
                break;
            }
            while inflight.try_join_next().is_some() {}
            let room = MAX_IN_FLIGHT.saturating_sub(inflight.len()) as i64;
            let mut claimed = 0;
            if room > 0 {
                match d
                    .store
                    .claim_due_leased(
                        now_ms(&*d.clock),
                        lease_now_ms(),
                        d.cfg.lease_ms(),
                        d.cfg.batch.min(room),
                    )
                    .await
                {
                    Ok(list) => {
                        claimed = list.len();
                        for c in list {
                            let d = d.clone();
                            inflight.spawn(async move {
                                if let Err(e) = d.deliver(&c).await {
                                    tracing::warn!(error = %e, event = %c.event.id, "recording a delivery failed");
                                }
                            });
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "claiming event deliveries failed"),
                }
            }
            if claimed == 0 {
                tokio::select! {
                    _ = tokio::time::sleep(idle) => {}
                    Some(_) = inflight.join_next(), if !inflight.is_empty() => {}
                    _ = stop.wait_for(|v| *v) => break,
                }
            }
        }
        // Graceful stop: let what is in flight finish and be recorded.
        while inflight.join_next().await.is_some() {}
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_addresses_are_not_public() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "255.255.255.255",
            "::1",
            "::",
            "fe80::1",
            "fd00::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "64:ff9b::a00:1",
        ] {
            let ip: IpAddr = ip.parse().unwrap_or(IpAddr::from([0, 0, 0, 0]));
            assert!(!is_public(ip), "{ip} must not be public");
            assert!(
                CallbackPolicy {
                    allow_private: true
                }
                .allows(ip)
            );
        }
        for ip in ["8.8.8.8", "1.1.1.1", "2606:4700:4700::1111"] {
            let ip: IpAddr = ip.parse().unwrap_or(IpAddr::from([127, 0, 0, 1]));
            assert!(is_public(ip), "{ip} is public");
        }
    }

    #[tokio::test]
    async fn callback_urls_are_checked() {
        let deny = CallbackPolicy {
            allow_private: false,
        };
        for bad in [
            "http://8.8.8.8/cb",
            "https://127.0.0.1/cb",
            "https://[::1]/cb",
            "https://169.254.169.254/latest",
            "https://localhost:8443/cb",
            "https://user:pw@8.8.8.8/cb",
            "not a url",
        ] {
            assert!(deny.check_url(bad).await.is_err(), "{bad} must be refused");
        }
        assert!(deny.check_url("https://8.8.8.8/cb").await.is_ok());
        let allow = CallbackPolicy {
            allow_private: true,
        };
        assert!(allow.check_url("https://localhost:8443/cb").await.is_ok());
        assert!(allow.check_url("http://localhost:8443/cb").await.is_err());
    }

    /// The resolver is what the delivery client connects through: a name resolving to
    /// loopback (as a rebinding attacker's would) yields no address under a deny policy.
    #[tokio::test]
    async fn resolver_drops_refused_addresses() {
        use reqwest::dns::Resolve;
        let deny = PolicyResolver(CallbackPolicy {
            allow_private: false,
        });
        let name: reqwest::dns::Name = "localhost".parse().unwrap_or_else(|_| unreachable!());
        assert!(deny.resolve(name).await.is_err());
        let allow = PolicyResolver(CallbackPolicy {
            allow_private: true,
        });
        let name: reqwest::dns::Name = "localhost".parse().unwrap_or_else(|_| unreachable!());
        let addrs: Vec<_> = match allow.resolve(name).await {
            Ok(a) => a.collect(),
            Err(e) => panic!("{e}"),
        };
        assert!(addrs.iter().all(|a| a.ip().is_loopback()) && !addrs.is_empty());
    }

    #[test]
    fn events_under_an_ended_consent_are_not_deliverable() {
        let ev = |rid: &str| EventRecord {
            id: "evt-1".into(),
            seq: 1,
            created_at: 0,
            event: authz_store::NewEvent {
                client_id: "c".into(),
                consent_id: Some("aac-1".into()),
                event_type: authz_store::EVENT_RESOURCE_UPDATE.into(),
                rid: rid.into(),
                rty: "x".into(),
                link: "/x".into(),
                detail: serde_json::json!({}),
                txn: "t".into(),
                toe: 0,
            },
        };
        use ConsentStatus::*;
        for (st, ok) in [
            (Authorised, true),
            (Consumed, true),
            (Revoked, false),
            (Expired, false),
            (Rejected, false),
            (AwaitingAuthorisation, false),
        ] {
            assert_eq!(deliverable(&ev("pmt-1"), Some(st)), ok, "{st:?}");
            // The consent's own lifecycle events always go.
            assert!(deliverable(&ev("aac-1"), Some(st)));
        }
        assert!(!deliverable(&ev("pmt-1"), None), "consent gone");
    }

    #[test]
    fn backoff_doubles_with_jitter_and_caps() {
        let cfg = DispatcherConfig {
            retry_base_ms: 1000,
            retry_max_ms: 10_000,
            ..DispatcherConfig::default()
        };
        for (attempts, full) in [(1, 1000), (2, 2000), (3, 4000), (5, 10_000), (60, 10_000)] {
            let d = cfg.backoff_ms(attempts);
            assert!(d >= full / 2 && d <= full, "attempt {attempts}: {d}");
        }
    }
}
