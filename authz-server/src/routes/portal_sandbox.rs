//! Portal sandbox event triggers (issue 9, ADR 0014): from the org page an owner or
//! developer makes "a transaction arrives" (money from outside the bank lands on an
//! account the org's test customers can see, through the same `credit_incoming` the RS
//! sandbox endpoint uses, so the TPPs' alerts and events come from the posting's own
//! transaction) and "a payment settles now" (an external payment of one of the org's
//! apps leaves clearing at once, through the clearing worker's own step with the outcome
//! decided at execution, so a rejecting sandbox amount still rejects). Both are audited.

use crate::routes::portal::{
    self as p, Dev, Form, audit, can_manage_apps, flash_redirect, forbidden, message, not_found,
    portal, role, signed_in, store_err,
};
use crate::state::AppState;
use authz_store::{Credited, IncomingTransfer, Party, PaymentRecord};
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use consent_ui::portal as pui;
use openbanking::payment::{format_minor, parse_amount};
use std::sync::Arc;

/// Payments in clearing listed per app at most.
const CLEARING_LIST: i64 = 20;

/// An account a test customer of the org sees: (id, currency, label).
struct Visible {
    id: String,
    currency: String,
    label: String,
}

/// The ledger accounts the org's test customers can see (they share the seeded sandbox
/// customer's accounts, linked in memory), without duplicates.
async fn visible_accounts(st: &AppState, org_id: &str) -> Result<Vec<Visible>, Response> {
    let testers = portal(st)?
        .test_customers(Some(org_id))
        .await
        .map_err(store_err)?;
    let Some(bank) = &st.sandbox_bank else {
        return Ok(Vec::new());
    };
    Ok(bank.read(|b| {
        let mut out: Vec<Visible> = Vec::new();
        for t in &testers {
            let Some(c) = b.customer_for_subject(&t.customer_id) else {
                continue;
            };
            for a in b.accounts_of(&c.id) {
                // Cards are not in the payment ledger (`resource_server::ledger::seed_ledger`).
                if a.kind == core_bank::AccountKind::CreditCard || out.iter().any(|v| v.id == a.id)
                {
                    continue;
                }
                out.push(Visible {
                    label: format!(
                        "{} ({}, {})",
                        a.nickname,
                        a.identification.identification,
                        a.currency.code()
                    ),
                    currency: a.currency.code().to_owned(),
                    id: a.id.clone(),
                });
            }
        }
        out
    }))
}

/// The org's apps' payments still in clearing, with the app's name.
async fn clearing(st: &AppState, org_id: &str) -> Result<Vec<(String, PaymentRecord)>, Response> {
    let apps = portal(st)?.apps_of(org_id).await.map_err(store_err)?;
    let Some(ps) = st.store.payments() else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    for a in apps {
        for pay in ps
            .payments_in_clearing(&a.client_id, CLEARING_LIST)
            .await
            .map_err(store_err)?
        {
            out.push((a.name.clone(), pay));
        }
    }
    Ok(out)
}

/// What the org page's sandbox tools card lists (owners and developers only).
pub(crate) async fn tools_view(
    st: &AppState,
    org_id: &str,
) -> Result<(Vec<pui::SandboxAccountView>, Vec<pui::ClearingPaymentView>), Response> {
    let accounts = visible_accounts(st, org_id)
        .await?
        .into_iter()
        .map(|v| pui::SandboxAccountView {
            id: v.id,
            label: v.label,
        })
        .collect();
    let payments = clearing(st, org_id)
        .await?
        .into_iter()
        .map(|(app, pay)| pui::ClearingPaymentView {
            amount: format_minor(pay.amount, &pay.currency),
            currency: pay.currency,
            id: pay.id,
            app,
            created: p::when(pay.created_at),
        })
        .collect();
    Ok((accounts, payments))
}

/// Signed in with a valid CSRF token, and an owner or developer of the org.
async fn manager(
    st: &AppState,
    headers: &HeaderMap,
    f: &Form,
    org_id: &str,
    what: &str,
) -> Result<Dev, Response> {
    let dev = signed_in(st, headers, Some(f.get("csrf"))).await?;
    match role(st, org_id, &dev).await? {
        Some(r) if can_manage_apps(&r) => Ok(dev),
        Some(_) => Err(forbidden(Some(&dev.nav()), what)),
        None => Err(not_found(Some(&dev.nav()))),
    }
}

fn refused(dev: &Dev, org_id: &str, title: &str, text: &str) -> Response {
    message(
        Some(&dev.nav()),
        StatusCode::BAD_REQUEST,
        title,
        &format!("{text} Nothing was changed."),
        (
            "Back to the organisation",
            &format!("/portal/orgs/{org_id}"),
        ),
    )
}

/// A trimmed text field of 1..=max characters without control characters.
fn text(v: &str, max: usize) -> Option<String> {
    let v = v.trim();
    let n = v.chars().count();
    (n > 0 && n <= max && !v.chars().any(char::is_control)).then(|| v.to_owned())
}

async fn audited(
    st: &AppState,
    org_id: &str,
    app_id: Option<&str>,
    dev: &Dev,
    action: &str,
    detail: &str,
) -> Result<(), Response> {
    let a = audit(st, org_id, app_id, &dev.rec.username, action, detail).await;
    portal(st)?.insert_portal_audit(&a).await.map_err(store_err)
}

