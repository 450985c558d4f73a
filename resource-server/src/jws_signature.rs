//! UK Open Banking `x-jws-signature` at the resource server (ADR 0017): request bodies
//! signed by the TPP with a key registered in its client metadata (`jwks`, or the keys
//! of its `jwks_uri` fetched at registration), and every payment-initiation response
//! signed by the platform key published in the authorization server's JWKS.
//!
//! * Requests: an endpoint takes [`SignedBody`] instead of `Bytes` (after an extractor
//!   that records the caller, such as [`crate::payments::PaymentClient`]); the checks are
//!   [`fapi_jose::detached::verify`]'s (sans-IO). Missing where required, or present and
//!   wrong → 400 `UK.OBIE.Signature.*`, before anything is read or written.
//! * Responses: [`sign_responses`] (one layer in [`crate::router`]) signs the body of
//!   every response under [`crate::payments::PISP_PREFIX`], errors included, so new
//!   payment endpoints are covered without a line of their own. The answer is signed in
//!   kind (ADR 0020): a request signed with ES256 gets a response signed with the platform
//!   ES256 key; every other response (PS256 requests, GETs) with the PS256 key OB names.

use crate::AppState;
use crate::error::ObError;
use axum::body::{Body, Bytes};
use axum::extract::{FromRequest, Request, State};
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use fapi_jose::detached::{self, Expected, Failure};
use fapi_jose::{Alg, Jwk, SigningKey};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub const HEADER: &str = "x-jws-signature";

/// `UK.OBIE.Signature.*` error codes (OB Read/Write error code list).
pub mod codes {
    pub const MISSING: &str = "UK.OBIE.Signature.Missing";
    pub const INVALID: &str = "UK.OBIE.Signature.Invalid";
    pub const INVALID_CLAIM: &str = "UK.OBIE.Signature.InvalidClaim";
    pub const MISSING_CLAIM: &str = "UK.OBIE.Signature.MissingClaim";
    pub const MALFORMED: &str = "UK.OBIE.Signature.Malformed";
}

/// Algorithms accepted on requests: OB names PS256; ES256 is accepted as well because
/// FAPI 2.0 clients commonly register only an EC key (ADR 0017). EdDSA is not.
pub const ACCEPTED_ALGS: &[Alg] = &[Alg::PS256, Alg::ES256];
/// Oldest `http://openbanking.org.uk/iat` accepted.
pub const MAX_AGE_SECS: i64 = 300;
/// Clock skew tolerated for an `iat` ahead of ours (as for client assertions).
pub const FUTURE_SKEW_SECS: i64 = 30;
/// How long a client's registered keys are reused before they are read again.
const KEY_CACHE_TTL: Duration = Duration::from_secs(5);
/// Responses larger than this are sent unsigned (and logged): none of ours are.
const MAX_SIGNED_RESPONSE: usize = 16 * 1024 * 1024;

/// What the resource server does with `x-jws-signature`.
pub struct JwsSignatures {
    /// Signs responses (PS256); its public half is in the AS JWKS (never accepted for
    /// tokens).
    pub key: Arc<SigningKey>,
    /// Signs the responses to ES256-signed requests, when configured (ADR 0020); published
    /// the same way.
    pub ec_key: Option<Arc<SigningKey>>,
    /// `http://openbanking.org.uk/iss` of our responses (the issuer).
    pub issuer: String,
    /// `http://openbanking.org.uk/tan`, ours and the TPPs'.
    pub trust_anchor: String,
    /// Whether a request without a signature is refused.
    pub required: bool,
    keys: Mutex<HashMap<String, (Instant, Arc<ClientKeys>)>>,
}

struct ClientKeys {
    keys: Vec<Jwk>,
    /// Values `…/iss` may take: the client id, and its `software_id` when registered
    /// with one (the OB directory identity).
    issuers: Vec<String>,
}

impl JwsSignatures {
    pub fn new(
        key: Arc<SigningKey>,
        issuer: impl Into<String>,
        trust_anchor: impl Into<String>,
        required: bool,
    ) -> Self {
        Self {
            key,
            ec_key: None,
            issuer: issuer.into(),
            trust_anchor: trust_anchor.into(),
            required,
            keys: Mutex::new(HashMap::new()),
        }
    }

    async fn client_keys(
        &self,
        st: &AppState,
        client_id: &str,
    ) -> Result<Arc<ClientKeys>, ObError> {
        let now = Instant::now();
        if let Ok(m) = self.keys.lock()
            && let Some((at, k)) = m.get(client_id)
            && now.duration_since(*at) < KEY_CACHE_TTL
        {
            return Ok(k.clone());
        }
        let record = st.store.find_client(client_id).await?;
        let meta = record.map(|r| r.metadata).unwrap_or_default();
        let keys = meta
            .get("jwks")
            .and_then(|j| serde_json::from_value::<fapi_jose::Jwks>(j.clone()).ok())
            .map(|j| j.keys)
            .unwrap_or_default();
        let mut issuers = vec![client_id.to_owned()];
        if let Some(s) = meta.get("software_id").and_then(|v| v.as_str()) {
            issuers.push(s.to_owned());
        }
        let k = Arc::new(ClientKeys { keys, issuers });
        if let Ok(mut m) = self.keys.lock() {
            if m.len() > 10_000 {
                m.clear();
            }
            m.insert(client_id.to_owned(), (now, k.clone()));
        }
        Ok(k)
    }

