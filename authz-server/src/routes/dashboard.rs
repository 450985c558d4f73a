//! The customer's consent dashboard on the browser listener (`/account`): its own
//! sign-in (password, then TOTP, verified exactly as the authorization login does, with a
//! lock-out), a server-side session in the ephemeral store (namespace `dash`, 15 minutes
//! idle, 8 hours at most) named by a `__Host-` cookie (Secure, HttpOnly, SameSite=Strict),
//! a synchroniser CSRF token on every POST, the list of every consent of the customer per
//! provider, and withdrawal of a consent (its refresh tokens revoked with it; the resource
//! server sees the new status within a second, userinfo and introspection at once).
//!
//! The session is separate from any authorization interaction: signing in here never
//! answers a TPP's request, and an interaction's cookie never opens the dashboard.

use crate::client_auth::{find_client, store};
use crate::http::{cookie_value, html_page, query_pairs, redirect_303};
use crate::signin::{self, Channel};
use crate::state::AppState;
use authz_core::OAuthError;
use authz_store::{AuditEntry, ConsentRecord, ConsentStatus};
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use consent_ui as ui;
use consent_ui::dashboard as dui;
use openbanking::file_payment::FileConsentDetails;
use openbanking::payment::PaymentConsentDetails;
use openbanking::payment_consent::PaymentConsent;
use openbanking::{
    AccountAccessDetails, KIND_ACCOUNT_ACCESS, KIND_DOMESTIC_PAYMENT, KIND_FILE_PAYMENT,
    StatusReason,
};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;
use time::OffsetDateTime;

pub const COOKIE: &str = "__Host-wkz_dash";
const NS: &str = "dash";
const DASH: Channel = Channel::Dashboard;
/// Idle timeout of a signed-in session, and lifetime of a sign-in in progress.
pub const IDLE_SECS: i64 = 15 * 60;
/// A session ends this long after sign-in, however active.
pub const MAX_SESSION_SECS: i64 = 8 * 60 * 60;
/// Failed attempts allowed per sign-in (as for the authorization login); the back-off
/// per username is [`signin::BACKOFF`], shared with the authorization login.
pub const MAX_FAILURES: u32 = 5;
/// `StatusReason` code written when the customer withdraws an account-access consent.
pub const REASON_CUSTOMER_REVOKED: &str = "PSURevoked";

