//! The one path of every payment consent at the resource server, whatever it pays
//! (`domestic-payment-consents`, `file-payment-consents`): creation with its idempotent
//! replay, the stored record, the response head, and the lookups of the GETs and of the
//! customer's token. A kind supplies only its body parsing and its response shape
//! ([`ConsentKind`]), so the idempotency and ownership rules cannot drift between kinds.

use crate::AppState;
use crate::auth::{ClientGrant, CustomerToken};
use crate::consents::ObStatusReason;
use crate::error::ObError;
use crate::ob::{self, Links};
use crate::payments::{
    PISP_PREFIX, consent_status, idempotency_key, json_body, key_reused, no_store, payments,
    request_hash, utc,
};
use crate::routes::self_link;
use authz_store::{
    AuditEntry, ConsentRecord, ConsentStatus as Stored, Created, IDEMPOTENCY_TTL_SECS,
    IdempotencyRecord,
};
use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use openbanking::SCOPE_PAYMENTS;
use openbanking::payment_consent::PaymentConsent;
use serde::Serialize;
use time::OffsetDateTime;

/// What a payment-consent kind adds to the shared path.
pub(crate) trait ConsentKind: PaymentConsent {
    /// The collection under [`PISP_PREFIX`], e.g. `domestic-payment-consents`.
    const COLLECTION: &'static str;
    /// Prefix of new consent ids.
    const ID_PREFIX: &'static str;
    /// The response body (its OB schema).
    type Body: Serialize;

    /// The request body's rules: the details to store and the audit line of the creation.
    fn parse(json: &serde_json::Value, now: OffsetDateTime) -> Result<(Self, String), ObError>;

    /// The status the TPP sees.
    fn status(&self, r: &ConsentRecord) -> &'static str {
        consent_status(r.status)
    }

    /// The response body from the fields every payment consent answers with.
    fn body(&self, head: ConsentHead, links: Links) -> Self::Body;
}

/// The leading `Data` fields of every payment-consent response, in their OB order.
pub(crate) struct ConsentHead {
    pub consent_id: String,
    pub creation_date_time: String,
    pub status: String,
    pub status_update_date_time: String,
    pub status_reason: Option<Vec<ObStatusReason>>,
}

/// An idempotency record for `resource`, kept [`IDEMPOTENCY_TTL_SECS`].
pub(crate) fn idempotency(
    client_id: &str,
    key: String,
    hash: &str,
    resource: &str,
    now: i64,
) -> IdempotencyRecord {
    IdempotencyRecord {
        client_id: client_id.to_owned(),
        key,
        request_hash: hash.to_owned(),
        resource_id: resource.to_owned(),
        created_at: now,
        expires_at: now + IDEMPOTENCY_TTL_SECS,
    }
}

/// A reused key answers again only for the same request; another request with it is
/// refused (and changes nothing).
pub(crate) fn same_request(k: &IdempotencyRecord, hash: &str) -> Result<(), ObError> {
    if k.request_hash == hash {
        Ok(())
    } else {
        Err(key_reused())
    }
}

/// The client's payment consent of kind `K`, or 400 NotFound (unknown, another client's,
/// or another kind alike: no oracle).
pub(crate) async fn own_consent<K: ConsentKind>(
    st: &AppState,
    client_id: &str,
    id: &str,
) -> Result<(ConsentRecord, K), ObError> {
    let r = st
        .store
        .find_consent(id)
        .await?
        .filter(|r| r.client_id == client_id && r.kind == K::KIND)
        .ok_or_else(|| ObError::resource_not_found("ConsentId"))?;
    let d = K::from_value(&r.details).map_err(|e| {
        tracing::error!(consent = %r.id, kind = K::KIND, error = %e, "corrupt payment consent details");
        ObError::internal()
    })?;
    Ok((r, d))
}

