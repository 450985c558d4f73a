//! The authorization endpoint (FAPI 2.0 §5.3.2.2) and the customer's interaction: password,
//! TOTP second factor, consent. Only `client_id` and `request_uri` are read from the
//! authorization request; everything else comes from the pushed request. Errors go back
//! to the client only once its redirect URI is verified; otherwise an error page shows.
//! Authorization responses are 303 redirects carrying `code`, `state` and `iss` (RFC 9207),
//! or, for JARM requests, one signed `response` JWT holding them (FAPI 2.0 MS §5.4.1).

use crate::client_auth::{find_client, store};
use crate::http::{cookie_value, html_page, query_pairs, redirect_303};
use crate::ob;
use crate::routes::par::PushedRequest;
use crate::signin::{self, Channel};
use crate::state::AppState;
use authz_core::client::Client;
use authz_core::interaction::{Interaction, Step};
use authz_core::par::AuthorizationRequest;
use authz_core::tokens::AuthContext;
use authz_core::{OAuthError, OAuthResult};
use authz_store::{AuditEntry, ConsentRecord, ConsentStatus};
use axum::extract::{RawQuery, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use consent_ui as ui;
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::sync::Arc;

pub const COOKIE: &str = "__Host-wkz_ix";
const IX: Channel = Channel::Interaction;

/// What an authorization code stands for, stored under the code's digest.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CodeGrant {
    pub client_id: String,
    pub redirect_uri: String,
    pub code_challenge: String,
    pub nonce: Option<String>,
    pub scope: String,
    pub consent_id: String,
    pub sub: String,
    pub auth: AuthContext,
    pub expires_at: i64,
    /// The DPoP key the code is bound to (RFC 9449 §10), from the pushed request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dpop_jkt: Option<String>,
    /// Identity claims the `claims` parameter asked for in the ID token.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub id_token_claims: Vec<String>,
}

/// A page-level failure: shown to the customer, never redirected.
pub(crate) fn error_page(
    status: StatusCode,
    title: &str,
    message: &str,
    code: Option<&str>,
) -> Response {
    let page = ui::ErrorPage {
        title: title.into(),
        message: message.into(),
        error_code: code.map(str::to_owned),
        reference: Some(crate::random_token(6)),
    };
    match ui::render_error(&page) {
        Ok(html) => html_page(status, html, None),
        Err(e) => {
            tracing::error!(error = %e, "rendering the error page failed");
            (StatusCode::INTERNAL_SERVER_ERROR, "error").into_response()
        }
    }
}

pub(crate) fn server_error_page(e: &OAuthError) -> Response {
    tracing::error!(
        detail = e.detail.as_deref().unwrap_or(""),
        "interaction failed"
    );
    error_page(
        StatusCode::INTERNAL_SERVER_ERROR,
        "Something went wrong",
        "We could not complete this step. Please go back to the app you came from and try again.",
        Some("server_error"),
    )
}

/// Lifetime of a JWT-secured authorization response (JARM §2.1: short-lived).
pub const JARM_TTL_SECS: i64 = 60;

/// Send an authorization response to the verified redirect URI: `params` plus `state`
/// and `iss` (RFC 9207) as query parameters, or, for a JARM request (FAPI 2.0 MS
/// §5.4.1), all of them inside one signed JWT in `response` (then `iss` is only there).
fn redirect_response(
    st: &AppState,
    req: &AuthorizationRequest,
    params: &[(&str, &str)],
) -> Response {
    let mut p: Vec<(&str, &str)> = params.to_vec();
    if let Some(s) = &req.state {
        p.push(("state", s));
    }
    let Some(alg) = req.jarm else {
        p.push(("iss", &st.issuer));
        return redirect_303(&req.redirect_uri.with_params(&p));
    };
    let now = st.clock.now();
    let mut claims = serde_json::Map::new();
    claims.insert("iss".into(), st.issuer.clone().into());
    claims.insert("aud".into(), req.client_id.clone().into());
    claims.insert("iat".into(), now.into());
    claims.insert("exp".into(), (now + JARM_TTL_SECS).into());
    for (k, v) in &p {
        claims.insert((*k).to_owned(), (*v).to_owned().into());
    }
    let jwt = st
        .keys
        .signer(alg)
        .ok_or_else(|| OAuthError::server_error("no signing key for the JARM algorithm"))
        .and_then(|k| {
            k.sign_jwt(Some("JWT"), &serde_json::Value::Object(claims))
                .map_err(|e| OAuthError::server_error(e.to_string()))
        });
    match jwt {
        Ok(jwt) => redirect_303(&req.redirect_uri.with_params(&[("response", jwt.as_str())])),
        Err(e) => server_error_page(&e),
    }
}

