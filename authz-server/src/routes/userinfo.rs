//! OIDC Core §5.3 userinfo, RFC 7662 introspection and RFC 7009 revocation.

use crate::client_auth::{authenticate, store};
use crate::http::{ApiError, ClientCert, OAuthForm, json_no_store};
use crate::issue::verify_access_token;
use crate::state::AppState;
use authz_core::par::single_valued;
use authz_core::tokens::ACCESS_TOKEN_TYP;
use authz_core::{OAuthError, OAuthResult};
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Response;
use serde_json::json;
use std::sync::Arc;

/// RFC 6750 §2.1: the token comes only from the Authorization header; the scheme name is
/// case-insensitive. Query-string tokens are refused outright (FAPI 2.0 §5.3.4-2).
fn bearer(headers: &HeaderMap, query: Option<&str>) -> OAuthResult<String> {
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
    match v.split_once(' ') {
        Some((scheme, token))
            if scheme.eq_ignore_ascii_case("bearer") && !token.trim().is_empty() =>
        {
            Ok(token.trim().to_owned())
        }
        _ => Err(OAuthError::invalid_token(
            "the Authorization header must use the Bearer scheme",
        )),
    }
}

#[tracing::instrument(skip_all)]
pub async fn userinfo(
    State(st): State<Arc<AppState>>,
    ClientCert(cert): ClientCert,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let token = bearer(&headers, q.as_deref())?;
    let claims = verify_access_token(&st, &token, cert.as_ref(), true).await?;
    if !claims.scope.split(' ').any(|s| s == "openid") {
        return Err(OAuthError::new(
            authz_core::ErrorCode::InsufficientScope,
            "the openid scope is required",
        )
        .into());
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

#[tracing::instrument(skip_all)]
pub async fn post_introspect(
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
    let inactive = || Ok(json_no_store(StatusCode::OK, json!({"active": false})));
    // Access token first (JWT), then refresh token (by digest).
    if token.contains('.') {
        let Ok(c) = verify_access_token(&st, token, None, false).await else {
            return inactive();
        };
        // RFC 7662 §4: only the token's own client or an authorised resource server learns about it.
        if c.client_id != caller.client_id && !caller.introspection_allowed {
            return inactive();
        }
        let mut body = json!({
            "active": true, "token_type": ACCESS_TOKEN_TYP, "scope": c.scope, "client_id": c.client_id,
            "sub": c.sub, "iss": c.iss, "aud": c.aud, "exp": c.exp, "iat": c.iat, "jti": c.jti, "cnf": c.cnf,
        });
        if let Some(id) = c.consent_id {
            body["consent_id"] = json!(id);
        }
        if let Some(a) = c.acr {
            body["acr"] = json!(a);
        }
        return Ok(json_no_store(StatusCode::OK, body));
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
        && crate::issue::consent_is_active(&st, cid).await.is_err()
    {
        return inactive();
    }
    Ok(json_no_store(
        StatusCode::OK,
        json!({
            "active": true, "token_type": "refresh_token", "scope": rec.scope, "client_id": rec.client_id,
            "sub": rec.subject, "exp": rec.expires_at, "iat": rec.created_at, "cnf": rec.cnf, "consent_id": rec.consent_id,
        }),
    ))
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
        if let Ok(c) = verify_access_token(&st, token, None, false).await
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
