//! Open-banking consents at the authorization server: the intent named at PAR must be
//! this client's and awaiting authorisation; the consent page shows the permissions and
//! the customer's accounts; the decision authorises the intent (or records the RAR
//! consent) with the accounts picked, in one guarded store update.

use crate::client_auth::store;
use crate::state::AppState;
use authz_core::par::AuthorizationRequest;
use authz_core::{ErrorCode, OAuthError, OAuthResult};
use authz_store::{AuditEntry, ConsentRecord, ConsentStatus};
use consent_ui as ui;
use openbanking::{AccountAccessDetails, KIND_ACCOUNT_ACCESS, Source, StatusReason};
use std::collections::BTreeSet;
use time::OffsetDateTime;

/// Whether the request asks for account access (intent or RAR).
pub fn is_account_access(req: &AuthorizationRequest) -> bool {
    req.intent_id.is_some() || req.account_access.is_some()
}

fn bad_intent(why: &str) -> OAuthError {
    OAuthError::invalid_request(format!("openbanking_intent_id: {why}"))
}

fn ts(secs: i64) -> OAuthResult<OffsetDateTime> {
    OffsetDateTime::from_unix_timestamp(secs)
        .map_err(|_| OAuthError::server_error("clock out of range"))
}

/// PAR: the intent exists, is an account-access consent of this client, awaits
/// authorisation and has not expired.
pub async fn check_intent(
    st: &AppState,
    client_id: &str,
    intent_id: &str,
) -> OAuthResult<ConsentRecord> {
    let c = st
        .store
        .find_consent(intent_id)
        .await
        .map_err(store)?
        // Another client's intent gets the same answer as an unknown one.
        .filter(|c| c.client_id == client_id && c.kind == KIND_ACCOUNT_ACCESS)
        .ok_or_else(|| bad_intent("unknown consent"))?;
    if c.status != ConsentStatus::AwaitingAuthorisation {
        return Err(bad_intent("the consent is not awaiting authorisation"));
    }
    if c.expires_at.is_some_and(|e| e <= st.clock.now()) {
        return Err(bad_intent("the consent has expired"));
    }
    Ok(c)
}

/// What the customer is asked to approve: from the intent in the store, or from the
/// request's `authorization_details`.
pub async fn requested(
    st: &AppState,
    req: &AuthorizationRequest,
) -> OAuthResult<Option<AccountAccessDetails>> {
    if let Some(id) = &req.intent_id {
        let c = check_intent(st, &req.client_id, id).await?;
        let d = AccountAccessDetails::from_value(&c.details)
            .map_err(|e| OAuthError::server_error(format!("stored consent {id}: {e}")))?;
        return Ok(Some(d));
    }
    match &req.account_access {
        Some(a) => Ok(Some(AccountAccessDetails::new(
            Source::Rar,
            a,
            ts(st.clock.now())?,
        ))),
        None => Ok(None),
    }
}

fn day(t: OffsetDateTime) -> String {
    let f = time::macros::format_description!("[day padding:none] [month repr:short] [year]");
    t.format(&f).unwrap_or_default()
}

/// The consent-page parts of an account-access request.
pub struct PageParts {
    pub groups: Vec<ui::PermissionGroup>,
    pub accounts: Vec<ui::AccountChoice>,
    pub window: Option<String>,
    pub expires_text: Option<String>,
}

pub async fn page_parts(
    st: &AppState,
    d: &AccountAccessDetails,
    customer_id: &str,
    checked: &BTreeSet<String>,
) -> OAuthResult<PageParts> {
    let mut groups: Vec<ui::PermissionGroup> = Vec::new();
    for p in &d.permissions {
        match groups.iter_mut().find(|g| g.title == p.group()) {
            Some(g) => g.items.push(p.describe().to_owned()),
            None => groups.push(ui::PermissionGroup {
                title: p.group().to_owned(),
                items: vec![p.describe().to_owned()],
            }),
        }
    }
    let accounts = customer_accounts(st, customer_id)
        .await?
        .into_iter()
        .map(|a| {
            let kind = match a.kind {
                core_bank::AccountKind::Current => "Current account",
                core_bank::AccountKind::Savings => "Savings account",
                core_bank::AccountKind::CreditCard => "Credit card",
            };
            let id = &a.identification.identification;
            let tail: String = id
                .chars()
                .rev()
                .take(4)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect();
            ui::AccountChoice {
                checked: checked.contains(&a.id),
                id: a.id.clone(),
                name: a.nickname.clone(),
                detail: format!("{kind} · {} · ending {tail}", a.currency.code()),
            }
        })
        .collect();
    let window = match (d.transaction_from_date_time, d.transaction_to_date_time) {
        (Some(f), Some(t)) => Some(format!("from {} to {}", day(f), day(t))),
        (Some(f), None) => Some(format!("from {} onwards", day(f))),
        (None, Some(t)) => Some(format!("up to {}", day(t))),
        (None, None) if d.permissions.iter().any(|p| p.group() == "Transactions") => {
            Some("of any date the bank holds".to_owned())
        }
        (None, None) => None,
    };
    Ok(PageParts {
        groups,
        accounts,
        window,
        expires_text: d.expiration_date_time.map(|e| format!("until {}", day(e))),
    })
}