/// Redirect an error to a verified redirect URI (RFC 6749 §4.1.2.1, RFC 9207).
fn redirect_error(
    st: &AppState,
    req: &AuthorizationRequest,
    error: &str,
    description: &str,
) -> Response {
    redirect_response(
        st,
        req,
        &[("error", error), ("error_description", description)],
    )
}

async fn handle_authorize(st: &AppState, pairs: Vec<(String, String)>) -> Response {
    let get = |k: &str| pairs.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    let (Some(client_id), Some(request_uri)) = (get("client_id"), get("request_uri")) else {
        return error_page(
            StatusCode::BAD_REQUEST,
            "This sign-in link is incomplete",
            "Authorization requests must carry client_id and a request_uri from the pushed authorization request endpoint.",
            Some("invalid_request"),
        );
    };
    let client = match find_client(st, client_id).await {
        Ok(Some(c)) => c,
        Ok(None) => {
            return error_page(
                StatusCode::BAD_REQUEST,
                "Unknown application",
                "The application that sent you here is not registered with Wekeza Bank.",
                Some("invalid_client"),
            );
        }
        Err(e) => return server_error_page(&e),
    };
    let now = st.clock.now();
    let key = crate::digest(request_uri);
    let pushed = match st.eph.get("par", &key, now).await {
        Ok(Some(v)) => serde_json::from_str::<PushedRequest>(&v).ok(),
        Ok(None) => None,
        Err(e) => return server_error_page(&store(e)),
    };
    let Some(pushed) = pushed.filter(|p| p.expires_at > now) else {
        return error_page(
            StatusCode::BAD_REQUEST,
            "This sign-in link has expired",
            "Please go back to the app you came from and start again.",
            Some("invalid_request_uri"),
        );
    };
    // RFC 9126 §4: the request_uri is bound to the client that pushed it.
    if pushed.request.client_id != client.client_id {
        return error_page(
            StatusCode::BAD_REQUEST,
            "This sign-in link is not valid",
            "The request does not belong to this application.",
            Some("invalid_request_uri"),
        );
    }
    let req = pushed.request;
    if req
        .prompt
        .as_deref()
        .is_some_and(|p| p.split(' ').any(|v| v == "none"))
    {
        return redirect_error(st, &req, "login_required", "the customer must sign in");
    }
    let id = crate::random_token(24);
    let ix = Interaction {
        id: id.clone(),
        csrf: crate::random_token(24),
        request_key: key,
        request: req,
        step: Step::Login,
        failed_attempts: 0,
        expires_at: now + st.config.interaction_ttl_secs,
    };
    if let Err(e) = save(st, &ix).await {
        return server_error_page(&e);
    }
    let mut r = redirect_303("/login");
    let cookie = format!(
        "{COOKIE}={id}; Path=/; Secure; HttpOnly; SameSite=Lax; Max-Age={}",
        st.config.interaction_ttl_secs
    );
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        r.headers_mut().insert(header::SET_COOKIE, v);
    }
    r
}

#[tracing::instrument(skip_all)]
pub async fn get_authorize(State(st): State<Arc<AppState>>, RawQuery(q): RawQuery) -> Response {
    handle_authorize(&st, query_pairs(q.as_deref())).await
}

#[tracing::instrument(skip_all)]
pub async fn post_authorize(State(st): State<Arc<AppState>>, body: String) -> Response {
    handle_authorize(&st, query_pairs(Some(&body))).await
}

