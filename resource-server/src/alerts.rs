//! Alerts on consented accounts (issue 8, ADR 0018): the TPP-facing balance-threshold
//! API, the sandbox's incoming-transfer trigger, and the housekeeping worker (consent
//! expiry sweep, event retention). The alerts themselves are written by the ledger's
//! transactions (`authz-store` `sql_alerts.rs`).
//!
//! * `PUT/GET/DELETE /open-banking/v4.0/events/balance-thresholds/{AccountId}`: the
//!   customer's authorization-code token (the consent it is bound to must grant
//!   `ReadBalances` and cover the account); exact decimal amounts in the account's
//!   currency; a crossing (either way) fires one `balance-threshold-crossed` event.
//! * `POST /open-banking/v4.0/sandbox/incoming-transfers`: sandbox deployments only (404
//!   otherwise), client-credentials token: money arrives at an account from outside.

use crate::AppState;
use crate::consents::ClientAccess;
use crate::error::{ObError, ObErrorResponse, codes};
use crate::events::json_body;
use crate::routes::Access;
use authz_store::{AlertStore, Credited, IncomingTransfer, MAX_THRESHOLDS, Party, Thresholds};
use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use openbanking::Permission;
use openbanking::payment::{currency_scale, format_minor, parse_amount};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::Duration;
use time::format_description::well_known::Rfc3339;
use utoipa::ToSchema;

pub const THRESHOLDS_PATH: &str = "/open-banking/v4.0/events/balance-thresholds/{AccountId}";
pub const INCOMING_PATH: &str = "/open-banking/v4.0/sandbox/incoming-transfers";

fn alerts(st: &AppState) -> Result<&dyn AlertStore, ObError> {
    st.store.alerts().ok_or_else(ObError::endpoint_not_found)
}

fn invalid(message: impl Into<String>, path: &str) -> ObError {
    ObError::bad_request(codes::FIELD_INVALID, message, path)
}

fn no_store(mut resp: Response) -> Response {
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

// ---- shapes -------------------------------------------------------------------------------

/// `Amount` and `Currency` (OB `OBActiveOrHistoricCurrencyAndAmount`).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct ObAmount {
    /// Exact decimal, at most the currency's decimal places (`1250.00`).
    pub amount: String,
    /// ISO 4217 code; the account's currency.
    pub currency: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct ObThreshold {
    pub amount: ObAmount,
    /// `Credit` (default): the balance level is the amount; `Debit`: minus the amount
    /// (an overdrawn level).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credit_debit_indicator: Option<String>,
}

/// `PUT …/balance-thresholds/{AccountId}`: replaces the TPP's thresholds on the account.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct ObBalanceThresholdsRequest {
    pub data: ObBalanceThresholdsRequestData,
}

#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct ObBalanceThresholdsRequestData {
    /// 1 to 10 distinct levels.
    pub thresholds: Vec<ObThreshold>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "PascalCase")]
pub struct ObBalanceThresholdsResponse {
    pub data: ObBalanceThresholdsData,
    pub links: crate::events::SelfLink,
    #[schema(value_type = Object)]
    pub meta: serde_json::Value,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "PascalCase")]
pub struct ObBalanceThresholdsData {
    pub account_id: String,
    /// Ascending; empty when none are set.
    pub thresholds: Vec<ObThreshold>,
}

/// The sender of an incoming transfer.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct ObIncomingDebtor {
    /// 1 to 70 characters.
    pub name: String,
    #[serde(default)]
    pub scheme_name: Option<String>,
    #[serde(default)]
    pub identification: Option<String>,
}

/// `POST /sandbox/incoming-transfers` (sandbox only).
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct ObIncomingTransferRequest {
    pub data: ObIncomingTransferRequestData,
}

#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct ObIncomingTransferRequestData {
    /// The sandbox account credited.
    pub account_id: String,
    /// Greater than zero, in the account's currency.
    pub instructed_amount: ObAmount,
    pub debtor: ObIncomingDebtor,
    /// Remittance reference, at most 35 characters.
    #[serde(default)]
    pub reference: Option<String>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "PascalCase")]
