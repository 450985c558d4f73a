//! Token endpoint (RFC 6749 §3.2): `authorization_code` with PKCE, `refresh_token` (not
//! rotated, FAPI 2.0 §5.3.2.1-9) and `client_credentials`. Every access token is
//! sender-constrained by the one mechanism its client registered: the client certificate
//! of the connection (RFC 8705 §3) or the key of the request's DPoP proof (RFC 9449 §5);
//! without it, no token.

use crate::client_auth::{authenticate, store};
use crate::dpop;
use crate::http::{ApiError, ClientCert, OAuthForm, PeerCert, json_no_store};
use crate::issue::{AccessTokenInput, active_consent, mint_access_token, mint_id_token};
use crate::routes::authorize::CodeGrant;
use crate::state::AppState;
use authz_core::client::{Client, GrantType, SenderConstraint};
use authz_core::par::{single_valued, verify_pkce};
use authz_core::scope::Scope;
use authz_core::tokens::{AuthContext, Confirmation};
use authz_core::{ErrorCode, OAuthError, OAuthResult};
use authz_store::{AuditEntry, ConsentStatus, Consumed, RefreshTokenRecord};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde_json::json;
use std::collections::HashMap;
use std::sync::Arc;

#[tracing::instrument(skip_all, fields(grant_type))]
pub async fn post_token(
    State(st): State<Arc<AppState>>,
    ClientCert(cert): ClientCert,
    headers: HeaderMap,
    form: Result<OAuthForm, ApiError>,
) -> Response {
    let sent = dpop::sent(&headers);
    let r = match form {
        Ok(OAuthForm(pairs)) => token(&st, cert, &headers, &pairs).await,
        Err(e) => Err(e),
    };
    dpop::finish(&st, sent, r)
}

async fn token(
    st: &AppState,
    cert: Option<PeerCert>,
    headers: &HeaderMap,
    pairs: &[(String, String)],
) -> Result<Response, ApiError> {
    let params = single_valued(pairs)?;
    // The proof first, so a nonce demand (RFC 9449 §8) does not use up the client
    // assertion's jti.
    let proof = dpop::request_proof(st, headers, "POST", "/token", None).await?;
    let client = authenticate(st, &params, cert.as_ref()).await?;
    let grant = params
        .get("grant_type")
        .copied()
        .ok_or_else(|| OAuthError::invalid_request("grant_type is required"))?;
    tracing::Span::current().record("grant_type", grant);
    let grant = GrantType::parse(grant).ok_or_else(|| {
        OAuthError::new(
            ErrorCode::UnsupportedGrantType,
            "grant_type is not supported",
        )
    })?;
    if !client.may_use(grant) {
        return Err(OAuthError::new(
            ErrorCode::UnauthorizedClient,
            "client is not registered for this grant_type",
        )
        .into());
    }
    // Sender-constraining is mandatory (FAPI 2.0 §5.3.2.1-4/5), by the one mechanism the
    // client registered: a token never carries both bindings.
    let cnf = match client.sender_constraint() {
        SenderConstraint::Dpop => {
            let proof = proof.ok_or_else(|| {
                OAuthError::new(
                    ErrorCode::InvalidDpopProof,
                    "a DPoP proof is required: this client's tokens are DPoP-bound (RFC 9449)",
                )
            })?;
            Confirmation::Dpop { jkt: proof.jkt }
        }
        SenderConstraint::Mtls => {
            if proof.is_some() {
                return Err(OAuthError::invalid_request(
                    "this client is registered for certificate-bound tokens; DPoP is not used",
                )
                .into());
            }
            let cert = cert.ok_or_else(|| {
                OAuthError::invalid_request(
                    "a client certificate is required: tokens are certificate-bound (RFC 8705)",
                )
            })?;
            Confirmation::Mtls {
                x5t_s256: cert.x5t_s256,
            }
        }
    };
    let body = match grant {
        GrantType::AuthorizationCode => authorization_code(st, &client, &params, &cnf).await?,
        GrantType::RefreshToken => refresh_token(st, &client, &params, &cnf).await?,
        GrantType::ClientCredentials => client_credentials(st, &client, &params, &cnf)?,
    };
    crate::metrics::token_issued(grant);
    Ok(json_no_store(StatusCode::OK, body))
}

/// RFC 6749 §7.1 / RFC 9449 §5: the `token_type` that tells the client how to present it.
pub fn token_type(cnf: &Confirmation) -> &'static str {
    match cnf {
        Confirmation::Mtls { .. } => "Bearer",
        Confirmation::Dpop { .. } => "DPoP",
    }
}