pub(crate) async fn save(st: &AppState, ix: &Interaction) -> OAuthResult<()> {
    let v = serde_json::to_string(ix).map_err(|e| OAuthError::server_error(e.to_string()))?;
    st.eph
        .put(
            "ix",
            &crate::digest(&ix.id),
            &v,
            ix.expires_at,
            st.clock.now(),
        )
        .await
        .map_err(store)
}

/// Load the interaction named by the cookie, with its client.
pub(crate) async fn load(
    st: &AppState,
    headers: &axum::http::HeaderMap,
) -> Result<(Interaction, Client), Response> {
    let expired = || {
        error_page(
            StatusCode::BAD_REQUEST,
            "Your session has ended",
            "For your security, sign-in sessions expire. Please go back to the app you came from and start again.",
            Some("session_expired"),
        )
    };
    let Some(id) = cookie_value(headers, COOKIE) else {
        return Err(expired());
    };
    let now = st.clock.now();
    let ix = match st.eph.get("ix", &crate::digest(id), now).await {
        Ok(Some(v)) => serde_json::from_str::<Interaction>(&v).ok(),
        Ok(None) => None,
        Err(e) => return Err(server_error_page(&store(e))),
    };
    let Some(ix) = ix.filter(|i| i.expires_at > now) else {
        return Err(expired());
    };
    match find_client(st, &ix.request.client_id).await {
        Ok(Some(c)) => Ok((ix, c)),
        Ok(None) => Err(error_page(
            StatusCode::BAD_REQUEST,
            "Unknown application",
            "The application is no longer registered.",
            Some("invalid_client"),
        )),
        Err(e) => Err(server_error_page(&e)),
    }
}

async fn end(st: &AppState, ix: &Interaction) {
    if let Err(e) = st.eph.delete("ix", &crate::digest(&ix.id)).await {
        tracing::warn!(error = %e, "could not delete a finished interaction");
    }
}

fn clear_cookie(mut r: Response) -> Response {
    if let Ok(v) = HeaderValue::from_str(&format!(
        "{COOKIE}=; Path=/; Secure; HttpOnly; SameSite=Lax; Max-Age=0"
    )) {
        r.headers_mut().insert(header::SET_COOKIE, v);
    }
    r
}

pub(crate) fn where_next(ix: &Interaction) -> &'static str {
    match ix.step {
        Step::Login => "/login",
        Step::SecondFactor { .. } => "/login/otp",
        Step::Consent { .. } => "/consent",
    }
}

fn render(
    html: Result<String, ui::RenderError>,
    status: StatusCode,
    form_target: Option<&str>,
) -> Response {
    match html {
        Ok(h) => html_page(status, h, form_target),
        Err(e) => server_error_page(&OAuthError::server_error(e.0)),
    }
}

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

pub(crate) fn csrf_ok(ix: &Interaction, got: &str) -> bool {
    // Constant-time comparison of two equal-length random strings.
    got.len() == ix.csrf.len()
        && got
            .bytes()
            .zip(ix.csrf.bytes())
            .fold(0u8, |a, (x, y)| a | (x ^ y))
            == 0
}

pub(crate) fn csrf_failure() -> Response {
    error_page(
        StatusCode::FORBIDDEN,
        "This form has expired",
        "The form you sent does not belong to this sign-in. Please go back to the app you came from and start again.",
        Some("csrf"),
    )
}

fn login_page(
    ix: &Interaction,
    client: &Client,
    username: &str,
    error: Option<&str>,
    status: StatusCode,
) -> Response {
    render(
        ui::render_login(&ui::LoginPage {
            client_name: client.client_name.clone(),
            csrf: ix.csrf.clone(),
            username: username.into(),
            error: error.map(str::to_owned),
            action: "/login".into(),
        }),
        status,
        None,
    )
}

fn otp_page(
    ix: &Interaction,
    client: &Client,
    error: Option<&str>,
    status: StatusCode,
) -> Response {
    render(
        ui::render_otp(&ui::OtpPage {
            client_name: client.client_name.clone(),
            csrf: ix.csrf.clone(),
            error: error.map(str::to_owned),
            action: "/login/otp".into(),
        }),
        status,
        None,
    )
}

