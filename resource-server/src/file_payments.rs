//! File (bulk) payments (UK OB Read/Write v4 `file-payment-consents`, `file-payments`;
//! issue 7, ADR 0016) on the same ledger and rules as the domestic payments
//! ([`crate::payments`]):
//!
//! * `POST /file-payment-consents` (client credentials, scope `payments`, idempotency
//!   key): `FileType`, `FileHash`, `NumberOfTransactions`, `ControlSum` → AWUP.
//! * `POST /file-payment-consents/{ConsentId}/file` (the file as the `FileType`'s media
//!   type, at most [`fp::MAX_FILE_BYTES`], idempotency key): the hash, count and control
//!   sum must match and every payment must pass the domestic payment rules; any failure
//!   answers 400 naming the item (`Path`) and stores nothing; success → AWAU.
//! * The customer authorises the whole file once (PAR with the consent as
//!   `openbanking_intent_id`, at the authorization server).
//! * `POST /file-payments` (the customer's token bound to the consent, idempotency key,
//!   `Initiation` equal to the consent's) executes every payment of the file in one
//!   database transaction, each its own ledger posting: an item the account cannot fund is
//!   RJCT (`AM04`) while the others move. The consent moves AUTH → COND in the same
//!   transaction, so a file executes at most once.
//! * `GET /file-payments/{id}` (status aggregated from the items), `…/payment-details`
//!   (each item), `…/report-file` (a JSON report of every item).

use crate::AppState;
use crate::error::{ObError, ObErrorDetail, ObErrorResponse, codes};
use crate::jws_signature::SignedBody;
use crate::ob::{Links, Meta};
use crate::payment_consents::{
    ConsentHead, ConsentKind, PayFrom, bound_consent, create_payment_consent, customers_account,
    get_payment_consent, idempotency, pay_from, same_request,
};
use crate::payments::{
    ObPaymentStatusReason, PISP_PREFIX, PaymentClient, PaymentCustomer, consent_status,
    idempotency_key, json_body, no_store, pay_err, payments, reasons, request_hash, utc,
};
use crate::routes::self_link;
use authz_store::{
    AuditEntry, ConsentRecord, ConsentStatus as Stored, FileExecuted, FileExecution, FileItem,
    FilePaymentRecord, FilePaymentStore, IdempotencyRecord, PaymentRecord, StoredFile, Uploaded,
};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use openbanking::file_payment::{self as fp, FileConsentDetails};
use openbanking::payment::{self as pay, ClearingOutcome, PaymentError, format_minor};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::ToSchema;

// ---- OpenAPI shapes ------------------------------------------------------------------------

/// `OBFile` (the Initiation of a file-payment consent and of its file payment).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "PascalCase")]
pub struct ObFileInitiation {
    /// `UK.OBIE.PaymentInitiation.4.0` (JSON: `{"Data": {"DomesticPayments": [OBDomestic…]}}`)
    /// or `KE.WEKEZA.PaymentInitiation.CSV.1` (CSV with the documented header row).
    pub file_type: String,
    /// Base64 (standard, padded) SHA-256 of the file's bytes.
    pub file_hash: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file_reference: Option<String>,
    /// How many payments the file holds (1 to 500), as a string.
    pub number_of_transactions: String,
    /// The sum of the file's amounts: a decimal string (preferred) or number, compared by
    /// value in the payments' currency.
    #[schema(value_type = String)]
    pub control_sum: serde_json::Value,
    /// Recorded and echoed; the file is executed when `POST /file-payments` is made.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub requested_execution_date_time: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub local_instrument: Option<String>,
    /// Optional: when absent the customer picks the account at authorisation.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub debtor_account: Option<crate::payments::ObCashAccount>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub remittance_information: Option<crate::payments::ObRemittance>,
}

/// `OBWriteFileConsent3`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "PascalCase")]
pub struct ObWriteFileConsent {
    pub data: ObWriteFileConsentData,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "PascalCase")]
pub struct ObWriteFileConsentData {
    pub initiation: ObFileInitiation,
}

/// `OBWriteFileConsentResponse4`.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "PascalCase")]
pub struct ObWriteFileConsentResponse {
    pub data: ObFileConsentResponseData,
    pub links: Links,
    pub meta: Meta,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "PascalCase")]