/// The consent the customer's token is bound to, which must be `id`, this client's,
/// this customer's.
pub(crate) async fn bound_consent<K: ConsentKind>(
    st: &AppState,
    t: &CustomerToken,
    id: &str,
) -> Result<(ConsentRecord, K), ObError> {
    if t.consent_id != id {
        return Err(ObError::forbidden(
            "the access token was issued for another consent",
        ));
    }
    let (r, d) = own_consent::<K>(st, &t.client_id, id).await?;
    if r.customer_id.as_deref() != Some(t.subject.as_str()) {
        return Err(ObError::forbidden(
            "the consent was authorised by another customer",
        ));
    }
    Ok((r, d))
}

/// The payment's lower bound on the consent's authorisation time (its lifetime, ADR
/// 0019, guarded again inside the payment's transaction): refuses an authorised consent
/// whose lifetime has run out, even before the housekeeping sweep moves it to EXPD.
pub(crate) fn authorised_after(st: &AppState, r: &ConsentRecord, now: i64) -> Result<i64, ObError> {
    let l = &st.payment_consent_lifetimes;
    match l.lapse(false, r.created_at, r.updated_at, now) {
        Some(lapse) => Err(ObError::bad_request(
            crate::error::codes::INVALID_CONSENT_STATUS,
            format!("the consent has expired: {}", lapse.description(l)),
            "ConsentId",
        )),
        None => Ok(now.saturating_sub(l.authorised_ttl_secs)),
    }
}

/// Where a payment on consent `r` (read for the customer's token `t`) starts.
pub(crate) enum PayFrom {
    /// Go on; the lower bound on the consent's authorisation time for the payment's
    /// guarded consent update ([`authorised_after`]).
    Pay { authorised_after: i64 },
    /// The consent is no longer Authorised, and a request with this key consumed it:
    /// answer with what that request created.
    Replay(IdempotencyRecord),
}

/// The consent must be Authorised and within its lifetime, unless the request repeats
/// the one that consumed it. Shared by every payment kind, so their rules cannot drift.
pub(crate) async fn pay_from(
    st: &AppState,
    t: &CustomerToken,
    r: &ConsentRecord,
    key: &str,
    now: i64,
) -> Result<PayFrom, ObError> {
    if r.status != Stored::Authorised {
        if let Some(k) = payments(st)?
            .find_idempotency(&t.client_id, key, now)
            .await?
        {
            return Ok(PayFrom::Replay(k));
        }
        return Err(crate::payments::not_authorised(r));
    }
    Ok(PayFrom::Pay {
        authorised_after: authorised_after(st, r, now)?,
    })
}

/// The consent's debtor account, if it is still the token's customer's (it was when the
/// consent was authorised).
pub(crate) async fn customers_account(
    st: &AppState,
    t: &CustomerToken,
    account_id: &str,
) -> Result<core_bank::Account, ObError> {
    let customer = st
        .bank
        .customer_for_subject(&t.subject)
        .await?
        .ok_or_else(|| ObError::forbidden("the customer holds no accounts here"))?;
    st.bank
        .account(account_id)
        .await?
        .filter(|a| a.customer_id == customer.id)
        .ok_or_else(|| ObError::forbidden("the debtor account is not the customer's"))
}

/// Why the payment's guarded consent update found nothing to consume: read again, the
/// consent is either no longer authorised or (still authorised) past its lifetime.
pub(crate) async fn not_consumed<K: ConsentKind>(
    st: &AppState,
    client_id: &str,
    id: &str,
    now: i64,
) -> ObError {
    match own_consent::<K>(st, client_id, id).await {
        Ok((r, _)) if r.status == Stored::Authorised => match authorised_after(st, &r, now) {
            Err(e) => e,
            // Authorised and within its lifetime when read again, yet the guarded update
            // found it otherwise a moment before: nothing was written; the TPP may retry.
            Ok(_) => ObError::bad_request(
                crate::error::codes::INVALID_CONSENT_STATUS,
                "the consent could not be used by this request; nothing was paid",
                "ConsentId",
            ),
        },
        Ok((r, _)) => crate::payments::not_authorised(&r),
        Err(e) => e,
    }
}