pub struct ObIncomingTransferResponse {
    pub data: ObIncomingTransferData,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "PascalCase")]
pub struct ObIncomingTransferData {
    pub incoming_transfer_id: String,
    pub account_id: String,
    /// The ledger transaction (`TransactionId` of its alert).
    pub transaction_id: String,
    pub instructed_amount: ObAmount,
    pub booking_date_time: String,
}

// ---- thresholds ---------------------------------------------------------------------------

/// The customer's token, `ReadBalances`, the account in the consent and in the ledger:
/// the account's currency.
async fn thresholds_access(
    st: &AppState,
    access: &Access,
    account_id: &str,
) -> Result<String, ObError> {
    if !access.grant.has(Permission::ReadBalances) {
        return Err(ObError::forbidden(
            "the consent does not grant ReadBalances",
        ));
    }
    if !access.accounts.iter().any(|a| a.id == account_id) {
        if access
            .grant
            .account_ids
            .as_ref()
            .is_some_and(|ids| ids.contains(account_id))
        {
            return Err(ObError::resource_not_found("AccountId"));
        }
        return Err(ObError::forbidden("the account is not part of the consent"));
    }
    let ledger = st
        .store
        .payments()
        .ok_or_else(ObError::endpoint_not_found)?;
    let a = ledger
        .ledger_account(account_id)
        .await?
        .filter(|a| a.kind == "customer")
        .ok_or_else(|| {
            ObError::bad_request(
                codes::NOT_FOUND,
                "the account keeps no ledger balance (no thresholds)",
                "AccountId",
            )
        })?;
    Ok(a.currency)
}

fn thresholds_body(st: &AppState, account_id: &str, t: Option<&Thresholds>) -> Response {
    let thresholds = t
        .map(|t| {
            t.amounts
                .iter()
                .map(|a| ObThreshold {
                    amount: ObAmount {
                        amount: format_minor(a.saturating_abs(), &t.currency),
                        currency: t.currency.clone(),
                    },
                    credit_debit_indicator: Some(if *a < 0 { "Debit" } else { "Credit" }.into()),
                })
                .collect()
        })
        .unwrap_or_default();
    let body = ObBalanceThresholdsResponse {
        data: ObBalanceThresholdsData {
            account_id: account_id.to_owned(),
            thresholds,
        },
        links: crate::events::SelfLink {
            self_: format!(
                "{}/open-banking/v4.0/events/balance-thresholds/{account_id}",
                st.base_url
            ),
        },
        meta: serde_json::json!({}),
    };
    no_store(Json(body).into_response())
}

/// A threshold's level in minor units; zero is a level too (the account going overdrawn).
fn threshold_minor(t: &ObThreshold, currency: &str, i: usize) -> Result<i64, ObError> {
    let path = format!("Data.Thresholds[{i}].Amount");
    if t.amount.currency != currency {
        return Err(invalid(
            format!("the account is kept in {currency}"),
            &format!("{path}.Currency"),
        ));
    }
    let a = &t.amount.amount;
    let zero = !a.is_empty()
        && a.split_once('.').map_or(a.as_str(), |(i, _)| i).len() <= 13
        && a.bytes().all(|b| b == b'0' || b == b'.')
        && a.bytes().filter(|b| *b == b'.').count() <= 1
        && !a.starts_with('.')
        && !a.ends_with('.')
        && a.split_once('.')
            .is_none_or(|(_, f)| f.len() as u32 <= currency_scale(currency).unwrap_or(0));
    let minor = if zero {
        0
    } else {
        parse_amount(a, currency).map_err(|m| invalid(m, &format!("{path}.Amount")))?
    };
    match t.credit_debit_indicator.as_deref() {
        None | Some("Credit") => Ok(minor),
        Some("Debit") => Ok(-minor),
        Some(_) => Err(invalid(
            "CreditDebitIndicator must be Credit or Debit",
            &format!("Data.Thresholds[{i}].CreditDebitIndicator"),
        )),
    }
}