pub struct ObFileConsentResponseData {
    pub consent_id: String,
    pub creation_date_time: String,
    /// `AWUP` (awaiting the file), `AWAU`, `AUTH`, `RJCT`, `COND` (executed), `CANC`, `EXPD`.
    pub status: String,
    pub status_update_date_time: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status_reason: Option<Vec<crate::consents::ObStatusReason>>,
    #[schema(value_type = ObFileInitiation)]
    pub initiation: serde_json::Value,
}

/// `OBWriteFile2`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "PascalCase")]
pub struct ObWriteFile {
    pub data: ObWriteFileData,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "PascalCase")]
pub struct ObWriteFileData {
    pub consent_id: String,
    /// Must equal the consent's Initiation.
    pub initiation: ObFileInitiation,
}

/// `OBWriteFileResponse3`.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "PascalCase")]
pub struct ObWriteFileResponse {
    pub data: ObFileResponseData,
    pub links: Links,
    pub meta: Meta,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "PascalCase")]
pub struct ObFileResponseData {
    pub file_payment_id: String,
    pub consent_id: String,
    pub creation_date_time: String,
    /// From the items: `ACSP` while any is in clearing, `ACSC` all settled, `RJCT` all
    /// rejected, `PART` some settled and some rejected.
    pub status: String,
    pub status_update_date_time: String,
    #[schema(value_type = ObFileInitiation)]
    pub initiation: serde_json::Value,
}

/// Per-item status (`OBWritePaymentDetailsResponse1`, one entry per payment of the file).
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "PascalCase")]
pub struct ObFilePaymentDetailsResponse {
    pub data: ObFilePaymentDetailsData,
    pub links: Links,
    pub meta: Meta,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "PascalCase")]
pub struct ObFilePaymentDetailsData {
    pub payment_status: Vec<ObFileItemStatus>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "PascalCase")]
pub struct ObFileItemStatus {
    pub payment_transaction_id: String,
    pub instruction_identification: String,
    pub status: String,
    pub payment_transaction_status_update_date_time: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status_reason: Option<Vec<ObPaymentStatusReason>>,
}

/// The report file: every payment of the file with its outcome.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "PascalCase")]
pub struct ObFileReport {
    pub data: ObFileReportData,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "PascalCase")]
pub struct ObFileReportData {
    pub file_payment_id: String,
    pub consent_id: String,
    pub status: String,
    pub number_of_transactions: i64,
    pub control_sum: String,
    pub currency: String,
    /// Sum of the items not rejected (so far).
    pub accepted_sum: String,
    pub items: Vec<ObFileReportItem>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "PascalCase")]
pub struct ObFileReportItem {
    pub payment_transaction_id: String,
    pub instruction_identification: String,
    pub end_to_end_identification: String,
    pub instructed_amount: crate::payments::ObAmount,
    pub status: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status_reason: Option<ObPaymentStatusReason>,
}

// ---- helpers --------------------------------------------------------------------------------

fn files(st: &AppState) -> Result<&dyn FilePaymentStore, ObError> {
    st.store.file_payments().ok_or_else(|| {
        tracing::error!("the durable store keeps no file payments");
        ObError::internal()
    })
}

/// Whether a `payments` row is an item of a file payment (not a domestic payment).
pub fn is_item(p: &PaymentRecord) -> bool {
    p.details.get("FilePaymentId").is_some()
}

/// The upload and download of a consent's file carry the file's own media type, not JSON
/// (used by [`crate::headers`]).
pub fn is_file_path(path: &str) -> bool {
    path.strip_prefix(PISP_PREFIX)
        .and_then(|p| p.strip_prefix("/file-payment-consents/"))
        .and_then(|p| p.strip_suffix("/file"))
        .is_some_and(|id| !id.is_empty() && !id.contains('/'))
}

fn file_errors(errs: Vec<PaymentError>) -> ObError {
    let mut it = errs.into_iter();
    let Some(first) = it.next() else {
        return ObError::internal();
    };
    let mut e = pay_err(first);
    e.message = "the file does not match its consent or breaks a payment rule".into();
    for x in it {
        e.errors.push(ObErrorDetail {
            error_code: x.code.to_owned(),
            message: x.message,
            path: (!x.path.is_empty()).then_some(x.path),
        });
    }
    e
}