pub(crate) const LOGIN: &str = "/account/login";
const LOGIN_OTP: &str = "/account/login/otp";
const LOGOUT: &str = "/account/logout";
pub(crate) const HOME: &str = "/account";
/// Where a sign-in may continue to after it succeeds (a fixed list, never a URL from
/// the request).
pub(crate) const SECURITY: &str = "/account/security";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) enum Stage {
    Password,
    Otp {
        customer_id: String,
    },
    SignedIn {
        customer_id: String,
        since: i64,
        /// How the customer signed in (`pwd otp mfa`, `pwd rec mfa`).
        #[serde(default)]
        amr: Vec<String>,
    },
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Session {
    pub(crate) id: String,
    pub(crate) csrf: String,
    pub(crate) stage: Stage,
    failed_attempts: u32,
    pub(crate) expires_at: i64,
    /// A one-time banner for the next dashboard view.
    #[serde(default)]
    pub(crate) flash: Option<dui::Notice>,
    /// Continue to the security page after signing in (a step-up asked for it).
    #[serde(default)]
    pub(crate) then_security: bool,
}

impl Session {
    pub(crate) fn new(now: i64) -> Self {
        Self {
            id: crate::random_token(24),
            csrf: crate::random_token(24),
            stage: Stage::Password,
            failed_attempts: 0,
            expires_at: now + IDLE_SECS,
            flash: None,
            then_security: false,
        }
    }

    fn customer(&self) -> Option<&str> {
        match &self.stage {
            Stage::SignedIn { customer_id, .. } => Some(customer_id),
            _ => None,
        }
    }
}

// ---------- pages and plumbing ----------

pub(crate) fn render(html: Result<String, ui::RenderError>, status: StatusCode) -> Response {
    match html {
        Ok(h) => html_page(status, h, None),
        Err(e) => {
            tracing::error!(error = %e, "rendering a dashboard page failed");
            (StatusCode::INTERNAL_SERVER_ERROR, "error").into_response()
        }
    }
}

pub(crate) fn message(
    status: StatusCode,
    signed_in: Option<dui::SignedIn>,
    title: &str,
    text: &str,
    is_error: bool,
    link: Option<(&str, &str)>,
) -> Response {
    render(
        dui::render_dashboard_message(&dui::DashboardMessagePage {
            signed_in,
            title: title.into(),
            message: text.into(),
            is_error,
            link: link.map(|(t, h)| (t.to_owned(), h.to_owned())),
        }),
        status,
    )
}

pub(crate) fn server_error(e: &OAuthError) -> Response {
    tracing::error!(
        detail = e.detail.as_deref().unwrap_or(""),
        "dashboard request failed"
    );
    message(
        StatusCode::INTERNAL_SERVER_ERROR,
        None,
        "Something went wrong",
        "We could not complete this step. Please try again in a moment.",
        true,
        Some(("Back to your apps", HOME)),
    )
}

pub(crate) fn csrf_failure() -> Response {
    message(
        StatusCode::FORBIDDEN,
        None,
        "This form has expired",
        "The form you sent does not belong to your current session. Nothing was changed. Please go back and try again.",
        true,
        Some(("Back to your apps", HOME)),
    )
}

pub(crate) fn not_found(signed_in: Option<dui::SignedIn>) -> Response {
    message(
        StatusCode::NOT_FOUND,
        signed_in,
        "We could not find that access",
        "There is no app access with that reference among yours. Nothing was changed.",
        true,
        Some(("Back to your apps", HOME)),
    )
}

pub(crate) fn set_cookie(mut r: Response, id: &str) -> Response {
    let v = format!("{COOKIE}={id}; Path=/; Secure; HttpOnly; SameSite=Strict");
    if let Ok(v) = HeaderValue::from_str(&v) {
        r.headers_mut().append(header::SET_COOKIE, v);
    }
    r
}

pub(crate) fn clear_cookie(mut r: Response) -> Response {
    let v = format!("{COOKIE}=; Path=/; Secure; HttpOnly; SameSite=Strict; Max-Age=0");
    if let Ok(v) = HeaderValue::from_str(&v) {
        r.headers_mut().append(header::SET_COOKIE, v);
    }
    r
}

pub(crate) fn csrf_ok(s: &Session, got: &str) -> bool {
    // Constant-time comparison of two equal-length random strings.
    got.len() == s.csrf.len()
        && got
            .bytes()
            .zip(s.csrf.bytes())
            .fold(0u8, |a, (x, y)| a | (x ^ y))
            == 0
}

pub(crate) async fn save(st: &AppState, s: &Session) -> Result<(), OAuthError> {
    let v = serde_json::to_string(s).map_err(|e| OAuthError::server_error(e.to_string()))?;
    st.eph
        .put(NS, &crate::digest(&s.id), &v, s.expires_at, st.clock.now())
        .await
        .map_err(store)
}

pub(crate) async fn drop_session(st: &AppState, s: &Session) {
    if let Err(e) = st.eph.delete(NS, &crate::digest(&s.id)).await {
        tracing::warn!(error = %e, "could not delete a dashboard session");
    }
}

/// The session named by the cookie, if it exists and has not expired.
pub(crate) async fn load(st: &AppState, headers: &HeaderMap) -> Result<Option<Session>, Response> {
    let Some(id) = cookie_value(headers, COOKIE) else {
        return Ok(None);
    };
    let now = st.clock.now();
    let s = match st.eph.get(NS, &crate::digest(id), now).await {
        Ok(Some(v)) => serde_json::from_str::<Session>(&v).ok(),
        Ok(None) => None,
        Err(e) => return Err(server_error(&store(e))),
    };
    Ok(s.filter(|s| s.expires_at > now && s.id == id))
}

/// A signed-in session, its idle timer restarted; otherwise the response to send
/// (to the sign-in page for a GET, a refusal for a POST).
pub(crate) async fn signed_in(
    st: &AppState,
    headers: &HeaderMap,
    is_post: bool,
) -> Result<(Session, String, dui::SignedIn), Response> {
    let s = load(st, headers).await?;
    let now = st.clock.now();
    let Some((mut s, customer_id, since)) = s.and_then(|s| match &s.stage {
        Stage::SignedIn {
            customer_id, since, ..
        } => {
            let (c, t) = (customer_id.clone(), *since);
            Some((s, c, t))
        }
        _ => None,
    }) else {
        return Err(if is_post {
            message(
                StatusCode::UNAUTHORIZED,
                None,
                "You are signed out",
                "Your session has ended, so nothing was changed. Please sign in again.",
                true,
                Some(("Sign in", LOGIN)),
            )
        } else {
            redirect_303(LOGIN)
        });
    };
    if since + MAX_SESSION_SECS <= now {
        drop_session(st, &s).await;
        return Err(clear_cookie(redirect_303(LOGIN)));
    }
    s.expires_at = (now + IDLE_SECS).min(since + MAX_SESSION_SECS);
    let name = match st.store.find_customer(&customer_id).await {
        Ok(Some(c)) => c.display_name,
        Ok(None) => {
            drop_session(st, &s).await;
            return Err(clear_cookie(redirect_303(LOGIN)));
        }
        Err(e) => return Err(server_error(&store(e))),
    };
    let header = dui::SignedIn {
        customer_name: name,
        csrf: s.csrf.clone(),
        logout_action: LOGOUT.into(),
    };
    Ok((s, customer_id, header))
}

// ---------- back-off ----------

pub(crate) fn locked_page(until: Option<i64>, now: i64) -> Response {
    let wait = match until {
        Some(u) => signin::wait_text(u, now),
        None => "Please try again later.".into(),
    };
    let page = clear_cookie(message(
        StatusCode::TOO_MANY_REQUESTS,
        None,
        "Too many attempts",
        &format!(
            "For your security, signing in with this username is paused after several failed attempts. {wait}"
        ),
        true,
        Some(("Back to sign in", LOGIN)),
    ));
    signin::with_retry_after(page, until, now)
}

/// Record a failed attempt on the sign-in session; past the limit the sign-in ends.
pub(crate) async fn failed_attempt(
    st: &AppState,
    mut s: Session,
    username: &str,
    again: impl FnOnce(&Session) -> Response,
) -> Response {
    let locked = match signin::count_failure(st, username).await {
        Ok(l) => l,
        Err(e) => return server_error(&e),
    };
    s.failed_attempts += 1;
    if locked.is_some() || s.failed_attempts >= MAX_FAILURES {
        drop_session(st, &s).await;
        return locked_page(locked, st.clock.now());
    }
    match save(st, &s).await {
        Ok(()) => again(&s),
        Err(e) => server_error(&e),
    }
}

// ---------- sign-in ----------

#[derive(Deserialize)]
pub struct LoginForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
}

