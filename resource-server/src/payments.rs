//! Payment initiation (UK OB Read/Write v4 `payment-initiation-openapi`, domestic
//! payments): consents created with a client-credentials token (scope `payments`), the
//! customer's authorisation at the authorization server, execution exactly once with the
//! customer's token bound to that consent, and status tracking (ADR 0011).
//!
//! * `x-idempotency-key` (≤ 40 characters) is required on every POST. The same key from
//!   the same TPP within 24 h with the same request (endpoint and exact body) answers 201
//!   with the resource's current state and changes nothing; with another request it is
//!   refused and changes nothing. Keys live in the shared database, so this holds across
//!   instances and restarts.
//! * `POST /domestic-payments` needs the customer's authorization-code token whose
//!   consent is the one named in the body; the payment's `Initiation` and `Risk` must
//!   equal the consent's; the consent moves AUTH → COND in the same database transaction
//!   as the money (`PaymentStore::execute_payment`), so a consent pays at most once.
//! * A consent or payment of another TPP answers like an unknown id (no oracle).

use crate::AppState;
use crate::auth::{ClientGrant, CustomerToken};
use crate::error::{ObError, ObErrorResponse, codes};
use crate::jws_signature::{SignatureCaller, SignedBody};
use crate::ob::{self, Links, Meta};
use crate::payment_consents::{
    ConsentHead, ConsentKind, PayFrom, bound_consent, create_payment_consent, customers_account,
    get_payment_consent, pay_from, same_request,
};
use crate::routes::{Credentials, self_link};
use authz_store::{
    AuditEntry, ConsentRecord, ConsentStatus as Stored, Executed, IDEMPOTENCY_TTL_SECS,
    IdempotencyRecord, PaymentExecution, PaymentRecord, PaymentStore,
};
use axum::body::Bytes;
use axum::extract::{FromRequestParts, Path, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use openbanking::SCOPE_PAYMENTS;
use openbanking::payment::{
    self as pay, ClearingOutcome, PaymentConsentDetails, PaymentError, format_minor,
};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use utoipa::ToSchema;

pub const PISP_PREFIX: &str = "/open-banking/v4.0/pisp";

/// Longest `x-idempotency-key` accepted (UK OB v4).
pub const MAX_IDEMPOTENCY_KEY: usize = 40;

// ---- callers ---------------------------------------------------------------------------

/// A client-credentials token with scope `payments` (the TPP acting for itself).
pub struct PaymentClient(pub ClientGrant);

impl FromRequestParts<AppState> for PaymentClient {
    type Rejection = ObError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ObError> {
        let grant = crate::consents::client_grant(parts, state, Some(SCOPE_PAYMENTS)).await?;
        parts
            .extensions
            .insert(SignatureCaller(grant.client_id.clone()));
        Ok(Self(grant))
    }
}

/// The customer's authorization-code token with scope `payments`, bound to one consent.
pub struct PaymentCustomer(pub CustomerToken);

impl FromRequestParts<AppState> for PaymentCustomer {
    type Rejection = ObError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ObError> {
        let c = Credentials::from_parts(parts, state)?;
        let t = state
            .verifier
            .verify_customer_scope(
                c.authorization,
                c.cert.as_deref(),
                c.dpop,
                parts.method.as_str(),
                &c.url,
                SCOPE_PAYMENTS,
            )
            .await?;
        state.throttle(&t.client_id)?;
        parts
            .extensions
            .insert(SignatureCaller(t.client_id.clone()));
        Ok(Self(t))
    }
}

// ---- OpenAPI shapes ------------------------------------------------------------------------

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "PascalCase")]
pub struct ObAmount {
    /// Exact decimal string (`^\d{1,13}(\.\d{1,5})?$`), no more places than the currency has.
    pub amount: String,
    /// ISO 4217 code (KES, GBP, EUR, USD, UGX, JPY, KWD, BHD).
    pub currency: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "PascalCase")]