#[utoipa::path(put, path = "/open-banking/v4.0/events/balance-thresholds/{AccountId}", tag = "Event Notifications",
    params(("AccountId" = String, Path, description = "An account the consent covers")),
    request_body(content = ObBalanceThresholdsRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "Thresholds replaced; each crossing of one (either way) fires one urn:wekeza:events:balance-threshold-crossed event to the TPP's subscriptions", body = ObBalanceThresholdsResponse),
        (status = 400, description = "Invalid amount, another currency, duplicates, none or more than 10", body = ObErrorResponse),
        (status = 401, body = ObErrorResponse),
        (status = 403, description = "The consent does not grant ReadBalances or does not cover the account", body = ObErrorResponse),
        (status = 415, body = ObErrorResponse), (status = 429, body = ObErrorResponse),
        (status = 500, body = ObErrorResponse)))]
pub async fn put_thresholds(
    State(st): State<AppState>,
    Path(account_id): Path<String>,
    access: Access,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ObError> {
    let store = alerts(&st)?;
    let currency = thresholds_access(&st, &access, &account_id).await?;
    let req: ObBalanceThresholdsRequest = json_body(&headers, &body)?;
    let n = req.data.thresholds.len();
    if n == 0 || n > MAX_THRESHOLDS {
        return Err(invalid(
            format!("1 to {MAX_THRESHOLDS} thresholds per account"),
            "Data.Thresholds",
        ));
    }
    let mut amounts = Vec::with_capacity(n);
    for (i, t) in req.data.thresholds.iter().enumerate() {
        let m = threshold_minor(t, &currency, i)?;
        if amounts.contains(&m) {
            return Err(invalid(
                "the same threshold twice",
                &format!("Data.Thresholds[{i}]"),
            ));
        }
        amounts.push(m);
    }
    amounts.sort_unstable();
    let t = Thresholds {
        consent_id: access.grant.consent_id.clone(),
        currency,
        amounts,
    };
    store
        .set_thresholds(
            &access.grant.client_id,
            &account_id,
            &t,
            st.clock.now().unix_timestamp(),
        )
        .await?;
    Ok(thresholds_body(&st, &account_id, Some(&t)))
}

#[utoipa::path(get, path = "/open-banking/v4.0/events/balance-thresholds/{AccountId}", tag = "Event Notifications",
    params(("AccountId" = String, Path, description = "An account the consent covers")),
    responses(
        (status = 200, description = "The TPP's thresholds on the account (empty if none)", body = ObBalanceThresholdsResponse),
        (status = 400, body = ObErrorResponse), (status = 401, body = ObErrorResponse),
        (status = 403, body = ObErrorResponse), (status = 429, body = ObErrorResponse),
        (status = 500, body = ObErrorResponse)))]
pub async fn get_thresholds(
    State(st): State<AppState>,
    Path(account_id): Path<String>,
    access: Access,
) -> Result<Response, ObError> {
    let store = alerts(&st)?;
    thresholds_access(&st, &access, &account_id).await?;
    let t = store
        .thresholds(&access.grant.client_id, &account_id)
        .await?;
    Ok(thresholds_body(&st, &account_id, t.as_ref()))
}

#[utoipa::path(delete, path = "/open-banking/v4.0/events/balance-thresholds/{AccountId}", tag = "Event Notifications",
    params(("AccountId" = String, Path, description = "An account the consent covers")),
    responses(
        (status = 204, description = "The TPP's thresholds on the account removed (also when there were none)"),
        (status = 400, body = ObErrorResponse), (status = 401, body = ObErrorResponse),
        (status = 403, body = ObErrorResponse), (status = 429, body = ObErrorResponse),
        (status = 500, body = ObErrorResponse)))]