async fn authorization_code(
    st: &AppState,
    client: &Client,
    p: &HashMap<&str, &str>,
    cnf: &Confirmation,
) -> OAuthResult<serde_json::Value> {
    let code = p
        .get("code")
        .copied()
        .ok_or_else(|| OAuthError::invalid_request("code is required"))?;
    let now = st.clock.now();
    let grant: CodeGrant = match st
        .eph
        .consume("code", &crate::digest(code), now)
        .await
        .map_err(store)?
    {
        Consumed::Fresh(v) => {
            serde_json::from_str(&v).map_err(|e| OAuthError::server_error(e.to_string()))?
        }
        Consumed::Replayed(v) => {
            // RFC 6749 §4.1.2 / FAPI 2.0 §5.3.2.2-9: a replayed code revokes what it issued.
            if let Ok(g) = serde_json::from_str::<CodeGrant>(&v) {
                revoke_consent(st, &g.consent_id, "authorization code replayed").await?;
            }
            return Err(OAuthError::invalid_grant(
                "authorization code has already been used",
            ));
        }
        Consumed::Missing => {
            return Err(OAuthError::invalid_grant(
                "authorization code is invalid or expired",
            ));
        }
    };
    if grant.client_id != client.client_id {
        return Err(OAuthError::invalid_grant(
            "authorization code was issued to another client",
        ));
    }
    if grant.expires_at <= now {
        return Err(OAuthError::invalid_grant("authorization code has expired"));
    }
    match p.get("redirect_uri") {
        Some(r) if *r == grant.redirect_uri => {}
        Some(_) => {
            return Err(OAuthError::invalid_grant(
                "redirect_uri does not match the authorization request",
            ));
        }
        None => return Err(OAuthError::invalid_request("redirect_uri is required")),
    }
    // RFC 9449 §10: a code bound to a DPoP key is redeemed only with a proof by that key.
    if let Some(bound) = &grant.dpop_jkt
        && !matches!(cnf, Confirmation::Dpop { jkt } if jkt == bound)
    {
        return Err(OAuthError::invalid_grant(
            "the authorization code is bound to another DPoP key",
        ));
    }
    verify_pkce(p.get("code_verifier").copied(), &grant.code_challenge)?;
    let consent = active_consent(st, &grant.consent_id)
        .await
        .map_err(|_| OAuthError::invalid_grant("the consent is no longer active"))?;
    let extras = crate::ob::token_extras(&consent);

    let (at, _) = mint_access_token(
        st,
        &AccessTokenInput {
            client_id: &client.client_id,
            sub: &grant.sub,
            scope: &grant.scope,
            cnf,
            consent_id: Some(&grant.consent_id),
            auth: Some(&grant.auth),
            authorization_details: extras.authorization_details.as_ref(),
        },
    )?;
    let rt = new_refresh_token(st, client, &grant, cnf).await?;
    let mut body = json!({
        "access_token": at,
        "token_type": token_type(cnf),
        "expires_in": st.config.access_token_ttl_secs,
        "scope": grant.scope,
        "refresh_token": rt,
        "consent_id": grant.consent_id,
    });
    if let Some(d) = &extras.authorization_details {
        body["authorization_details"] = d.clone();
    }
    if grant.scope.split(' ').any(|s| s == "openid") {
        let name = if grant.id_token_claims.iter().any(|c| c == "name") {
            st.store
                .find_customer(&grant.sub)
                .await
                .map_err(store)?
                .map(|c| c.display_name)
        } else {
            None
        };
        body["id_token"] = json!(mint_id_token(
            st,
            client,
            &grant.sub,
            grant.nonce.as_deref(),
            &grant.auth,
            extras.intent_id.as_deref(),
            name.as_deref(),
        )?);
    }
    Ok(body)
}

async fn new_refresh_token(
    st: &AppState,
    client: &Client,
    g: &CodeGrant,
    cnf: &Confirmation,
) -> OAuthResult<String> {
    let now = st.clock.now();
    let consent_exp = st
        .store
        .find_consent(&g.consent_id)
        .await
        .map_err(store)?
        .and_then(|c| c.expires_at);
    let exp = (now + st.config.refresh_token_ttl_secs).min(consent_exp.unwrap_or(i64::MAX));
    let token = crate::random_token(32);
    let rec = RefreshTokenRecord {
        digest: crate::digest(&token),
        client_id: client.client_id.clone(),
        consent_id: Some(g.consent_id.clone()),
        subject: g.sub.clone(),
        scope: g.scope.clone(),
        cnf: serde_json::to_value(cnf.to_cnf())
            .map_err(|e| OAuthError::server_error(e.to_string()))?,
        auth: serde_json::to_value(&g.auth).map_err(|e| OAuthError::server_error(e.to_string()))?,
        created_at: now,
        expires_at: exp,
        revoked_at: None,
    };
    st.store.insert_refresh_token(&rec).await.map_err(store)?;
    Ok(token)
}

