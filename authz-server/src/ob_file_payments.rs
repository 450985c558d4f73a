//! File-payment consents at the authorization server (issue 7, ADR 0016): one
//! authorisation for a whole file of payments, through the intent path of the domestic
//! payments ([`crate::ob_payments`]). The intent named at PAR must be this client's
//! file-payment consent whose file was accepted (AWAU, not AWUP), asked for with scope
//! `payments`; the consent page shows the batch (how many payments, the total and its
//! currency, the first payees and "and N more", the account it leaves from); the decision
//! moves the consent AWAU → AUTH (with the customer and the debtor account) or RJCT in one
//! guarded update, and the code carries that consent's id only.

use crate::ob_payment_consent::{
    self as shared, Decided, bad_intent, debtor_choice, require_payments_scope,
};
use crate::ob_payments::scheme_words;
use crate::state::AppState;
use authz_core::par::AuthorizationRequest;
use authz_core::{ErrorCode, OAuthError, OAuthResult};
use authz_store::{ConsentRecord, ConsentStatus};
use axum::http::StatusCode;
use axum::response::Response;
use consent_ui as ui;
use openbanking::file_payment::{FileConsentDetails, FileSummary};
use openbanking::payment::{format_minor, parse_amount};
use std::collections::BTreeSet;

/// The file-payment consent an intent id names, if it is one of this client's.
async fn find(
    st: &AppState,
    client_id: &str,
    intent_id: &str,
) -> OAuthResult<Option<ConsentRecord>> {
    shared::find::<FileConsentDetails>(st, client_id, intent_id).await
}

fn details(c: &ConsentRecord) -> OAuthResult<FileConsentDetails> {
    FileConsentDetails::from_value(&c.details)
        .map_err(|e| OAuthError::server_error(format!("stored consent {}: {e}", c.id)))
}

/// The consent and its details when it may be authorised now: awaiting authorisation with
/// its file accepted.
fn authorisable(c: ConsentRecord) -> OAuthResult<(ConsentRecord, FileConsentDetails)> {
    if c.status != ConsentStatus::AwaitingAuthorisation {
        return Err(bad_intent("the consent is not awaiting authorisation"));
    }
    let d = details(&c)?;
    if d.file.is_none() {
        return Err(bad_intent("the consent's file has not been uploaded"));
    }
    Ok((c, d))
}

/// PAR: `Ok(true)` when the intent is this client's file-payment consent and may be
/// authorised; `Ok(false)` when it is not a file-payment consent of this client.
pub async fn check_intent(
    st: &AppState,
    client_id: &str,
    intent_id: &str,
    scope: &str,
) -> OAuthResult<bool> {
    let Some(c) = find(st, client_id, intent_id).await? else {
        return Ok(false);
    };
    crate::ob_payments::lapse_check(st, &c)?;
    authorisable(c)?;
    require_payments_scope(scope)?;
    Ok(true)
}

/// The file the request asks the customer to authorise, if it names one.
pub async fn requested(
    st: &AppState,
    req: &AuthorizationRequest,
) -> OAuthResult<Option<(ConsentRecord, FileConsentDetails)>> {
    let Some(id) = &req.intent_id else {
        return Ok(None);
    };
    match find(st, &req.client_id, id).await? {
        Some(c) => {
            crate::ob_payments::lapse_check(st, &c)?;
            authorisable(c).map(Some)
        }
        None => Ok(None),
    }
}

/// The file's first payees as the customer reads them (the consent page and the
/// dashboard), amounts in the file's currency.
pub(crate) fn payee_previews(file: &FileSummary) -> Vec<ui::FilePayee> {
    let cur = &file.currency;
    file.first_payees
        .iter()
        .map(|p| ui::FilePayee {
            name: p.name.clone(),
            account: format!("{} {}", scheme_words(&p.scheme), p.identification),
            amount: match parse_amount(&p.amount, cur) {
                Ok(m) => format!("{cur} {}", format_minor(m, cur)),
                Err(_) => format!("{cur} {}", p.amount),
            },
        })
        .collect()
}

/// Fills the consent page's file section when the request names a file-payment consent.
/// `Err(invalid_request)` when it can no longer be approved or names an account that is
/// not this customer's.
pub async fn fill_page(
    st: &AppState,
    req: &AuthorizationRequest,
    customer_id: &str,
    picked: &BTreeSet<String>,
    page: &mut ui::ConsentPage,
) -> OAuthResult<()> {
    let Some((_, d)) = requested(st, req).await? else {
        return Ok(());
    };
    let Some(file) = &d.file else {
        return Err(bad_intent("the consent's file has not been uploaded"));
    };
    let (from_account, from_choices) = debtor_choice(st, &d, customer_id, picked).await?;
    let cur = &file.currency;
    page.file_payment = Some(ui::FilePaymentSummary {
        count: file.count,
        total: format!("{cur} {}", format_minor(file.control_sum_minor, cur)),
        first_payees: payee_previews(file),
        more: file.count.saturating_sub(file.first_payees.len()),
        reference: d.initiation.file_reference.clone(),
        from_account,
        from_choices,
    });
    page.expires_text = Some("for this one file of payments only".into());
    Ok(())
}

/// The page shown when [`fill_page`] fails.
pub fn page_error(e: &OAuthError) -> Response {
    if e.code == ErrorCode::InvalidRequest {
        return crate::routes::authorize::error_page(
            StatusCode::BAD_REQUEST,
            "These payments cannot be approved",
            "The app's request was withdrawn or already answered, or it asks to pay from an account that is not yours. Go back to the app and start again.",
            Some("invalid_request"),
        );
    }
    crate::routes::authorize::server_error_page(e)
}

/// For a file-payment consent: `Some(Err(message))` when the form must be shown again (the
/// customer has to pick exactly one account to pay from), `Some(Ok(()))` when it may be
/// decided; `None` when the request is not for a file payment.
pub async fn must_pick(
    st: &AppState,
    req: &AuthorizationRequest,
    picked: &BTreeSet<String>,
) -> Option<Result<(), String>> {
    let (_, d) = requested(st, req).await.ok().flatten()?;
    if d.initiation.debtor_account.is_none() && picked.len() != 1 {
        return Some(Err("Choose the account to pay from, or choose Deny.".into()));
    }
    Some(Ok(()))
}

/// The customer's decision on a file-payment consent.
pub enum Decision {
    /// The request is not for a file payment.
    NotFile,
    Approved(String),
    Refused,
}

pub async fn decide(
    st: &AppState,
    file: Option<(ConsentRecord, FileConsentDetails)>,
    customer_id: &str,
    approve: bool,
    picked: &BTreeSet<String>,
    acr: &str,
) -> OAuthResult<Decision> {
    let Some((consent, d)) = file else {
        return Ok(Decision::NotFile);
    };
    let why = "the customer refused the payments";
    match shared::decide(st, &consent, d, customer_id, approve, picked, acr, why).await? {
        Decided::Approved(id) => Ok(Decision::Approved(id)),
        Decided::Refused => Ok(Decision::Refused),
        // `must_pick` shows the form again before this; only a changed form gets here.
        Decided::MustPick => Err(OAuthError::invalid_request(
            "Choose the account to pay from, or choose Deny.",
        )),
    }
}
