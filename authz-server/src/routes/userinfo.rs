//! OIDC Core §5.3 userinfo (our protected resource so far: certificate-bound tokens as
//! `Bearer`, DPoP-bound tokens as `DPoP` with a proof, RFC 9449 §7), RFC 7662
//! introspection (signed JWT responses per RFC 9701 on request) and RFC 7009 revocation.

use crate::client_auth::{authenticate, store};
use crate::dpop;
use crate::http::{ApiError, ClientCert, OAuthForm, PeerCert, json_no_store};
use crate::issue::{Presented, verify_access_token};
use crate::state::AppState;
use authz_core::par::single_valued;
use authz_core::tokens::{AccessTokenClaims, Confirmation};
use authz_core::{ErrorCode, OAuthError, OAuthResult};
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use std::sync::Arc;

/// How the access token was presented (RFC 6750 §2.1, RFC 9449 §7.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scheme {
    Bearer,
    Dpop,
}

/// The token comes only from the Authorization header, with the `Bearer` or `DPoP` scheme
/// (RFC 6750 §2.1, RFC 9449 §7.1); scheme names are case-insensitive. Query-string tokens
/// are refused outright (FAPI 2.0 §5.3.4-2).
fn authorization(headers: &HeaderMap, query: Option<&str>) -> OAuthResult<(Scheme, String)> {
    if query.is_some_and(|q| {
        q.split('&')
            .any(|kv| kv.split('=').next() == Some("access_token"))
    }) {
        return Err(OAuthError::invalid_request(
            "access tokens are not accepted in the query string",
        ));
    }
    let mut values = headers.get_all(header::AUTHORIZATION).iter();
    let v = match (values.next(), values.next()) {
        (Some(v), None) => v,
        // RFC 6750 §3.1: a repeated parameter is a malformed request.
        (Some(_), Some(_)) => {
            return Err(OAuthError::invalid_request(
                "only one Authorization header is allowed",
            ));
        }
        (None, _) => {
            return Err(OAuthError::invalid_token(
                "an access token is required in the Authorization header",
            ));
        }
    };
    let v = v
        .to_str()
        .map_err(|_| OAuthError::invalid_token("malformed Authorization header"))?;
    let (scheme, token) = v
        .split_once(' ')
        .filter(|(_, t)| !t.trim().is_empty())
        .ok_or_else(|| {
            OAuthError::invalid_token("the Authorization header must use the Bearer or DPoP scheme")
        })?;
    let scheme = if scheme.eq_ignore_ascii_case("bearer") {
        Scheme::Bearer
    } else if scheme.eq_ignore_ascii_case("dpop") {
        Scheme::Dpop
    } else {
        return Err(OAuthError::invalid_token(
            "the Authorization header must use the Bearer or DPoP scheme",
        ));
    };
    Ok((scheme, token.trim().to_owned()))
}

/// Whether a (not yet verified) token claims a DPoP binding: errors about it are then
/// answered with a DPoP challenge even when it came as a Bearer token (RFC 9449 §7.2).
fn looks_dpop_bound(token: &str) -> bool {
    fapi_jose::Unverified::parse(token)
        .ok()
        .is_some_and(|u| u.claims.get("cnf").and_then(|c| c.get("jkt")).is_some())
}

#[tracing::instrument(skip_all)]
pub async fn userinfo(
    State(st): State<Arc<AppState>>,
    ClientCert(cert): ClientCert,
    RawQuery(q): RawQuery,
    method: Method,
    headers: HeaderMap,
) -> Response {
    let mut challenge_dpop = false;
    let r = userinfo_claims(
        &st,
        cert.as_ref(),
        q.as_deref(),
        &method,
        &headers,
        &mut challenge_dpop,
    )
    .await;
    resource_response(&st, challenge_dpop, r)
}

async fn userinfo_claims(
    st: &AppState,
    cert: Option<&PeerCert>,
    q: Option<&str>,
    method: &Method,
    headers: &HeaderMap,
    challenge_dpop: &mut bool,
) -> OAuthResult<Response> {
    let (scheme, token) = authorization(headers, q)?;
    *challenge_dpop = scheme == Scheme::Dpop || looks_dpop_bound(&token);
    // RFC 9449 §7.1: with the DPoP scheme a proof covers this request and, through
    // `ath`, this token.
    let proof = match scheme {
        Scheme::Dpop => {
            dpop::request_proof(st, headers, method.as_str(), "/userinfo", Some(&token)).await?
        }
        Scheme::Bearer => None,
    };
    let presented = match scheme {
        Scheme::Bearer => Presented::Bearer(cert),
        Scheme::Dpop => Presented::Dpop(proof.as_ref().map(|p| p.jkt.as_str())),
    };
    let claims = verify_access_token(st, &token, presented).await?;
    crate::gateway::admit_oauth(&claims.client_id).await?;
    userinfo_body(st, claims).await
}