pub struct ObCashAccount {
    /// `UK.OBIE.SortCodeAccountNumber`, `UK.OBIE.IBAN`, `KE.WEKEZA.AccountNumber`, `KE.MPESA.MSISDN`.
    pub scheme_name: String,
    pub identification: String,
    /// Required for the creditor (shown to the customer).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secondary_identification: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "PascalCase")]
pub struct ObRemittance {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unstructured: Option<String>,
    /// Shown to the customer on the consent page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
}

/// `OBDomestic2` (Initiation).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "PascalCase")]
pub struct ObDomesticInitiation {
    pub instruction_identification: String,
    pub end_to_end_identification: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub local_instrument: Option<String>,
    pub instructed_amount: ObAmount,
    /// Optional: when absent the customer picks the account at authorisation.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub debtor_account: Option<ObCashAccount>,
    pub creditor_account: ObCashAccount,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub remittance_information: Option<ObRemittance>,
}

/// `OBWriteDomesticConsent4`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "PascalCase")]
pub struct ObWriteDomesticConsent {
    pub data: ObWriteDomesticConsentData,
    /// `OBRisk1`: must be sent again, unchanged, with the payment.
    #[schema(value_type = Object)]
    pub risk: serde_json::Value,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "PascalCase")]
pub struct ObWriteDomesticConsentData {
    pub initiation: ObDomesticInitiation,
    /// `Yes` or `No`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub read_refund_account: Option<String>,
}

/// `OBWriteDomesticConsentResponse5`.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "PascalCase")]
pub struct ObWriteDomesticConsentResponse {
    pub data: ObDomesticConsentResponseData,
    #[schema(value_type = Object)]
    pub risk: serde_json::Value,
    pub links: Links,
    pub meta: Meta,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "PascalCase")]
pub struct ObDomesticConsentResponseData {
    pub consent_id: String,
    pub creation_date_time: String,
    /// `AWAU`, `AUTH`, `RJCT`, `COND` (consumed by its payment), `CANC` or `EXPD`.
    pub status: String,
    pub status_update_date_time: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status_reason: Option<Vec<crate::consents::ObStatusReason>>,
    #[schema(value_type = ObDomesticInitiation)]
    pub initiation: serde_json::Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub read_refund_account: Option<String>,
}

/// `OBWriteFundsConfirmationResponse1`.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "PascalCase")]
pub struct ObFundsConfirmationResponse {
    pub data: ObFundsConfirmationData,
    pub links: Links,
    pub meta: Meta,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "PascalCase")]
pub struct ObFundsConfirmationData {
    pub funds_available_result: ObFundsAvailableResult,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "PascalCase")]
pub struct ObFundsAvailableResult {
    pub funds_available_date_time: String,
    pub funds_available: bool,
}

/// `OBWriteDomestic2`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "PascalCase")]
pub struct ObWriteDomestic {
    pub data: ObWriteDomesticData,
    #[schema(value_type = Object)]
    pub risk: serde_json::Value,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "PascalCase")]
pub struct ObWriteDomesticData {
    pub consent_id: String,
    /// Must equal the consent's Initiation.
    pub initiation: ObDomesticInitiation,
}

/// `OBWriteDomesticResponse5`.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "PascalCase")]
pub struct ObWriteDomesticResponse {
    pub data: ObDomesticResponseData,
    pub links: Links,
    pub meta: Meta,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "PascalCase")]
pub struct ObDomesticResponseData {
    pub domestic_payment_id: String,
    pub consent_id: String,
    pub creation_date_time: String,
    /// ISO 20022: `ACSC` (settled), `ACSP` (settlement in process, other bank) or `RJCT`.
    pub status: String,
    pub status_update_date_time: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status_reason: Option<Vec<ObPaymentStatusReason>>,
    #[schema(value_type = ObDomesticInitiation)]
    pub initiation: serde_json::Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub debtor: Option<ObDebtor>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "PascalCase")]
