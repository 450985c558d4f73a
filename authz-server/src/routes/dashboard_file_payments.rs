//! File-payment consents on the customer dashboard (ADR 0016), shown like a domestic
//! payment consent ([`super::dashboard_payments`]): how many payments, the total with its
//! currency, the first payees (as the consent page listed them), the account the money
//! leaves, the consent's status in words and, once the provider executed the file, what
//! became of its payments (from the ledger's items). A used consent is spent.

use crate::client_auth::store;
use crate::ob_file_payments::payee_previews;
use crate::routes::dashboard::{shared_account, when};
use crate::state::AppState;
use authz_core::OAuthError;
use authz_store::{ConsentRecord, ConsentStatus, FilePaymentRecord, PaymentRecord};
use consent_ui::dashboard as dui;
use openbanking::file_payment::FileConsentDetails;
use openbanking::payment::format_minor;

/// What the dashboard shows of one file-payment consent.
pub(crate) struct FileView {
    pub facts: dui::FilePaymentFacts,
    /// The card's state when it differs from the generic one (used: paid or not).
    pub state: Option<dui::ConsentState>,
    pub note: Option<String>,
    /// The execution of the file, for the history.
    pub history: Vec<dui::HistoryEntry>,
}

/// The consent's own status in words (plural: one approval for many payments).
fn consent_words(c: &ConsentRecord, paid: Option<bool>) -> String {
    match c.status {
        ConsentStatus::AwaitingAuthorisation => "Awaiting your approval".into(),
        ConsentStatus::Authorised => "Authorised by you, not used yet".into(),
        ConsentStatus::Consumed => match paid {
            Some(false) => "Used: the payments were attempted".into(),
            _ => "Used: the payments were made".into(),
        },
        ConsentStatus::Rejected => "Refused".into(),
        ConsentStatus::Revoked => "Withdrawn before it was used".into(),
        ConsentStatus::Expired => "Expired before it was used".into(),
    }
}

/// What became of the file's payments, counted by outcome, e.g. "2 paid, 1 not paid".
fn batch_words(items: &[PaymentRecord]) -> String {
    let count = |f: &dyn Fn(&str) -> bool| items.iter().filter(|p| f(&p.status)).count();
    let paid = count(&|s| s == "ACSC");
    let rejected = count(&|s| s == "RJCT");
    let pending = items.len() - paid - rejected;
    if paid == items.len() {
        return format!("All {paid} paid");
    }
    if rejected == items.len() {
        return format!("None paid: all {rejected} were refused or returned");
    }
    [
        (paid, "paid"),
        (pending, "sent to the payees' banks, not yet confirmed"),
        (rejected, "not paid"),
    ]
    .iter()
    .filter(|(n, _)| *n > 0)
    .map(|(n, w)| format!("{n} {w}"))
    .collect::<Vec<_>>()
    .join(", ")
}

async fn file_payment_of(
    st: &AppState,
    c: &ConsentRecord,
    d: &FileConsentDetails,
) -> Result<Option<(FilePaymentRecord, Vec<PaymentRecord>)>, OAuthError> {
    let (Some(id), Some(files)) = (&d.file_payment_id, st.store.file_payments()) else {
        return Ok(None);
    };
    let Some(f) = files
        .find_file_payment(id)
        .await
        .map_err(store)?
        .filter(|f| f.consent_id == c.id)
    else {
        return Ok(None);
    };
    let items = files.file_payment_items(&f.id).await.map_err(store)?;
    Ok(Some((f, items)))
}

pub(crate) async fn view(st: &AppState, c: &ConsentRecord) -> Result<FileView, OAuthError> {
    let d = FileConsentDetails::from_value(&c.details)
        .map_err(|e| OAuthError::server_error(format!("stored consent {}: {e}", c.id)))?;
    // A consent the customer saw always has its file; without one, the TPP's own figures.
    let (count, total, first_payees) = match &d.file {
        Some(f) => (
            f.count,
            format!(
                "{} {}",
                f.currency,
                format_minor(f.control_sum_minor, &f.currency)
            ),
            payee_previews(f),
        ),
        None => (
            d.initiation.number_of_transactions.parse().unwrap_or(0),
            d.initiation.control_sum_text(),
            vec![],
        ),
    };
    let from = match &d.debtor_account_id {
        Some(id) => Some(shared_account(st, id).await),
        None => None,
    };
    let executed = file_payment_of(st, c, &d).await?;
    let paid = executed
        .as_ref()
        .map(|(_, items)| items.iter().any(|p| p.status != "RJCT"));
    let state = (c.status == ConsentStatus::Consumed).then_some(match paid {
        Some(false) => dui::ConsentState::NotPaid,
        _ => dui::ConsentState::Paid,
    });
    let note = match (&c.status, &d.status_reason) {
        (ConsentStatus::Revoked, _) => {
            Some("You withdrew these payments before they were made.".into())
        }
        (ConsentStatus::Rejected, Some(r)) if r.code == "U010" => {
            Some("You refused these payments.".into())
        }
        (ConsentStatus::Rejected, Some(r)) => Some(format!("Refused: {}.", r.description)),
        _ => None,
    };
    let payment_status = executed.as_ref().map(|(_, items)| batch_words(items));
    let history = executed
        .as_ref()
        .and_then(|(f, items)| {
            Some(dui::HistoryEntry {
                when: when(f.created_at)?,
                what: format!("Payments: {}", batch_words(items)),
                who: "Wekeza Bank".into(),
                detail: String::new(),
            })
        })
        .into_iter()
        .collect();
    Ok(FileView {
        facts: dui::FilePaymentFacts {
            count,
            total,
            more: count.saturating_sub(first_payees.len()),
            first_payees,
            reference: d.initiation.file_reference.clone(),
            from_account: from,
            consent_status: consent_words(c, paid),
            payment_status,
            paid_at: executed.as_ref().and_then(|(f, _)| when(f.created_at)),
        },
        state,
        note,
        history,
    })
}