async fn userinfo_body(st: &AppState, claims: AccessTokenClaims) -> OAuthResult<Response> {
    if !claims.scope.split(' ').any(|s| s == "openid") {
        return Err(OAuthError::new(
            authz_core::ErrorCode::InsufficientScope,
            "the openid scope is required",
        ));
    }
    let customer = st.store.find_customer(&claims.sub).await.map_err(store)?;
    let mut body = json!({"sub": claims.sub});
    if let Some(c) = customer
        && claims.scope.split(' ').any(|s| s == "profile")
    {
        body["name"] = json!(c.display_name);
        body["preferred_username"] = json!(c.username);
    }
    Ok(json_no_store(StatusCode::OK, body))
}

/// A protected resource's answer. DPoP errors are 401 with a `DPoP` challenge (RFC 9449
/// §7.1, §9) listing the accepted algorithms; a fresh nonce comes along when nonces are
/// required.
fn resource_response(st: &AppState, dpop_challenge: bool, r: OAuthResult<Response>) -> Response {
    let e = match r {
        Ok(mut resp) => {
            if dpop_challenge && st.config.dpop_nonce_required {
                dpop::add_nonce(st, &mut resp);
            }
            return resp;
        }
        Err(e) => e,
    };
    let (code, description) = (e.code, e.description.clone());
    let mut resp = ApiError(e).into_response();
    let dpop_error = matches!(code, ErrorCode::InvalidDpopProof | ErrorCode::UseDpopNonce);
    if dpop_error {
        *resp.status_mut() = StatusCode::UNAUTHORIZED;
    }
    if (dpop_challenge || dpop_error)
        && matches!(
            code,
            ErrorCode::InvalidToken
                | ErrorCode::InsufficientScope
                | ErrorCode::InvalidDpopProof
                | ErrorCode::UseDpopNonce
        )
    {
        let algs: Vec<&str> = authz_core::dpop::SIGNING_ALGS
            .iter()
            .map(|a| a.as_str())
            .collect();
        let v = format!(
            "DPoP error=\"{}\", error_description=\"{}\", algs=\"{}\"",
            code.as_str(),
            description.replace('"', "'"),
            algs.join(" ")
        );
        if let Ok(v) = HeaderValue::from_str(&v) {
            resp.headers_mut().insert(header::WWW_AUTHENTICATE, v);
        }
    }
    if code == ErrorCode::UseDpopNonce || (dpop_challenge && st.config.dpop_nonce_required) {
        dpop::add_nonce(st, &mut resp);
    }
    resp
}

#[tracing::instrument(skip_all)]
pub async fn post_introspect(
    State(st): State<Arc<AppState>>,
    ClientCert(cert): ClientCert,
    headers: HeaderMap,
    OAuthForm(pairs): OAuthForm,
) -> Result<Response, ApiError> {
    let params = single_valued(&pairs)?;
    let caller = authenticate(&st, &params, cert.as_ref()).await?;
    let token = params
        .get("token")
        .copied()
        .ok_or_else(|| OAuthError::invalid_request("token is required"))?;
    let body = introspection(&st, &caller, token).await?;
    // RFC 9701 §4: a signed response when asked for, and only for an authenticated
    // resource server allowed to introspect (FAPI 2.0 MS §5.5.1); others get JSON.
    if wants_jwt(&headers) && caller.introspection_allowed {
        return signed_introspection(&st, &caller, body).map_err(ApiError);
    }
    Ok(json_no_store(StatusCode::OK, body))
}

/// RFC 9701 §4 media type of a JWT introspection response (and its `typ` with the
/// `application/` prefix dropped).
pub const INTROSPECTION_JWT: &str = "application/token-introspection+jwt";

fn wants_jwt(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|m| {
            m.split(';')
                .next()
                .is_some_and(|t| t.trim().eq_ignore_ascii_case(INTROSPECTION_JWT))
        })
}