pub struct ObPaymentStatusReason {
    /// ISO 20022 reason: `AM04` insufficient funds, `AM03` currency, `AC04` refused by
    /// the creditor's bank.
    pub status_reason_code: String,
    pub status_reason_description: String,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "PascalCase")]
pub struct ObDebtor {
    pub name: String,
}

/// `OBWritePaymentDetailsResponse1`.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "PascalCase")]
pub struct ObPaymentDetailsResponse {
    pub data: ObPaymentDetailsData,
    pub links: Links,
    pub meta: Meta,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "PascalCase")]
pub struct ObPaymentDetailsData {
    pub payment_status: Vec<ObPaymentStatusDetail>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "PascalCase")]
pub struct ObPaymentStatusDetail {
    pub payment_transaction_id: String,
    pub status: String,
    pub payment_transaction_status_update_date_time: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status_reason: Option<Vec<ObPaymentStatusReason>>,
}

// ---- helpers --------------------------------------------------------------------------------

pub(crate) fn payments(st: &AppState) -> Result<&dyn PaymentStore, ObError> {
    st.store.payments().ok_or_else(|| {
        tracing::error!("the durable store keeps no payment ledger");
        ObError::internal()
    })
}

pub(crate) fn utc(t: i64) -> String {
    OffsetDateTime::from_unix_timestamp(t)
        .map(|t| ob::dt(t.to_offset(time::UtcOffset::UTC)))
        .unwrap_or_default()
}

pub(crate) fn pay_err(e: PaymentError) -> ObError {
    let path = (!e.path.is_empty()).then_some(e.path.as_str());
    ObError::new(StatusCode::BAD_REQUEST, e.code, e.message.clone(), path)
}

pub(crate) fn no_store(mut r: Response) -> Response {
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

pub(crate) fn json_body(headers: &HeaderMap, body: &Bytes) -> Result<serde_json::Value, ObError> {
    let json_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json"));
    if !json_type {
        return Err(ObError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            codes::HEADER_INVALID,
            "the request body must be application/json",
            Some("Content-Type"),
        ));
    }
    serde_json::from_slice(body).map_err(|_| {
        ObError::new(
            StatusCode::BAD_REQUEST,
            codes::FIELD_INVALID,
            "the body is not valid JSON",
            None,
        )
    })
}

/// The request's `x-idempotency-key`: required, one, 1..=40 printable ASCII characters.
pub(crate) fn idempotency_key(headers: &HeaderMap) -> Result<String, ObError> {
    const H: &str = "x-idempotency-key";
    let mut all = headers.get_all(H).iter();
    let v = match (all.next(), all.next()) {
        (None, _) => {
            return Err(ObError::bad_request(
                codes::HEADER_MISSING,
                "x-idempotency-key is required",
                H,
            ));
        }
        (Some(_), Some(_)) => {
            return Err(ObError::bad_request(
                codes::HEADER_INVALID,
                "one x-idempotency-key",
                H,
            ));
        }
        (Some(v), None) => v,
    };
    let s = v.to_str().unwrap_or_default().trim();
    if s.is_empty()
        || s.len() > MAX_IDEMPOTENCY_KEY
        || !s.bytes().all(|b| b.is_ascii_graphic() || b == b' ')
    {
        return Err(ObError::bad_request(
            codes::HEADER_INVALID,
            format!("x-idempotency-key must be 1 to {MAX_IDEMPOTENCY_KEY} printable characters"),
            H,
        ));
    }
    Ok(s.to_owned())
}

