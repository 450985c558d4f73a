//! The developer portal on the browser listener (`/portal`, issue 9, ADR 0014): developer
//! accounts separate from bank customers (argon2id passwords as for customers, optional
//! TOTP sealed with the same secret box, the same durable back-off under its own subject
//! namespace), a server-side session in the ephemeral store (namespace `portal`) named
//! by a `__Host-` cookie, a synchroniser CSRF token on every POST, and organisations
//! with members and roles. Apps, keys, kits and go-live are in `portal_apps.rs`.
//!
//! Roles: `owner` (everything), `developer` (apps), `viewer` (read only). A non-member
//! gets "not found" for an org and its apps, so ids reveal nothing.

use crate::client_auth::store;
use crate::http::{cookie_value, html_page, redirect_303};
use crate::state::AppState;
use authz_core::OAuthError;
use authz_store::{
    DeveloperRecord, InvitationRecord, OrgRecord, PortalAuditEntry, PortalStore, StoreError,
};
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use consent_ui::portal as pui;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

pub const COOKIE: &str = "__Host-wkz_portal";
const NS: &str = "portal";
pub const IDLE_SECS: i64 = 30 * 60;
pub const MAX_SESSION_SECS: i64 = 8 * 60 * 60;
/// Failed attempts per sign-in before it ends (the per-username back-off is the
/// customers' [`crate::signin::BACKOFF`], counted under its own subjects).
const MAX_FAILURES: u32 = 5;
pub const HOME: &str = "/portal";
pub const LOGIN: &str = "/portal/login";
const LOGIN_OTP: &str = "/portal/login/otp";
const SIGNUP: &str = "/portal/signup";
pub const MIN_PASSWORD: usize = 12;

pub const ROLE_OWNER: &str = "owner";
pub const ROLE_DEVELOPER: &str = "developer";
pub const ROLE_VIEWER: &str = "viewer";
const ROLES: [&str; 3] = [ROLE_OWNER, ROLE_DEVELOPER, ROLE_VIEWER];

