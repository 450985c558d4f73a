//! RFC 9126 pushed authorization request endpoint. Every authorization starts here
//! (FAPI 2.0 §5.3.2.2-2/3); the client is authenticated (§5.3.2.2-4) and the request is
//! validated in full before a short-lived `request_uri` is handed out.

use crate::client_auth::{authenticate, store};
use crate::http::{ApiError, ClientCert, OAuthForm, json_no_store};
use crate::state::AppState;
use authz_core::par::{single_valued, validate_par};
use axum::extract::State;
use axum::http::StatusCode;
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
    OAuthForm(pairs): OAuthForm,
) -> Result<Response, ApiError> {
    let params = single_valued(&pairs)?;
    let client = authenticate(&st, &params, cert.as_ref()).await?;
    let request = validate_par(&params, &client)?;
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