pub async fn get_login(
    State(st): State<Arc<AppState>>,
    headers: axum::http::HeaderMap,
) -> Response {
    let (ix, client) = match load(&st, &headers).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    if ix.step != Step::Login {
        return redirect_303(where_next(&ix));
    }
    login_page(&ix, &client, "", None, StatusCode::OK)
}

/// Count a failed attempt; after too many, the authorization ends with `access_denied`.
pub(crate) async fn failed_attempt(
    st: &AppState,
    mut ix: Interaction,
    render_again: impl FnOnce(&Interaction) -> Response,
) -> Response {
    if ix.record_failure() {
        end(st, &ix).await;
        // The access_denied is the authorization response: it spends the request_uri, so
        // another session can neither answer it again nor restart the attempt count.
        return match consume_request(st, &ix).await {
            Ok(true) => clear_cookie(redirect_error(
                st,
                &ix.request,
                "access_denied",
                "too many failed sign-in attempts",
            )),
            Ok(false) => clear_cookie(already_answered()),
            Err(e) => server_error_page(&e),
        };
    }
    match save(st, &ix).await {
        Ok(()) => render_again(&ix),
        Err(e) => server_error_page(&e),
    }
}

#[tracing::instrument(skip_all)]
pub async fn post_login(
    State(st): State<Arc<AppState>>,
    headers: axum::http::HeaderMap,
    axum::Form(form): axum::Form<LoginForm>,
) -> Response {
    let (mut ix, client) = match load(&st, &headers).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    if !csrf_ok(&ix, &form.csrf) {
        return csrf_failure();
    }
    if ix.step != Step::Login {
        return redirect_303(where_next(&ix));
    }
    let username = form.username.trim().to_owned();
    let client_id = Some(ix.request.client_id.as_str());
    let customer = match st.store.find_customer_by_username(&username).await {
        Ok(c) => c,
        Err(e) => return server_error_page(&store(e)),
    };
    // The back-off holds for any username, known or not, so it reveals nothing.
    match signin::locked_until(&st, &username).await {
        Ok(None) => {}
        Ok(Some(until)) => {
            if let Err(e) = signin::audit(
                &st,
                IX,
                client_id,
                customer.as_ref().map(|c| c.id.as_str()),
                "password",
                "locked",
                "backoff",
            )
            .await
            {
                return server_error_page(&e);
            }
            let msg = format!(
                "Too many failed attempts to sign in with this username. {}",
                signin::wait_text(until, st.clock.now())
            );
            let page = login_page(
                &ix,
                &client,
                &form.username,
                Some(&msg),
                StatusCode::TOO_MANY_REQUESTS,
            );
            return signin::with_retry_after(page, Some(until), st.clock.now());
        }
        Err(e) => return server_error_page(&e),
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
                IX,
                client_id,
                Some(&c.id),
                "password",
                "success",
                "first_factor",
            )
            .await
            {
                return server_error_page(&e);
            }
            ix.password_verified(c.id);
            match save(&st, &ix).await {
                Ok(()) => redirect_303("/login/otp"),
                Err(e) => server_error_page(&e),
            }
        }
        c => {
            let reason = if c.is_some() {
                "bad_password"
            } else {
                "unknown_user"
            };
            let cid = c.as_ref().map(|c| c.id.as_str());
            if let Err(e) =
                signin::audit(&st, IX, client_id, cid, "password", "failure", reason).await
            {
                return server_error_page(&e);
            }
            if let Err(e) = signin::count_failure(&st, &username).await {
                return server_error_page(&e);
            }
            let username = form.username;
            failed_attempt(&st, ix, |ix| {
                login_page(
                    ix,
                    &client,
                    &username,
                    Some("The username or password is not right."),
                    StatusCode::UNAUTHORIZED,
                )
            })
            .await
        }
    }
}