/// `AWUP` until the file is accepted, then the stored status.
fn status_of(r: &ConsentRecord, d: &FileConsentDetails) -> &'static str {
    if r.status == Stored::AwaitingAuthorisation && d.file.is_none() {
        "AWUP"
    } else {
        consent_status(r.status)
    }
}

impl ConsentKind for FileConsentDetails {
    const COLLECTION: &'static str = "file-payment-consents";
    const ID_PREFIX: &'static str = "fpc";
    type Body = ObWriteFileConsentResponse;

    fn parse(json: &serde_json::Value, now: OffsetDateTime) -> Result<(Self, String), ObError> {
        let req = fp::parse_consent_body(json).map_err(pay_err)?;
        let detail = format!(
            "file of {} payments, control sum {}",
            req.initiation.number_of_transactions,
            req.initiation.control_sum_text()
        );
        Ok((FileConsentDetails::new(&req, now), detail))
    }

    fn status(&self, r: &ConsentRecord) -> &'static str {
        status_of(r, self)
    }

    fn body(&self, h: ConsentHead, links: Links) -> ObWriteFileConsentResponse {
        ObWriteFileConsentResponse {
            data: ObFileConsentResponseData {
                consent_id: h.consent_id,
                creation_date_time: h.creation_date_time,
                status: h.status,
                status_update_date_time: h.status_update_date_time,
                status_reason: h.status_reason,
                initiation: self.initiation.to_value(),
            },
            links,
            meta: Meta::default(),
        }
    }
}

/// The client's file-payment consent, or 400 NotFound (the shared lookup, typed for this
/// kind).
async fn own_consent(
    st: &AppState,
    client_id: &str,
    id: &str,
) -> Result<(ConsentRecord, FileConsentDetails), ObError> {
    crate::payment_consents::own_consent(st, client_id, id).await
}

// ---- consents ---------------------------------------------------------------------------------

#[utoipa::path(post, path = "/open-banking/v4.0/pisp/file-payment-consents", tag = "File Payments",
    request_body(content = ObWriteFileConsent, content_type = "application/json"),
    params(("x-idempotency-key" = String, Header, description = "Required; at most 40 characters; same key and body within 24 h returns the original consent"),
        ("x-jws-signature" = String, Header, description = "Detached JWS (UK OB) over the exact body by a key in the client's registered jwks (ADR 0017); required unless the platform is configured otherwise. Missing or invalid: 400 UK.OBIE.Signature.*")),
    responses(
        (status = 201, description = "Consent created, awaiting its file (AWUP); or the consent an earlier request with this key created", body = ObWriteFileConsentResponse),
        (status = 400, description = "Invalid body, or the key was used with another request", body = ObErrorResponse),
        (status = 401, body = ObErrorResponse),
        (status = 403, description = "Not a client-credentials token with scope payments", body = ObErrorResponse),
        (status = 406, body = ObErrorResponse), (status = 415, body = ObErrorResponse),
        (status = 429, body = ObErrorResponse), (status = 500, body = ObErrorResponse),
        (status = 503, body = ObErrorResponse)))]
pub async fn create_file_payment_consent(
    State(st): State<AppState>,
    PaymentClient(client): PaymentClient,
    headers: HeaderMap,
    SignedBody(body): SignedBody,
) -> Result<Response, ObError> {
    create_payment_consent::<FileConsentDetails>(&st, &client, &headers, &body).await
}

#[utoipa::path(get, path = "/open-banking/v4.0/pisp/file-payment-consents/{ConsentId}", tag = "File Payments",
    params(("ConsentId" = String, Path, description = "Consent id")),
    responses(
        (status = 200, description = "The consent and its status", body = ObWriteFileConsentResponse),
        (status = 400, description = "Unknown consent, or another client's", body = ObErrorResponse),
        (status = 401, body = ObErrorResponse), (status = 403, body = ObErrorResponse),
        (status = 406, body = ObErrorResponse), (status = 429, body = ObErrorResponse),
        (status = 500, body = ObErrorResponse), (status = 503, body = ObErrorResponse)))]
