//! Payment consents at the authorization server (issue 7, ADR 0011): the intent named at
//! PAR must be this client's domestic-payment consent, awaiting authorisation, asked for
//! with scope `payments`; the consent page shows exactly what is paid (amount, payee,
//! account, reference) and from which account; the decision moves the consent AWAU →
//! AUTH (with the customer and the debtor account) or RJCT in one guarded update. The
//! code, and so the token, carries that consent's id and nothing else (dynamic linking).

use crate::client_auth::store;
use crate::ob_payment_consent::{
    self as shared, Decided, bad_intent, debtor_choice, require_payments_scope,
};
use crate::state::AppState;
use authz_core::par::AuthorizationRequest;
use authz_core::{ErrorCode, OAuthError, OAuthResult};
use authz_store::{AuditEntry, ConsentRecord, ConsentStatus};
use consent_ui as ui;
use openbanking::payment::{ConsentRequest, PaymentConsentDetails, format_minor};
use openbanking::{KIND_DOMESTIC_PAYMENT, SCOPE_PAYMENTS, Source};
use std::collections::BTreeSet;
use time::OffsetDateTime;

/// The domestic-payment consent an intent id names, if it is one of this client's.
async fn find(
    st: &AppState,
    client_id: &str,
    intent_id: &str,
) -> OAuthResult<Option<ConsentRecord>> {
    shared::find::<PaymentConsentDetails>(st, client_id, intent_id).await
}

/// PAR with `authorization_details` of type `payment_initiation` (ADR 0017): record the
/// domestic-payment consent, awaiting authorisation, in the stored shape of
/// `POST /domestic-payment-consents` (marked as RAR, so the token carries the granted
/// details). Returns its id.
pub async fn create_rar_consent(
    st: &AppState,
    client_id: &str,
    req: &ConsentRequest,
) -> OAuthResult<String> {
    let now = st.clock.now();
    let mut d = PaymentConsentDetails::new(
        req,
        OffsetDateTime::from_unix_timestamp(now)
            .map_err(|_| OAuthError::server_error("clock out of range"))?,
    );
    d.source = Source::Rar;
    let record = ConsentRecord {
        id: format!("pdc-{}", uuid::Uuid::new_v4()),
        client_id: client_id.to_owned(),
        customer_id: None,
        kind: KIND_DOMESTIC_PAYMENT.into(),
        scopes: SCOPE_PAYMENTS.into(),
        status: ConsentStatus::AwaitingAuthorisation,
        details: d.to_value(),
        created_at: now,
        updated_at: now,
        expires_at: None,
    };
    let i = &req.initiation;
    let audit = AuditEntry {
        consent_id: record.id.clone(),
        at: now,
        actor: format!("client:{client_id}"),
        action: "created".into(),
        detail: format!(
            "{} {} to {} (authorization_details)",
            i.instructed_amount.amount,
            i.instructed_amount.currency,
            i.creditor_account.identification
        ),
    };
    st.store
        .insert_consent(&record, &audit)
        .await
        .map_err(store)?;
    Ok(record.id)
}

/// A payment consent (domestic or file) awaiting authorisation past its window may not
/// be authorised, even before the sweep has moved it to RJCT (ADR 0019).
pub(crate) fn lapse_check(st: &AppState, c: &ConsentRecord) -> OAuthResult<()> {
    let lapsed = st
        .config
        .payment_consent_lifetimes()
        .lapse(true, c.created_at, c.updated_at, st.clock.now())
        .is_some();
    if lapsed {
        return Err(bad_intent(
            "the consent was not authorised in time and has lapsed",
        ));
    }
    Ok(())
}

/// PAR: `Ok(true)` when the intent is this client's payment consent and may be
/// authorised (awaiting authorisation, scope `payments` asked for); `Ok(false)` when it is
/// not a payment consent of this client.
pub async fn check_intent(
    st: &AppState,
    client_id: &str,
    intent_id: &str,
    scope: &str,
) -> OAuthResult<bool> {
    let Some(c) = find(st, client_id, intent_id).await? else {
        return Ok(false);
    };
    if c.status != ConsentStatus::AwaitingAuthorisation {
        return Err(bad_intent("the consent is not awaiting authorisation"));
    }
    lapse_check(st, &c)?;
    require_payments_scope(scope)?;
    Ok(true)
}