/// SHA-256 over the endpoint and the exact body: "the same request".
pub(crate) fn request_hash(endpoint: &str, body: &[u8]) -> String {
    let mut h = Sha256::new();
    h.update(endpoint.as_bytes());
    h.update([0u8]);
    h.update(body);
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

pub(crate) fn key_reused() -> ObError {
    ObError::bad_request(
        codes::HEADER_INVALID,
        "this x-idempotency-key was used with a different request in the last 24 hours",
        "x-idempotency-key",
    )
}

pub(crate) fn consent_status(s: Stored) -> &'static str {
    match s {
        Stored::AwaitingAuthorisation => "AWAU",
        Stored::Authorised => "AUTH",
        Stored::Rejected => "RJCT",
        Stored::Consumed => "COND",
        Stored::Revoked => "CANC",
        Stored::Expired => "EXPD",
    }
}

impl ConsentKind for PaymentConsentDetails {
    const COLLECTION: &'static str = "domestic-payment-consents";
    const ID_PREFIX: &'static str = "pdc";
    type Body = ObWriteDomesticConsentResponse;

    fn parse(json: &serde_json::Value, now: OffsetDateTime) -> Result<(Self, String), ObError> {
        let req = pay::parse_consent_body(json).map_err(pay_err)?;
        let i = &req.initiation;
        let detail = format!(
            "{} {} to {}",
            i.instructed_amount.amount,
            i.instructed_amount.currency,
            i.creditor_account.identification
        );
        Ok((PaymentConsentDetails::new(&req, now), detail))
    }

    fn body(&self, h: ConsentHead, links: Links) -> ObWriteDomesticConsentResponse {
        ObWriteDomesticConsentResponse {
            data: ObDomesticConsentResponseData {
                consent_id: h.consent_id,
                creation_date_time: h.creation_date_time,
                status: h.status,
                status_update_date_time: h.status_update_date_time,
                status_reason: h.status_reason,
                initiation: self.initiation.to_value(),
                read_refund_account: self.read_refund_account.clone(),
            },
            risk: self.risk.clone(),
            links,
            meta: Meta::default(),
        }
    }
}

fn reason_text(code: &str) -> &'static str {
    match code {
        pay::reason::AM04 => "insufficient funds",
        pay::reason::AM03 => "the creditor account holds another currency",
        pay::reason::AC04 => "refused by the creditor's bank",
        _ => "rejected",
    }
}

pub(crate) fn reasons(code: Option<&str>) -> Option<Vec<ObPaymentStatusReason>> {
    code.map(|c| {
        vec![ObPaymentStatusReason {
            status_reason_code: c.to_owned(),
            status_reason_description: reason_text(c).to_owned(),
        }]
    })
}

fn render_payment(st: &AppState, p: &PaymentRecord, status: StatusCode) -> Response {
    let body = ObWriteDomesticResponse {
        data: ObDomesticResponseData {
            domestic_payment_id: p.id.clone(),
            consent_id: p.consent_id.clone(),
            creation_date_time: utc(p.created_at),
            status: p.status.clone(),
            status_update_date_time: utc(p.updated_at),
            status_reason: reasons(p.status_reason.as_deref()),
            initiation: p.details["Initiation"].clone(),
            debtor: p.details["DebtorName"]
                .as_str()
                .map(|n| ObDebtor { name: n.to_owned() }),
        },
        links: self_link(
            st,
            &format!("{PISP_PREFIX}/domestic-payments/{}", p.id),
            None,
        ),
        meta: Meta::default(),
    };
    no_store((status, axum::Json(body)).into_response())
}

/// The client's payment, or 400 NotFound.
async fn own_payment(st: &AppState, client_id: &str, id: &str) -> Result<PaymentRecord, ObError> {
    payments(st)?
        .find_payment(id)
        .await?
        .filter(|p| p.client_id == client_id)
        .filter(|p| !crate::file_payments::is_item(p))
        .ok_or_else(|| ObError::resource_not_found("DomesticPaymentId"))
}

// ---- endpoints ------------------------------------------------------------------------------