pub async fn get_file_payment_consent(
    State(st): State<AppState>,
    Path(id): Path<String>,
    PaymentClient(client): PaymentClient,
) -> Result<Response, ObError> {
    get_payment_consent::<FileConsentDetails>(&st, &client, &id).await
}

fn awaiting_file(r: &ConsentRecord, d: &FileConsentDetails) -> Result<(), ObError> {
    if status_of(r, d) == "AWUP" {
        return Ok(());
    }
    Err(ObError::bad_request(
        codes::INVALID_CONSENT_STATUS,
        format!(
            "the consent is {}, not AWUP: a file is uploaded once, before authorisation",
            status_of(r, d)
        ),
        "ConsentId",
    ))
}

#[utoipa::path(post, path = "/open-banking/v4.0/pisp/file-payment-consents/{ConsentId}/file", tag = "File Payments",
    params(("ConsentId" = String, Path, description = "Consent id"),
        ("x-jws-signature" = String, Header, description = "Detached JWS (UK OB) over the file's exact bytes by a key in the client's registered jwks (ADR 0017); required unless the platform is configured otherwise. Missing or invalid: 400 UK.OBIE.Signature.*"),
        ("x-idempotency-key" = String, Header, description = "Required; at most 40 characters; the same key and file within 24 h answers 200 again without a second effect")),
    request_body(description = "The file, in the consent's FileType (at most 1 MiB, 500 payments)",
        content((String = "application/json"), (String = "text/csv"))),
    responses(
        (status = 200, description = "File accepted; the consent awaits authorisation (AWAU)"),
        (status = 400, description = "FileHash, NumberOfTransactions or ControlSum differ from the consent (UK.OBIE.Resource.ConsentMismatch); a payment breaks a rule (Path names it: Data.DomesticPayments[i]… or Line[n]…); the consent is not AWUP (a second upload, or after authorisation); unknown consent or another client's", body = ObErrorResponse),
        (status = 401, body = ObErrorResponse), (status = 403, body = ObErrorResponse),
        (status = 413, description = "The file is larger than 1 MiB", body = ObErrorResponse),
        (status = 415, description = "Not the FileType's media type", body = ObErrorResponse),
        (status = 429, body = ObErrorResponse), (status = 500, body = ObErrorResponse),
        (status = 503, body = ObErrorResponse)))]
pub async fn upload_file(
    State(st): State<AppState>,
    Path(id): Path<String>,
    PaymentClient(client): PaymentClient,
    headers: HeaderMap,
    // The signature covers the file's exact bytes, whatever its format (ADR 0017).
    SignedBody(body): SignedBody,
) -> Result<Response, ObError> {
    let key = idempotency_key(&headers)?;
    let endpoint = format!("POST file-payment-consents/{id}/file");
    let hash = request_hash(&endpoint, &body);
    let now = st.clock.now();
    let now_s = now.unix_timestamp();
    let store = payments(&st)?;
    let replay = |k: IdempotencyRecord| {
        same_request(&k, &hash)?;
        Ok(no_store(StatusCode::OK.into_response()))
    };
    if let Some(k) = store
        .find_idempotency(&client.client_id, &key, now_s)
        .await?
    {
        return replay(k);
    }
    let (r, mut d) = own_consent(&st, &client.client_id, &id).await?;
    awaiting_file(&r, &d)?;
    if body.len() > fp::MAX_FILE_BYTES {
        return Err(ObError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            codes::FIELD_INVALID,
            format!("a file is at most {} bytes", fp::MAX_FILE_BYTES),
            None,
        ));
    }
    let want = fp::content_type(&d.initiation.file_type);
    let got = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|v| v.trim().to_ascii_lowercase());
    if got.as_deref() != Some(want) {
        return Err(ObError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            codes::HEADER_INVALID,
            format!("a {} file is sent as {want}", d.initiation.file_type),
            Some("Content-Type"),
        ));
    }
    let checked = fp::check_file(&d.initiation, &body).map_err(file_errors)?;
    let text = String::from_utf8(body.to_vec()).map_err(|_| ObError::internal())?;
    d.file = Some(checked.summary(now_s));
    d.status_update_date_time = now;
    let file = StoredFile {
        consent_id: r.id.clone(),
        file_type: d.initiation.file_type.clone(),
        content_type: want.to_owned(),
        body: text,
        file_hash: d.initiation.file_hash.clone(),
        uploaded_at: now_s,
    };
    let audit = AuditEntry {
        consent_id: r.id.clone(),
        at: now_s,
        actor: format!("client:{}", client.client_id),
        action: "file-uploaded".into(),
        detail: format!(
            "{} payments, {} {}",
            checked.items.len(),
            format_minor(checked.control_sum_minor, &checked.currency),
            checked.currency
        ),
    };
    let k = idempotency(&client.client_id, key, &hash, &r.id, now_s);
    match files(&st)?
        .upload_file(&client.client_id, &file, &d.to_value(), &audit, &k)
        .await?
    {
        Uploaded::Done => Ok(no_store(StatusCode::OK.into_response())),
        Uploaded::KeyInUse(k) => replay(k),
        // Another upload won the race, or the consent moved on.
        Uploaded::Refused => {
            let (r, d) = own_consent(&st, &client.client_id, &id).await?;
            awaiting_file(&r, &d)?;
            Err(ObError::internal())
        }
    }
}