#[derive(Deserialize)]
pub struct OtpForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    otp: String,
}

#[derive(Deserialize)]
pub struct CsrfForm {
    #[serde(default)]
    csrf: String,
}

fn login_page(
    s: &Session,
    username: &str,
    error: Option<&str>,
    notice: Option<&str>,
    status: StatusCode,
) -> Response {
    render(
        dui::render_dashboard_login(&dui::DashboardLoginPage {
            csrf: s.csrf.clone(),
            username: username.into(),
            error: error.map(str::to_owned),
            notice: notice.map(str::to_owned),
            action: LOGIN.into(),
        }),
        status,
    )
}

fn otp_page(s: &Session, error: Option<&str>, status: StatusCode) -> Response {
    render(
        dui::render_dashboard_otp(&dui::DashboardOtpPage {
            csrf: s.csrf.clone(),
            error: error.map(str::to_owned),
            action: LOGIN_OTP.into(),
            restart_url: format!("{LOGIN}?restart=1"),
        }),
        status,
    )
}

#[tracing::instrument(skip_all)]
pub async fn get_login(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> Response {
    let q = query_pairs(q.as_deref());
    let flag = |k: &str| q.iter().any(|(n, _)| n == k);
    let existing = match load(&st, &headers).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let now = st.clock.now();
    let s = match existing {
        Some(s) if s.customer().is_some() => return redirect_303(HOME),
        Some(s) if matches!(s.stage, Stage::Otp { .. }) && !flag("restart") => {
            return redirect_303(LOGIN_OTP);
        }
        // A sign-in in progress keeps its attempt count.
        Some(s) if s.stage == Stage::Password => s,
        _ => {
            let s = Session::new(now);
            if let Err(e) = save(&st, &s).await {
                return server_error(&e);
            }
            s
        }
    };
    let notice = if flag("signed_out") {
        Some("You have signed out.")
    } else if flag("reauth") {
        Some("For your security, sign in again to change how you sign in.")
    } else {
        None
    };
    let mut s = s;
    if flag("reauth") && !s.then_security {
        s.then_security = true;
        if let Err(e) = save(&st, &s).await {
            return server_error(&e);
        }
    }
    set_cookie(login_page(&s, "", None, notice, StatusCode::OK), &s.id)
}

#[tracing::instrument(skip_all)]
pub async fn post_login(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
    axum::Form(form): axum::Form<LoginForm>,
) -> Response {
    let s = match load(&st, &headers).await {
        Ok(Some(s)) => s,
        Ok(None) => return csrf_failure(),
        Err(r) => return r,
    };
    if !csrf_ok(&s, &form.csrf) {
        return csrf_failure();
    }
    match &s.stage {
        Stage::Password => {}
        Stage::Otp { .. } => return redirect_303(LOGIN_OTP),
        Stage::SignedIn { .. } => return redirect_303(HOME),
    }
    let username = form.username.trim().to_owned();
    let customer = match st.store.find_customer_by_username(&username).await {
        Ok(c) => c,
        Err(e) => return server_error(&store(e)),
    };
    match signin::locked_until(&st, &username).await {
        Ok(None) => {}
        Ok(Some(until)) => {
            if let Err(e) = signin::audit(
                &st,
                DASH,
                None,
                customer.as_ref().map(|c| c.id.as_str()),
                "password",
                "locked",
                "backoff",
            )
            .await
            {
                return server_error(&e);
            }
            drop_session(&st, &s).await;
            return locked_page(Some(until), st.clock.now());
        }
        Err(e) => return server_error(&e),
    }
    let hash = customer
        .as_ref()
        .map(|c| c.password_hash.clone())
        .unwrap_or_else(|| st.dummy_password_hash.clone());
    let password = form.password;
    let ok = tokio::task::spawn_blocking(move || crate::password::verify(&password, &hash))
        .await
        .unwrap_or(false);
    match customer {
        Some(c) if ok => {
            if let Err(e) = signin::audit(
                &st,
                DASH,
                None,
                Some(&c.id),
                "password",
                "success",
                "first_factor",
            )
            .await
            {
                return server_error(&e);
            }
            let mut s = s;
            s.stage = Stage::Otp {
                customer_id: c.id.clone(),
            };
            tracing::info!(target: "audit", event = "dashboard_login", step = "password", outcome = "ok", customer_id = %c.id, "dashboard password accepted");
            match save(&st, &s).await {
                Ok(()) => redirect_303(LOGIN_OTP),
                Err(e) => server_error(&e),
            }
        }
        c => {
            let reason = if c.is_some() {
                "bad_password"
            } else {
                "unknown_user"
            };
            let cid = c.as_ref().map(|c| c.id.as_str());
            if let Err(e) = signin::audit(&st, DASH, None, cid, "password", "failure", reason).await
            {
                return server_error(&e);
            }
            let shown = form.username;
            failed_attempt(&st, s, &username, |s| {
                login_page(
                    s,
                    &shown,
                    Some("The username or password is not right."),
                    None,
                    StatusCode::UNAUTHORIZED,
                )
            })
            .await
        }
    }
}

pub async fn get_otp(State(st): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    match load(&st, &headers).await {
        Ok(Some(s)) => match s.stage {
            Stage::Otp { .. } => otp_page(&s, None, StatusCode::OK),
            Stage::SignedIn { .. } => redirect_303(HOME),
            Stage::Password => redirect_303(LOGIN),
        },
        Ok(None) => redirect_303(LOGIN),
        Err(r) => r,
    }
}

#[tracing::instrument(skip_all)]
pub async fn post_otp(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
    axum::Form(form): axum::Form<OtpForm>,
) -> Response {
    let s = match load(&st, &headers).await {
        Ok(Some(s)) => s,
        Ok(None) => return csrf_failure(),
        Err(r) => return r,
    };
    if !csrf_ok(&s, &form.csrf) {
        return csrf_failure();
    }
    let customer_id = match &s.stage {
        Stage::Otp { customer_id } => customer_id.clone(),
        Stage::Password => return redirect_303(LOGIN),
        Stage::SignedIn { .. } => return redirect_303(HOME),
    };
    let customer = match st.store.find_customer(&customer_id).await {
        Ok(Some(c)) => c,
        Ok(None) => return server_error(&OAuthError::server_error("customer vanished")),
        Err(e) => return server_error(&store(e)),
    };
    let step = signin::second_factor_step(&st, DASH, None, &customer, &form.otp).await;
    let factor = match step {
        Ok(signin::SecondStep::Accepted(f)) => f,
        Ok(signin::SecondStep::Locked(until)) => {
            drop_session(&st, &s).await;
            return locked_page(Some(until), st.clock.now());
        }
        Ok(signin::SecondStep::Refused) => {
            return failed_attempt(&st, s, &customer.username, |s| {
                otp_page(
                    s,
                    Some("That code is not valid. Wait for a new code and try again."),
                    StatusCode::UNAUTHORIZED,
                )
            })
            .await;
        }
        Err(e) => return server_error(&e),
    };
    let amr = vec!["pwd".to_owned(), factor.amr().to_owned(), "mfa".to_owned()];
    start_session(&st, &s, customer.id.clone(), amr).await
}

/// Signed in: a new session id and CSRF token (no fixation of the sign-in id).
pub(crate) async fn start_session(
    st: &AppState,
    old: &Session,
    customer_id: String,
    amr: Vec<String>,
) -> Response {
    let now = st.clock.now();
    drop_session(st, old).await;
    let mut fresh = Session::new(now);
    fresh.stage = Stage::SignedIn {
        customer_id,
        since: now,
        amr,
    };
    if let Err(e) = save(st, &fresh).await {
        return server_error(&e);
    }
    let next = if old.then_security { SECURITY } else { HOME };
    set_cookie(redirect_303(next), &fresh.id)
}

#[tracing::instrument(skip_all)]
pub async fn post_logout(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
    axum::Form(form): axum::Form<CsrfForm>,
) -> Response {
    let s = match load(&st, &headers).await {
        Ok(Some(s)) => s,
        Ok(None) => return clear_cookie(redirect_303(&format!("{LOGIN}?signed_out=1"))),
        Err(r) => return r,
    };
    if !csrf_ok(&s, &form.csrf) {
        return csrf_failure();
    }
    drop_session(&st, &s).await;
    if let Some(c) = s.customer() {
        tracing::info!(target: "audit", event = "dashboard_logout", customer_id = %c, "customer signed out of the consent dashboard");
    }
    clear_cookie(redirect_303(&format!("{LOGIN}?signed_out=1")))
}

// ---------- the dashboard ----------

pub(crate) fn when(secs: i64) -> Option<dui::When> {
    let t = OffsetDateTime::from_unix_timestamp(secs).ok()?;
    let f = time::macros::format_description!(
        "[day padding:none] [month repr:short] [year], [hour]:[minute] UTC"
    );
    Some(dui::When {
        text: t.format(&f).ok()?,
        iso: t
            .format(&time::format_description::well_known::Rfc3339)
            .ok()?,
    })
}

fn day(t: OffsetDateTime) -> String {
    let f = time::macros::format_description!("[day padding:none] [month repr:short] [year]");
    t.format(&f).unwrap_or_default()
}

fn state_of(c: &ConsentRecord, now: i64) -> dui::ConsentState {
    use dui::ConsentState as S;
    match c.status {
        ConsentStatus::Authorised | ConsentStatus::AwaitingAuthorisation
            if c.expires_at.is_some_and(|e| e <= now) =>
        {
            S::Expired
        }
        ConsentStatus::Authorised | ConsentStatus::AwaitingAuthorisation => S::Active,
        ConsentStatus::Expired => S::Expired,
        ConsentStatus::Revoked => S::Revoked,
        ConsentStatus::Rejected => S::Refused,
        ConsentStatus::Consumed => S::Ended,
    }
}

/// Who did it, in the customer's words.
fn actor_words(actor: &str, customer_id: &str, provider: &str) -> String {
    match actor.split_once(':') {
        Some(("customer", id)) if id == customer_id => "you".into(),
        Some(("customer", _)) => "another customer".into(),
        Some(("client", _)) => provider.to_owned(),
        _ if actor == "system" => "Wekeza Bank".into(),
        _ => actor.to_owned(),
    }
}

fn action_words(action: &str) -> String {
    match action {
        "created" => "Request created".into(),
        "authorised" => "Access given".into(),
        "rejected" => "Request refused".into(),
        "revoked" => "Access withdrawn".into(),
        "expired" => "Access expired".into(),
        "code_replay_revoked" => "Ended for your security".into(),
        "used" => "Used".into(),
        "consumed" => "Payment instructed".into(),
        other => other.replace('_', " "),
    }
}

/// Audit details worth showing (never raw identifiers the customer cannot use).
fn detail_words(action: &str, detail: &str) -> String {
    if action == "authorised"
        && let Some(a) = detail
            .split("; ")
            .find_map(|kv| kv.strip_prefix("accounts="))
    {
        let n = a.split(',').filter(|s| !s.is_empty()).count();
        return format!(
            "({n} {} shared)",
            if n == 1 { "account" } else { "accounts" }
        );
    }
    if action == "revoked" && !detail.is_empty() && !detail.starts_with("accounts=") {
        return format!("({detail})");
    }
    String::new()
}

pub(crate) async fn shared_account(st: &AppState, id: &str) -> dui::SharedAccount {
    match st.bank.account(id).await {
        Ok(Some(a)) => {
            let kind = match a.kind {
                core_bank::AccountKind::Current => "Current account",
                core_bank::AccountKind::Savings => "Savings account",
                core_bank::AccountKind::CreditCard => "Credit card",
            };
            let num = &a.identification.identification;
            let tail: String = num
                .chars()
                .rev()
                .take(4)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect();
            dui::SharedAccount {
                name: a.nickname.clone(),
                detail: format!("{kind} · {} · ending {tail}", a.currency.code()),
            }
        }
        Ok(None) => dui::SharedAccount {
            name: "An account that is no longer available".into(),
            detail: format!("Reference {id}"),
        },
        Err(e) => {
            tracing::warn!(error = %e, "core bank unavailable for the dashboard");
            dui::SharedAccount {
                name: "Account details are unavailable right now".into(),
                detail: format!("Reference {id}"),
            }
        }
    }
}

/// One consent as a card: permissions, accounts, dates, history.
async fn card(
    st: &AppState,
    c: &ConsentRecord,
    customer_id: &str,
    provider: &str,
) -> Result<dui::ConsentCard, OAuthError> {
    let now = st.clock.now();
    let state = state_of(c, now);
    let audit = st.store.list_audit(&c.id).await.map_err(store)?;
    let mut card = dui::ConsentCard {
        id: c.id.clone(),
        title: String::new(),
        state,
        state_note: None,
        scopes: vec![],
        permission_groups: vec![],
        accounts: vec![],
        transaction_window: None,
        dates: vec![],
        last_used: None,
        history: vec![],
        revoke_url: state
            .is_active()
            .then(|| format!("/account/consents/{}/revoke", url_segment(&c.id))),
        payment: None,
        file_payment: None,
    };
    let mut payment_history = Vec::new();
    let mut expiry = c.expires_at;
    if c.kind == KIND_ACCOUNT_ACCESS {
        card.title = "Account information".into();
        let d = AccountAccessDetails::from_value(&c.details)
            .map_err(|e| OAuthError::server_error(format!("stored consent {}: {e}", c.id)))?;
        for p in &d.permissions {
            match card
                .permission_groups
                .iter_mut()
                .find(|g| g.title == p.group())
            {
                Some(g) => g.items.push(p.describe().to_owned()),
                None => card.permission_groups.push(ui::PermissionGroup {
                    title: p.group().to_owned(),
                    items: vec![p.describe().to_owned()],
                }),
            }
        }
        for id in d.account_ids.iter().flatten() {
            card.accounts.push(shared_account(st, id).await);
        }
        card.transaction_window = match (d.transaction_from_date_time, d.transaction_to_date_time) {
            (Some(f), Some(t)) => Some(format!("from {} to {}", day(f), day(t))),
            (Some(f), None) => Some(format!("from {} onwards", day(f))),
            (None, Some(t)) => Some(format!("up to {}", day(t))),
            (None, None) => None,
        };
        expiry = expiry.or(d.expiration_date_time.map(|e| e.unix_timestamp()));
        if let Some(r) = &d.status_reason
            && !state.is_active()
        {
            card.state_note = Some(match r.code.as_str() {
                REASON_CUSTOMER_REVOKED => "You withdrew this access.".to_owned(),
                "U028" => format!("{provider} ended this access."),
                "TKXP" => "The end date you agreed has passed.".to_owned(),
                "U010" => "You refused this request.".to_owned(),
                _ => format!("Reason given: {}", r.description),
            });
        }
    } else if c.kind == KIND_DOMESTIC_PAYMENT {
        let v = super::dashboard_payments::view(st, c).await?;
        card.title = format!("Payment of {} to {}", v.facts.amount, v.facts.payee_name);
        if let Some(s) = v.state {
            card.state = s;
        }
        card.state_note = v.note;
        card.payment = Some(v.facts);
        payment_history = v.history;
    } else if c.kind == KIND_FILE_PAYMENT {
        let v = super::dashboard_file_payments::view(st, c).await?;
        card.title = format!(
            "File of {} payments, {} in total",
            v.facts.count, v.facts.total
        );
        if let Some(s) = v.state {
            card.state = s;
        }
        card.state_note = v.note;
        card.file_payment = Some(v.facts);
        payment_history = v.history;
    } else {
        card.title = if c.scopes.split(' ').any(|s| s == "accounts") {
            "Account information and sign-in".into()
        } else {
            "Sign-in and profile".into()
        };
        card.scopes = c
            .scopes
            .split(' ')
            .filter(|s| !s.is_empty())
            .map(ui::describe_scope)
            .collect();
    }
    // A payment consent's state may have been refined (paid or not).
    let state = card.state;
    let at = |action: &str| {
        audit
            .iter()
            .rev()
            .find(|a| a.action == action)
            .map(|a| a.at)
    };
    let given = at("authorised");
    card.dates.push(dui::DateFact {
        label: "Requested".into(),
        when: when(c.created_at),
        fallback: String::new(),
    });
    card.dates.push(dui::DateFact {
        label: "Access given".into(),
        when: given.and_then(when),
        fallback: "Not given".into(),
    });
    match state {
        // A spent payment consent has no end date to show; the payment says it all.
        s if s.is_used() => {}
        dui::ConsentState::Revoked => card.dates.push(dui::DateFact {
            label: "Withdrawn".into(),
            when: at("revoked").or(Some(c.updated_at)).and_then(when),
            fallback: String::new(),
        }),
        _ => card.dates.push(dui::DateFact {
            label: if state == dui::ConsentState::Expired {
                "Expired"
            } else {
                "Ends"
            }
            .into(),
            when: expiry.and_then(when),
            fallback: "No end date: lasts until you withdraw it".into(),
        }),
    }
    // Recorded by the resource server at most once a minute per consent (see
    // `resource_server::usage`); nothing is guessed.
    card.last_used = st
        .auth
        .consent_last_used(&c.id)
        .await
        .map_err(store)?
        .and_then(when);
    card.history = audit
        .iter()
        .filter_map(|a| {
            Some(dui::HistoryEntry {
                when: when(a.at)?,
                what: action_words(&a.action),
                who: actor_words(&a.actor, customer_id, provider),
                detail: detail_words(&a.action, &a.detail),
            })
        })
        .chain(payment_history)
        .collect();
    // Consent audit and payment status lines in time order (ISO 8601 UTC sorts as text).
    card.history.sort_by(|a, b| a.when.iso.cmp(&b.when.iso));
    Ok(card)
}

/// Consent ids are uuids (`aac-` prefixed for RAR); anything else is percent-encoded.
fn url_segment(id: &str) -> String {
    percent_encoding::utf8_percent_encode(id, percent_encoding::NON_ALPHANUMERIC)
        .to_string()
        .replace("%2D", "-")
}

#[tracing::instrument(skip_all)]
pub async fn get_dashboard(State(st): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    let (mut s, customer_id, header) = match signed_in(&st, &headers, false).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let notice = s.flash.take();
    if let Err(e) = save(&st, &s).await {
        return server_error(&e);
    }
    let consents = match st.store.list_consents_for_customer(&customer_id).await {
        Ok(c) => c,
        Err(e) => return server_error(&store(e)),
    };
    let now = st.clock.now();
    let mut by_client: BTreeMap<String, Vec<&ConsentRecord>> = BTreeMap::new();
    for c in &consents {
        by_client.entry(c.client_id.clone()).or_default().push(c);
    }
    let mut providers = Vec::new();
    for (client_id, mut list) in by_client {
        let (name, uri) = match find_client(&st, &client_id).await {
            Ok(Some(c)) => (c.client_name, c.client_uri),
            Ok(None) => (format!("An app no longer registered ({client_id})"), None),
            Err(e) => return server_error(&e),
        };
        // Active first, then newest first.
        list.sort_by_key(|c| {
            (
                !state_of(c, now).is_active(),
                std::cmp::Reverse(c.created_at),
            )
        });
        let mut cards = Vec::new();
        for c in list {
            match card(&st, c, &customer_id, &name).await {
                Ok(k) => cards.push(k),
                Err(e) => return server_error(&e),
            }
        }
        providers.push(dui::ProviderConsents {
            active_count: cards.iter().filter(|c| c.state.is_active()).count(),
            name,
            logo_url: crate::logo::logo_src(&st, &client_id).await,
            client_id,
            client_uri: uri,
            consents: cards,
        });
    }
    providers.sort_by(|a, b| {
        (b.active_count > 0)
            .cmp(&(a.active_count > 0))
            .then_with(|| a.name.to_lowercase().cmp(&b.name.to_lowercase()))
    });
    let active_count = providers.iter().map(|p| p.active_count).sum();
    let page = dui::DashboardPage {
        signed_in: header,
        notice,
        active_count,
        ended_count: consents.len() - active_count,
        providers,
    };
    render(dui::render_dashboard(&page), StatusCode::OK)
}

/// The customer's own consent with this id, or `None` (another customer's consent is
/// answered exactly like an unknown id).
async fn own_consent(
    st: &AppState,
    customer_id: &str,
    id: &str,
) -> Result<Option<ConsentRecord>, OAuthError> {
    Ok(st
        .store
        .find_consent(id)
        .await
        .map_err(store)?
        .filter(|c| c.customer_id.as_deref() == Some(customer_id)))
}

async fn provider_name(st: &AppState, client_id: &str) -> Result<String, OAuthError> {
    Ok(find_client(st, client_id)
        .await?
        .map(|c| c.client_name)
        .unwrap_or_else(|| format!("An app no longer registered ({client_id})")))
}

#[tracing::instrument(skip_all)]
pub async fn get_revoke(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let (s, customer_id, header) = match signed_in(&st, &headers, false).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    if let Err(e) = save(&st, &s).await {
        return server_error(&e);
    }
    let c = match own_consent(&st, &customer_id, &id).await {
        Ok(Some(c)) => c,
        Ok(None) => return not_found(Some(header)),
        Err(e) => return server_error(&e),
    };
    if !state_of(&c, st.clock.now()).is_active() {
        return redirect_303(HOME);
    }
    let name = match provider_name(&st, &c.client_id).await {
        Ok(n) => n,
        Err(e) => return server_error(&e),
    };
    let consent = match card(&st, &c, &customer_id, &name).await {
        Ok(k) => k,
        Err(e) => return server_error(&e),
    };
    let page = dui::RevokeConfirmPage {
        signed_in: header,
        provider_name: name,
        action: format!("/account/consents/{}/revoke", url_segment(&c.id)),
        consent,
        cancel_url: HOME.into(),
    };
    render(dui::render_revoke_confirm(&page), StatusCode::OK)
}

#[tracing::instrument(skip_all)]
pub async fn post_revoke(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    axum::Form(form): axum::Form<CsrfForm>,
) -> Response {
    let (mut s, customer_id, header) = match signed_in(&st, &headers, true).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    if !csrf_ok(&s, &form.csrf) {
        tracing::warn!(target: "audit", event = "dashboard_revoke", outcome = "csrf", customer_id = %customer_id, "consent withdrawal refused: bad CSRF token");
        return csrf_failure();
    }
    let c = match own_consent(&st, &customer_id, &id).await {
        Ok(Some(c)) => c,
        Ok(None) => {
            tracing::warn!(target: "audit", event = "dashboard_revoke", outcome = "not_found", customer_id = %customer_id, "consent withdrawal refused: not the customer's consent");
            return not_found(Some(header));
        }
        Err(e) => return server_error(&e),
    };
    let name = match provider_name(&st, &c.client_id).await {
        Ok(n) => n,
        Err(e) => return server_error(&e),
    };
    let now = st.clock.now();
    let moved = if state_of(&c, now).is_active() {
        match revoke(&st, &c, &customer_id).await {
            Ok(m) => m,
            Err(e) => return server_error(&e),
        }
    } else {
        false
    };
    s.flash = Some(if moved {
        tracing::info!(target: "audit", event = "dashboard_revoke", outcome = "revoked", customer_id = %customer_id, consent_id = %c.id, client_id = %c.client_id, "customer withdrew a consent");
        dui::Notice {
            kind: dui::NoticeKind::Success,
            message: format!(
                "{name} no longer has this access. Anything it tries from now on is refused."
            ),
        }
    } else {
        dui::Notice {
            kind: dui::NoticeKind::Info,
            message: format!("This access for {name} had already ended. Nothing was changed."),
        }
    });
    match save(&st, &s).await {
        Ok(()) => redirect_303(HOME),
        Err(e) => server_error(&e),
    }
}

/// Withdraw the consent (guarded: only from an active state) and revoke its refresh
/// tokens. `false` when another request ended it first.
async fn revoke(st: &AppState, c: &ConsentRecord, customer_id: &str) -> Result<bool, OAuthError> {
    let now = st.clock.now();
    let audit = AuditEntry {
        consent_id: c.id.clone(),
        at: now,
        actor: format!("customer:{customer_id}"),
        action: "revoked".into(),
        detail: "withdrawn in the consent dashboard".into(),
    };
    let from = [
        ConsentStatus::Authorised,
        ConsentStatus::AwaitingAuthorisation,
    ];
    let moved = if c.kind == KIND_ACCOUNT_ACCESS {
        let mut d = AccountAccessDetails::from_value(&c.details)
            .map_err(|e| OAuthError::server_error(format!("stored consent {}: {e}", c.id)))?;
        d.status_reason = Some(StatusReason {
            code: REASON_CUSTOMER_REVOKED.into(),
            description: "revoked by the customer".into(),
        });
        d.status_update_date_time = OffsetDateTime::from_unix_timestamp(now)
            .map_err(|_| OAuthError::server_error("clock out of range"))?;
        st.store
            .update_consent(
                &c.id,
                &from,
                ConsentStatus::Revoked,
                None,
                Some(&d.to_value()),
                &audit,
            )
            .await
            .map_err(store)?
    } else if c.kind == KIND_DOMESTIC_PAYMENT {
        // Only an authorised, unused payment consent gets here (`from`): once the
        // provider used it the guarded update finds it consumed and nothing changes.
        revoke_payment::<PaymentConsentDetails>(st, c, &from, &audit, now).await?
    } else if c.kind == KIND_FILE_PAYMENT {
        // The same for a file of payments (ADR 0016): its reason is recorded alike.
        revoke_payment::<FileConsentDetails>(st, c, &from, &audit, now).await?
    } else {
        st.store
            .transition_consent(&c.id, &from, ConsentStatus::Revoked, &audit)
            .await
            .map_err(store)?
    };
    // Also after a lost race: whoever ended it, nothing issued under it may live on.
    st.store
        .revoke_refresh_tokens_for_consent(&c.id, now)
        .await
        .map_err(store)?;
    Ok(moved)
}

/// Withdraws a payment consent of any kind, recording the customer's reason in its details.
async fn revoke_payment<D: PaymentConsent>(
    st: &AppState,
    c: &ConsentRecord,
    from: &[ConsentStatus],
    audit: &AuditEntry,
    now: i64,
) -> Result<bool, OAuthError> {
    let mut d = D::from_value(&c.details)
        .map_err(|e| OAuthError::server_error(format!("stored consent {}: {e}", c.id)))?;
    d.set_status_reason(StatusReason {
        code: REASON_CUSTOMER_REVOKED.into(),
        description: "revoked by the customer".into(),
    });
    d.set_status_update_date_time(
        OffsetDateTime::from_unix_timestamp(now)
            .map_err(|_| OAuthError::server_error("clock out of range"))?,
    );
    st.store
        .update_consent(
            &c.id,
            from,
            ConsentStatus::Revoked,
            None,
            Some(&d.to_value()),
            audit,
        )
        .await
        .map_err(store)
}
