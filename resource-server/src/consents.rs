//! Account-access consents (UK OB Read/Write v4 `account-access-consents`): the intent a
//! TPP creates with a client-credentials token before sending the customer to the
//! authorization server, reads back, and deletes.
//!
//! * Only the client that created a consent sees or deletes it; any other id answers
//!   400 `UK.OBIE.Resource.NotFound`, the same as an unknown one (no oracle).
//! * Expiry is made explicit when a consent is read: AWAU or AUTH past its
//!   `ExpirationDateTime` moves to EXPD in the store (guarded, audited).
//! * `DELETE` of AWAU or AUTH moves it to CANC in one guarded update and revokes its
//!   refresh tokens; the access tokens stop at the next consent check (≤ 1 s). Of two
//!   racing deletes exactly one wins; the other answers from the new state.

use crate::AppState;
use crate::auth::{AuthError, ClientGrant};
use crate::error::{ObError, ObErrorResponse, codes};
use crate::ob::{self, Links, Meta};
use crate::routes::{Credentials, PREFIX, self_link};
use authz_store::{AuditEntry, ConsentRecord, ConsentStatus as Stored};
use axum::body::Bytes;
use axum::extract::{FromRequestParts, Path, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use openbanking::{AccountAccessDetails, KIND_ACCOUNT_ACCESS, ObStatus, Source, StatusReason};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::ToSchema;

/// `StatusReasonCode` recorded when a consent passes its `ExpirationDateTime`.
pub const REASON_EXPIRED: &str = "TKXP";
/// `StatusReasonCode` recorded when the TPP deletes a consent.
pub const REASON_TPP_REVOKED: &str = "U028";

/// A client-credentials caller (the TPP acting for itself), after throttling.
pub struct ClientAccess(pub ClientGrant);

impl FromRequestParts<AppState> for ClientAccess {
    type Rejection = ObError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ObError> {
        client_grant(parts, state, None).await.map(Self)
    }
}

/// The client-credentials caller of every TPP-for-itself endpoint: the token verified
/// (for `scope`, or the account-information scope when `None`), bound to the request's
/// certificate or DPoP proof, then throttled. The extractors of each API wrap it.
pub(crate) async fn client_grant(
    parts: &mut Parts,
    state: &AppState,
    scope: Option<&str>,
) -> Result<ClientGrant, ObError> {
    let c = Credentials::from_parts(parts, state)?;
    let (method, cert) = (parts.method.as_str(), c.cert.as_deref());
    let grant = match scope {
        None => {
            state
                .verifier
                .verify_client(c.authorization, cert, c.dpop, method, &c.url)
                .await?
        }
        Some(s) => {
            state
                .verifier
                .verify_client_scope(c.authorization, cert, c.dpop, method, &c.url, s)
                .await?
        }
    };
    state.throttle(&grant.client_id)?;
    Ok(grant)
}

// ---- OpenAPI shapes ------------------------------------------------------------------------

/// `OBReadConsent1`: the request body of `POST /account-access-consents`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "PascalCase")]
pub struct ObReadConsent {
    pub data: ObReadConsentData,
    /// Always `{}` for account access.
    #[schema(value_type = Object)]
    pub risk: serde_json::Value,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "PascalCase")]
pub struct ObReadConsentData {
    /// `OBInternalPermissions1Code` values, e.g. `ReadAccountsDetail`, `ReadBalances`.
    /// Transaction permissions come as a pair: Basic or Detail with Credits or Debits.
    pub permissions: Vec<String>,
    /// ISO 8601 date-time with offset, in the future and within 180 days.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expiration_date_time: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub transaction_from_date_time: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub transaction_to_date_time: Option<String>,
}

/// `OBReadConsentResponse1`.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "PascalCase")]
pub struct ObReadConsentResponse {
    pub data: ObReadConsentResponseData,
    #[schema(value_type = Object)]
    pub risk: serde_json::Value,
    pub links: Links,
    pub meta: Meta,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "PascalCase")]
pub struct ObReadConsentResponseData {
    pub consent_id: String,
    pub creation_date_time: String,
    /// `AWAU`, `AUTH`, `RJCT`, `CANC` or `EXPD`.
    pub status: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status_reason: Option<Vec<ObStatusReason>>,
    pub status_update_date_time: String,
    pub permissions: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expiration_date_time: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub transaction_from_date_time: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub transaction_to_date_time: Option<String>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "PascalCase")]
pub struct ObStatusReason {
    pub status_reason_code: String,
    pub status_reason_description: String,
}

// ---- helpers --------------------------------------------------------------------------------

fn ob_status(s: Stored) -> ObStatus {
    match s {
        Stored::AwaitingAuthorisation => ObStatus::Awau,
        Stored::Authorised => ObStatus::Auth,
        Stored::Rejected => ObStatus::Rjct,
        // Not used for account access; a consumed consent is no longer usable.
        Stored::Revoked | Stored::Consumed => ObStatus::Canc,
        Stored::Expired => ObStatus::Expd,
    }
}