#[utoipa::path(get, path = "/open-banking/v4.0/pisp/file-payment-consents/{ConsentId}/file", tag = "File Payments",
    params(("ConsentId" = String, Path, description = "Consent id")),
    responses(
        (status = 200, description = "The uploaded file, byte for byte, in its media type",
            content((String = "application/json"), (String = "text/csv"))),
        (status = 400, description = "Unknown consent, another client's, or no file uploaded yet", body = ObErrorResponse),
        (status = 401, body = ObErrorResponse), (status = 403, body = ObErrorResponse),
        (status = 429, body = ObErrorResponse), (status = 500, body = ObErrorResponse),
        (status = 503, body = ObErrorResponse)))]
pub async fn get_file(
    State(st): State<AppState>,
    Path(id): Path<String>,
    PaymentClient(client): PaymentClient,
) -> Result<Response, ObError> {
    let (r, _) = own_consent(&st, &client.client_id, &id).await?;
    let f = files(&st)?
        .find_file(&r.id)
        .await?
        .ok_or_else(|| ObError::resource_not_found("ConsentId"))?;
    let mut resp = f.body.into_response();
    let ct = HeaderValue::from_str(&format!("{}; charset=utf-8", f.content_type))
        .map_err(|_| ObError::internal())?;
    resp.headers_mut().insert(header::CONTENT_TYPE, ct);
    Ok(no_store(resp))
}

// ---- file payments --------------------------------------------------------------------------

fn render_file_payment(
    st: &AppState,
    f: &FilePaymentRecord,
    items: &[PaymentRecord],
    status: StatusCode,
) -> Response {
    let updated = items
        .iter()
        .map(|p| p.updated_at)
        .max()
        .unwrap_or(f.created_at);
    let body = ObWriteFileResponse {
        data: ObFileResponseData {
            file_payment_id: f.id.clone(),
            consent_id: f.consent_id.clone(),
            creation_date_time: utc(f.created_at),
            status: fp::batch_status(items.iter().map(|p| p.status.as_str())).to_owned(),
            status_update_date_time: utc(updated),
            initiation: f.details["Initiation"].clone(),
        },
        links: self_link(st, &format!("{PISP_PREFIX}/file-payments/{}", f.id), None),
        meta: Meta::default(),
    };
    no_store((status, axum::Json(body)).into_response())
}

#[utoipa::path(post, path = "/open-banking/v4.0/pisp/file-payments", tag = "File Payments",
    request_body(content = ObWriteFile, content_type = "application/json"),
    params(("x-idempotency-key" = String, Header, description = "Required; at most 40 characters; same key and body within 24 h returns the original file payment, nothing paid twice"),
        ("x-jws-signature" = String, Header, description = "Detached JWS (UK OB) over the exact body by a key in the client's registered jwks (ADR 0017); required unless the platform is configured otherwise. Missing or invalid: 400 UK.OBIE.Signature.*")),
    responses(
        (status = 201, description = "The file executed: each payment ACSC, ACSP (to another bank) or RJCT with its reason (AM04 insufficient funds); the consent is COND", body = ObWriteFileResponse),
        (status = 400, description = "Invalid body; Initiation differs from the consent (UK.OBIE.Resource.ConsentMismatch); consent not AUTH (UK.OBIE.Resource.InvalidConsentStatus); key used with another request", body = ObErrorResponse),
        (status = 401, body = ObErrorResponse),
        (status = 403, description = "Not the customer's payments token for this consent", body = ObErrorResponse),
        (status = 406, body = ObErrorResponse), (status = 415, body = ObErrorResponse),
        (status = 429, body = ObErrorResponse), (status = 500, body = ObErrorResponse),
        (status = 503, body = ObErrorResponse)))]