async fn refresh_token(
    st: &AppState,
    client: &Client,
    p: &HashMap<&str, &str>,
    cnf: &Confirmation,
) -> OAuthResult<serde_json::Value> {
    let token = p
        .get("refresh_token")
        .copied()
        .ok_or_else(|| OAuthError::invalid_request("refresh_token is required"))?;
    let now = st.clock.now();
    let rec = st
        .store
        .find_refresh_token(&crate::digest(token))
        .await
        .map_err(store)?;
    let rec = rec.ok_or_else(|| OAuthError::invalid_grant("refresh token is invalid"))?;
    if rec.client_id != client.client_id {
        return Err(OAuthError::invalid_grant(
            "refresh token was issued to another client",
        ));
    }
    if rec.revoked_at.is_some() || rec.expires_at <= now {
        return Err(OAuthError::invalid_grant(
            "refresh token is revoked or expired",
        ));
    }
    // Bound to the client's key: the same certificate (RFC 8705 §3) or the same DPoP key
    // (RFC 9449 §5) must present it; we apply it to every client, as FAPI 2.0 binds all
    // tokens.
    let bound: authz_core::tokens::Cnf = serde_json::from_value(rec.cnf.clone())
        .map_err(|e| OAuthError::server_error(e.to_string()))?;
    if Confirmation::from_cnf(&bound).as_ref() != Some(cnf) {
        return Err(OAuthError::invalid_grant(match cnf {
            Confirmation::Mtls { .. } => "refresh token is bound to a different client certificate",
            Confirmation::Dpop { .. } => "refresh token is bound to a different DPoP key",
        }));
    }
    let extras = match &rec.consent_id {
        Some(cid) => crate::ob::token_extras(
            &active_consent(st, cid)
                .await
                .map_err(|_| OAuthError::invalid_grant("the consent is no longer active"))?,
        ),
        None => Default::default(),
    };
    let granted = Scope::parse(&rec.scope).unwrap_or_default();
    let scope = match p.get("scope") {
        None => rec.scope.clone(),
        Some(s) => {
            let asked =
                Scope::parse(s).map_err(|_| OAuthError::invalid_scope("scope is malformed"))?;
            if asked.is_empty() || !asked.is_subset(&granted) {
                return Err(OAuthError::invalid_scope("scope exceeds what was granted"));
            }
            asked.to_string()
        }
    };
    let auth: Option<AuthContext> = serde_json::from_value(rec.auth.clone()).ok();
    let (at, _) = mint_access_token(
        st,
        &AccessTokenInput {
            client_id: &client.client_id,
            sub: &rec.subject,
            scope: &scope,
            cnf,
            consent_id: rec.consent_id.as_deref(),
            auth: auth.as_ref(),
            authorization_details: extras.authorization_details.as_ref(),
        },
    )?;
    let mut body = json!({
        "access_token": at,
        "token_type": token_type(cnf),
        "expires_in": st.config.access_token_ttl_secs,
        "scope": scope,
        // Not rotated: the same refresh token stays valid.
        "refresh_token": token,
    });
    if let Some(d) = extras.authorization_details {
        body["authorization_details"] = d;
    }
    Ok(body)
}

fn client_credentials(
    st: &AppState,
    client: &Client,
    p: &HashMap<&str, &str>,
    cnf: &Confirmation,
) -> OAuthResult<serde_json::Value> {
    let allowed = client
        .allowed_scope()
        .without("openid")
        .without("offline_access")
        .without("profile");
    let scope = match p.get("scope") {
        None => allowed,
        Some(s) => {
            let asked =
                Scope::parse(s).map_err(|_| OAuthError::invalid_scope("scope is malformed"))?;
            if asked.is_empty() || !asked.is_subset(&allowed) {
                return Err(OAuthError::invalid_scope(
                    "scope is not available to this client with client_credentials",
                ));
            }
            asked
        }
    };
    let scope = scope.to_string();
    let (at, _) = mint_access_token(
        st,
        &AccessTokenInput {
            client_id: &client.client_id,
            sub: &client.client_id,
            scope: &scope,
            cnf,
            consent_id: None,
            auth: None,
            authorization_details: None,
        },
    )?;
    Ok(
        json!({"access_token": at, "token_type": token_type(cnf), "expires_in": st.config.access_token_ttl_secs, "scope": scope}),
    )
}

/// Revoke a consent and everything issued under it (its access tokens die with it at the
/// next check, because every check looks the consent up).
pub async fn revoke_consent(st: &AppState, consent_id: &str, why: &str) -> OAuthResult<()> {
    let now = st.clock.now();
    let audit = AuditEntry {
        consent_id: consent_id.to_owned(),
        at: now,
        actor: "system".into(),
        action: "revoked".into(),
        detail: why.to_owned(),
    };
    st.store
        .transition_consent(
            consent_id,
            &[
                ConsentStatus::Authorised,
                ConsentStatus::AwaitingAuthorisation,
            ],
            ConsentStatus::Revoked,
            &audit,
        )
        .await
        .map_err(store)?;
    st.store
        .revoke_refresh_tokens_for_consent(consent_id, now)
        .await
        .map_err(store)?;
    tracing::warn!(%consent_id, reason = why, "consent revoked");
    Ok(())
}