/// `POST /portal/orgs/{org}/sandbox/incoming`: a transaction arrives.
#[tracing::instrument(skip_all)]
pub async fn post_incoming(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(org_id): Path<String>,
    body: Bytes,
) -> Response {
    let f = Form::parse(&body);
    let mut dev = match manager(&st, &headers, &f, &org_id, "trigger sandbox events").await {
        Ok(d) => d,
        Err(r) => return r,
    };
    let visible = match visible_accounts(&st, &org_id).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    // A typed id wins over the list (for accounts the list does not show first).
    let typed = f.get("account_id_typed").trim();
    let wanted = if typed.is_empty() {
        f.get("account_id").trim()
    } else {
        typed
    };
    let Some(account) = visible.iter().find(|v| v.id == wanted) else {
        return refused(
            &dev,
            &org_id,
            "Unknown account",
            "Choose an account your test customers can see.",
        );
    };
    let amount = match parse_amount(f.get("amount").trim(), &account.currency) {
        Ok(a) => a,
        Err(m) => return refused(&dev, &org_id, "Amount not accepted", &format!("{m}.")),
    };
    let Some(name) = text(f.get("counterparty"), 70) else {
        return refused(
            &dev,
            &org_id,
            "Counterparty not accepted",
            "The sender's name needs 1 to 70 characters.",
        );
    };
    let reference = match f.get("reference").trim() {
        "" => None,
        r => match text(r, 35) {
            Some(r) => Some(r),
            None => {
                return refused(
                    &dev,
                    &org_id,
                    "Reference not accepted",
                    "The reference takes at most 35 characters.",
                );
            }
        },
    };
    let Some(alerts) = st.store.alerts() else {
        return message(
            Some(&dev.nav()),
            StatusCode::NOT_FOUND,
            "Not available",
            "This deployment keeps no ledger.",
            (
                "Back to the organisation",
                &format!("/portal/orgs/{org_id}"),
            ),
        );
    };
    let t = IncomingTransfer {
        account_id: account.id.clone(),
        amount,
        currency: account.currency.clone(),
        counterparty: Party {
            name: Some(name),
            scheme: None,
            identification: None,
        },
        reference,
        at: st.clock.now(),
    };
    let posting = match alerts.credit_incoming(&t).await {
        Ok(Credited::Done { posting_id, .. }) => posting_id,
        Ok(Credited::UnknownAccount) => {
            return refused(
                &dev,
                &org_id,
                "Unknown account",
                "The ledger keeps no such account.",
            );
        }
        Ok(Credited::WrongCurrency) => {
            return refused(
                &dev,
                &org_id,
                "Wrong currency",
                "The account is kept in another currency.",
            );
        }
        Err(e) => return store_err(e),
    };
    let shown = format!("{} {}", format_minor(amount, &t.currency), t.currency);
    if let Err(r) = audited(
        &st,
        &org_id,
        None,
        &dev,
        "sandbox_transaction",
        &format!("{shown} to {} (transaction {posting})", t.account_id),
    )
    .await
    {
        return r;
    }
    flash_redirect(
        &st,
        &mut dev,
        &format!(
            "A transaction of {shown} arrived on {}: transaction {posting}.",
            t.account_id
        ),
        &format!("/portal/orgs/{org_id}"),
    )
    .await
}

/// `POST /portal/orgs/{org}/sandbox/settle`: one of the org's payments leaves clearing now.
#[tracing::instrument(skip_all)]
pub async fn post_settle(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(org_id): Path<String>,
    body: Bytes,
) -> Response {
    let f = Form::parse(&body);
    let mut dev = match manager(&st, &headers, &f, &org_id, "trigger sandbox events").await {
        Ok(d) => d,
        Err(r) => return r,
    };
    let id = f.get("payment_id").trim();
    let Some(ps) = st.store.payments() else {
        return not_found(Some(&dev.nav()));
    };
    let apps = match portal(&st) {
        Ok(pst) => match pst.apps_of(&org_id).await {
            Ok(a) => a,
            Err(e) => return store_err(e),
        },
        Err(r) => return r,
    };
    let found = match ps.find_payment(id).await {
        Ok(f) => f,
        Err(e) => return store_err(e),
    };
    // Only the org's own apps' payments; another org's look exactly like unknown ones.
    let Some((app, pay)) = found.and_then(|pay| {
        apps.into_iter()
            .find(|a| a.client_id == pay.client_id)
            .map(|a| (a, pay))
    }) else {
        return refused(
            &dev,
            &org_id,
            "Unknown payment",
            "No payment of this organisation's apps has that id.",
        );
    };
    let done = match ps.clear_now(&pay.id, &app.client_id, st.clock.now()).await {
        Ok(Some(d)) => d,
        Ok(None) => {
            return message(
                Some(&dev.nav()),
                StatusCode::CONFLICT,
                "Not in clearing",
                &format!(
                    "Payment {} is {}; only payments still in clearing (ACSP) can settle. Nothing was changed.",
                    pay.id, pay.status
                ),
                (
                    "Back to the organisation",
                    &format!("/portal/orgs/{org_id}"),
                ),
            );
        }
        Err(e) => return store_err(e),
    };
    let outcome = match done.status_reason.as_deref() {
        Some(r) => format!("{} ({r})", done.status),
        None => done.status.clone(),
    };
    if let Err(r) = audited(
        &st,
        &org_id,
        Some(&app.id),
        &dev,
        "sandbox_payment_cleared",
        &format!("{} → {outcome}", done.id),
    )
    .await
    {
        return r;
    }
    flash_redirect(
        &st,
        &mut dev,
        &format!("Payment {} left clearing: {outcome}.", done.id),
        &format!("/portal/orgs/{org_id}"),
    )
    .await
}