#[utoipa::path(post, path = "/open-banking/v4.0/pisp/domestic-payment-consents", tag = "Domestic Payments",
    request_body(content = ObWriteDomesticConsent, content_type = "application/json"),
    params(("x-idempotency-key" = String, Header, description = "Required; at most 40 characters; same key and body within 24 h returns the original consent"),
        ("x-jws-signature" = String, Header, description = "Detached JWS (UK OB) over the exact body by a key in the client's registered jwks: PS256 or ES256, crit = OB iat, iss (client id), tan (the trust anchor). Required unless the platform is configured otherwise. The response carries one by a platform key in the AS JWKS: ES256 when the request was signed with ES256, PS256 otherwise (select by kid)")),
    responses(
        (status = 201, description = "Consent created, awaiting authorisation (AWAU); or the consent an earlier request with this key created", body = ObWriteDomesticConsentResponse),
        (status = 400, description = "Invalid body; the key was used with another request; x-jws-signature missing or invalid (UK.OBIE.Signature.*)", body = ObErrorResponse),
        (status = 401, body = ObErrorResponse),
        (status = 403, description = "Not a client-credentials token with scope payments", body = ObErrorResponse),
        (status = 406, body = ObErrorResponse), (status = 415, body = ObErrorResponse),
        (status = 429, body = ObErrorResponse), (status = 500, body = ObErrorResponse),
        (status = 503, body = ObErrorResponse)))]
pub async fn create_domestic_payment_consent(
    State(st): State<AppState>,
    PaymentClient(client): PaymentClient,
    headers: HeaderMap,
    SignedBody(body): SignedBody,
) -> Result<Response, ObError> {
    create_payment_consent::<PaymentConsentDetails>(&st, &client, &headers, &body).await
}

#[utoipa::path(get, path = "/open-banking/v4.0/pisp/domestic-payment-consents/{ConsentId}", tag = "Domestic Payments",
    params(("ConsentId" = String, Path, description = "Consent id")),
    responses(
        (status = 200, description = "The consent and its status", body = ObWriteDomesticConsentResponse),
        (status = 400, description = "Unknown consent, or another client's", body = ObErrorResponse),
        (status = 401, body = ObErrorResponse), (status = 403, body = ObErrorResponse),
        (status = 406, body = ObErrorResponse), (status = 429, body = ObErrorResponse),
        (status = 500, body = ObErrorResponse), (status = 503, body = ObErrorResponse)))]
pub async fn get_domestic_payment_consent(
    State(st): State<AppState>,
    Path(id): Path<String>,
    PaymentClient(client): PaymentClient,
) -> Result<Response, ObError> {
    get_payment_consent::<PaymentConsentDetails>(&st, &client, &id).await
}

/// What an authorised consent debits: its debtor account (picked at authorisation when
/// the TPP named none) and the amount in minor units.
fn authorised_debit(
    r: &ConsentRecord,
    d: &PaymentConsentDetails,
) -> Result<(String, i64), ObError> {
    let debtor = d.debtor_account_id.clone().ok_or_else(|| {
        tracing::error!(consent = %r.id, "authorised payment consent without a debtor account");
        ObError::internal()
    })?;
    let amount = d.initiation.amount_minor().map_err(|e| {
        tracing::error!(consent = %r.id, error = %e, "stored amount does not parse");
        ObError::internal()
    })?;
    Ok((debtor, amount))
}

pub(crate) fn not_authorised(r: &ConsentRecord) -> ObError {
    ObError::bad_request(
        codes::INVALID_CONSENT_STATUS,
        format!("the consent is {}, not AUTH", consent_status(r.status)),
        "ConsentId",
    )
}