fn not_found() -> ObError {
    ObError::resource_not_found("ConsentId")
}

fn details_of(r: &ConsentRecord) -> Result<AccountAccessDetails, ObError> {
    AccountAccessDetails::from_value(&r.details).map_err(|e| {
        tracing::error!(consent = %r.id, error = %e, "corrupt account-access details");
        ObError::internal()
    })
}

fn consent_path(id: &str) -> String {
    format!("{PREFIX}/account-access-consents/{id}")
}

/// Consent date-times are rendered in UTC, whatever offset they were given with.
fn utc(t: OffsetDateTime) -> String {
    ob::dt(t.to_offset(time::UtcOffset::UTC))
}

fn render(
    st: &AppState,
    r: &ConsentRecord,
    d: &AccountAccessDetails,
    status: StatusCode,
) -> Response {
    let created = OffsetDateTime::from_unix_timestamp(r.created_at)
        .map(utc)
        .unwrap_or_default();
    let body = ObReadConsentResponse {
        data: ObReadConsentResponseData {
            consent_id: r.id.clone(),
            creation_date_time: created,
            status: ob_status(r.status).code().to_owned(),
            status_reason: d.status_reason.as_ref().map(|s| {
                vec![ObStatusReason {
                    status_reason_code: s.code.clone(),
                    status_reason_description: s.description.clone(),
                }]
            }),
            status_update_date_time: utc(d.status_update_date_time),
            permissions: d
                .permissions
                .iter()
                .map(|p| p.as_str().to_owned())
                .collect(),
            expiration_date_time: d.expiration_date_time.map(utc),
            transaction_from_date_time: d.transaction_from_date_time.map(utc),
            transaction_to_date_time: d.transaction_to_date_time.map(utc),
        },
        risk: serde_json::json!({}),
        links: self_link(st, &consent_path(&r.id), None),
        meta: Meta::default(),
    };
    let mut resp = (status, axum::Json(body)).into_response();
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

/// The caller's account-access consent, or 400 NotFound for an unknown id, another
/// client's consent or another kind of consent alike.
async fn owned(
    st: &AppState,
    client_id: &str,
    id: &str,
) -> Result<(ConsentRecord, AccountAccessDetails), ObError> {
    let r = st
        .store
        .find_consent(id)
        .await?
        .filter(|r| r.client_id == client_id && r.kind == KIND_ACCOUNT_ACCESS)
        .ok_or_else(not_found)?;
    let d = details_of(&r)?;
    Ok((r, d))
}

/// Guarded transitions are retried this often when another request changed the consent
/// in between; each retry re-reads the new state.
const MAX_RACE_RETRIES: usize = 4;

/// Reads the consent and, when it is AWAU or AUTH past its expiry, records EXPD.
async fn current(
    st: &AppState,
    client_id: &str,
    id: &str,
    now: OffsetDateTime,
) -> Result<(ConsentRecord, AccountAccessDetails), ObError> {
    for _ in 0..MAX_RACE_RETRIES {
        let (mut r, mut d) = owned(st, client_id, id).await?;
        let live = matches!(r.status, Stored::AwaitingAuthorisation | Stored::Authorised);
        if !live || d.expiration_date_time.is_none_or(|e| e > now) {
            return Ok((r, d));
        }
        d.status_reason = Some(StatusReason {
            code: REASON_EXPIRED.into(),
            description: "ExpirationDateTime passed".into(),
        });
        d.status_update_date_time = now;
        let audit = AuditEntry {
            consent_id: r.id.clone(),
            at: now.unix_timestamp(),
            actor: "system".into(),
            action: "expired".into(),
            detail: String::new(),
        };
        if st
            .store
            .update_consent(
                id,
                &[r.status],
                Stored::Expired,
                None,
                Some(&d.to_value()),
                &audit,
            )
            .await?
        {
            r.status = Stored::Expired;
            return Ok((r, d));
        }
    }
    Err(ObError::unavailable())
}

fn json_content_type(h: &HeaderMap) -> bool {
    h.get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json"))
}

// ---- endpoints ------------------------------------------------------------------------------

#[utoipa::path(post, path = "/open-banking/v4.0/aisp/account-access-consents", tag = "Account Access",
    request_body(content = ObReadConsent, content_type = "application/json"),
    responses(
        (status = 201, description = "Consent created, awaiting authorisation (AWAU)", body = ObReadConsentResponse),
        (status = 400, body = ObErrorResponse), (status = 401, body = ObErrorResponse),
        (status = 403, description = "Not a client-credentials token with scope accounts", body = ObErrorResponse),
        (status = 406, body = ObErrorResponse), (status = 415, body = ObErrorResponse),
        (status = 429, body = ObErrorResponse), (status = 500, body = ObErrorResponse),
        (status = 503, body = ObErrorResponse)))]