pub async fn create_file_payment(
    State(st): State<AppState>,
    PaymentCustomer(t): PaymentCustomer,
    headers: HeaderMap,
    SignedBody(body): SignedBody,
) -> Result<Response, ObError> {
    let key = idempotency_key(&headers)?;
    let hash = request_hash("POST file-payments", &body);
    let now = st.clock.now();
    let now_s = now.unix_timestamp();
    let store = payments(&st)?;
    if let Some(k) = store.find_idempotency(&t.client_id, &key, now_s).await? {
        return replay_file_payment(&st, &t.client_id, &k, &hash).await;
    }
    let json = json_body(&headers, &body)?;
    let req = fp::parse_payment_body(&json).map_err(pay_err)?;
    let (r, mut d) = bound_consent(&st, &t, &req.consent_id).await?;
    let authorised_after = match pay_from(&st, &t, &r, &key, now_s).await? {
        PayFrom::Pay { authorised_after } => authorised_after,
        PayFrom::Replay(k) => return replay_file_payment(&st, &t.client_id, &k, &hash).await,
    };
    fp::check_matches_consent(&req, &d).map_err(pay_err)?;
    let debtor_id = d.debtor_account_id.clone().ok_or_else(|| {
        tracing::error!(consent = %r.id, "authorised file consent without a debtor account");
        ObError::internal()
    })?;
    let debtor = customers_account(&st, &t, &debtor_id).await?;
    let stored = files(&st)?.find_file(&r.id).await?.ok_or_else(|| {
        tracing::error!(consent = %r.id, "authorised file consent without its file");
        ObError::internal()
    })?;
    let checked = fp::check_file(&d.initiation, stored.body.as_bytes()).map_err(|e| {
        tracing::error!(consent = %r.id, errors = ?e, "a stored file no longer passes its checks");
        ObError::internal()
    })?;
    let fid = format!("fp-{}", uuid::Uuid::new_v4());
    let mut items = Vec::with_capacity(checked.items.len());
    for (seq, i) in checked.items.iter().enumerate() {
        let amount = i.amount_minor().map_err(|_| ObError::internal())?;
        let (outcome, after) = match pay::sandbox_clearing(amount) {
            ClearingOutcome::Settle { after_secs } => ("settle", after_secs),
            ClearingOutcome::Reject { after_secs } => ("reject", after_secs),
        };
        items.push(FileItem {
            payment: PaymentRecord {
                id: format!("fpi-{}", uuid::Uuid::new_v4()),
                // Unique per item (`payments.consent_id` is UNIQUE): the consent and the place.
                consent_id: format!("{}/{seq}", r.id),
                client_id: t.client_id.clone(),
                customer_id: t.subject.clone(),
                debtor_account_id: debtor_id.clone(),
                creditor_account_id: None,
                external: false,
                amount,
                currency: checked.currency.clone(),
                status: pay::status::RCVD.into(),
                status_reason: None,
                details: serde_json::json!({
                    "Initiation": i.to_value(),
                    "FilePaymentId": fid,
                    "DebtorName": debtor.identification.name,
                }),
                clearing_outcome: None,
                next_action_at: None,
                created_at: now_s,
                updated_at: now_s,
            },
            creditor_scheme: i.creditor_account.scheme_name.clone(),
            creditor_identification: i.creditor_account.identification.clone(),
            clearing_after_secs: after,
            clearing_outcome: outcome.into(),
        });
    }
    d.file_payment_id = Some(fid.clone());
    d.status_update_date_time = now;
    let x = FileExecution {
        file: FilePaymentRecord {
            id: fid.clone(),
            consent_id: r.id.clone(),
            client_id: t.client_id.clone(),
            customer_id: t.subject.clone(),
            debtor_account_id: debtor_id,
            currency: checked.currency.clone(),
            item_count: checked.items.len() as i64,
            control_sum: checked.control_sum_minor,
            details: serde_json::json!({"Initiation": req.initiation.to_value()}),
            created_at: now_s,
        },
        items,
        consent_details: d.to_value(),
        consent_authorised_after: authorised_after,
        audit: AuditEntry {
            consent_id: r.id.clone(),
            at: now_s,
            actor: format!("client:{}", t.client_id),
            action: "consumed".into(),
            detail: format!("file-payment={fid}"),
        },
        idempotency: idempotency(&t.client_id, key, &hash, &fid, now_s),
    };
    match files(&st)?.execute_file_payment(&x).await? {
        FileExecuted::Done(done) => {
            let (f, items) = *done;
            let rejected = items.iter().filter(|p| p.status == "RJCT").count();
            tracing::info!(file_payment = %f.id, items = items.len(), rejected, "file payment");
            Ok(render_file_payment(&st, &f, &items, StatusCode::CREATED))
        }
        FileExecuted::KeyInUse(k) => replay_file_payment(&st, &t.client_id, &k, &hash).await,
        FileExecuted::ConsentNotAuthorised => Err(crate::payment_consents::not_consumed::<
            FileConsentDetails,
        >(&st, &t.client_id, &r.id, now_s)
        .await),
    }
}