pub(crate) fn render_consent<K: ConsentKind>(
    st: &AppState,
    r: &ConsentRecord,
    d: &K,
    status: StatusCode,
) -> Response {
    let head = ConsentHead {
        consent_id: r.id.clone(),
        creation_date_time: utc(r.created_at),
        status: d.status(r).to_owned(),
        status_update_date_time: ob::dt(
            d.status_update_date_time().to_offset(time::UtcOffset::UTC),
        ),
        status_reason: d.status_reason().map(|s| {
            vec![ObStatusReason {
                status_reason_code: s.code.clone(),
                status_reason_description: s.description.clone(),
            }]
        }),
    };
    let links = self_link(
        st,
        &format!("{PISP_PREFIX}/{}/{}", K::COLLECTION, r.id),
        None,
    );
    no_store((status, axum::Json(d.body(head, links))).into_response())
}

/// The answer to a request whose key is already taken: the consent it created, as 201.
async fn replay_consent<K: ConsentKind>(
    st: &AppState,
    client_id: &str,
    k: &IdempotencyRecord,
    hash: &str,
) -> Result<Response, ObError> {
    same_request(k, hash)?;
    let (r, d) = own_consent::<K>(st, client_id, &k.resource_id).await?;
    Ok(render_consent(st, &r, &d, StatusCode::CREATED))
}

/// `POST /{collection}` of every payment-consent kind: key, replay, the kind's rules, then
/// the consent, its audit line and the key in one store call (AWAU / AWUP).
pub(crate) async fn create_payment_consent<K: ConsentKind>(
    st: &AppState,
    client: &ClientGrant,
    headers: &HeaderMap,
    body: &Bytes,
) -> Result<Response, ObError> {
    let key = idempotency_key(headers)?;
    let hash = request_hash(&format!("POST {}", K::COLLECTION), body);
    let now = st.clock.now();
    let now_s = now.unix_timestamp();
    let store = payments(st)?;
    if let Some(k) = store
        .find_idempotency(&client.client_id, &key, now_s)
        .await?
    {
        return replay_consent::<K>(st, &client.client_id, &k, &hash).await;
    }
    let json = json_body(headers, body)?;
    let (details, detail) = K::parse(&json, now)?;
    let record = ConsentRecord {
        id: format!("{}-{}", K::ID_PREFIX, uuid::Uuid::new_v4()),
        client_id: client.client_id.clone(),
        customer_id: None,
        kind: K::KIND.into(),
        scopes: SCOPE_PAYMENTS.into(),
        status: Stored::AwaitingAuthorisation,
        details: details.to_value(),
        created_at: now_s,
        updated_at: now_s,
        expires_at: None,
    };
    let audit = AuditEntry {
        consent_id: record.id.clone(),
        at: now_s,
        actor: format!("client:{}", client.client_id),
        action: "created".into(),
        detail,
    };
    let idem = idempotency(&client.client_id, key, &hash, &record.id, now_s);
    match store
        .create_consent_idempotent(&record, &audit, &idem)
        .await?
    {
        Created::Done => Ok(render_consent(st, &record, &details, StatusCode::CREATED)),
        // A concurrent request with the same key won.
        Created::KeyInUse(k) => replay_consent::<K>(st, &client.client_id, &k, &hash).await,
    }
}

/// `GET /{collection}/{ConsentId}` of every payment-consent kind.
pub(crate) async fn get_payment_consent<K: ConsentKind>(
    st: &AppState,
    client: &ClientGrant,
    id: &str,
) -> Result<Response, ObError> {
    let (r, d) = own_consent::<K>(st, &client.client_id, id).await?;
    Ok(render_consent(st, &r, &d, StatusCode::OK))
}
