//! Payment consents on the customer dashboard (ADR 0011): what is paid, to whom, with
//! which reference and from which account; the consent's status in words (authorised,
//! paid, refused, withdrawn) and, once the provider used it, the payment's own status as
//! the ledger holds it (`DurableStore::payments()`), its status changes merged into the
//! history. A consent that was used is spent: it gets no withdraw button.

use crate::client_auth::store;
use crate::ob_payments::scheme_words;
use crate::routes::dashboard::{shared_account, when};
use crate::state::AppState;
use authz_core::OAuthError;
use authz_store::{ConsentRecord, ConsentStatus, PaymentRecord, StatusLine};
use consent_ui::dashboard as dui;
use openbanking::payment::{PaymentConsentDetails, format_minor};

/// What the dashboard shows of one payment consent.
pub(crate) struct PaymentView {
    pub facts: dui::PaymentFacts,
    /// The card's state when it differs from the generic one (used: paid or not).
    pub state: Option<dui::ConsentState>,
    pub note: Option<String>,
    /// The payment's status changes, for the history.
    pub history: Vec<dui::HistoryEntry>,
}

/// An ISO 20022 payment status (and reason) in the customer's words.
pub(crate) fn payment_words(status: &str, reason: Option<&str>) -> String {
    match (status, reason) {
        ("ACSC", _) => "Paid".into(),
        ("ACSP", _) => "Sent to the payee's bank; not yet confirmed by it".into(),
        ("RJCT", Some("AM04")) => {
            "Not paid: there was not enough money in the account. Nothing left your account.".into()
        }
        ("RJCT", Some("AM03")) => {
            "Not paid: the payee's account does not take this currency. Nothing left your account."
                .into()
        }
        ("RJCT", Some("AC04")) => {
            "Returned by the payee's bank (account closed): the money is back in your account."
                .into()
        }
        ("RJCT", _) => "Not paid".into(),
        ("RCVD" | "PDNG", _) => "Received, being processed".into(),
        (other, _) => format!("Status {other}"),
    }
}

/// The consent's own status in words.
fn consent_words(c: &ConsentRecord, paid: Option<bool>) -> String {
    match c.status {
        ConsentStatus::AwaitingAuthorisation => "Awaiting your approval".into(),
        ConsentStatus::Authorised => "Authorised by you, not used yet".into(),
        ConsentStatus::Consumed => match paid {
            Some(false) => "Used: the payment was attempted".into(),
            _ => "Used: the payment was made".into(),
        },
        ConsentStatus::Rejected => "Refused".into(),
        ConsentStatus::Revoked => "Withdrawn before it was used".into(),
        ConsentStatus::Expired => "Expired before it was used".into(),
    }
}

async fn payment_of(
    st: &AppState,
    c: &ConsentRecord,
    d: &PaymentConsentDetails,
) -> Result<Option<(PaymentRecord, Vec<StatusLine>)>, OAuthError> {
    let (Some(id), Some(ledger)) = (&d.payment_id, st.store.payments()) else {
        return Ok(None);
    };
    let Some(p) = ledger
        .find_payment(id)
        .await
        .map_err(store)?
        .filter(|p| p.consent_id == c.id)
    else {
        return Ok(None);
    };
    let log = ledger.payment_status_log(id).await.map_err(store)?;
    Ok(Some((p, log)))
}

pub(crate) async fn view(st: &AppState, c: &ConsentRecord) -> Result<PaymentView, OAuthError> {
    let d = PaymentConsentDetails::from_value(&c.details)
        .map_err(|e| OAuthError::server_error(format!("stored consent {}: {e}", c.id)))?;
    let i = &d.initiation;
    let amount = i
        .amount_minor()
        .map(|m| format_minor(m, &i.instructed_amount.currency))
        .map_err(|e| OAuthError::server_error(format!("stored amount: {e}")))?;
    let from = match &d.debtor_account_id {
        Some(id) => Some(shared_account(st, id).await),
        None => None,
    };
    let payment = payment_of(st, c, &d).await?;
    let paid = payment.as_ref().map(|(p, _)| p.status != "RJCT");
    let state = (c.status == ConsentStatus::Consumed).then_some(match paid {
        Some(false) => dui::ConsentState::NotPaid,
        _ => dui::ConsentState::Paid,
    });
    let note = match (&c.status, &d.status_reason) {
        (ConsentStatus::Revoked, _) => Some("You withdrew this payment before it was made.".into()),
        (ConsentStatus::Rejected, Some(r)) if r.code == "U010" => {
            Some("You refused this payment.".into())
        }
        (ConsentStatus::Rejected, Some(r)) => Some(format!("Refused: {}.", r.description)),
        _ => None,
    };
    let mut history = Vec::new();
    if let Some((_, log)) = &payment {
        for l in log {
            if let Some(w) = when(l.at) {
                history.push(dui::HistoryEntry {
                    when: w,
                    what: format!("Payment: {}", payment_words(&l.status, l.reason.as_deref())),
                    who: "Wekeza Bank".into(),
                    detail: String::new(),
                });
            }
        }
    }
    Ok(PaymentView {
        facts: dui::PaymentFacts {
            amount: format!("{} {amount}", i.instructed_amount.currency),
            payee_name: i.creditor_account.name.clone().unwrap_or_default(),
            payee_account: format!(
                "{} {}",
                scheme_words(&i.creditor_account.scheme_name),
                i.creditor_account.identification
            ),
            reference: i.reference().map(str::to_owned),
            from_account: from,
            consent_status: consent_words(c, paid),
            payment_status: payment
                .as_ref()
                .map(|(p, _)| payment_words(&p.status, p.status_reason.as_deref())),
            paid_at: payment.as_ref().and_then(|(p, _)| when(p.created_at)),
        },
        state,
        note,
        history,
    })
}