async fn own_file_payment(
    st: &AppState,
    client_id: &str,
    id: &str,
) -> Result<(FilePaymentRecord, Vec<PaymentRecord>), ObError> {
    let s = files(st)?;
    let f = s
        .find_file_payment(id)
        .await?
        .filter(|f| f.client_id == client_id)
        .ok_or_else(|| ObError::resource_not_found("FilePaymentId"))?;
    let items = s.file_payment_items(&f.id).await?;
    Ok((f, items))
}

async fn replay_file_payment(
    st: &AppState,
    client_id: &str,
    k: &IdempotencyRecord,
    hash: &str,
) -> Result<Response, ObError> {
    same_request(k, hash)?;
    let (f, items) = own_file_payment(st, client_id, &k.resource_id).await?;
    Ok(render_file_payment(st, &f, &items, StatusCode::CREATED))
}

#[utoipa::path(get, path = "/open-banking/v4.0/pisp/file-payments/{FilePaymentId}", tag = "File Payments",
    params(("FilePaymentId" = String, Path, description = "File payment id")),
    responses(
        (status = 200, description = "The file payment and its status, aggregated from its payments", body = ObWriteFileResponse),
        (status = 400, description = "Unknown file payment, or another client's", body = ObErrorResponse),
        (status = 401, body = ObErrorResponse), (status = 403, body = ObErrorResponse),
        (status = 406, body = ObErrorResponse), (status = 429, body = ObErrorResponse),
        (status = 500, body = ObErrorResponse), (status = 503, body = ObErrorResponse)))]
pub async fn get_file_payment(
    State(st): State<AppState>,
    Path(id): Path<String>,
    PaymentClient(client): PaymentClient,
) -> Result<Response, ObError> {
    let (f, items) = own_file_payment(&st, &client.client_id, &id).await?;
    Ok(render_file_payment(&st, &f, &items, StatusCode::OK))
}

fn instruction_id(p: &PaymentRecord) -> String {
    p.details["Initiation"]["InstructionIdentification"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

#[utoipa::path(get, path = "/open-banking/v4.0/pisp/file-payments/{FilePaymentId}/payment-details", tag = "File Payments",
    params(("FilePaymentId" = String, Path, description = "File payment id")),
    responses(
        (status = 200, description = "Each payment of the file with its current status, in file order", body = ObFilePaymentDetailsResponse),
        (status = 400, description = "Unknown file payment, or another client's", body = ObErrorResponse),
        (status = 401, body = ObErrorResponse), (status = 403, body = ObErrorResponse),
        (status = 406, body = ObErrorResponse), (status = 429, body = ObErrorResponse),
        (status = 500, body = ObErrorResponse), (status = 503, body = ObErrorResponse)))]