    /// Check `signature` (the header's value, if any) over `body` for `client_id`.
    pub async fn check(
        &self,
        st: &AppState,
        client_id: &str,
        signature: Option<&str>,
        body: &[u8],
    ) -> Result<(), ObError> {
        let Some(sig) = signature else {
            if self.required {
                return Err(ObError::bad_request(
                    codes::MISSING,
                    "x-jws-signature is required on this request",
                    HEADER,
                ));
            }
            return Ok(());
        };
        let k = self.client_keys(st, client_id).await?;
        let issuers: Vec<&str> = k.issuers.iter().map(String::as_str).collect();
        let want = Expected {
            algs: ACCEPTED_ALGS,
            issuers: &issuers,
            trust_anchor: &self.trust_anchor,
            now: st.clock.now().unix_timestamp(),
            max_age_secs: MAX_AGE_SECS,
            future_skew_secs: FUTURE_SKEW_SECS,
        };
        detached::verify(sig, body, &k.keys, &want)
            .map(|_| ())
            .map_err(|e| {
                let code = match e.failure {
                    Failure::Malformed => codes::MALFORMED,
                    Failure::MissingClaim => codes::MISSING_CLAIM,
                    Failure::InvalidClaim => codes::INVALID_CLAIM,
                    Failure::Invalid => codes::INVALID,
                };
                tracing::info!(client = %client_id, reason = %e, "x-jws-signature refused");
                ObError::bad_request(code, e.message, HEADER)
            })
    }

    /// Responses to ES256-signed requests are signed with `key` (ES256) as well.
    pub fn with_ec_key(mut self, key: Arc<SigningKey>) -> Self {
        self.ec_key = Some(key);
        self
    }

    /// The key that answers a request signed with `request_alg` (none: unsigned).
    pub fn key_for(&self, request_alg: Option<Alg>) -> &SigningKey {
        match (request_alg, &self.ec_key) {
            (Some(Alg::ES256), Some(ec)) => ec,
            _ => &self.key,
        }
    }

    /// The `x-jws-signature` of a response body to a request signed with `request_alg`.
    pub fn sign(&self, body: &[u8], now: i64, request_alg: Option<Alg>) -> Option<String> {
        let key = self.key_for(request_alg);
        detached::sign(key, body, &self.issuer, &self.trust_anchor, now)
            .inspect_err(|e| tracing::error!(error = %e, "signing a response failed"))
            .ok()
    }
}

/// The authenticated caller whose registered keys sign the request body; recorded in the
/// request extensions by the payment extractors, read by [`SignedBody`].
#[derive(Debug, Clone)]
pub struct SignatureCaller(pub String);

/// The exact request body, its `x-jws-signature` verified for the [`SignatureCaller`]
/// (or absent where signatures are not required). Use it as the last handler argument,
/// after the extractor that authenticates the caller.
pub struct SignedBody(pub Bytes);

impl FromRequest<AppState> for SignedBody {
    type Rejection = ObError;

    async fn from_request(req: Request, st: &AppState) -> Result<Self, ObError> {
        let caller = req.extensions().get::<SignatureCaller>().cloned();
        let mut all = req.headers().get_all(HEADER).iter();
        let sig = match (all.next(), all.next()) {
            (None, _) => None,
            (Some(v), None) => Some(v.to_str().map(str::to_owned).map_err(|_| {
                ObError::bad_request(codes::MALFORMED, "x-jws-signature is not ASCII", HEADER)
            })?),
            (Some(_), Some(_)) => {
                return Err(ObError::bad_request(
                    codes::MALFORMED,
                    "one x-jws-signature",
                    HEADER,
                ));
            }
        };
        let body = Bytes::from_request(req, st).await.map_err(|_| {
            ObError::new(
                StatusCode::BAD_REQUEST,
                crate::error::codes::FIELD_INVALID,
                "the body could not be read",
                None,
            )
        })?;
        let Some(cfg) = st.jws.as_ref() else {
            return Ok(Self(body));
        };
        let Some(SignatureCaller(client_id)) = caller else {
            tracing::error!("SignedBody used without an authenticating extractor before it");
            return Err(ObError::internal());
        };
        cfg.check(st, &client_id, sig.as_deref(), &body).await?;
        Ok(Self(body))
    }
}

/// Middleware: signs the body of every payment-initiation response (`x-jws-signature`).
pub async fn sign_responses(State(st): State<AppState>, req: Request, next: Next) -> Response {
    let Some(cfg) = st.jws.clone() else {
        return next.run(req).await;
    };
    if !req.uri().path().starts_with(crate::payments::PISP_PREFIX) {
        return next.run(req).await;
    }
    // Answer in kind (ADR 0020). Read from the header before it is verified: it only picks
    // which of our keys signs, and a request whose signature fails is refused anyway.
    let request_alg = req
        .headers()
        .get(HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(detached::header_alg);
    let res = next.run(req).await;
    let (mut parts, body) = res.into_parts();
    let bytes = match axum::body::to_bytes(body, MAX_SIGNED_RESPONSE).await {
        Ok(b) => b,
        Err(e) => {
            tracing::error!(error = %e, "response too large to sign");
            return ObError::internal().into_response();
        }
    };
    if let Some(sig) = cfg.sign(&bytes, st.clock.now().unix_timestamp(), request_alg)
        && let Ok(v) = HeaderValue::from_str(&sig)
    {
        parts.headers.insert(HEADER, v);
    }
    Response::from_parts(parts, Body::from(bytes))
}
