//! The production [`TokenVerifier`]: the authorization server's JWT access tokens
//! (RFC 9068) verified against its JWKS, sender-constrained (RFC 8705 `x5t#S256` or
//! RFC 9449 DPoP `jkt`), then resolved to a consent through [`ConsentSource`].
//!
//! FAPI 2.0 §5.3.4: tokens only from the `Authorization` header (R1/R2), validity,
//! integrity, expiry and revocation (R3: the consent's status and the token's `jti`),
//! the binding (R5). Revocation latency is the [`ConsentSource`]'s: an implementation
//! must make a revoked consent visible at every RS instance within one second, either by
//! caching for at most 1 s ([`CachedConsentSource`]) or by invalidating on a pub/sub
//! message (Redis) from the authorization server.
//!
//! Two kinds of token share every check ([`JwtVerifier`]'s `check_token`): the
//! customer's authorization-code token ([`TokenVerifier::verify`], must name an
//! authorised consent) and the client's own client-credentials token
//! ([`TokenVerifier::verify_client`], `sub` = `client_id`, no consent), used for the
//! consent endpoints.
//!
//! Speed: verifying the ES256 signature dominates a request, so tokens whose signature
//! verified are cached by the SHA-256 of the token string until their `exp` (bounded,
//! flushed on key change). A hit skips only the parse and the signature: `iss`, `aud`,
//! expiry, scope, the `cnf` binding (certificate or DPoP proof, with replay check), the
//! `jti` revocation list and the consent are checked on every request.
//!
//! DPoP proof `jti`s are remembered per process unless a shared store is set
//! ([`JwtVerifier::with_replay_store`]), which a deployment of several instances needs.

use crate::auth::{
    AuthError, ClientGrant, CustomerToken, Grant, Permission, Scheme, TokenVerifier,
    parse_authorization,
};
use authz_store::EphemeralStore;
use fapi_jose::{Jwk, Unverified};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};
use time::OffsetDateTime;

/// Source of "now" for token checks; tests move it.
pub trait Clock: Send + Sync {
    fn now(&self) -> OffsetDateTime;
}

#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> OffsetDateTime {
        OffsetDateTime::now_utc()
    }
}

/// UK OB v4 account-access-consent status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConsentStatus {
    /// AWAU
    AwaitingAuthorisation,
    /// AUTH
    Authorised,
    /// RJCT
    Rejected,
    /// CANC
    Revoked,
    /// EXPD
    Expired,
}

/// What the resource server needs to know about a consent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsentView {
    pub consent_id: String,
    pub status: ConsentStatus,
    pub client_id: String,
    /// The customer who authorised it, once authorised.
    pub subject: Option<String>,
    pub permissions: BTreeSet<Permission>,
    /// Selected accounts; `None` = every account of the customer.
    pub account_ids: Option<BTreeSet<String>>,
    pub expires_at: Option<OffsetDateTime>,
    pub transaction_from: Option<OffsetDateTime>,
    pub transaction_to: Option<OffsetDateTime>,
}

/// Where consent state comes from (the authorization server's consent store):
/// [`crate::store::StoreConsentSource`] reads the shared store, wrapped in
/// [`CachedConsentSource`].
#[async_trait::async_trait]
pub trait ConsentSource: Send + Sync {
    async fn consent(&self, consent_id: &str) -> anyhow::Result<Option<ConsentView>>;

    /// Whether an individual access token (by `jti`) was revoked at the AS.
    async fn is_token_revoked(&self, _jti: &str) -> anyhow::Result<bool> {
        Ok(false)
    }
}

/// Caches another source's answers for at most one second, so a revocation reaches
/// this instance within 1 s while a hot consent costs one lookup per second.
///
/// Token revocation answers (`is_token_revoked`) are cached the same way, so a hot token
/// costs one revocation-list lookup per second too.
pub struct CachedConsentSource {
    inner: Arc<dyn ConsentSource>,
    ttl: Duration,
    cache: Mutex<HashMap<String, (Instant, Option<ConsentView>)>>,
    revoked: Mutex<HashMap<String, (Instant, bool)>>,
}

