//! RFC 9126 pushed authorization request endpoint. Every authorization starts here
//! (FAPI 2.0 §5.3.2.2-2/3); the client is authenticated (§5.3.2.2-4) and the request is
//! validated in full before a short-lived `request_uri` is handed out. A DPoP proof or a
//! `dpop_jkt` parameter binds the authorization code to a DPoP key (RFC 9449 §10).

use crate::client_auth::{authenticate, store};
use crate::dpop;
use crate::http::{ApiError, ClientCert, OAuthForm, PeerCert, json_no_store};
use crate::state::AppState;
use authz_core::OAuthError;
use authz_core::client::SenderConstraint;
use authz_core::par::{bind_dpop_key, single_valued};
use authz_core::request_object::validate_pushed;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// What is stored behind a `request_uri` (keyed by its digest).
#[derive(Serialize, Deserialize)]
pub struct PushedRequest {
    pub request: authz_core::par::AuthorizationRequest,
    pub expires_at: i64,
}

#[tracing::instrument(skip_all)]
pub async fn post_par(
    State(st): State<Arc<AppState>>,
    ClientCert(cert): ClientCert,
    headers: HeaderMap,
    form: Result<OAuthForm, ApiError>,
) -> Response {
    let sent = dpop::sent(&headers);
    let r = match form {
        Ok(OAuthForm(pairs)) => par(&st, cert.as_ref(), &headers, &pairs).await,
        Err(e) => Err(e),
    };
    dpop::finish(&st, sent, r)
}

async fn par(
    st: &AppState,
    cert: Option<&PeerCert>,
    headers: &HeaderMap,
    pairs: &[(String, String)],
) -> Result<Response, ApiError> {
    let params = single_valued(pairs)?;
    // The proof first, so a nonce demand (RFC 9449 §8) does not use up the client
    // assertion's jti.
    let proof = dpop::request_proof(st, headers, "POST", "/par", None).await?;
    let client = authenticate(st, &params, cert).await?;
    if proof.is_some() && client.sender_constraint() != SenderConstraint::Dpop {
        return Err(OAuthError::invalid_request(
            "this client is registered for certificate-bound tokens; DPoP is not used",
        )
        .into());
    }
    // FAPI 2.0 MS §5.3.1: a signed request object replaces the form parameters.
    let mut request = validate_pushed(&params, &client, &st.issuer, st.clock.now())?;
    // RFC 9449 §10.1: the proof's key binds the code; with dpop_jkt too, they must agree.
    bind_dpop_key(&mut request, proof.as_ref().map(|p| p.jkt.as_str()))?;
    // RFC 9396 `payment_initiation`: the consent POST /domestic-payment-consents would
    // create, owned by this client; from here on the request names it like an intent.
    if let Some(payment) = request.payment_initiation.take() {
        let id = crate::ob_payments::create_rar_consent(st, &client.client_id, &payment).await?;
        request.intent_id = Some(id);
    }
    // UK OB: the intent must be this client's and still awaiting authorisation.
    if let Some(intent) = &request.intent_id
        && !crate::ob_payments::check_intent(st, &client.client_id, intent, &request.scope).await?
        && !crate::ob_file_payments::check_intent(st, &client.client_id, intent, &request.scope)
            .await?
    {
        crate::ob::check_intent(st, &client.client_id, intent).await?;
        if !request
            .scope
            .split(' ')
            .any(|s| s == openbanking::SCOPE_ACCOUNTS)
        {
            return Err(authz_core::OAuthError::invalid_scope(
                "an account-access intent needs the accounts scope",
            )
            .into());
        }
    }
    let now = st.clock.now();
    let request_uri = format!(
        "{}{}",
        authz_core::REQUEST_URI_PREFIX,
        crate::random_token(32)
    );
    let expires_at = now + st.config.par_ttl_secs;
    let value = serde_json::to_string(&PushedRequest {
        request,
        expires_at,
    })
    .map_err(|e| ApiError(authz_core::OAuthError::server_error(e.to_string())))?;
    st.eph
        .put("par", &crate::digest(&request_uri), &value, expires_at, now)
        .await
        .map_err(store)?;
    tracing::info!(client_id = %client.client_id, "pushed authorization request accepted");
    Ok(json_no_store(
        StatusCode::CREATED,
        serde_json::json!({"request_uri": request_uri, "expires_in": st.config.par_ttl_secs}),
    ))
}