#[utoipa::path(get, path = "/open-banking/v4.0/pisp/domestic-payment-consents/{ConsentId}/funds-confirmation", tag = "Domestic Payments",
    params(("ConsentId" = String, Path, description = "Consent id")),
    responses(
        (status = 200, description = "Whether the debtor account can pay the instructed amount now", body = ObFundsConfirmationResponse),
        (status = 400, description = "Unknown consent, or not AUTH", body = ObErrorResponse),
        (status = 401, body = ObErrorResponse),
        (status = 403, description = "Not the customer's token for this consent", body = ObErrorResponse),
        (status = 406, body = ObErrorResponse), (status = 429, body = ObErrorResponse),
        (status = 500, body = ObErrorResponse), (status = 503, body = ObErrorResponse)))]
pub async fn get_funds_confirmation(
    State(st): State<AppState>,
    Path(id): Path<String>,
    PaymentCustomer(t): PaymentCustomer,
) -> Result<Response, ObError> {
    let (r, d) = bound_consent(&st, &t, &id).await?;
    if r.status != Stored::Authorised {
        return Err(not_authorised(&r));
    }
    let (debtor, amount) = authorised_debit(&r, &d)?;
    let available = payments(&st)?
        .ledger_account(&debtor)
        .await?
        .filter(|a| a.currency == d.initiation.instructed_amount.currency)
        .is_some_and(|a| a.available() >= amount);
    let body = ObFundsConfirmationResponse {
        data: ObFundsConfirmationData {
            funds_available_result: ObFundsAvailableResult {
                funds_available_date_time: ob::dt(st.clock.now().to_offset(time::UtcOffset::UTC)),
                funds_available: available,
            },
        },
        links: self_link(
            &st,
            &format!("{PISP_PREFIX}/domestic-payment-consents/{id}/funds-confirmation"),
            None,
        ),
        meta: Meta::default(),
    };
    Ok(no_store(axum::Json(body).into_response()))
}

#[utoipa::path(post, path = "/open-banking/v4.0/pisp/domestic-payments", tag = "Domestic Payments",
    request_body(content = ObWriteDomestic, content_type = "application/json"),
    params(("x-idempotency-key" = String, Header, description = "Required; at most 40 characters; same key and body within 24 h returns the original payment, nothing paid twice"),
        ("x-jws-signature" = String, Header, description = "Detached JWS (UK OB) over the exact body, as for the consent")),
    responses(
        (status = 201, description = "The payment: ACSC (settled here), ACSP (to another bank, clearing), or RJCT with its reason (AM04 insufficient funds); the consent is COND", body = ObWriteDomesticResponse),
        (status = 400, description = "Invalid body; Initiation or Risk differ from the consent (UK.OBIE.Resource.ConsentMismatch); consent not AUTH (UK.OBIE.Resource.InvalidConsentStatus); key used with another request; x-jws-signature missing or invalid (UK.OBIE.Signature.*)", body = ObErrorResponse),
        (status = 401, body = ObErrorResponse),
        (status = 403, description = "Not the customer's payments token for this consent (a client-credentials token, another consent, another customer)", body = ObErrorResponse),
        (status = 406, body = ObErrorResponse), (status = 415, body = ObErrorResponse),
        (status = 429, body = ObErrorResponse), (status = 500, body = ObErrorResponse),
        (status = 503, body = ObErrorResponse)))]