/// Where the seeded sandbox admin's credentials are written (next to the kit, 0600).
pub const ADMIN_FILE: &str = "sandbox/portal-admin.json";
pub const ADMIN_USERNAME: &str = "bank-reviewer";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
enum Stage {
    Password,
    Otp { developer_id: String },
    SignedIn { developer_id: String, since: i64 },
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Session {
    id: String,
    pub(crate) csrf: String,
    stage: Stage,
    failed: u32,
    expires_at: i64,
    #[serde(default)]
    pub(crate) flash: Option<String>,
    /// A TOTP secret being enrolled, sealed (the session lives in the ephemeral store).
    #[serde(default)]
    pending_totp: Option<String>,
}

/// The signed-in developer of a request.
pub(crate) struct Dev {
    pub(crate) session: Session,
    pub(crate) rec: DeveloperRecord,
}

impl Dev {
    pub(crate) fn nav(&self) -> pui::PortalNav {
        pui::PortalNav {
            username: self.rec.username.clone(),
            csrf: self.session.csrf.clone(),
            is_admin: self.rec.is_admin,
        }
    }
}

// ---------- plumbing ----------

// The error is the page to answer with, as in the async helpers around it.
#[allow(clippy::result_large_err)]
pub(crate) fn portal(st: &AppState) -> Result<&dyn PortalStore, Response> {
    st.store
        .portal()
        .ok_or_else(|| server_error(&OAuthError::server_error("no portal store")))
}

pub(crate) fn render(
    html: Result<String, consent_ui::RenderError>,
    status: StatusCode,
) -> Response {
    match html {
        Ok(h) => html_page(status, h, None),
        Err(e) => {
            tracing::error!(error = %e, "rendering a portal page failed");
            (StatusCode::INTERNAL_SERVER_ERROR, "error").into_response()
        }
    }
}

pub(crate) fn message(
    nav: Option<&pui::PortalNav>,
    status: StatusCode,
    title: &str,
    text: &str,
    link: (&str, &str),
) -> Response {
    render(
        pui::render_message(
            nav,
            &pui::MessagePage {
                title: title.into(),
                message: text.into(),
                is_error: status.is_client_error() || status.is_server_error(),
                link_text: link.0.into(),
                link_href: link.1.into(),
            },
        ),
        status,
    )
}

pub(crate) fn server_error(e: &OAuthError) -> Response {
    tracing::error!(
        detail = e.detail.as_deref().unwrap_or(""),
        "portal request failed"
    );
    message(
        None,
        StatusCode::INTERNAL_SERVER_ERROR,
        "Something went wrong",
        "We could not complete this step. Please try again in a moment.",
        ("Back to the portal", HOME),
    )
}

pub(crate) fn store_err(e: StoreError) -> Response {
    server_error(&store(e))
}

pub(crate) fn csrf_failure() -> Response {
    message(
        None,
        StatusCode::FORBIDDEN,
        "This form has expired",
        "The form you sent does not belong to your current session. Nothing was changed.",
        ("Back to the portal", HOME),
    )
}

pub(crate) fn not_found(nav: Option<&pui::PortalNav>) -> Response {
    message(
        nav,
        StatusCode::NOT_FOUND,
        "Not found",
        "There is nothing with that reference that you can see. Nothing was changed.",
        ("Back to the portal", HOME),
    )
}

pub(crate) fn forbidden(nav: Option<&pui::PortalNav>, what: &str) -> Response {
    message(
        nav,
        StatusCode::FORBIDDEN,
        "Not allowed",
        &format!(
            "Your role in this organisation does not allow you to {what}. Nothing was changed."
        ),
        ("Back to the portal", HOME),
    )
}

fn set_cookie(mut r: Response, id: &str) -> Response {
    let v = format!("{COOKIE}={id}; Path=/; Secure; HttpOnly; SameSite=Strict");
    if let Ok(v) = HeaderValue::from_str(&v) {
        r.headers_mut().append(header::SET_COOKIE, v);
    }
    r
}

fn clear_cookie(mut r: Response) -> Response {
    let v = format!("{COOKIE}=; Path=/; Secure; HttpOnly; SameSite=Strict; Max-Age=0");
    if let Ok(v) = HeaderValue::from_str(&v) {
        r.headers_mut().append(header::SET_COOKIE, v);
    }
    r
}

/// A url-encoded form as pairs (repeated names kept, e.g. `scope`); unreadable → empty.
pub(crate) struct Form(pub Vec<(String, String)>);

impl Form {
    pub(crate) fn parse(body: &Bytes) -> Self {
        Self(
            url::form_urlencoded::parse(body)
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect(),
        )
    }
    pub(crate) fn get(&self, k: &str) -> &str {
        self.0
            .iter()
            .find(|(n, _)| n == k)
            .map_or("", |(_, v)| v.as_str())
    }
    pub(crate) fn all(&self, k: &str) -> Vec<String> {
        self.0
            .iter()
            .filter(|(n, _)| n == k)
            .map(|(_, v)| v.clone())
            .collect()
    }
}

fn csrf_ok(s: &Session, got: &str) -> bool {
    got.len() == s.csrf.len()
        && got
            .bytes()
            .zip(s.csrf.bytes())
            .fold(0u8, |a, (x, y)| a | (x ^ y))
            == 0
}

async fn save(st: &AppState, s: &Session) -> Result<(), Response> {
    let v = serde_json::to_string(s)
        .map_err(|e| server_error(&OAuthError::server_error(e.to_string())))?;
    st.eph
        .put(NS, &crate::digest(&s.id), &v, s.expires_at, st.clock.now())
        .await
        .map_err(store_err)
}

async fn drop_session(st: &AppState, s: &Session) {
    if let Err(e) = st.eph.delete(NS, &crate::digest(&s.id)).await {
        tracing::warn!(error = %e, "could not delete a portal session");
    }
}

async fn load(st: &AppState, headers: &HeaderMap) -> Result<Option<Session>, Response> {
    let Some(id) = cookie_value(headers, COOKIE) else {
        return Ok(None);
    };
    let now = st.clock.now();
    let s = match st.eph.get(NS, &crate::digest(id), now).await {
        Ok(Some(v)) => serde_json::from_str::<Session>(&v).ok(),
        Ok(None) => None,
        Err(e) => return Err(store_err(e)),
    };
    Ok(s.filter(|s| s.expires_at > now && s.id == id))
}

fn new_session(now: i64) -> Session {
    Session {
        id: crate::random_token(24),
        csrf: crate::random_token(24),
        stage: Stage::Password,
        failed: 0,
        expires_at: now + IDLE_SECS,
        flash: None,
        pending_totp: None,
    }
}

/// The signed-in developer; for a POST also the CSRF check. Otherwise the answer to
/// send (sign-in page for a GET, a refusal for a POST).
pub(crate) async fn signed_in(
    st: &AppState,
    headers: &HeaderMap,
    post_csrf: Option<&str>,
) -> Result<Dev, Response> {
    let s = load(st, headers).await?;
    let now = st.clock.now();
    let Some((mut s, dev_id, since)) = s.and_then(|s| match &s.stage {
        Stage::SignedIn {
            developer_id,
            since,
        } => {
            let (d, t) = (developer_id.clone(), *since);
            Some((s, d, t))
        }
        _ => None,
    }) else {
        return Err(match post_csrf {
            Some(_) => message(
                None,
                StatusCode::UNAUTHORIZED,
                "You are signed out",
                "Your session has ended, so nothing was changed. Please sign in again.",
                ("Sign in", LOGIN),
            ),
            None => redirect_303(LOGIN),
        });
    };
    if let Some(got) = post_csrf
        && !csrf_ok(&s, got)
    {
        return Err(csrf_failure());
    }
    if since + MAX_SESSION_SECS <= now {
        drop_session(st, &s).await;
        return Err(clear_cookie(redirect_303(LOGIN)));
    }
    let p = portal(st)?;
    let Some(rec) = p.find_developer(&dev_id).await.map_err(store_err)? else {
        drop_session(st, &s).await;
        return Err(clear_cookie(redirect_303(LOGIN)));
    };
    s.expires_at = (now + IDLE_SECS).min(since + MAX_SESSION_SECS);
    save(st, &s).await?;
    Ok(Dev { session: s, rec })
}

/// Take the one-time banner off the session.
pub(crate) async fn take_flash(st: &AppState, dev: &mut Dev) -> Option<String> {
    let f = dev.session.flash.take();
    if f.is_some()
        && let Err(r) = save(st, &dev.session).await
    {
        drop(r);
    }
    f
}

pub(crate) async fn flash_redirect(st: &AppState, dev: &mut Dev, text: &str, to: &str) -> Response {
    dev.session.flash = Some(text.to_owned());
    match save(st, &dev.session).await {
        Ok(()) => redirect_303(to),
        Err(r) => r,
    }
}

pub(crate) async fn audit(
    st: &AppState,
    org_id: &str,
    app_id: Option<&str>,
    actor: &str,
    action: &str,
    detail: &str,
) -> PortalAuditEntry {
    let e = PortalAuditEntry {
        org_id: org_id.into(),
        app_id: app_id.map(str::to_owned),
        actor: actor.into(),
        action: action.into(),
        detail: detail.into(),
        at: st.clock.now(),
    };
    tracing::info!(target: "audit", event = "portal", org_id, app_id = app_id.unwrap_or(""), actor, action, detail, "portal event");
    e
}

pub(crate) fn when(at: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(at)
        .ok()
        .and_then(|t| {
            t.format(&time::macros::format_description!(
                "[year]-[month]-[day] [hour]:[minute] UTC"
            ))
            .ok()
        })
        .unwrap_or_default()
}

/// The developer's role in the org; `None` when not a member (the caller answers 404).
pub(crate) async fn role(
    st: &AppState,
    org_id: &str,
    dev: &Dev,
) -> Result<Option<String>, Response> {
    portal(st)?
        .role_in(org_id, &dev.rec.id)
        .await
        .map_err(store_err)
}

pub(crate) fn can_manage_apps(role: &str) -> bool {
    role == ROLE_OWNER || role == ROLE_DEVELOPER
}

// ---------- back-off (the customers' mechanism, its own subjects) ----------

fn subject(login: &str) -> String {
    crate::digest(&format!("portal-login:{}", login.trim().to_lowercase()))
}

// ---------- sign-up ----------

fn valid_username(u: &str) -> bool {
    (3..=40).contains(&u.len())
        && u.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-' || b == b'_')
}

fn valid_email(e: &str) -> bool {
    let Some((local, domain)) = e.split_once('@') else {
        return false;
    };
    e.len() <= 254
        && !local.is_empty()
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !e.chars().any(|c| c.is_whitespace() || c == '<' || c == '>')
}

fn login_page(s: &Session, p: pui::LoginPage, status: StatusCode) -> Response {
    let p = pui::LoginPage {
        csrf: s.csrf.clone(),
        ..p
    };
    set_cookie(render(pui::render_login(None, &p), status), &s.id)
}

/// A session for an anonymous form (sign-up, sign-in): the existing one, or a new one.
async fn anonymous_session(st: &AppState, headers: &HeaderMap) -> Result<Session, Response> {
    let now = st.clock.now();
    match load(st, headers).await? {
        Some(s) => Ok(s),
        None => {
            let s = new_session(now);
            save(st, &s).await?;
            Ok(s)
        }
    }
}

#[tracing::instrument(skip_all)]
pub async fn get_signup(State(st): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    let s = match anonymous_session(&st, &headers).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    login_page(
        &s,
        pui::LoginPage {
            action: SIGNUP.into(),
            signup: true,
            ..Default::default()
        },
        StatusCode::OK,
    )
}

#[tracing::instrument(skip_all)]
pub async fn post_signup(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let f = Form::parse(&body);
    let Some(s) = (match load(&st, &headers).await {
        Ok(s) => s,
        Err(r) => return r,
    }) else {
        return csrf_failure();
    };
    if !csrf_ok(&s, f.get("csrf")) {
        return csrf_failure();
    }
    let username = f.get("username").trim().to_lowercase();
    let email = f.get("email").trim().to_lowercase();
    let password = f.get("password");
    let again = |error: &str| {
        login_page(
            &s,
            pui::LoginPage {
                action: SIGNUP.into(),
                signup: true,
                username: username.clone(),
                email: email.clone(),
                error: Some(error.into()),
                ..Default::default()
            },
            StatusCode::BAD_REQUEST,
        )
    };
    if !valid_username(&username) {
        return again("Choose a username of 3 to 40 letters, digits, dots, dashes or underscores.");
    }
    if !valid_email(&email) {
        return again("Enter a valid email address.");
    }
    if password.chars().count() < MIN_PASSWORD || password.len() > 1024 {
        return again("Choose a password of at least 12 characters.");
    }
    let hash = match crate::password::hash(password) {
        Ok(h) => h,
        Err(e) => return server_error(&OAuthError::server_error(e.to_string())),
    };
    let p = match portal(&st) {
        Ok(p) => p,
        Err(r) => return r,
    };
    let now = st.clock.now();
    let rec = DeveloperRecord {
        id: format!("dev-{}", uuid::Uuid::new_v4()),
        username: username.clone(),
        email: email.clone(),
        password_hash: hash,
        totp_secret: None,
        totp_last_step: 0,
        is_admin: false,
        created_at: now,
    };
    // A login name must not be both someone's username and someone else's email.
    for login in [&username, &email] {
        match p.find_developer_by_login(login).await {
            Ok(Some(_)) => return again("That username or email is already registered."),
            Ok(None) => {}
            Err(e) => return store_err(e),
        }
    }
    match p.insert_developer(&rec).await {
        Ok(()) => {}
        Err(StoreError::Conflict(_)) => {
            return again("That username or email is already registered.");
        }
        Err(e) => return store_err(e),
    }
    tracing::info!(target: "audit", event = "portal_signup", developer_id = %rec.id, "developer signed up");
    finish_sign_in(&st, s, &rec).await
}

// ---------- sign-in ----------

#[tracing::instrument(skip_all)]
pub async fn get_login(State(st): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    let s = match anonymous_session(&st, &headers).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    if matches!(s.stage, Stage::SignedIn { .. }) {
        return redirect_303(HOME);
    }
    login_page(
        &s,
        pui::LoginPage {
            action: LOGIN.into(),
            ..Default::default()
        },
        StatusCode::OK,
    )
}

fn locked_page(until: Option<i64>, now: i64) -> Response {
    let wait = match until {
        Some(u) => crate::signin::wait_text(u, now),
        None => "Please try again later.".into(),
    };
    let page = clear_cookie(message(
        None,
        StatusCode::TOO_MANY_REQUESTS,
        "Too many attempts",
        &format!("Signing in with this name is paused after several failed attempts. {wait}"),
        ("Back to sign in", LOGIN),
    ));
    crate::signin::with_retry_after(page, until, now)
}

async fn failed(st: &AppState, mut s: Session, login: &str, otp: bool) -> Response {
    let now = st.clock.now();
    let locked = match st
        .auth
        .throttle_failure(&subject(login), now, &crate::signin::BACKOFF)
        .await
    {
        Ok(l) => l,
        Err(e) => return store_err(e),
    };
    s.failed += 1;
    if locked.is_some() || s.failed >= MAX_FAILURES {
        drop_session(st, &s).await;
        return locked_page(locked, now);
    }
    if let Err(r) = save(st, &s).await {
        return r;
    }
    login_page(
        &s,
        pui::LoginPage {
            action: if otp { LOGIN_OTP } else { LOGIN }.into(),
            otp_step: otp,
            username: if otp { String::new() } else { login.to_owned() },
            error: Some(if otp {
                "That code is not right. Check your authenticator app and try again.".into()
            } else {
                "The username or password is not right.".into()
            }),
            ..Default::default()
        },
        StatusCode::UNAUTHORIZED,
    )
}

#[tracing::instrument(skip_all)]
pub async fn post_login(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let f = Form::parse(&body);
    let Some(s) = (match load(&st, &headers).await {
        Ok(s) => s,
        Err(r) => return r,
    }) else {
        return csrf_failure();
    };
    if !csrf_ok(&s, f.get("csrf")) {
        return csrf_failure();
    }
    let login = f.get("username").trim().to_lowercase();
    let now = st.clock.now();
    match st.auth.throttle_locked_until(&subject(&login), now).await {
        Ok(Some(until)) => {
            drop_session(&st, &s).await;
            return locked_page(Some(until), now);
        }
        Ok(None) => {}
        Err(e) => return store_err(e),
    }
    let p = match portal(&st) {
        Ok(p) => p,
        Err(r) => return r,
    };
    let found = match p.find_developer_by_login(&login).await {
        Ok(d) => d,
        Err(e) => return store_err(e),
    };
    // Compare against a real hash either way, so timing does not tell who exists.
    let hash = found.as_ref().map_or(st.dummy_password_hash.as_str(), |d| {
        d.password_hash.as_str()
    });
    let ok = crate::password::verify(f.get("password"), hash);
    let Some(dev) = found.filter(|_| ok) else {
        return failed(&st, s, &login, false).await;
    };
    if dev.totp_secret.is_some() {
        let mut s = s;
        s.stage = Stage::Otp {
            developer_id: dev.id.clone(),
        };
        if let Err(r) = save(&st, &s).await {
            return r;
        }
        return redirect_303(LOGIN_OTP);
    }
    finish_sign_in(&st, s, &dev).await
}

#[tracing::instrument(skip_all)]
pub async fn get_otp(State(st): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    match load(&st, &headers).await {
        Ok(Some(s)) if matches!(s.stage, Stage::Otp { .. }) => login_page(
            &s,
            pui::LoginPage {
                action: LOGIN_OTP.into(),
                otp_step: true,
                ..Default::default()
            },
            StatusCode::OK,
        ),
        Ok(_) => redirect_303(LOGIN),
        Err(r) => r,
    }
}

#[tracing::instrument(skip_all)]
pub async fn post_otp(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let f = Form::parse(&body);
    let s = match load(&st, &headers).await {
        Ok(Some(s)) => s,
        Ok(None) => return csrf_failure(),
        Err(r) => return r,
    };
    if !csrf_ok(&s, f.get("csrf")) {
        return csrf_failure();
    }
    let Stage::Otp { developer_id } = s.stage.clone() else {
        return redirect_303(LOGIN);
    };
    let p = match portal(&st) {
        Ok(p) => p,
        Err(r) => return r,
    };
    let dev = match p.find_developer(&developer_id).await {
        Ok(Some(d)) => d,
        Ok(None) => return redirect_303(LOGIN),
        Err(e) => return store_err(e),
    };
    match verify_totp(&st, &dev, f.get("otp")).await {
        Ok(true) => finish_sign_in(&st, s, &dev).await,
        Ok(false) => failed(&st, s, &dev.username, true).await,
        Err(r) => r,
    }
}

/// A developer's TOTP code: the sealed secret opened, the time-step accepted once.
pub(crate) async fn verify_totp(
    st: &AppState,
    dev: &DeveloperRecord,
    code: &str,
) -> Result<bool, Response> {
    let Some(sealed) = &dev.totp_secret else {
        return Ok(false);
    };
    let secret = st
        .secrets
        .open(&dev.id, sealed)
        .map_err(|e| server_error(&OAuthError::server_error(e.to_string())))?
        .secret;
    let Some(step) = crate::password::totp_step(&secret, code.trim(), st.clock.now()) else {
        return Ok(false);
    };
    portal(st)?
        .advance_developer_totp_step(&dev.id, step as i64)
        .await
        .map_err(store_err)
}

/// A new session id (no fixation), invitations accepted, the back-off cleared.
async fn finish_sign_in(st: &AppState, old: Session, dev: &DeveloperRecord) -> Response {
    drop_session(st, &old).await;
    let now = st.clock.now();
    if let Err(e) = st.auth.throttle_reset(&subject(&dev.username)).await {
        return store_err(e);
    }
    if let Err(e) = st.auth.throttle_reset(&subject(&dev.email)).await {
        return store_err(e);
    }
    let p = match portal(st) {
        Ok(p) => p,
        Err(r) => return r,
    };
    let joined = match p
        .accept_invitations(&dev.id, &dev.username, &dev.email, now)
        .await
    {
        Ok(j) => j,
        Err(e) => return store_err(e),
    };
    let mut s = new_session(now);
    s.stage = Stage::SignedIn {
        developer_id: dev.id.clone(),
        since: now,
    };
    if !joined.is_empty() {
        s.flash = Some(format!(
            "You joined {} organisation{} you were invited to.",
            joined.len(),
            if joined.len() == 1 { "" } else { "s" }
        ));
    }
    if let Err(r) = save(st, &s).await {
        return r;
    }
    tracing::info!(target: "audit", event = "portal_sign_in", developer_id = %dev.id, "developer signed in");
    set_cookie(redirect_303(HOME), &s.id)
}

#[tracing::instrument(skip_all)]
pub async fn post_logout(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let f = Form::parse(&body);
    match load(&st, &headers).await {
        Ok(Some(s)) if csrf_ok(&s, f.get("csrf")) => {
            drop_session(&st, &s).await;
            clear_cookie(redirect_303(LOGIN))
        }
        Ok(Some(_)) => csrf_failure(),
        Ok(None) => clear_cookie(redirect_303(LOGIN)),
        Err(r) => r,
    }
}

// ---------- home and organisations ----------

#[tracing::instrument(skip_all)]
pub async fn get_home(State(st): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    let mut dev = match signed_in(&st, &headers, None).await {
        Ok(d) => d,
        Err(r) => return r,
    };
    let p = match portal(&st) {
        Ok(p) => p,
        Err(r) => return r,
    };
    let orgs = match p.orgs_of(&dev.rec.id).await {
        Ok(o) => o,
        Err(e) => return store_err(e),
    };
    let notice = take_flash(&st, &mut dev).await;
    render(
        pui::render_home(
            Some(&dev.nav()),
            &pui::HomePage {
                csrf: dev.session.csrf.clone(),
                orgs: orgs
                    .into_iter()
                    .map(|(o, role)| pui::OrgSummary {
                        id: o.id,
                        name: o.name,
                        role,
                    })
                    .collect(),
                notice,
                error: None,
            },
        ),
        StatusCode::OK,
    )
}

#[tracing::instrument(skip_all)]
pub async fn post_org(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let f = Form::parse(&body);
    let mut dev = match signed_in(&st, &headers, Some(f.get("csrf"))).await {
        Ok(d) => d,
        Err(r) => return r,
    };
    let name = f.get("name").trim().to_owned();
    if name.is_empty() || name.chars().count() > 80 {
        return message(
            Some(&dev.nav()),
            StatusCode::BAD_REQUEST,
            "Name needed",
            "An organisation needs a name of 1 to 80 characters.",
            ("Back", HOME),
        );
    }
    let p = match portal(&st) {
        Ok(p) => p,
        Err(r) => return r,
    };
    let org = OrgRecord {
        id: format!("org-{}", crate::random_token(9).replace(['-', '_'], "x")),
        name: name.clone(),
        created_by: dev.rec.id.clone(),
        created_at: st.clock.now(),
    };
    let a = audit(&st, &org.id, None, &dev.rec.username, "org_created", &name).await;
    if let Err(e) = p.insert_org(&org, &a).await {
        return store_err(e);
    }
    let to = format!("/portal/orgs/{}", org.id);
    flash_redirect(
        &st,
        &mut dev,
        "Organisation created. You are its owner.",
        &to,
    )
    .await
}

#[tracing::instrument(skip_all)]
pub async fn get_org(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(org_id): Path<String>,
) -> Response {
    let mut dev = match signed_in(&st, &headers, None).await {
        Ok(d) => d,
        Err(r) => return r,
    };
    let nav = dev.nav();
    let Some(role) = (match role(&st, &org_id, &dev).await {
        Ok(r) => r,
        Err(r) => return r,
    }) else {
        return not_found(Some(&nav));
    };
    let p = match portal(&st) {
        Ok(p) => p,
        Err(r) => return r,
    };
    let org = match p.find_org(&org_id).await {
        Ok(Some(o)) => o,
        Ok(None) => return not_found(Some(&nav)),
        Err(e) => return store_err(e),
    };
    let is_owner = role == ROLE_OWNER;
    let (members, invitations, apps, audit_rows) = match async {
        Ok::<_, StoreError>((
            p.members(&org_id).await?,
            p.invitations(&org_id).await?,
            p.apps_of(&org_id).await?,
            if is_owner {
                p.portal_audit(&org_id, 100).await?
            } else {
                Vec::new()
            },
        ))
    }
    .await
    {
        Ok(v) => v,
        Err(e) => return store_err(e),
    };
    let mut test_customers = Vec::new();
    if can_manage_apps(&role) {
        let list = match p.test_customers(Some(&org_id)).await {
            Ok(l) => l,
            Err(e) => return store_err(e),
        };
        for t in &list {
            match crate::routes::portal_apps::open_test_customer(&st, t).await {
                Ok(c) => test_customers.push(c),
                Err(e) => return server_error(&e),
            }
        }
    }
    let (sandbox_accounts, clearing_payments) = if can_manage_apps(&role) {
        match crate::routes::portal_sandbox::tools_view(&st, &org_id).await {
            Ok(v) => v,
            Err(r) => return r,
        }
    } else {
        Default::default()
    };
    let notice = take_flash(&st, &mut dev).await;
    render(
        pui::render_org(
            Some(&nav),
            &pui::OrgPage {
                csrf: dev.session.csrf.clone(),
                org_id: org.id,
                org_name: org.name,
                can_manage_apps: can_manage_apps(&role),
                role,
                is_owner,
                members: members
                    .into_iter()
                    .map(|m| pui::MemberView {
                        developer_id: m.developer_id,
                        username: m.username,
                        email: m.email,
                        role: m.role,
                    })
                    .collect(),
                invitations: invitations
                    .into_iter()
                    .map(|i| pui::InvitationView {
                        invitee: i.invitee,
                        role: i.role,
                    })
                    .collect(),
                apps: apps
                    .into_iter()
                    .map(|a| pui::AppSummary {
                        id: a.id,
                        name: a.name,
                        client_id: a.client_id,
                        status: a.status,
                    })
                    .collect(),
                audit: audit_rows.into_iter().map(audit_view).collect(),
                test_customers,
                notice,
                error: None,
                sandbox_accounts,
                clearing_payments,
            },
        ),
        StatusCode::OK,
    )
}

pub(crate) fn audit_view(e: PortalAuditEntry) -> pui::AuditView {
    pui::AuditView {
        action: e.action,
        actor: e.actor,
        detail: e.detail,
        when: when(e.at),
    }
}

/// The signed-in owner of the org, or the answer to send.
async fn owner(
    st: &AppState,
    headers: &HeaderMap,
    f: &Form,
    org_id: &str,
    what: &str,
) -> Result<Dev, Response> {
    let dev = signed_in(st, headers, Some(f.get("csrf"))).await?;
    match role(st, org_id, &dev).await? {
        None => Err(not_found(Some(&dev.nav()))),
        Some(r) if r != ROLE_OWNER => Err(forbidden(Some(&dev.nav()), what)),
        Some(_) => Ok(dev),
    }
}

#[tracing::instrument(skip_all)]
pub async fn post_invite(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(org_id): Path<String>,
    body: Bytes,
) -> Response {
    let f = Form::parse(&body);
    let mut dev = match owner(&st, &headers, &f, &org_id, "invite members").await {
        Ok(d) => d,
        Err(r) => return r,
    };
    let invitee = f.get("invitee").trim().to_lowercase();
    let role = f.get("role");
    let back = format!("/portal/orgs/{org_id}");
    if !ROLES.contains(&role) || !(valid_username(&invitee) || valid_email(&invitee)) {
        return message(
            Some(&dev.nav()),
            StatusCode::BAD_REQUEST,
            "Check the invitation",
            "Invite a username or an email address, as owner, developer or viewer.",
            ("Back", &back),
        );
    }
    let p = match portal(&st) {
        Ok(p) => p,
        Err(r) => return r,
    };
    let inv = InvitationRecord {
        org_id: org_id.clone(),
        invitee: invitee.clone(),
        role: role.into(),
        invited_by: dev.rec.id.clone(),
        created_at: st.clock.now(),
    };
    let a = audit(
        &st,
        &org_id,
        None,
        &dev.rec.username,
        "member_invited",
        &format!("{invitee} as {role}"),
    )
    .await;
    if let Err(e) = p.invite(&inv, &a).await {
        return store_err(e);
    }
    flash_redirect(
        &st,
        &mut dev,
        &format!("{invitee} is invited as {role}; they join when they next sign in."),
        &back,
    )
    .await
}

#[tracing::instrument(skip_all)]
pub async fn post_member_role(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
    Path((org_id, member)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    let f = Form::parse(&body);
    let mut dev = match owner(&st, &headers, &f, &org_id, "change roles").await {
        Ok(d) => d,
        Err(r) => return r,
    };
    let new_role = f.get("role");
    let back = format!("/portal/orgs/{org_id}");
    if !ROLES.contains(&new_role) {
        return message(
            Some(&dev.nav()),
            StatusCode::BAD_REQUEST,
            "Unknown role",
            "Roles are owner, developer and viewer.",
            ("Back", &back),
        );
    }
    let p = match portal(&st) {
        Ok(p) => p,
        Err(r) => return r,
    };
    if let Err(r) = keeps_an_owner(p, &dev, &org_id, &member, new_role == ROLE_OWNER).await {
        return r;
    }
    let Some(target) = (match p.find_developer(&member).await {
        Ok(t) => t,
        Err(e) => return store_err(e),
    }) else {
        return not_found(Some(&dev.nav()));
    };
    let a = audit(
        &st,
        &org_id,
        None,
        &dev.rec.username,
        "role_changed",
        &format!("{} is now {new_role}", target.username),
    )
    .await;
    match p.set_role(&org_id, &member, new_role, &a).await {
        Ok(true) => {
            flash_redirect(
                &st,
                &mut dev,
                &format!("{} is now {new_role}.", target.username),
                &back,
            )
            .await
        }
        Ok(false) => not_found(Some(&dev.nav())),
        Err(e) => store_err(e),
    }
}

/// An org always keeps an owner: the last one can be neither demoted nor removed.
async fn keeps_an_owner(
    p: &dyn PortalStore,
    dev: &Dev,
    org_id: &str,
    member: &str,
    stays_owner: bool,
) -> Result<(), Response> {
    let current = p.role_in(org_id, member).await.map_err(store_err)?;
    if current.as_deref() == Some(ROLE_OWNER) && !stays_owner {
        let owners = p.owner_count(org_id).await.map_err(store_err)?;
        if owners <= 1 {
            return Err(message(
                Some(&dev.nav()),
                StatusCode::CONFLICT,
                "An owner is needed",
                "This is the organisation's only owner. Make someone else owner first.",
                ("Back", &format!("/portal/orgs/{org_id}")),
            ));
        }
    }
    Ok(())
}

#[tracing::instrument(skip_all)]
pub async fn post_member_remove(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
    Path((org_id, member)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    let f = Form::parse(&body);
    let mut dev = match owner(&st, &headers, &f, &org_id, "remove members").await {
        Ok(d) => d,
        Err(r) => return r,
    };
    let back = format!("/portal/orgs/{org_id}");
    let p = match portal(&st) {
        Ok(p) => p,
        Err(r) => return r,
    };
    if let Err(r) = keeps_an_owner(p, &dev, &org_id, &member, false).await {
        return r;
    }
    let name = match p.find_developer(&member).await {
        Ok(Some(t)) => t.username,
        Ok(None) => return not_found(Some(&dev.nav())),
        Err(e) => return store_err(e),
    };
    let a = audit(
        &st,
        &org_id,
        None,
        &dev.rec.username,
        "member_removed",
        &name,
    )
    .await;
    match p.remove_member(&org_id, &member, &a).await {
        Ok(true) => flash_redirect(&st, &mut dev, &format!("{name} was removed."), &back).await,
        Ok(false) => not_found(Some(&dev.nav())),
        Err(e) => store_err(e),
    }
}

// ---------- second factor ----------

fn security_page(dev: &Dev, p: pui::SecurityPage, status: StatusCode) -> Response {
    render(
        pui::render_security(
            Some(&dev.nav()),
            &pui::SecurityPage {
                csrf: dev.session.csrf.clone(),
                totp_on: dev.rec.totp_secret.is_some(),
                ..p
            },
        ),
        status,
    )
}

#[tracing::instrument(skip_all)]
pub async fn get_security(State(st): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    let mut dev = match signed_in(&st, &headers, None).await {
        Ok(d) => d,
        Err(r) => return r,
    };
    let notice = take_flash(&st, &mut dev).await;
    security_page(
        &dev,
        pui::SecurityPage {
            notice,
            ..Default::default()
        },
        StatusCode::OK,
    )
}

/// The enrolment step: the QR code and key of the pending secret.
fn enrol_page(dev: &Dev, secret: &str, error: Option<&str>) -> Response {
    let uri = crate::password::otpauth_uri("Wekeza Developers", &dev.rec.username, secret);
    let qr = match crate::password::qr_svg(&uri) {
        Ok(q) => q,
        Err(e) => return server_error(&OAuthError::server_error(e.to_string())),
    };
    security_page(
        dev,
        pui::SecurityPage {
            qr_svg: Some(qr),
            secret_text: secret.to_owned(),
            error: error.map(str::to_owned),
            ..Default::default()
        },
        if error.is_some() {
            StatusCode::BAD_REQUEST
        } else {
            StatusCode::OK
        },
    )
}

#[tracing::instrument(skip_all)]
pub async fn post_totp_start(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let f = Form::parse(&body);
    let mut dev = match signed_in(&st, &headers, Some(f.get("csrf"))).await {
        Ok(d) => d,
        Err(r) => return r,
    };
    if dev.rec.totp_secret.is_some() {
        return redirect_303("/portal/security");
    }
    let secret = crate::password::new_totp_secret();
    match st.secrets.seal(&dev.rec.id, &secret) {
        Ok(sealed) => dev.session.pending_totp = Some(sealed),
        Err(e) => return server_error(&OAuthError::server_error(e.to_string())),
    }
    if let Err(r) = save(&st, &dev.session).await {
        return r;
    }
    enrol_page(&dev, &secret, None)
}

#[tracing::instrument(skip_all)]
pub async fn post_totp_confirm(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let f = Form::parse(&body);
    let mut dev = match signed_in(&st, &headers, Some(f.get("csrf"))).await {
        Ok(d) => d,
        Err(r) => return r,
    };
    let Some(sealed) = dev.session.pending_totp.clone() else {
        return redirect_303("/portal/security");
    };
    let secret = match st.secrets.open(&dev.rec.id, &sealed) {
        Ok(o) => o.secret,
        Err(e) => return server_error(&OAuthError::server_error(e.to_string())),
    };
    let Some(step) = crate::password::totp_step(&secret, f.get("otp").trim(), st.clock.now())
    else {
        return enrol_page(
            &dev,
            &secret,
            Some("That code is not right. Check the time on your device and try again."),
        );
    };
    let pst = match portal(&st) {
        Ok(p) => p,
        Err(r) => return r,
    };
    if let Err(e) = pst.set_developer_totp(&dev.rec.id, Some(&sealed)).await {
        return store_err(e);
    }
    // The code just used is spent.
    if let Err(e) = pst
        .advance_developer_totp_step(&dev.rec.id, step as i64)
        .await
    {
        return store_err(e);
    }
    dev.session.pending_totp = None;
    tracing::info!(target: "audit", event = "portal_totp_enrolled", developer_id = %dev.rec.id, "developer enrolled TOTP");
    flash_redirect(
        &st,
        &mut dev,
        "Two-step sign-in is on. You will be asked for a code at every sign-in.",
        "/portal/security",
    )
    .await
}

// ---------- start-up ----------

/// At start: in sandbox mode, the bank reviewer (admin) account exists, its credentials
/// in [`ADMIN_FILE`] (0600, next to the kit); every org's test customers are linked to
/// their sandbox accounts again (links live in memory).
pub async fn on_start(st: &AppState) -> anyhow::Result<()> {
    let Some(p) = st.store.portal() else {
        return Ok(());
    };
    if st.config.mode != crate::config::Mode::Sandbox {
        return Ok(());
    }
    let path = st.config.certs_dir.join(ADMIN_FILE);
    #[derive(Serialize, Deserialize)]
    struct AdminCreds {
        username: String,
        password: String,
    }
    let existing = p
        .find_developer_by_login(ADMIN_USERNAME)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let saved: Option<AdminCreds> = std::fs::read(&path)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok());
    let current = matches!((&existing, &saved), (Some(d), Some(c)) if crate::password::verify(&c.password, &d.password_hash));
    if !current {
        // First start, or the credentials file was lost: a new password, written again.
        let password = crate::random_password();
        let hash = crate::password::hash(&password)?;
        match &existing {
            Some(d) => p
                .set_developer_password(&d.id, &hash)
                .await
                .map_err(|e| anyhow::anyhow!("resetting the portal admin: {e}"))?,
            None => p
                .insert_developer(&DeveloperRecord {
                    id: format!("dev-{}", uuid::Uuid::new_v4()),
                    username: ADMIN_USERNAME.into(),
                    email: "bank-reviewer@sandbox.wekeza.test".into(),
                    password_hash: hash,
                    totp_secret: None,
                    totp_last_step: 0,
                    is_admin: true,
                    created_at: st.clock.now(),
                })
                .await
                .map_err(|e| anyhow::anyhow!("seeding the portal admin: {e}"))?,
        }
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        crate::keys::write_private(
            &path,
            serde_json::to_string_pretty(&AdminCreds {
                username: ADMIN_USERNAME.into(),
                password,
            })?
            .as_bytes(),
        )?;
    }
    crate::routes::portal_apps::relink_test_customers(st).await
}

/// The seeded admin's credentials, for the start-up banner.
pub fn admin_credentials(certs_dir: &std::path::Path) -> Option<(String, String)> {
    let v: serde_json::Value =
        serde_json::from_slice(&std::fs::read(certs_dir.join(ADMIN_FILE)).ok()?).ok()?;
    Some((
        v.get("username")?.as_str()?.to_owned(),
        v.get("password")?.as_str()?.to_owned(),
    ))
}

/// The portal's routes (browser listener, sandbox mode).
pub fn router() -> axum::Router<Arc<AppState>> {
    use crate::routes::portal_apps as apps;
    use axum::routing::{get, post};
    axum::Router::new()
        .route("/portal", get(get_home))
        .route("/portal/signup", get(get_signup).post(post_signup))
        .route("/portal/login", get(get_login).post(post_login))
        .route("/portal/login/otp", get(get_otp).post(post_otp))
        .route("/portal/logout", post(post_logout))
        .route("/portal/orgs", post(post_org))
        .route("/portal/orgs/{org}", get(get_org))
        .route("/portal/orgs/{org}/members", post(post_invite))
        .route(
            "/portal/orgs/{org}/members/{member}/role",
            post(post_member_role),
        )
        .route(
            "/portal/orgs/{org}/members/{member}/remove",
            post(post_member_remove),
        )
        .route("/portal/orgs/{org}/apps/new", get(apps::get_new_app))
        .route("/portal/orgs/{org}/apps", post(apps::post_app))
        .route("/portal/apps/{app}", get(apps::get_app))
        .route("/portal/apps/{app}/kit", get(apps::get_kit))
        .route("/portal/apps/{app}/csr", post(apps::post_csr))
        .route("/portal/apps/{app}/keys", post(apps::post_keys))
        .route("/portal/apps/{app}/delete", post(apps::post_delete))
        .route("/portal/apps/{app}/golive", post(apps::post_golive))
        .route("/portal/admin", get(apps::get_admin))
        .route("/portal/admin/apps/{app}/decide", post(apps::post_decide))
        .route(
            "/portal/orgs/{org}/test-customers",
            post(apps::post_test_customer),
        )
        .route(
            "/portal/orgs/{org}/sandbox/reset",
            post(apps::post_sandbox_reset),
        )
        .route(
            "/portal/orgs/{org}/sandbox/incoming",
            post(crate::routes::portal_sandbox::post_incoming),
        )
        .route(
            "/portal/orgs/{org}/sandbox/settle",
            post(crate::routes::portal_sandbox::post_settle),
        )
        .route(
            "/portal/orgs/{org}/usage",
            get(crate::routes::portal_usage::get_usage),
        )
        .route(
            "/portal/orgs/{org}/usage.csv",
            get(crate::routes::portal_usage::get_usage_csv),
        )
        .route(
            "/portal/orgs/{org}/statement.csv",
            get(crate::routes::portal_usage::get_statement_csv),
        )
        .route("/portal/security", get(get_security))
        .route("/portal/security/totp/start", post(post_totp_start))
        .route("/portal/security/totp/confirm", post(post_totp_confirm))
        .route("/portal/docs", get(crate::routes::portal_docs::get_docs))
        .route(
            "/portal/docs/guide",
            get(crate::routes::portal_docs::get_guide),
        )
        .route(
            "/portal/docs/errors",
            get(crate::routes::portal_docs::get_errors),
        )
        .merge(crate::routes::portal_docs::swagger_router())
}