pub async fn get_otp(State(st): State<Arc<AppState>>, headers: axum::http::HeaderMap) -> Response {
    let (ix, client) = match load(&st, &headers).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    if !matches!(ix.step, Step::SecondFactor { .. }) {
        return redirect_303(where_next(&ix));
    }
    otp_page(&ix, &client, None, StatusCode::OK)
}

#[tracing::instrument(skip_all)]
pub async fn post_otp(
    State(st): State<Arc<AppState>>,
    headers: axum::http::HeaderMap,
    axum::Form(form): axum::Form<OtpForm>,
) -> Response {
    let (mut ix, client) = match load(&st, &headers).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    if !csrf_ok(&ix, &form.csrf) {
        return csrf_failure();
    }
    let Step::SecondFactor { customer_id } = &ix.step else {
        return redirect_303(where_next(&ix));
    };
    let customer = match st.store.find_customer(customer_id).await {
        Ok(Some(c)) => c,
        Ok(None) => return server_error_page(&OAuthError::server_error("customer vanished")),
        Err(e) => return server_error_page(&store(e)),
    };
    let client_id = Some(ix.request.client_id.as_str());
    let step = signin::second_factor_step(&st, IX, client_id, &customer, &form.otp).await;
    let factor = match step {
        Ok(signin::SecondStep::Accepted(f)) => f,
        Ok(signin::SecondStep::Locked(until)) => {
            let msg = format!(
                "Too many failed attempts. {}",
                signin::wait_text(until, st.clock.now())
            );
            let page = otp_page(&ix, &client, Some(&msg), StatusCode::TOO_MANY_REQUESTS);
            return signin::with_retry_after(page, Some(until), st.clock.now());
        }
        Ok(signin::SecondStep::Refused) => {
            if let Err(e) = signin::count_failure(&st, &customer.username).await {
                return server_error_page(&e);
            }
            return failed_attempt(&st, ix, |ix| {
                otp_page(
                    ix,
                    &client,
                    Some("That code is not valid. Wait for a new code and try again."),
                    StatusCode::UNAUTHORIZED,
                )
            })
            .await;
        }
        Err(e) => return server_error_page(&e),
    };
    let now = st.clock.now();
    ix.second_factor_verified(now, factor.amr());
    match save(&st, &ix).await {
        Ok(()) => redirect_303("/consent"),
        Err(e) => server_error_page(&e),
    }
}

fn expiry_text(st: &AppState) -> Option<String> {
    let t = time::OffsetDateTime::from_unix_timestamp(st.clock.now() + st.config.consent_ttl_secs)
        .ok()?;
    let f = time::macros::format_description!("[day padding:none] [month repr:short] [year]");
    t.format(&f).ok().map(|s| format!("until {s}"))
}

pub async fn get_consent(
    State(st): State<Arc<AppState>>,
    headers: axum::http::HeaderMap,
) -> Response {
    let (ix, client) = match load(&st, &headers).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let Step::Consent { customer_id, .. } = &ix.step else {
        return redirect_303(where_next(&ix));
    };
    consent_page(&st, &ix, &client, customer_id, &BTreeSet::new(), None).await
}

