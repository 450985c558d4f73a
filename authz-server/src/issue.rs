//! Minting and checking the tokens this server issues.

use crate::client_auth::store;
use crate::http::PeerCert;
use crate::state::AppState;
use authz_core::client::Client;
use authz_core::tokens::{
    ACCESS_TOKEN_TYP, AccessTokenClaims, AuthContext, Confirmation, IdTokenClaims,
};
use authz_core::{ErrorCode, OAuthError, OAuthResult};
use authz_store::ConsentStatus;
use fapi_jose::{Alg, Unverified};

pub struct AccessTokenInput<'a> {
    pub client_id: &'a str,
    pub sub: &'a str,
    pub scope: &'a str,
    pub cnf: &'a Confirmation,
    pub consent_id: Option<&'a str>,
    pub auth: Option<&'a AuthContext>,
    /// RFC 9396: the granted details, for consents that came in as `authorization_details`.
    pub authorization_details: Option<&'a serde_json::Value>,
}

pub fn mint_access_token(
    st: &AppState,
    i: &AccessTokenInput<'_>,
) -> OAuthResult<(String, AccessTokenClaims)> {
    let now = st.clock.now();
    let claims = AccessTokenClaims {
        iss: st.issuer.clone(),
        sub: i.sub.to_owned(),
        aud: st.resource_base.clone(),
        client_id: i.client_id.to_owned(),
        iat: now,
        exp: now + st.config.access_token_ttl_secs,
        jti: crate::random_token(16),
        scope: i.scope.to_owned(),
        cnf: i.cnf.to_cnf(),
        consent_id: i.consent_id.map(str::to_owned),
        acr: i.auth.map(|a| a.acr.clone()),
        auth_time: i.auth.map(|a| a.auth_time),
        authorization_details: i.authorization_details.cloned(),
    };
    let key = st
        .keys
        .signer(Alg::ES256)
        .ok_or_else(|| OAuthError::server_error("no ES256 signing key"))?;
    let jwt = key
        .sign_jwt(Some(ACCESS_TOKEN_TYP), &claims)
        .map_err(|e| OAuthError::server_error(e.to_string()))?;
    Ok((jwt, claims))
}

pub fn mint_id_token(
    st: &AppState,
    client: &Client,
    sub: &str,
    nonce: Option<&str>,
    auth: &AuthContext,
    intent_id: Option<&str>,
    name: Option<&str>,
) -> OAuthResult<String> {
    let now = st.clock.now();
    let claims = IdTokenClaims {
        iss: st.issuer.clone(),
        sub: sub.to_owned(),
        aud: client.client_id.clone(),
        azp: client.client_id.clone(),
        iat: now,
        exp: now + st.config.id_token_ttl_secs,
        auth_time: auth.auth_time,
        nonce: nonce.map(str::to_owned),
        acr: auth.acr.clone(),
        amr: auth.amr.clone(),
        openbanking_intent_id: intent_id.map(str::to_owned),
        name: name.map(str::to_owned),
    };
    let key = st
        .keys
        .signer(client.id_token_signed_response_alg)
        .ok_or_else(|| OAuthError::server_error("no signing key for the client's id_token alg"))?;
    key.sign_jwt(Some("JWT"), &claims)
        .map_err(|e| OAuthError::server_error(e.to_string()))
}