pub async fn delete_thresholds(
    State(st): State<AppState>,
    Path(account_id): Path<String>,
    access: Access,
) -> Result<Response, ObError> {
    let store = alerts(&st)?;
    thresholds_access(&st, &access, &account_id).await?;
    store
        .delete_thresholds(&access.grant.client_id, &account_id)
        .await?;
    Ok(no_store(StatusCode::NO_CONTENT.into_response()))
}

// ---- sandbox: incoming transfers ----------------------------------------------------------

fn bounded(s: &str, max: usize, path: &str) -> Result<String, ObError> {
    let n = s.chars().count();
    if n == 0 || n > max || s.chars().any(char::is_control) {
        return Err(invalid(
            format!("1 to {max} characters, no control characters"),
            path,
        ));
    }
    Ok(s.to_owned())
}

#[utoipa::path(post, path = "/open-banking/v4.0/sandbox/incoming-transfers", tag = "Sandbox",
    request_body(content = ObIncomingTransferRequest, content_type = "application/json"),
    responses(
        (status = 201, description = "Credited from outside the bank (through the clearing account), with the alerts of the TPPs whose consents cover the account. Sandbox deployments only.", body = ObIncomingTransferResponse),
        (status = 400, description = "Invalid field, unknown account, another currency", body = ObErrorResponse),
        (status = 401, body = ObErrorResponse), (status = 403, body = ObErrorResponse),
        (status = 404, description = "Not a sandbox deployment", body = ObErrorResponse),
        (status = 415, body = ObErrorResponse), (status = 429, body = ObErrorResponse),
        (status = 500, body = ObErrorResponse)))]