/// The consent page; for account access also the permissions, the transaction window
/// and the customer's accounts (`picked` ticked, e.g. when shown again with `error`).
async fn consent_page(
    st: &AppState,
    ix: &Interaction,
    client: &Client,
    customer_id: &str,
    picked: &BTreeSet<String>,
    error: Option<String>,
) -> Response {
    let name = match st.store.find_customer(customer_id).await {
        Ok(Some(c)) => c.display_name,
        Ok(None) => String::new(),
        Err(e) => return server_error_page(&store(e)),
    };
    let mut page = ui::ConsentPage {
        client_name: client.client_name.clone(),
        client_id: client.client_id.clone(),
        logo_url: crate::logo::logo_src(st, &client.client_id).await,
        client_uri: client.client_uri.clone(),
        customer_name: name,
        scopes: ix
            .request
            .scope
            .split(' ')
            .filter(|s| !s.is_empty())
            .map(ui::describe_scope)
            .collect(),
        expires_text: expiry_text(st),
        redirect_host: ix.request.redirect_uri.host(),
        csrf: ix.csrf.clone(),
        action: "/consent".into(),
        permission_groups: vec![],
        accounts: vec![],
        transaction_window: None,
        error,
        payment: None,
        file_payment: None,
    };
    // A payment consent: exactly what is paid, to whom, from where (ADR 0011).
    let payment = match crate::ob_payments::requested(st, &ix.request).await {
        Ok(Some((_, d))) => crate::ob_payments::page_parts(st, &d, customer_id, picked)
            .await
            .map(Some),
        Ok(None) => Ok(None),
        Err(e) => Err(e),
    };
    match payment {
        Ok(Some(p)) => {
            page.payment = Some(p);
            page.expires_text = Some("for this one payment only".into());
        }
        Ok(None) => {}
        Err(e) if e.code == authz_core::ErrorCode::InvalidRequest => {
            return error_page(
                StatusCode::BAD_REQUEST,
                "This payment cannot be approved",
                "The app's request was withdrawn or already answered, or it asks to pay from an account that is not yours. Go back to the app and start again.",
                Some("invalid_request"),
            );
        }
        Err(e) => return server_error_page(&e),
    }
    // A file of payments: the batch summary (ADR 0016).
    if let Err(e) =
        crate::ob_file_payments::fill_page(st, &ix.request, customer_id, picked, &mut page).await
    {
        return crate::ob_file_payments::page_error(&e);
    }
    if page.payment.is_none() && page.file_payment.is_none() && ob::is_account_access(&ix.request) {
        let parts = match ob::requested(st, &ix.request).await {
            Ok(Some(d)) => ob::page_parts(st, &d, customer_id, picked).await,
            Ok(None) => Err(OAuthError::server_error("account access request vanished")),
            Err(e) => Err(e),
        };
        match parts {
            Ok(p) => {
                page.permission_groups = p.groups;
                page.accounts = p.accounts;
                page.transaction_window = p.window;
                page.expires_text = p.expires_text;
            }
            Err(e) if e.code == authz_core::ErrorCode::InvalidRequest => {
                return error_page(
                    StatusCode::BAD_REQUEST,
                    "This request can no longer be approved",
                    "The app's request was withdrawn, expired or already answered. Go back to the app and start again.",
                    Some("invalid_request"),
                );
            }
            Err(e) => return server_error_page(&e),
        }
    }
    render(
        ui::render_consent(&page),
        StatusCode::OK,
        Some(&ix.request.redirect_uri.origin()),
    )
}

#[tracing::instrument(skip_all)]
pub async fn post_consent(
    State(st): State<Arc<AppState>>,
    headers: axum::http::HeaderMap,
    body: String,
) -> Response {
    let (ix, client) = match load(&st, &headers).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    // Form fields by hand: `account` repeats, one per ticked account.
    let pairs = query_pairs(Some(&body));
    let field = |k: &str| {
        pairs
            .iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.as_str())
            .unwrap_or_default()
    };
    if !csrf_ok(&ix, field("csrf")) {
        return csrf_failure();
    }
    let picked: BTreeSet<String> = pairs
        .iter()
        .filter(|(n, _)| n == "account")
        .map(|(_, v)| v.clone())
        .collect();
    let Step::Consent { customer_id, auth } = ix.step.clone() else {
        return redirect_303(where_next(&ix));
    };
    let approve = match field("decision") {
        "approve" => true,
        "deny" => false,
        _ => {
            return error_page(
                StatusCode::BAD_REQUEST,
                "Please choose",
                "Choose Allow or Deny.",
                Some("invalid_request"),
            );
        }
    };
    let payment = crate::ob_payments::requested(&st, &ix.request)
        .await
        .ok()
        .flatten();
    let file_pick = crate::ob_file_payments::must_pick(&st, &ix.request, &picked).await;
    if approve && let Some(Err(msg)) = file_pick.clone() {
        return consent_page(&st, &ix, &client, &customer_id, &picked, Some(msg)).await;
    }
    let must_pick = match &payment {
        Some((_, d)) => d.initiation.debtor_account.is_none() && picked.len() != 1,
        None => file_pick.is_none() && ob::is_account_access(&ix.request) && picked.is_empty(),
    };
    if approve && must_pick {
        let msg = if payment.is_some() {
            "Choose the account to pay from, or choose Deny."
        } else {
            "Choose at least one account to share, or choose Deny."
        };
        return consent_page(&st, &ix, &client, &customer_id, &picked, Some(msg.into())).await;
    }
    match decide(&st, &ix, &client, &customer_id, &auth, approve, &picked).await {
        Ok(r) => {
            end(&st, &ix).await;
            clear_cookie(r)
        }
        Err(e) if e.code == authz_core::ErrorCode::InvalidRequestUri => {
            end(&st, &ix).await;
            clear_cookie(already_answered())
        }
        Err(e) if e.code == authz_core::ErrorCode::InvalidRequest => {
            end(&st, &ix).await;
            clear_cookie(error_page(
                StatusCode::BAD_REQUEST,
                "This request can no longer be approved",
                "The app's request was withdrawn, expired or already answered, or the form was changed. Go back to the app and start again.",
                Some("invalid_request"),
            ))
        }
        Err(e) => server_error_page(&e),
    }
}