pub async fn create_account_access_consent(
    State(st): State<AppState>,
    ClientAccess(client): ClientAccess,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ObError> {
    if !json_content_type(&headers) {
        return Err(ObError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            codes::HEADER_INVALID,
            "the request body must be application/json",
            Some("Content-Type"),
        ));
    }
    let json: serde_json::Value = serde_json::from_slice(&body).map_err(|_| {
        ObError::new(
            StatusCode::BAD_REQUEST,
            codes::FIELD_INVALID,
            "the body is not valid JSON",
            None,
        )
    })?;
    let now = st.clock.now();
    let req = openbanking::parse_intent_body(&json, now).map_err(|e| {
        let path = (!e.path.is_empty()).then_some(e.path.as_str());
        ObError::new(
            StatusCode::BAD_REQUEST,
            e.kind.ob_code(),
            e.message.clone(),
            path,
        )
    })?;
    let details = AccountAccessDetails::new(Source::Intent, &req, now);
    let now_s = now.unix_timestamp();
    let record = ConsentRecord {
        id: format!("aac-{}", uuid::Uuid::new_v4()),
        client_id: client.client_id.clone(),
        customer_id: None,
        kind: KIND_ACCOUNT_ACCESS.into(),
        scopes: openbanking::SCOPE_ACCOUNTS.into(),
        status: Stored::AwaitingAuthorisation,
        details: details.to_value(),
        created_at: now_s,
        updated_at: now_s,
        expires_at: req.expiration.map(OffsetDateTime::unix_timestamp),
    };
    let audit = AuditEntry {
        consent_id: record.id.clone(),
        at: now_s,
        actor: format!("client:{}", client.client_id),
        action: "created".into(),
        detail: req
            .permissions
            .iter()
            .map(|p| p.as_str())
            .collect::<Vec<_>>()
            .join(" "),
    };
    st.store.insert_consent(&record, &audit).await?;
    Ok(render(&st, &record, &details, StatusCode::CREATED))
}

#[utoipa::path(get, path = "/open-banking/v4.0/aisp/account-access-consents/{ConsentId}", tag = "Account Access",
    params(("ConsentId" = String, Path, description = "Consent id")),
    responses(
        (status = 200, description = "The consent and its status", body = ObReadConsentResponse),
        (status = 400, description = "Unknown consent, or another client's", body = ObErrorResponse),
        (status = 401, body = ObErrorResponse), (status = 403, body = ObErrorResponse),
        (status = 406, body = ObErrorResponse), (status = 429, body = ObErrorResponse),
        (status = 500, body = ObErrorResponse), (status = 503, body = ObErrorResponse)))]
pub async fn get_account_access_consent(
    State(st): State<AppState>,
    Path(id): Path<String>,
    ClientAccess(client): ClientAccess,
) -> Result<Response, ObError> {
    let now = st.clock.now();
    let (r, d) = current(&st, &client.client_id, &id, now).await?;
    Ok(render(&st, &r, &d, StatusCode::OK))
}

#[utoipa::path(delete, path = "/open-banking/v4.0/aisp/account-access-consents/{ConsentId}", tag = "Account Access",
    params(("ConsentId" = String, Path, description = "Consent id")),
    responses(
        (status = 204, description = "Consent revoked (CANC); its tokens stop working"),
        (status = 400, description = "Unknown consent, another client's, or already RJCT/CANC/EXPD", body = ObErrorResponse),
        (status = 401, body = ObErrorResponse), (status = 403, body = ObErrorResponse),
        (status = 406, body = ObErrorResponse), (status = 429, body = ObErrorResponse),
        (status = 500, body = ObErrorResponse), (status = 503, body = ObErrorResponse)))]
pub async fn delete_account_access_consent(
    State(st): State<AppState>,
    Path(id): Path<String>,
    ClientAccess(client): ClientAccess,
) -> Result<Response, ObError> {
    let now = st.clock.now();
    for _ in 0..MAX_RACE_RETRIES {
        let (r, mut d) = current(&st, &client.client_id, &id, now).await?;
        if !matches!(r.status, Stored::AwaitingAuthorisation | Stored::Authorised) {
            return Err(ObError::bad_request(
                codes::INVALID_CONSENT_STATUS,
                format!(
                    "the consent is {} and cannot be deleted",
                    ob_status(r.status).code()
                ),
                "ConsentId",
            ));
        }
        d.status_reason = Some(StatusReason {
            code: REASON_TPP_REVOKED.into(),
            description: "revoked by the TPP".into(),
        });
        d.status_update_date_time = now;
        let audit = AuditEntry {
            consent_id: r.id.clone(),
            at: now.unix_timestamp(),
            actor: format!("client:{}", client.client_id),
            action: "revoked".into(),
            detail: String::new(),
        };
        if st
            .store
            .update_consent(
                &id,
                &[r.status],
                Stored::Revoked,
                None,
                Some(&d.to_value()),
                &audit,
            )
            .await?
        {
            st.store
                .revoke_refresh_tokens_for_consent(&id, now.unix_timestamp())
                .await?;
            let mut resp = StatusCode::NO_CONTENT.into_response();
            resp.headers_mut()
                .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            return Ok(resp);
        }
    }
    Err(AuthError::Unavailable("consent kept changing".into()).into())
}