pub async fn post_incoming_transfer(
    State(st): State<AppState>,
    ClientAccess(_client): ClientAccess,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ObError> {
    if !st.sandbox {
        return Err(ObError::endpoint_not_found());
    }
    let store = alerts(&st)?;
    let req: ObIncomingTransferRequest = json_body(&headers, &body)?;
    let d = &req.data;
    let amount = parse_amount(&d.instructed_amount.amount, &d.instructed_amount.currency)
        .map_err(|m| invalid(m, "Data.InstructedAmount"))?;
    let name = bounded(&d.debtor.name, 70, "Data.Debtor.Name")?;
    let scheme = d
        .debtor
        .scheme_name
        .as_deref()
        .map(|s| bounded(s, 40, "Data.Debtor.SchemeName"))
        .transpose()?;
    let identification = d
        .debtor
        .identification
        .as_deref()
        .map(|s| bounded(s, 256, "Data.Debtor.Identification"))
        .transpose()?;
    let reference = d
        .reference
        .as_deref()
        .map(|s| bounded(s, 35, "Data.Reference"))
        .transpose()?;
    let now = st.clock.now();
    let t = IncomingTransfer {
        account_id: d.account_id.clone(),
        amount,
        currency: d.instructed_amount.currency.clone(),
        counterparty: Party {
            name: Some(name),
            scheme,
            identification,
        },
        reference,
        at: now.unix_timestamp(),
    };
    match store.credit_incoming(&t).await? {
        Credited::Done {
            transfer_id,
            posting_id,
            ..
        } => {
            let body = ObIncomingTransferResponse {
                data: ObIncomingTransferData {
                    incoming_transfer_id: transfer_id,
                    account_id: t.account_id,
                    transaction_id: posting_id,
                    instructed_amount: ObAmount {
                        amount: format_minor(amount, &t.currency),
                        currency: t.currency,
                    },
                    booking_date_time: now.format(&Rfc3339).unwrap_or_default(),
                },
            };
            Ok(no_store((StatusCode::CREATED, Json(body)).into_response()))
        }
        Credited::UnknownAccount => Err(ObError::bad_request(
            codes::NOT_FOUND,
            "no such account",
            "Data.AccountId",
        )),
        Credited::WrongCurrency => Err(invalid(
            "the account is kept in another currency",
            "Data.InstructedAmount.Currency",
        )),
    }
}

// ---- housekeeping -------------------------------------------------------------------------

/// Consents expired per sweep round at most.
const SWEEP_BATCH: i64 = 200;

/// One round of the expiry sweep: every account-access consent past its expiry moves to
/// EXPD (`TKXP`) through the guarded `update_consent`, which writes the consent's event in
/// the same transaction. Several instances may sweep at once: the guarded update lets
/// exactly one of them move each consent (and so write its one event). Returns how many
/// this call moved.
pub async fn sweep_expired(
    store: &dyn authz_store::DurableStore,
    now: time::OffsetDateTime,
) -> anyhow::Result<usize> {
    let Some(alerts) = store.alerts() else {
        return Ok(0);
    };
    let mut moved = 0;
    for id in alerts
        .expiring_consents(now.unix_timestamp(), SWEEP_BATCH)
        .await?
    {
        // Another sweeper (or a reader's lazy expiry) may have moved it since the query:
        // only a live consent is moved, and only from the state read here, so an
        // EXPD → EXPD "transition" (a second event) can never happen.
        let Some(r) = store.find_consent(&id).await? else {
            continue;
        };
        if !matches!(
            r.status,
            authz_store::ConsentStatus::Authorised
                | authz_store::ConsentStatus::AwaitingAuthorisation
        ) {
            continue;
        }
        let mut d = match openbanking::AccountAccessDetails::from_value(&r.details) {
            Ok(d) => d,
            Err(e) => {
                tracing::warn!(consent = %id, error = %e, "corrupt consent details; not expired");
                continue;
            }
        };
        d.status_reason = Some(openbanking::StatusReason {
            code: crate::consents::REASON_EXPIRED.into(),
            description: "ExpirationDateTime passed".into(),
        });
        d.status_update_date_time = now;
        let audit = authz_store::AuditEntry {
            consent_id: id.clone(),
            at: now.unix_timestamp(),
            actor: "system".into(),
            action: "expired".into(),
            detail: "expiry sweep".into(),
        };
        if store
            .update_consent(
                &id,
                &[r.status],
                authz_store::ConsentStatus::Expired,
                None,
                Some(&d.to_value()),
                &audit,
            )
            .await?
        {
            moved += 1;
        }
    }
    Ok(moved)
}

/// What the housekeeping worker does, and how often.
#[derive(Debug, Clone, Copy)]
pub struct Housekeeping {
    pub every: Duration,
    /// Finished deliveries, their log and events older than this are deleted.
    pub retention: Duration,
    /// Payment consent lifetimes, swept in the same round (ADR 0019).
    pub payment_consents: openbanking::consent_lifetime::PaymentConsentLifetimes,
}

/// Runs the expiry sweep and the retention job every `h.every` until aborted.
pub fn spawn_housekeeping(
    store: Arc<dyn authz_store::DurableStore>,
    clock: Arc<dyn crate::Clock>,
    h: Housekeeping,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(h.every).await;
            match sweep_expired(&*store, clock.now()).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(expired = n, "consent expiry sweep"),
                Err(e) => tracing::warn!(error = %e, "consent expiry sweep failed; retrying"),
            }
            match crate::consent_lapse::sweep_lapsed_payment_consents(
                &*store,
                clock.now(),
                &h.payment_consents,
            )
            .await
            {
                Ok(0) => {}
                Ok(n) => tracing::info!(lapsed = n, "payment consent lifetime sweep"),
                Err(e) => tracing::warn!(error = %e, "payment consent sweep failed; retrying"),
            }
            let Some(alerts) = store.alerts() else {
                continue;
            };
            let before = crate::event_dispatch::now_ms(&*clock)
                .saturating_sub(i64::try_from(h.retention.as_millis()).unwrap_or(i64::MAX));
            match alerts.purge_events(before).await {
                Ok(p) if p == authz_store::Purged::default() => {}
                Ok(p) => tracing::info!(
                    deliveries = p.deliveries,
                    attempts = p.attempts,
                    events = p.events,
                    "event retention"
                ),
                Err(e) => tracing::warn!(error = %e, "event retention failed; retrying"),
            }
        }
    })
}