/// Mark the interaction's pushed request as answered and remove it; `false` if another
/// session answered it first (at most one authorization response per request_uri).
async fn consume_request(st: &AppState, ix: &Interaction) -> OAuthResult<bool> {
    let now = st.clock.now();
    if !st
        .eph
        .insert_if_absent(
            "par_used",
            &ix.request_key,
            "1",
            now + st.config.interaction_ttl_secs,
            now,
        )
        .await
        .map_err(store)?
    {
        return Ok(false);
    }
    st.eph.delete("par", &ix.request_key).await.map_err(store)?;
    Ok(true)
}

fn already_answered() -> Response {
    error_page(
        StatusCode::BAD_REQUEST,
        "This request was already completed",
        "This authorization was already answered. Please go back to the app you came from.",
        Some("invalid_request_uri"),
    )
}

#[allow(clippy::too_many_arguments)]
async fn decide(
    st: &AppState,
    ix: &Interaction,
    client: &Client,
    customer_id: &str,
    auth: &AuthContext,
    approve: bool,
    picked: &BTreeSet<String>,
) -> OAuthResult<Response> {
    let now = st.clock.now();
    let req = &ix.request;
    // Read before the request is consumed, so a withdrawn intent is reported as such.
    let payment = crate::ob_payments::requested(st, req).await?;
    let file = crate::ob_file_payments::requested(st, req).await?;
    let account_access = match payment {
        Some(_) => None,
        None if file.is_some() => None,
        None => ob::requested(st, req).await?,
    };
    // The request_uri is consumed when the customer decides (FAPI 2.0 note: not at page
    // load, because link preloaders fetch pages). A second decision on it is refused.
    if !consume_request(st, ix).await? {
        return Err(OAuthError::new(
            authz_core::ErrorCode::InvalidRequestUri,
            "request_uri already used",
        ));
    }
    let paid = match payment {
        Some((c, d)) => {
            match crate::ob_payments::decide(st, &c, d, customer_id, approve, picked, &auth.acr)
                .await?
            {
                Ok(Some(id)) => Some(id),
                Ok(None) => {
                    tracing::info!(client_id = %client.client_id, "customer refused a payment");
                    return Ok(redirect_error(
                        st,
                        req,
                        "access_denied",
                        "the customer refused the payment",
                    ));
                }
                Err(crate::ob_payments::Retry(msg)) => {
                    return Err(OAuthError::invalid_request(msg));
                }
            }
        }
        None => None,
    };
    let paid = match crate::ob_file_payments::decide(
        st,
        file,
        customer_id,
        approve,
        picked,
        &auth.acr,
    )
    .await?
    {
        crate::ob_file_payments::Decision::NotFile => paid,
        crate::ob_file_payments::Decision::Approved(id) => Some(id),
        crate::ob_file_payments::Decision::Refused => {
            tracing::info!(client_id = %client.client_id, "customer refused a file of payments");
            return Ok(redirect_error(
                st,
                req,
                "access_denied",
                "the customer refused the payments",
            ));
        }
    };
    let consent_id = match (paid, account_access) {
        (Some(id), _) => id,
        (None, Some(d)) => {
            match ob::decide(st, req, d, customer_id, approve, picked, &auth.acr).await? {
                Ok(ob::Outcome::Approved { consent_id }) => consent_id,
                Ok(ob::Outcome::Refused) => {
                    tracing::info!(client_id = %client.client_id, "customer refused account access");
                    return Ok(redirect_error(
                        st,
                        req,
                        "access_denied",
                        "the customer refused the request",
                    ));
                }
                Err(ob::Retry(msg)) => return Err(OAuthError::invalid_request(msg)),
            }
        }
        (None, None) => {
            let consent = ConsentRecord {
                id: uuid::Uuid::new_v4().to_string(),
                client_id: client.client_id.clone(),
                customer_id: Some(customer_id.to_owned()),
                kind: "oauth".into(),
                scopes: req.scope.clone(),
                status: if approve {
                    ConsentStatus::Authorised
                } else {
                    ConsentStatus::Rejected
                },
                details: serde_json::json!({"redirect_uri": req.redirect_uri.as_str()}),
                created_at: now,
                updated_at: now,
                expires_at: approve.then_some(now + st.config.consent_ttl_secs),
            };
            let audit = AuditEntry {
                consent_id: consent.id.clone(),
                at: now,
                actor: format!("customer:{customer_id}"),
                action: if approve { "authorised" } else { "rejected" }.into(),
                detail: format!("scope={}; acr={}", req.scope, auth.acr),
            };
            st.store
                .insert_consent(&consent, &audit)
                .await
                .map_err(store)?;
            tracing::info!(client_id = %client.client_id, consent_id = %consent.id, approved = approve, "customer decided");
            if !approve {
                return Ok(redirect_error(
                    st,
                    req,
                    "access_denied",
                    "the customer refused the request",
                ));
            }
            consent.id
        }
    };
    let code = crate::random_token(32);
    let grant = CodeGrant {
        client_id: client.client_id.clone(),
        redirect_uri: req.redirect_uri.as_str().to_owned(),
        code_challenge: req.code_challenge.clone(),
        nonce: req.nonce.clone(),
        scope: req.scope.clone(),
        consent_id,
        sub: customer_id.to_owned(),
        auth: auth.clone(),
        expires_at: now + st.config.code_ttl_secs,
        dpop_jkt: req.dpop_jkt.clone(),
        id_token_claims: req.id_token_claims.clone(),
    };
    let v = serde_json::to_string(&grant).map_err(|e| OAuthError::server_error(e.to_string()))?;
    // Kept a little past expiry so a late replay is still recognised as a replay.
    st.eph
        .put(
            "code",
            &crate::digest(&code),
            &v,
            grant.expires_at + 600,
            now,
        )
        .await
        .map_err(store)?;
    Ok(redirect_response(st, req, &[("code", code.as_str())]))
}

/// Sandbox only: a landing page for the sandbox TPPs' redirect URI, so a newcomer can
/// copy the code into the token request by hand.
pub async fn get_sandbox_callback(RawQuery(q): RawQuery) -> Response {
    let pairs = query_pairs(q.as_deref());
    let get = |k: &str| pairs.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    let (title, message) = match (get("code"), get("error")) {
        (Some(_), _) => (
            "Authorization complete",
            "The bank redirected back with an authorization code. Exchange it at the token endpoint within 60 seconds.",
        ),
        (_, Some(_)) => (
            "Authorization ended",
            "The bank redirected back with an error.",
        ),
        _ => ("Sandbox callback", "Nothing was received."),
    };
    let detail = pairs
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("\n");
    render(
        ui::render_info(&ui::InfoPage {
            title: title.into(),
            message: message.into(),
            detail: Some(detail),
        }),
        StatusCode::OK,
        None,
    )
}

pub async fn get_stylesheet() -> Response {
    let mut r = ui::STYLESHEET.into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/css; charset=utf-8"),
    );
    r.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=3600"),
    );
    r
}