pub async fn get_file_payment_details(
    State(st): State<AppState>,
    Path(id): Path<String>,
    PaymentClient(client): PaymentClient,
) -> Result<Response, ObError> {
    let (f, items) = own_file_payment(&st, &client.client_id, &id).await?;
    let body = ObFilePaymentDetailsResponse {
        data: ObFilePaymentDetailsData {
            payment_status: items
                .iter()
                .map(|p| ObFileItemStatus {
                    payment_transaction_id: p.id.clone(),
                    instruction_identification: instruction_id(p),
                    status: p.status.clone(),
                    payment_transaction_status_update_date_time: utc(p.updated_at),
                    status_reason: reasons(p.status_reason.as_deref()),
                })
                .collect(),
        },
        links: self_link(
            &st,
            &format!("{PISP_PREFIX}/file-payments/{}/payment-details", f.id),
            None,
        ),
        meta: Meta::default(),
    };
    Ok(no_store(axum::Json(body).into_response()))
}

#[utoipa::path(get, path = "/open-banking/v4.0/pisp/file-payments/{FilePaymentId}/report-file", tag = "File Payments",
    params(("FilePaymentId" = String, Path, description = "File payment id")),
    responses(
        (status = 200, description = "The report: every payment's instruction id, amount, status and reason", body = ObFileReport),
        (status = 400, description = "Unknown file payment, or another client's", body = ObErrorResponse),
        (status = 401, body = ObErrorResponse), (status = 403, body = ObErrorResponse),
        (status = 406, body = ObErrorResponse), (status = 429, body = ObErrorResponse),
        (status = 500, body = ObErrorResponse), (status = 503, body = ObErrorResponse)))]
pub async fn get_report_file(
    State(st): State<AppState>,
    Path(id): Path<String>,
    PaymentClient(client): PaymentClient,
) -> Result<Response, ObError> {
    let (f, items) = own_file_payment(&st, &client.client_id, &id).await?;
    let accepted: i64 = items
        .iter()
        .filter(|p| p.status != "RJCT")
        .map(|p| p.amount)
        .sum();
    let body = ObFileReport {
        data: ObFileReportData {
            file_payment_id: f.id.clone(),
            consent_id: f.consent_id.clone(),
            status: fp::batch_status(items.iter().map(|p| p.status.as_str())).to_owned(),
            number_of_transactions: f.item_count,
            control_sum: format_minor(f.control_sum, &f.currency),
            currency: f.currency.clone(),
            accepted_sum: format_minor(accepted, &f.currency),
            items: items
                .iter()
                .map(|p| ObFileReportItem {
                    payment_transaction_id: p.id.clone(),
                    instruction_identification: instruction_id(p),
                    end_to_end_identification: p.details["Initiation"]["EndToEndIdentification"]
                        .as_str()
                        .unwrap_or_default()
                        .to_owned(),
                    instructed_amount: crate::payments::ObAmount {
                        amount: format_minor(p.amount, &p.currency),
                        currency: p.currency.clone(),
                    },
                    status: p.status.clone(),
                    status_reason: reasons(p.status_reason.as_deref())
                        .and_then(|v| v.into_iter().next()),
                })
                .collect(),
        },
    };
    Ok(no_store(axum::Json(body).into_response()))
}

/// The routes of this module, registered by [`crate::api_routes`].
pub fn routes() -> Vec<(String, axum::routing::MethodRouter<AppState>)> {
    use axum::routing::{get, post};
    let p = |s: &str| format!("{PISP_PREFIX}{s}");
    vec![
        (
            p("/file-payment-consents"),
            post(create_file_payment_consent),
        ),
        (
            p("/file-payment-consents/{ConsentId}"),
            get(get_file_payment_consent),
        ),
        (
            p("/file-payment-consents/{ConsentId}/file"),
            post(upload_file).get(get_file),
        ),
        (p("/file-payments"), post(create_file_payment)),
        (p("/file-payments/{FilePaymentId}"), get(get_file_payment)),
        (
            p("/file-payments/{FilePaymentId}/payment-details"),
            get(get_file_payment_details),
        ),
        (
            p("/file-payments/{FilePaymentId}/report-file"),
            get(get_report_file),
        ),
    ]
}