/// What came with a presented access token, to check its sender constraint against.
pub enum Presented<'a> {
    /// Introspection and revocation: the caller is not the holder; no binding to check.
    NotChecked,
    /// `Authorization: Bearer`: the client certificate of the connection (RFC 8705 §3).
    Bearer(Option<&'a PeerCert>),
    /// `Authorization: DPoP`: the thumbprint of the request's verified proof key (RFC 9449
    /// §7.1), if a proof came.
    Dpop(Option<&'a str>),
}

/// Check one of our access tokens: signature, type, issuer, expiry, its binding against
/// what was presented, revocation, and the consent behind it.
pub async fn verify_access_token(
    st: &AppState,
    token: &str,
    presented: Presented<'_>,
) -> OAuthResult<AccessTokenClaims> {
    let invalid = |d: &'static str| OAuthError::invalid_token(d);
    let u = Unverified::parse(token).map_err(|_| invalid("access token is malformed"))?;
    if u.header.typ.as_deref() != Some(ACCESS_TOKEN_TYP) {
        return Err(invalid("not an access token"));
    }
    u.verify_with_set(st.keys.verification_keys())
        .map_err(|_| invalid("access token signature is invalid"))?;
    let claims: AccessTokenClaims = serde_json::from_value(u.claims.clone())
        .map_err(|_| invalid("access token claims are malformed"))?;
    if claims.iss != st.issuer {
        return Err(invalid("access token was issued by someone else"));
    }
    if claims.exp <= st.clock.now() {
        return Err(invalid("access token has expired"));
    }
    check_binding(&claims, presented)?;
    if st
        .store
        .is_access_token_revoked(&claims.jti)
        .await
        .map_err(store)?
    {
        return Err(invalid("access token has been revoked"));
    }
    if let Some(cid) = &claims.consent_id {
        consent_is_active(st, cid).await?;
    }
    Ok(claims)
}

/// FAPI 2.0 §5.3.4 / RFC 9449 §7: the token is used the way it is bound, by its holder.
/// A DPoP-bound token is never accepted as a Bearer token, nor a certificate-bound token
/// with the DPoP scheme.
fn check_binding(claims: &AccessTokenClaims, presented: Presented<'_>) -> OAuthResult<()> {
    let invalid = |d: &'static str| Err(OAuthError::invalid_token(d));
    match (Confirmation::from_cnf(&claims.cnf), presented) {
        (_, Presented::NotChecked) => Ok(()),
        (None, _) => invalid("access token has no usable confirmation"),
        (Some(Confirmation::Mtls { x5t_s256 }), Presented::Bearer(cert)) => match cert {
            Some(c) if c.x5t_s256 == x5t_s256 => Ok(()),
            Some(_) => invalid("access token is bound to a different client certificate"),
            None => invalid("access token is certificate-bound; present the client certificate"),
        },
        (Some(Confirmation::Mtls { .. }), Presented::Dpop(_)) => invalid(
            "access token is certificate-bound; present it with the Bearer scheme, not DPoP",
        ),
        (Some(Confirmation::Dpop { .. }), Presented::Bearer(_)) => {
            invalid("access token is DPoP-bound; present it with the DPoP scheme and a DPoP proof")
        }
        (Some(Confirmation::Dpop { jkt }), Presented::Dpop(proof)) => match proof {
            Some(k) if k == jkt => Ok(()),
            Some(_) => Err(OAuthError::new(
                ErrorCode::InvalidDpopProof,
                "the DPoP proof is signed by another key than the access token is bound to",
            )),
            None => Err(OAuthError::new(
                ErrorCode::InvalidDpopProof,
                "a DPoP proof is required with a DPoP-bound access token",
            )),
        },
    }
}

/// The consent exists, is authorised and has not expired.
pub async fn consent_is_active(st: &AppState, consent_id: &str) -> OAuthResult<()> {
    active_consent(st, consent_id).await.map(|_| ())
}

/// [`consent_is_active`], returning the consent.
pub async fn active_consent(
    st: &AppState,
    consent_id: &str,
) -> OAuthResult<authz_store::ConsentRecord> {
    let c = st.store.find_consent(consent_id).await.map_err(store)?;
    match c {
        Some(c)
            if c.status == ConsentStatus::Authorised
                && c.expires_at.is_none_or(|e| e > st.clock.now()) =>
        {
            Ok(c)
        }
        _ => Err(OAuthError::invalid_token(
            "the consent behind this token is no longer active",
        )),
    }
}