/// RFC 9701 §5: `{iss, aud, iat, token_introspection}` signed with the server's key.
fn signed_introspection(
    st: &AppState,
    caller: &authz_core::client::Client,
    body: serde_json::Value,
) -> OAuthResult<Response> {
    let claims = json!({
        "iss": st.issuer, "aud": caller.client_id, "iat": st.clock.now(),
        "token_introspection": body,
    });
    let key = st
        .keys
        .signer(fapi_jose::Alg::ES256)
        .ok_or_else(|| OAuthError::server_error("no ES256 signing key"))?;
    let jwt = key
        .sign_jwt(Some("token-introspection+jwt"), &claims)
        .map_err(|e| OAuthError::server_error(e.to_string()))?;
    let mut r = (StatusCode::OK, jwt).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(INTROSPECTION_JWT),
    );
    crate::http::no_store(r.headers_mut());
    Ok(r)
}

/// The RFC 7662 response for `token` as `caller` may see it.
async fn introspection(
    st: &AppState,
    caller: &authz_core::client::Client,
    token: &str,
) -> Result<serde_json::Value, ApiError> {
    let inactive = || Ok(json!({"active": false}));
    // Access token first (JWT), then refresh token (by digest).
    if token.contains('.') {
        let Ok(c) = verify_access_token(st, token, Presented::NotChecked).await else {
            return inactive();
        };
        // RFC 7662 §4: only the token's own client or an authorised resource server learns about it.
        if c.client_id != caller.client_id && !caller.introspection_allowed {
            return inactive();
        }
        // RFC 7662 §2.2: the token type of RFC 6749 §7.1 — how the token is presented.
        let token_type = Confirmation::from_cnf(&c.cnf)
            .as_ref()
            .map(crate::routes::token::token_type)
            .unwrap_or("Bearer");
        let mut body = json!({
            "active": true, "token_type": token_type, "scope": c.scope, "client_id": c.client_id,
            "sub": c.sub, "iss": c.iss, "aud": c.aud, "exp": c.exp, "iat": c.iat, "jti": c.jti, "cnf": c.cnf,
        });
        if let Some(id) = c.consent_id {
            body["consent_id"] = json!(id);
        }
        if let Some(a) = c.acr {
            body["acr"] = json!(a);
        }
        return Ok(body);
    }
    let now = st.clock.now();
    let Some(rec) = st
        .store
        .find_refresh_token(&crate::digest(token))
        .await
        .map_err(store)?
    else {
        return inactive();
    };
    if rec.revoked_at.is_some()
        || rec.expires_at <= now
        || (rec.client_id != caller.client_id && !caller.introspection_allowed)
    {
        return inactive();
    }
    if let Some(cid) = &rec.consent_id
        && crate::issue::consent_is_active(st, cid).await.is_err()
    {
        return inactive();
    }
    Ok(json!({
        "active": true, "token_type": "refresh_token", "scope": rec.scope, "client_id": rec.client_id,
        "sub": rec.subject, "exp": rec.expires_at, "iat": rec.created_at, "cnf": rec.cnf, "consent_id": rec.consent_id,
    }))
}

#[tracing::instrument(skip_all)]
pub async fn post_revoke(
    State(st): State<Arc<AppState>>,
    ClientCert(cert): ClientCert,
    OAuthForm(pairs): OAuthForm,
) -> Result<Response, ApiError> {
    let params = single_valued(&pairs)?;
    let caller = authenticate(&st, &params, cert.as_ref()).await?;
    let token = params
        .get("token")
        .copied()
        .ok_or_else(|| OAuthError::invalid_request("token is required"))?;
    let now = st.clock.now();
    if token.contains('.') {
        // Revoking someone else's token is silently ignored (RFC 7009 §2.1).
        if let Ok(c) = verify_access_token(&st, token, Presented::NotChecked).await
            && c.client_id == caller.client_id
        {
            st.store
                .revoke_access_token(&c.jti, c.exp)
                .await
                .map_err(store)?;
            tracing::info!(client_id = %caller.client_id, "access token revoked");
        }
    } else {
        let digest = crate::digest(token);
        if let Some(rec) = st.store.find_refresh_token(&digest).await.map_err(store)?
            && rec.client_id == caller.client_id
        {
            st.store
                .revoke_refresh_token(&digest, now)
                .await
                .map_err(store)?;
            tracing::info!(client_id = %caller.client_id, "refresh token revoked");
        }
    }
    Ok(json_no_store(StatusCode::OK, json!({})))
}