async fn customer_accounts(
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

/// The customer's answer to an account-access request. Returns the consent id the code
/// is issued for, or `None` when the customer refused.
pub enum Outcome {
    Approved { consent_id: String },
    Refused,
}

/// Why the answer cannot be taken as it is (shown on the consent page again).
pub struct Retry(pub String);

pub async fn decide(
    st: &AppState,
    req: &AuthorizationRequest,
    d: AccountAccessDetails,
    customer_id: &str,
    approve: bool,
    picked: &BTreeSet<String>,
    acr: &str,
) -> OAuthResult<Result<Outcome, Retry>> {
    let now = st.clock.now();
    let mut d = d;
    d.status_update_date_time = ts(now)?;
    if approve {
        let own: BTreeSet<String> = customer_accounts(st, customer_id)
            .await?
            .into_iter()
            .map(|a| a.id)
            .collect();
        if picked.is_empty() {
            return Ok(Err(Retry(
                "Choose at least one account to share, or choose Deny.".into(),
            )));
        }
        if !picked.is_subset(&own) {
            // Only a tampered form gets here: never grant an account the customer
            // does not hold.
            return Err(OAuthError::invalid_request(
                "an account that is not yours was picked",
            ));
        }
        d.account_ids = Some(picked.iter().cloned().collect());
    } else {
        d.status_reason = Some(StatusReason {
            code: "U010".into(),
            description: "the customer refused the request".into(),
        });
    }
    let status = if approve {
        ConsentStatus::Authorised
    } else {
        ConsentStatus::Rejected
    };
    let audit = |id: &str| AuditEntry {
        consent_id: id.to_owned(),
        at: now,
        actor: format!("customer:{customer_id}"),
        action: if approve { "authorised" } else { "rejected" }.into(),
        detail: match &d.account_ids {
            Some(a) => format!("accounts={}; acr={acr}", a.join(",")),
            None => format!("acr={acr}"),
        },
    };
    let consent_id = match &req.intent_id {
        Some(id) => {
            let moved = st
                .store
                .update_consent(
                    id,
                    &[ConsentStatus::AwaitingAuthorisation],
                    status,
                    Some(customer_id),
                    Some(&d.to_value()),
                    &audit(id),
                )
                .await
                .map_err(store)?;
            if !moved {
                return Err(bad_intent(
                    "the consent is no longer awaiting authorisation",
                ));
            }
            id.clone()
        }
        None => {
            let id = format!("aac-{}", uuid::Uuid::new_v4());
            let record = ConsentRecord {
                id: id.clone(),
                client_id: req.client_id.clone(),
                customer_id: Some(customer_id.to_owned()),
                kind: KIND_ACCOUNT_ACCESS.into(),
                scopes: req.scope.clone(),
                status,
                details: d.to_value(),
                created_at: now,
                updated_at: now,
                expires_at: d.expiration_date_time.map(|e| e.unix_timestamp()),
            };
            st.store
                .insert_consent(&record, &audit(&id))
                .await
                .map_err(store)?;
            id
        }
    };
    Ok(Ok(if approve {
        Outcome::Approved { consent_id }
    } else {
        Outcome::Refused
    }))
}

/// What an account-access consent adds to tokens: the intent id for the ID token (UK OB)
/// and the granted `authorization_details` (RFC 9396 §7) for RAR consents.
#[derive(Default)]
pub struct TokenExtras {
    pub intent_id: Option<String>,
    pub authorization_details: Option<serde_json::Value>,
}

pub fn token_extras(c: &ConsentRecord) -> TokenExtras {
    // A payment asked for in authorization_details: the granted entry, with consentId.
    if c.kind == openbanking::KIND_DOMESTIC_PAYMENT
        && let Ok(d) = openbanking::payment::PaymentConsentDetails::from_value(&c.details)
        && d.source == Source::Rar
    {
        return TokenExtras {
            intent_id: None,
            authorization_details: Some(serde_json::Value::Array(vec![
                d.granted_authorization_detail(&c.id),
            ])),
        };
    }
    // UK OB: the ID token names the payment intent too.
    if c.kind == openbanking::KIND_DOMESTIC_PAYMENT || c.kind == openbanking::KIND_FILE_PAYMENT {
        return TokenExtras {
            intent_id: Some(c.id.clone()),
            authorization_details: None,
        };
    }
    if c.kind != KIND_ACCOUNT_ACCESS {
        return TokenExtras::default();
    }
    match AccountAccessDetails::from_value(&c.details) {
        Ok(d) if d.source == Source::Intent => TokenExtras {
            intent_id: Some(c.id.clone()),
            authorization_details: None,
        },
        Ok(d) => TokenExtras {
            intent_id: None,
            authorization_details: Some(serde_json::Value::Array(vec![
                d.granted_authorization_detail(&c.id),
            ])),
        },
        Err(_) => TokenExtras::default(),
    }
}