/// Upper bound on cached consents before the cache is flushed.
const CONSENT_CACHE_MAX: usize = 100_000;

impl CachedConsentSource {
    /// `ttl` is capped at one second.
    pub fn new(inner: Arc<dyn ConsentSource>, ttl: Duration) -> Self {
        Self {
            inner,
            ttl: ttl.min(Duration::from_secs(1)),
            cache: Mutex::new(HashMap::new()),
            revoked: Mutex::new(HashMap::new()),
        }
    }

    /// Drops one consent (e.g. on a revocation message).
    pub fn invalidate(&self, consent_id: &str) {
        self.cache
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(consent_id);
    }
}

#[async_trait::async_trait]
impl ConsentSource for CachedConsentSource {
    async fn consent(&self, consent_id: &str) -> anyhow::Result<Option<ConsentView>> {
        let now = Instant::now();
        {
            let c = self.cache.lock().unwrap_or_else(|e| e.into_inner());
            if let Some((at, v)) = c.get(consent_id)
                && now.duration_since(*at) < self.ttl
            {
                return Ok(v.clone());
            }
        }
        let v = self.inner.consent(consent_id).await?;
        let mut c = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        if c.len() >= CONSENT_CACHE_MAX {
            c.clear();
        }
        c.insert(consent_id.to_owned(), (now, v.clone()));
        Ok(v)
    }

