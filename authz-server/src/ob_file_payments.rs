//! File-payment consents at the authorization server (issue 7, ADR 0016): one
//! authorisation for a whole file of payments, through the intent path of the domestic
//! payments ([`crate::ob_payments`]). The intent named at PAR must be this client's
//! file-payment consent whose file was accepted (AWAU, not AWUP), asked for with scope
//! `payments`; the consent page shows the batch (how many payments, the total and its
//! currency, the first payees and "and N more", the account it leaves from); the decision
//! moves the consent AWAU → AUTH (with the customer and the debtor account) or RJCT in one
//! guarded update, and the code carries that consent's id only.

use crate::client_auth::store;
use crate::ob_payments::{customer_accounts, describe};
use crate::state::AppState;
use authz_core::par::AuthorizationRequest;
use authz_core::{ErrorCode, OAuthError, OAuthResult};
use authz_store::{AuditEntry, ConsentRecord, ConsentStatus};
use axum::http::StatusCode;
use axum::response::Response;
use consent_ui as ui;
use openbanking::file_payment::FileConsentDetails;
use openbanking::payment::{format_minor, parse_amount};
use openbanking::{KIND_FILE_PAYMENT, SCOPE_PAYMENTS, StatusReason};
use std::collections::BTreeSet;
use time::OffsetDateTime;

fn bad_intent(why: &str) -> OAuthError {
    OAuthError::invalid_request(format!("openbanking_intent_id: {why}"))
}

async fn find(
    st: &AppState,
    client_id: &str,
    intent_id: &str,
) -> OAuthResult<Option<ConsentRecord>> {
    Ok(st
        .store
        .find_consent(intent_id)
        .await
        .map_err(store)?
        .filter(|c| c.client_id == client_id && c.kind == KIND_FILE_PAYMENT))
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
    if !scope.split(' ').any(|s| s == SCOPE_PAYMENTS) {
        return Err(OAuthError::new(
            ErrorCode::InvalidScope,
            "a payment consent is authorised with scope payments",
        ));
    }
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

/// The customer's accounts the file can leave from: current and savings accounts in the
/// file's currency, or exactly the one the consent names (if it is theirs).
async fn debtor_candidates(
    st: &AppState,
    d: &FileConsentDetails,
    customer_id: &str,
) -> OAuthResult<Vec<core_bank::Account>> {
    let cur = d.file.as_ref().map(|f| f.currency.as_str()).unwrap_or("");
    Ok(customer_accounts(st, customer_id)
        .await?
        .into_iter()
        .filter(|a| a.kind != core_bank::AccountKind::CreditCard && a.currency.code() == cur)
        .filter(|a| match &d.initiation.debtor_account {
            Some(named) => {
                a.identification.scheme == named.scheme_name
                    && a.identification.identification == named.identification
            }
            None => true,
        })
        .collect())
}

fn scheme_words(scheme: &str) -> &str {
    match scheme {
        "KE.WEKEZA.AccountNumber" => "Wekeza account",
        "KE.MPESA.MSISDN" => "M-PESA number",
        "UK.OBIE.SortCodeAccountNumber" => "Sort code and account",
        "UK.OBIE.IBAN" => "IBAN",
        other => other,
    }
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
    let candidates = debtor_candidates(st, &d, customer_id).await?;
    let (from_account, from_choices) = match &d.initiation.debtor_account {
        Some(_) => {
            let a = candidates
                .first()
                .ok_or_else(|| bad_intent("the account to pay from is not yours"))?;
            let c = describe(a);
            (Some(format!("{} · {}", c.name, c.detail)), vec![])
        }
        None => (
            None,
            candidates
                .iter()
                .map(|a| {
                    let mut c = describe(a);
                    c.checked = picked.contains(&a.id);
                    c
                })
                .collect(),
        ),
    };
    let cur = &file.currency;
    page.file_payment = Some(ui::FilePaymentSummary {
        count: file.count,
        total: format!("{cur} {}", format_minor(file.control_sum_minor, cur)),
        first_payees: file
            .first_payees
            .iter()
            .map(|p| ui::FilePayee {
                name: p.name.clone(),
                account: format!("{} {}", scheme_words(&p.scheme), p.identification),
                amount: match parse_amount(&p.amount, cur) {
                    Ok(m) => format!("{cur} {}", format_minor(m, cur)),
                    Err(_) => format!("{cur} {}", p.amount),
                },
            })
            .collect(),
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
    let Some((consent, mut d)) = file else {
        return Ok(Decision::NotFile);
    };
    let now = st.clock.now();
    d.status_update_date_time = OffsetDateTime::from_unix_timestamp(now)
        .map_err(|_| OAuthError::server_error("clock out of range"))?;
    let candidates = debtor_candidates(st, &d, customer_id).await?;
    let debtor = if !approve {
        None
    } else if d.initiation.debtor_account.is_some() {
        match candidates.first() {
            Some(a) => Some(a.id.clone()),
            // The TPP named an account this customer does not hold: never pay from it.
            None => {
                refuse(
                    st,
                    &consent,
                    d,
                    customer_id,
                    ("U001", "the account to pay from is not the customer's"),
                    now,
                )
                .await?;
                return Err(bad_intent("the account to pay from is not yours"));
            }
        }
    } else {
        let id = match (picked.len(), picked.iter().next()) {
            (1, Some(id)) => id.clone(),
            _ => {
                return Err(OAuthError::invalid_request(
                    "Choose the account to pay from, or choose Deny.",
                ));
            }
        };
        if !candidates.iter().any(|a| a.id == id) {
            // Only a tampered form gets here.
            return Err(OAuthError::invalid_request(
                "an account that cannot pay this was picked",
            ));
        }
        Some(id)
    };
    let Some(debtor) = debtor else {
        refuse(
            st,
            &consent,
            d,
            customer_id,
            ("U010", "the customer refused the payments"),
            now,
        )
        .await?;
        return Ok(Decision::Refused);
    };
    d.debtor_account_id = Some(debtor.clone());
    let audit = AuditEntry {
        consent_id: consent.id.clone(),
        at: now,
        actor: format!("customer:{customer_id}"),
        action: "authorised".into(),
        detail: format!("debtor={debtor}; acr={acr}"),
    };
    let moved = st
        .store
        .update_consent(
            &consent.id,
            &[ConsentStatus::AwaitingAuthorisation],
            ConsentStatus::Authorised,
            Some(customer_id),
            Some(&d.to_value()),
            &audit,
        )
        .await
        .map_err(store)?;
    if !moved {
        return Err(bad_intent(
            "the consent is no longer awaiting authorisation",
        ));
    }
    Ok(Decision::Approved(consent.id))
}

async fn refuse(
    st: &AppState,
    consent: &ConsentRecord,
    mut d: FileConsentDetails,
    customer_id: &str,
    (code, why): (&str, &str),
    now: i64,
) -> OAuthResult<()> {
    d.status_reason = Some(StatusReason {
        code: code.into(),
        description: why.into(),
    });
    let audit = AuditEntry {
        consent_id: consent.id.clone(),
        at: now,
        actor: format!("customer:{customer_id}"),
        action: "rejected".into(),
        detail: why.into(),
    };
    st.store
        .update_consent(
            &consent.id,
            &[ConsentStatus::AwaitingAuthorisation],
            ConsentStatus::Rejected,
            Some(customer_id),
            Some(&d.to_value()),
            &audit,
        )
        .await
        .map_err(store)?;
    Ok(())
}
