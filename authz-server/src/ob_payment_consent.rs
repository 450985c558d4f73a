//! The customer's side of every payment consent (one domestic payment or a file of them,
//! [`crate::ob_payments`], [`crate::ob_file_payments`]): which of the customer's accounts
//! the money may leave from, that choice on the consent page, and the decision (AWAU →
//! AUTH with the customer and the debtor account, or RJCT with a reason) in one guarded
//! update. One copy, so the rule "never pay from an account the TPP named that is not the
//! customer's" cannot differ between kinds.

use crate::client_auth::store;
use crate::ob_payments::{customer_accounts, describe};
use crate::state::AppState;
use authz_core::{ErrorCode, OAuthError, OAuthResult};
use authz_store::{AuditEntry, ConsentRecord, ConsentStatus};
use consent_ui as ui;
use openbanking::payment_consent::PaymentConsent;
use openbanking::{SCOPE_PAYMENTS, StatusReason};
use std::collections::BTreeSet;
use time::OffsetDateTime;

pub(crate) fn bad_intent(why: &str) -> OAuthError {
    OAuthError::invalid_request(format!("openbanking_intent_id: {why}"))
}

/// The payment consent of kind `D` an intent id names, if it is one of this client's;
/// `None` for anything else (another kind, another client's, unknown), which the next
/// kind's check then answers.
pub(crate) async fn find<D: PaymentConsent>(
    st: &AppState,
    client_id: &str,
    intent_id: &str,
) -> OAuthResult<Option<ConsentRecord>> {
    Ok(st
        .store
        .find_consent(intent_id)
        .await
        .map_err(store)?
        .filter(|c| c.client_id == client_id && c.kind == D::KIND))
}

/// PAR: a payment consent is authorised with scope `payments` only.
pub(crate) fn require_payments_scope(scope: &str) -> OAuthResult<()> {
    if !scope.split(' ').any(|s| s == SCOPE_PAYMENTS) {
        return Err(OAuthError::new(
            ErrorCode::InvalidScope,
            "a payment consent is authorised with scope payments",
        ));
    }
    Ok(())
}

/// The customer's accounts a payment of `d` can leave from: current and savings accounts
/// in the payment's currency, or exactly the one the consent names (if it is theirs).
pub(crate) async fn debtor_candidates<D: PaymentConsent>(
    st: &AppState,
    d: &D,
    customer_id: &str,
) -> OAuthResult<Vec<core_bank::Account>> {
    let cur = d.currency().unwrap_or("");
    Ok(customer_accounts(st, customer_id)
        .await?
        .into_iter()
        .filter(|a| a.kind != core_bank::AccountKind::CreditCard && a.currency.code() == cur)
        .filter(|a| match d.named_debtor() {
            Some(named) => {
                a.identification.scheme == named.scheme_name
                    && a.identification.identification == named.identification
            }
            None => true,
        })
        .collect())
}

/// The consent page's "from" part: the named account (`Err(invalid_request)` when it is not
/// this customer's), or the accounts to pick from with the customer's ticks.
pub(crate) async fn debtor_choice<D: PaymentConsent>(
    st: &AppState,
    d: &D,
    customer_id: &str,
    picked: &BTreeSet<String>,
) -> OAuthResult<(Option<String>, Vec<ui::AccountChoice>)> {
    let candidates = debtor_candidates(st, d, customer_id).await?;
    Ok(match d.named_debtor() {
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
    })
}

/// What the customer's answer did to the consent.
pub(crate) enum Decided {
    Approved(String),
    Refused,
    /// Nothing changed: the customer must pick exactly one account to pay from.
    MustPick,
}

/// The customer's answer on a payment consent awaiting authorisation. `refused_why` is the
/// reason recorded (U010) when the customer says no.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn decide<D: PaymentConsent>(
    st: &AppState,
    consent: &ConsentRecord,
    mut d: D,
    customer_id: &str,
    approve: bool,
    picked: &BTreeSet<String>,
    acr: &str,
    refused_why: &str,
) -> OAuthResult<Decided> {
    let now = st.clock.now();
    d.set_status_update_date_time(
        OffsetDateTime::from_unix_timestamp(now)
            .map_err(|_| OAuthError::server_error("clock out of range"))?,
    );
    let candidates = debtor_candidates(st, &d, customer_id).await?;
    let debtor = if !approve {
        None
    } else if d.named_debtor().is_some() {
        match candidates.first() {
            Some(a) => Some(a.id.clone()),
            // The TPP named an account this customer does not hold: never pay from it.
            None => {
                let why = "the account to pay from is not the customer's";
                refuse(st, consent, d, customer_id, ("U001", why), now).await?;
                return Err(bad_intent("the account to pay from is not yours"));
            }
        }
    } else {
        let id = match (picked.len(), picked.iter().next()) {
            (1, Some(id)) => id.clone(),
            _ => return Ok(Decided::MustPick),
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
        refuse(st, consent, d, customer_id, ("U010", refused_why), now).await?;
        return Ok(Decided::Refused);
    };
    d.set_debtor_account_id(debtor.clone());
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
    Ok(Decided::Approved(consent.id.clone()))
}

async fn refuse<D: PaymentConsent>(
    st: &AppState,
    consent: &ConsentRecord,
    mut d: D,
    customer_id: &str,
    (code, why): (&str, &str),
    now: i64,
) -> OAuthResult<()> {
    d.set_status_reason(StatusReason {
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