pub async fn create_domestic_payment(
    State(st): State<AppState>,
    PaymentCustomer(t): PaymentCustomer,
    headers: HeaderMap,
    SignedBody(body): SignedBody,
) -> Result<Response, ObError> {
    let key = idempotency_key(&headers)?;
    let hash = request_hash("POST domestic-payments", &body);
    let now = st.clock.now();
    let now_s = now.unix_timestamp();
    let store = payments(&st)?;
    // No look at the key yet: a repeated key is caught by the execution's claim of it
    // (`Executed::KeyInUse`), or below where the consent is no longer Authorised, so a
    // first request pays one round trip less. A repeat differs only in error precedence:
    // a repeated key with an unparsable body is refused for its body.
    let json = json_body(&headers, &body)?;
    let req = pay::parse_payment_body(&json).map_err(pay_err)?;
    let (r, mut d) = bound_consent(&st, &t, &req.consent_id).await?;
    let authorised_after = match pay_from(&st, &t, &r, &key, now_s).await? {
        PayFrom::Pay { authorised_after } => authorised_after,
        PayFrom::Replay(k) => return replay_payment(&st, &t.client_id, &k, &hash).await,
    };
    pay::check_matches_consent(&req, &d).map_err(pay_err)?;
    let (debtor_id, amount) = authorised_debit(&r, &d)?;
    let debtor = customers_account(&st, &t, &debtor_id).await?;
    let (outcome, after) = match pay::sandbox_clearing(amount) {
        ClearingOutcome::Settle { after_secs } => ("settle", after_secs),
        ClearingOutcome::Reject { after_secs } => ("reject", after_secs),
    };
    let id = format!("dp-{}", uuid::Uuid::new_v4());
    d.payment_id = Some(id.clone());
    d.status_update_date_time = now;
    let x = PaymentExecution {
        payment: PaymentRecord {
            id: id.clone(),
            consent_id: r.id.clone(),
            client_id: t.client_id.clone(),
            customer_id: t.subject.clone(),
            debtor_account_id: debtor_id.clone(),
            creditor_account_id: None,
            external: false,
            amount,
            currency: d.initiation.instructed_amount.currency.clone(),
            status: pay::status::RCVD.into(),
            status_reason: None,
            details: serde_json::json!({
                "Initiation": req.initiation.to_value(),
                "Risk": req.risk,
                "DebtorName": debtor.identification.name,
            }),
            clearing_outcome: None,
            next_action_at: None,
            created_at: now_s,
            updated_at: now_s,
        },
        creditor_scheme: d.initiation.creditor_account.scheme_name.clone(),
        creditor_identification: d.initiation.creditor_account.identification.clone(),
        clearing_after_secs: after,
        clearing_outcome: outcome.into(),
        consent_details: d.to_value(),
        consent_authorised_after: authorised_after,
        audit: AuditEntry {
            consent_id: r.id.clone(),
            at: now_s,
            actor: format!("client:{}", t.client_id),
            action: "consumed".into(),
            detail: format!("payment={id}"),
        },
        idempotency: IdempotencyRecord {
            client_id: t.client_id.clone(),
            key,
            request_hash: hash.clone(),
            resource_id: id,
            created_at: now_s,
            expires_at: now_s + IDEMPOTENCY_TTL_SECS,
        },
    };
    match store.execute_payment(&x).await? {
        Executed::Done(p) => {
            tracing::info!(payment = %p.id, status = %p.status, amount = %format_minor(p.amount, &p.currency), "domestic payment");
            Ok(render_payment(&st, &p, StatusCode::CREATED))
        }
        Executed::KeyInUse(k) => replay_payment(&st, &t.client_id, &k, &hash).await,
        // Consumed (or revoked) between the read and the write: another payment won; or
        // its lifetime ran out in between.
        Executed::ConsentNotAuthorised => Err(crate::payment_consents::not_consumed::<
            PaymentConsentDetails,
        >(&st, &t.client_id, &r.id, now_s)
        .await),
    }
}

async fn replay_payment(
    st: &AppState,
    client_id: &str,
    k: &IdempotencyRecord,
    hash: &str,
) -> Result<Response, ObError> {
    same_request(k, hash)?;
    let p = own_payment(st, client_id, &k.resource_id).await?;
    Ok(render_payment(st, &p, StatusCode::CREATED))
}

#[utoipa::path(get, path = "/open-banking/v4.0/pisp/domestic-payments/{DomesticPaymentId}", tag = "Domestic Payments",
    params(("DomesticPaymentId" = String, Path, description = "Payment id")),
    responses(
        (status = 200, description = "The payment and its current status", body = ObWriteDomesticResponse),
        (status = 400, description = "Unknown payment, or another client's", body = ObErrorResponse),
        (status = 401, body = ObErrorResponse), (status = 403, body = ObErrorResponse),
        (status = 406, body = ObErrorResponse), (status = 429, body = ObErrorResponse),
        (status = 500, body = ObErrorResponse), (status = 503, body = ObErrorResponse)))]