/// The payment the request asks the customer to authorise, if it names one.
pub async fn requested(
    st: &AppState,
    req: &AuthorizationRequest,
) -> OAuthResult<Option<(ConsentRecord, PaymentConsentDetails)>> {
    let Some(id) = &req.intent_id else {
        return Ok(None);
    };
    let Some(c) = find(st, &req.client_id, id).await? else {
        return Ok(None);
    };
    if c.status != ConsentStatus::AwaitingAuthorisation {
        return Err(bad_intent("the consent is not awaiting authorisation"));
    }
    lapse_check(st, &c)?;
    let d = PaymentConsentDetails::from_value(&c.details)
        .map_err(|e| OAuthError::server_error(format!("stored consent {id}: {e}")))?;
    Ok(Some((c, d)))
}

pub(crate) async fn customer_accounts(
    st: &AppState,
    customer_id: &str,
) -> OAuthResult<Vec<core_bank::Account>> {
    let unavailable = |e: core_bank::CoreError| {
        OAuthError::new(
            ErrorCode::TemporarilyUnavailable,
            format!("core bank unavailable: {e}"),
        )
    };
    let Some(customer) = st
        .bank
        .customer_for_subject(customer_id)
        .await
        .map_err(unavailable)?
    else {
        return Ok(Vec::new());
    };
    st.bank.accounts(&customer.id).await.map_err(unavailable)
}

/// An account scheme in the customer's words (consent pages and dashboard).
pub(crate) fn scheme_words(scheme: &str) -> &str {
    match scheme {
        "KE.WEKEZA.AccountNumber" => "Wekeza account",
        "KE.MPESA.MSISDN" => "M-PESA number",
        "UK.OBIE.SortCodeAccountNumber" => "Sort code and account",
        "UK.OBIE.IBAN" => "IBAN",
        other => other,
    }
}

fn tail(s: &str) -> String {
    let v: Vec<char> = s.chars().collect();
    v[v.len().saturating_sub(4)..].iter().collect()
}

pub(crate) fn describe(a: &core_bank::Account) -> ui::AccountChoice {
    let kind = match a.kind {
        core_bank::AccountKind::Current => "Current account",
        core_bank::AccountKind::Savings => "Savings account",
        core_bank::AccountKind::CreditCard => "Credit card",
    };
    ui::AccountChoice {
        id: a.id.clone(),
        name: a.nickname.clone(),
        detail: format!(
            "{kind} · {} · ending {}",
            a.currency.code(),
            tail(&a.identification.identification)
        ),
        checked: false,
    }
}

/// The consent page's payment section. `Err(invalid_request)` when the account the
/// consent names is not one of this customer's.
pub async fn page_parts(
    st: &AppState,
    d: &PaymentConsentDetails,
    customer_id: &str,
    picked: &BTreeSet<String>,
) -> OAuthResult<ui::PaymentSummary> {
    let i = &d.initiation;
    let (from_account, from_choices) = debtor_choice(st, d, customer_id, picked).await?;
    let scheme = scheme_words(&i.creditor_account.scheme_name);
    let amount = i
        .amount_minor()
        .map(|m| format_minor(m, &i.instructed_amount.currency))
        .map_err(|e| OAuthError::server_error(format!("stored amount: {e}")))?;
    Ok(ui::PaymentSummary {
        amount: format!("{} {amount}", i.instructed_amount.currency),
        payee_name: i.creditor_account.name.clone().unwrap_or_default(),
        payee_account: format!("{scheme} {}", i.creditor_account.identification),
        reference: i.reference().map(str::to_owned),
        from_account,
        from_choices,
    })
}

/// The customer's answer: `Ok(Some(consent_id))` approved, `Ok(None)` refused,
/// `Err(Retry)` when the form needs another look (no account picked).
pub struct Retry(pub String);

pub async fn decide(
    st: &AppState,
    consent: &ConsentRecord,
    d: PaymentConsentDetails,
    customer_id: &str,
    approve: bool,
    picked: &BTreeSet<String>,
    acr: &str,
) -> OAuthResult<Result<Option<String>, Retry>> {
    let why = "the customer refused the payment";
    Ok(
        match shared::decide(st, consent, d, customer_id, approve, picked, acr, why).await? {
            Decided::Approved(id) => Ok(Some(id)),
            Decided::Refused => Ok(None),
            Decided::MustPick => Err(Retry(
                "Choose the account to pay from, or choose Deny.".into(),
            )),
        },
    )
}