    async fn is_token_revoked(&self, jti: &str) -> anyhow::Result<bool> {
        let now = Instant::now();
        {
            let c = self.revoked.lock().unwrap_or_else(|e| e.into_inner());
            if let Some((at, v)) = c.get(jti)
                && now.duration_since(*at) < self.ttl
            {
                return Ok(*v);
            }
        }
        let v = self.inner.is_token_revoked(jti).await?;
        let mut c = self.revoked.lock().unwrap_or_else(|e| e.into_inner());
        if c.len() >= CONSENT_CACHE_MAX {
            c.clear();
        }
        c.insert(jti.to_owned(), (now, v));
        Ok(v)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JwtVerifierConfig {
    /// The authorization server's issuer identifier (`iss`).
    pub issuer: String,
    /// This resource server's base URL, the tokens' `aud`.
    pub audience: String,
    /// Scope every token must carry (`accounts`).
    pub required_scope: String,
    /// Clock skew tolerated on `nbf` and `iat`, seconds. Expiry gets none.
    pub leeway_secs: i64,
    /// How far a DPoP proof's `iat` may lie in the future / the past, seconds (the AS
    /// uses 30 / 60, ADR 0006).
    pub dpop_max_ahead_secs: i64,
    pub dpop_max_age_secs: i64,
}

impl JwtVerifierConfig {
    pub fn new(issuer: impl Into<String>, audience: impl Into<String>) -> Self {
        Self {
            issuer: issuer.into(),
            audience: audience.into(),
            required_scope: "accounts".into(),
            leeway_secs: 10,
            dpop_max_ahead_secs: 30,
            dpop_max_age_secs: 60,
        }
    }
}

pub struct JwtVerifier {
    cfg: JwtVerifierConfig,
    keys: RwLock<Arc<Vec<Jwk>>>,
    consents: Arc<dyn ConsentSource>,
    clock: Arc<dyn Clock>,
    /// DPoP proof `jti`s seen, with the time they can be forgotten, when no shared
    /// replay store is configured (one instance only).
    dpop_jtis: Mutex<HashMap<String, i64>>,
    /// Shared DPoP replay store (the AS's ephemeral store: SQL or Redis), so a proof
    /// used at one instance is refused at every other.
    replay: Option<Arc<dyn EphemeralStore>>,
    /// Tokens whose signature was verified: SHA-256 of the token string -> claims.
    verified: RwLock<HashMap<[u8; 32], Arc<AtClaims>>>,
}

const DPOP_JTI_MAX: usize = 200_000;

/// Ephemeral-store namespace of the shared DPoP replay cache.
pub const DPOP_REPLAY_NS: &str = "rs_dpop_jti";

/// Upper bound on cached verified tokens before the cache is flushed.
pub const VERIFIED_TOKEN_CACHE_MAX: usize = 100_000;

#[derive(Debug, Deserialize)]
struct AtClaims {
    iss: String,
    sub: String,
    aud: serde_json::Value,
    client_id: String,
    exp: i64,
    #[serde(default)]
    nbf: Option<i64>,
    #[serde(default)]
    jti: Option<String>,
    #[serde(default)]
    scope: String,
    #[serde(default)]
    cnf: Option<CnfClaim>,
    #[serde(default)]
    consent_id: Option<String>,
}

#[derive(Debug, Deserialize)]
struct CnfClaim {
    #[serde(rename = "x5t#S256", default)]
    x5t_s256: Option<String>,
    #[serde(default)]
    jkt: Option<String>,
}

#[derive(Deserialize)]
struct DpopClaims {
    htm: String,
    htu: String,
    iat: i64,
    jti: String,
    #[serde(default)]
    ath: Option<String>,
}

fn ts(secs: i64) -> Result<OffsetDateTime, AuthError> {
    OffsetDateTime::from_unix_timestamp(secs).map_err(|_| AuthError::InvalidToken("bad time claim"))
}

impl JwtVerifier {
    pub fn new(
        cfg: JwtVerifierConfig,
        keys: Vec<Jwk>,
        consents: Arc<dyn ConsentSource>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            cfg,
            keys: RwLock::new(Arc::new(keys)),
            consents,
            clock,
            dpop_jtis: Mutex::new(HashMap::new()),
            replay: None,
            verified: RwLock::new(HashMap::new()),
        }
    }

    /// Records DPoP proof `jti`s in a shared ephemeral store (namespace
    /// [`DPOP_REPLAY_NS`], key `<jkt>:<jti>`) instead of in this process, so a proof is
    /// accepted once across every resource-server instance. A store failure refuses the
    /// request ([`AuthError::Unavailable`]).
    pub fn with_replay_store(mut self, store: Arc<dyn EphemeralStore>) -> Self {
        self.replay = Some(store);
        self
    }

    /// Replaces the AS signing keys (after a JWKS refresh). Tokens verified under the
    /// previous keys are forgotten, so a withdrawn key stops working at once.
    pub fn set_keys(&self, keys: Vec<Jwk>) {
        *self.keys.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(keys);
        self.verified
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
    }

    fn keys(&self) -> Arc<Vec<Jwk>> {
        self.keys.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// RFC 9449 §4.3 proof checks for a DPoP-bound token, then the `jti` replay check.
    async fn verify_dpop(
        &self,
        proof: &str,
        method: &str,
        url: &str,
        access_token: &str,
        jkt: &str,
        now: i64,
    ) -> Result<(), AuthError> {
        let bad = AuthError::InvalidDpopProof;
        let p = Unverified::parse(proof).map_err(|_| bad("malformed"))?;
        if p.header.typ.as_deref() != Some("dpop+jwt") {
            return Err(bad("typ must be dpop+jwt"));
        }
        let jwk = p.header.jwk.as_ref().ok_or(bad("no jwk header"))?;
        if jwk.has_private_material() {
            return Err(bad("jwk holds private key material"));
        }
        p.alg().map_err(|_| bad("algorithm not allowed"))?;
        p.verify_with(jwk).map_err(|_| bad("signature"))?;
        let c: DpopClaims =
            serde_json::from_value(p.claims.clone()).map_err(|_| bad("missing claims"))?;
        if c.htm != method {
            return Err(bad("htm does not match"));
        }
        if !same_htu(&c.htu, url) {
            return Err(bad("htu does not match"));
        }
        if c.iat > now + self.cfg.dpop_max_ahead_secs || c.iat < now - self.cfg.dpop_max_age_secs {
            return Err(bad("iat outside the accepted window"));
        }
        if c.ath.as_deref() != Some(fapi_jose::sha256_b64(access_token.as_bytes()).as_str()) {
            return Err(bad("ath does not match the access token"));
        }
        if jwk.thumbprint_s256().map_err(|_| bad("jwk"))? != jkt {
            return Err(AuthError::BindingMismatch(
                "DPoP key is not the token's jkt",
            ));
        }
        if c.jti.is_empty() || c.jti.len() > 256 {
            return Err(bad("jti"));
        }
        // Keyed by key thumbprint and jti, as the AS's `dpop_jti` store is; remembered
        // for as long as the proof's `iat` is acceptable.
        let key = format!("{jkt}:{}", c.jti);
        let until = c.iat + self.cfg.dpop_max_age_secs + 1;
        if let Some(store) = &self.replay {
            let fresh = store
                .insert_if_absent(DPOP_REPLAY_NS, &key, "1", until, now)
                .await
                .map_err(|e| AuthError::Unavailable(e.to_string()))?;
            if !fresh {
                return Err(bad("jti replayed"));
            }
            return Ok(());
        }
        let mut seen = self.dpop_jtis.lock().unwrap_or_else(|e| e.into_inner());
        if seen.len() >= DPOP_JTI_MAX {
            seen.retain(|_, until| *until > now);
        }
        if seen.get(&key).is_some_and(|until| *until > now) {
            return Err(bad("jti replayed"));
        }
        seen.insert(key, until);
        Ok(())
    }

    /// The token's claims: from the verified-token cache, or parsed and checked against
    /// the JWKS (header `typ`, signature) and then cached until the token's `exp`. Only
    /// the parse and the signature are skipped on a hit; the caller runs every other
    /// check on every request.
    fn verified_claims(&self, token: &str, now_s: i64) -> Result<Arc<AtClaims>, AuthError> {
        let digest = Sha256::digest(token.as_bytes());
        let mut key = [0u8; 32];
        key.copy_from_slice(digest.as_slice());
        if let Some(c) = self
            .verified
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&key)
        {
            return Ok(c.clone());
        }
        let jws = Unverified::parse(token).map_err(|_| AuthError::InvalidToken("malformed JWT"))?;
        let typ_ok = jws.header.typ.as_deref().is_some_and(|t| {
            t.eq_ignore_ascii_case("at+jwt") || t.eq_ignore_ascii_case("application/at+jwt")
        });
        if !typ_ok {
            return Err(AuthError::InvalidToken("typ must be at+jwt"));
        }
        jws.verify_with_set(&self.keys())
            .map_err(|_| AuthError::InvalidToken("signature"))?;
        let c: AtClaims = serde_json::from_value(jws.claims)
            .map_err(|_| AuthError::InvalidToken("missing claims"))?;
        let c = Arc::new(c);
        if c.exp > now_s {
            let mut cache = self.verified.write().unwrap_or_else(|e| e.into_inner());
            if cache.len() >= VERIFIED_TOKEN_CACHE_MAX {
                cache.retain(|_, v| v.exp > now_s);
                if cache.len() >= VERIFIED_TOKEN_CACHE_MAX {
                    cache.clear();
                }
            }
            cache.insert(key, c.clone());
        }
        Ok(c)
    }

    /// Every check an access token gets, whatever it is for: signature (or the cache),
    /// `iss`, `aud`, `exp`/`nbf`, the required scope, the sender constraint (certificate
    /// thumbprint, or DPoP proof with replay check) and the `jti` revocation list.
    async fn check_token(
        &self,
        authorization: &str,
        client_cert_der: Option<&[u8]>,
        dpop: Option<&str>,
        method: &str,
        url: &str,
    ) -> Result<(Arc<AtClaims>, OffsetDateTime), AuthError> {
        self.check_token_for(
            authorization,
            client_cert_der,
            dpop,
            method,
            url,
            &self.cfg.required_scope,
        )
        .await
    }

    /// [`Self::check_token`] with the scope the API needs.
    async fn check_token_for(
        &self,
        authorization: &str,
        client_cert_der: Option<&[u8]>,
        dpop: Option<&str>,
        method: &str,
        url: &str,
        required_scope: &str,
    ) -> Result<(Arc<AtClaims>, OffsetDateTime), AuthError> {
        let (scheme, token) = parse_authorization(authorization)?;
        let now = self.clock.now();
        let now_s = now.unix_timestamp();
        let c = self.verified_claims(token, now_s)?;
        if c.iss != self.cfg.issuer {
            return Err(AuthError::InvalidToken("wrong issuer"));
        }
        let aud_ok = match &c.aud {
            serde_json::Value::String(a) => *a == self.cfg.audience,
            serde_json::Value::Array(v) => v.iter().any(|a| a.as_str() == Some(&self.cfg.audience)),
            _ => false,
        };
        if !aud_ok {
            return Err(AuthError::InvalidToken("wrong audience"));
        }
        if now_s >= c.exp {
            return Err(AuthError::InvalidToken("expired"));
        }
        if c.nbf.is_some_and(|nbf| nbf > now_s + self.cfg.leeway_secs) {
            return Err(AuthError::InvalidToken("not yet valid"));
        }
        if !c.scope.split(' ').any(|s| s == required_scope) {
            return Err(AuthError::InsufficientScope);
        }
        // Sender constraint: exactly one binding, and the scheme that goes with it.
        let cnf = c.cnf.as_ref();
        match (
            cnf.and_then(|x| x.x5t_s256.as_deref()),
            cnf.and_then(|x| x.jkt.as_deref()),
        ) {
            (Some(x5t), None) => {
                if scheme != Scheme::Bearer {
                    return Err(AuthError::InvalidToken(
                        "certificate-bound token needs the Bearer scheme",
                    ));
                }
                let cert =
                    client_cert_der.ok_or(AuthError::BindingMismatch("no client certificate"))?;
                if fapi_jose::x5t_s256(cert) != x5t {
                    return Err(AuthError::BindingMismatch("certificate thumbprint differs"));
                }
            }
            (None, Some(jkt)) => {
                if scheme != Scheme::Dpop {
                    return Err(AuthError::InvalidToken(
                        "DPoP-bound token needs the DPoP scheme",
                    ));
                }
                let proof = dpop.ok_or(AuthError::InvalidDpopProof("missing DPoP header"))?;
                self.verify_dpop(proof, method, url, token, jkt, now_s)
                    .await?;
            }
            _ => return Err(AuthError::InvalidToken("token is not sender-constrained")),
        }
        if let Some(jti) = &c.jti
            && self
                .consents
                .is_token_revoked(jti)
                .await
                .map_err(|e| AuthError::Unavailable(e.to_string()))?
        {
            return Err(AuthError::InvalidToken("revoked"));
        }
        Ok((c, now))
    }
}

/// `htu` comparison without query and fragment, scheme and host case-insensitive.
fn same_htu(claim: &str, url: &str) -> bool {
    let norm = |s: &str| {
        url::Url::parse(s).ok().map(|mut u| {
            u.set_query(None);
            u.set_fragment(None);
            u.to_string()
        })
    };
    matches!((norm(claim), norm(url)), (Some(a), Some(b)) if a == b)
}

#[async_trait::async_trait]
impl TokenVerifier for JwtVerifier {
    async fn verify(
        &self,
        authorization: &str,
        client_cert_der: Option<&[u8]>,
        dpop: Option<&str>,
        method: &str,
        url: &str,
    ) -> Result<Grant, AuthError> {
        let (c, now) = self
            .check_token(authorization, client_cert_der, dpop, method, url)
            .await?;
        let consent_id = c.consent_id.clone().ok_or(AuthError::InsufficientScope)?;
        let consent = self
            .consents
            .consent(&consent_id)
            .await
            .map_err(|e| AuthError::Unavailable(e.to_string()))?
            .ok_or(AuthError::ConsentInactive("unknown consent"))?;
        match consent.status {
            ConsentStatus::Authorised => {}
            ConsentStatus::Revoked => return Err(AuthError::ConsentInactive("revoked")),
            ConsentStatus::Expired => return Err(AuthError::ConsentInactive("expired")),
            ConsentStatus::Rejected | ConsentStatus::AwaitingAuthorisation => {
                return Err(AuthError::ConsentInactive("not authorised"));
            }
        }
        if consent.expires_at.is_some_and(|e| e <= now) {
            return Err(AuthError::ConsentInactive("expired"));
        }
        if consent.client_id != c.client_id {
            return Err(AuthError::InvalidToken("consent belongs to another client"));
        }
        // An authorised consent names its customer; the token must be that customer's.
        if consent.subject.as_deref() != Some(c.sub.as_str()) {
            return Err(AuthError::InvalidToken(
                "consent belongs to another customer",
            ));
        }
        let exp = ts(c.exp)?;
        Ok(Grant {
            subject: c.sub.clone(),
            client_id: c.client_id.clone(),
            consent_id,
            permissions: consent.permissions,
            account_ids: consent.account_ids,
            transaction_from: consent.transaction_from,
            transaction_to: consent.transaction_to,
            expires_at: consent.expires_at.map_or(exp, |e| e.min(exp)),
        })
    }