pub async fn get_domestic_payment(
    State(st): State<AppState>,
    Path(id): Path<String>,
    PaymentClient(client): PaymentClient,
) -> Result<Response, ObError> {
    let p = own_payment(&st, &client.client_id, &id).await?;
    Ok(render_payment(&st, &p, StatusCode::OK))
}

#[utoipa::path(get, path = "/open-banking/v4.0/pisp/domestic-payments/{DomesticPaymentId}/payment-details", tag = "Domestic Payments",
    params(("DomesticPaymentId" = String, Path, description = "Payment id")),
    responses(
        (status = 200, description = "Every status the payment went through, oldest first", body = ObPaymentDetailsResponse),
        (status = 400, description = "Unknown payment, or another client's", body = ObErrorResponse),
        (status = 401, body = ObErrorResponse), (status = 403, body = ObErrorResponse),
        (status = 406, body = ObErrorResponse), (status = 429, body = ObErrorResponse),
        (status = 500, body = ObErrorResponse), (status = 503, body = ObErrorResponse)))]
pub async fn get_domestic_payment_details(
    State(st): State<AppState>,
    Path(id): Path<String>,
    PaymentClient(client): PaymentClient,
) -> Result<Response, ObError> {
    let p = own_payment(&st, &client.client_id, &id).await?;
    let log = payments(&st)?.payment_status_log(&p.id).await?;
    let body = ObPaymentDetailsResponse {
        data: ObPaymentDetailsData {
            payment_status: log
                .into_iter()
                .map(|l| ObPaymentStatusDetail {
                    payment_transaction_id: p.id.clone(),
                    status: l.status,
                    payment_transaction_status_update_date_time: utc(l.at),
                    status_reason: reasons(l.reason.as_deref()),
                })
                .collect(),
        },
        links: self_link(
            &st,
            &format!("{PISP_PREFIX}/domestic-payments/{id}/payment-details"),
            None,
        ),
        meta: Meta::default(),
    };
    Ok(no_store(axum::Json(body).into_response()))
}

/// The routes of this module, registered by [`crate::api_routes`].
pub fn routes() -> Vec<(String, axum::routing::MethodRouter<AppState>)> {
    use axum::routing::{get, post};
    let p = |s: &str| format!("{PISP_PREFIX}{s}");
    vec![
        (
            p("/domestic-payment-consents"),
            post(create_domestic_payment_consent),
        ),
        (
            p("/domestic-payment-consents/{ConsentId}"),
            get(get_domestic_payment_consent),
        ),
        (
            p("/domestic-payment-consents/{ConsentId}/funds-confirmation"),
            get(get_funds_confirmation),
        ),
        (p("/domestic-payments"), post(create_domestic_payment)),
        (
            p("/domestic-payments/{DomesticPaymentId}"),
            get(get_domestic_payment),
        ),
        (
            p("/domestic-payments/{DomesticPaymentId}/payment-details"),
            get(get_domestic_payment_details),
        ),
    ]
}

/// The clearing worker: every `every`, moves due external payments on (ACSP → ACSC, or
/// RJCT with the money returned). Several instances may run it; each payment moves once.
pub fn spawn_clearing_worker(
    store: std::sync::Arc<dyn authz_store::DurableStore>,
    clock: std::sync::Arc<dyn crate::Clock>,
    every: std::time::Duration,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(every).await;
            let Some(p) = store.payments() else { return };
            let now = clock.now().unix_timestamp();
            match p.advance_clearing(now, 500).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(moved = n, "clearing"),
                Err(e) => tracing::warn!(error = %e, "clearing step failed; retrying"),
            }
        }
    })
}