    async fn verify_client(
        &self,
        authorization: &str,
        client_cert_der: Option<&[u8]>,
        dpop: Option<&str>,
        method: &str,
        url: &str,
    ) -> Result<ClientGrant, AuthError> {
        let (c, _) = self
            .check_token(authorization, client_cert_der, dpop, method, url)
            .await?;
        // A client-credentials token is the client acting for itself: no customer, no
        // consent. A customer's (authorization-code) token does not manage consents.
        if c.consent_id.is_some() || c.sub != c.client_id {
            return Err(AuthError::InsufficientScope);
        }
        Ok(ClientGrant {
            client_id: c.client_id.clone(),
        })
    }

    async fn verify_client_scope(
        &self,
        authorization: &str,
        client_cert_der: Option<&[u8]>,
        dpop: Option<&str>,
        method: &str,
        url: &str,
        scope: &str,
    ) -> Result<ClientGrant, AuthError> {
        let (c, _) = self
            .check_token_for(authorization, client_cert_der, dpop, method, url, scope)
            .await?;
        if c.consent_id.is_some() || c.sub != c.client_id {
            return Err(AuthError::InsufficientScope);
        }
        Ok(ClientGrant {
            client_id: c.client_id.clone(),
        })
    }

    async fn verify_customer_scope(
        &self,
        authorization: &str,
        client_cert_der: Option<&[u8]>,
        dpop: Option<&str>,
        method: &str,
        url: &str,
        scope: &str,
    ) -> Result<CustomerToken, AuthError> {
        let (c, _) = self
            .check_token_for(authorization, client_cert_der, dpop, method, url, scope)
            .await?;
        // A client-credentials token names no consent and no customer.
        let consent_id = c.consent_id.clone().ok_or(AuthError::InsufficientScope)?;
        if c.sub == c.client_id {
            return Err(AuthError::InsufficientScope);
        }
        Ok(CustomerToken {
            subject: c.sub.clone(),
            client_id: c.client_id.clone(),
            consent_id,
        })
    }
}
