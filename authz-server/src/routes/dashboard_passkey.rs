//! Dashboard sign-in with a passkey (`/account/login/passkey`): username first, then the
//! WebAuthn ceremony over the customer's stored passkeys (user verification required),
//! exactly as the authorization's passkey sign-in checks it (`routes::passkey`), with the
//! ceremony state single use in the ephemeral store, bound to the dashboard sign-in
//! session. Success opens a dashboard session with `amr = [hwk, user]`. The back-off,
//! the per-session attempt limit and the sign-in audit apply as for the password.

use crate::client_auth::store;
use crate::http::{html_page, query_pairs, redirect_303};
use crate::passkey as pk;
use crate::routes::dashboard::{
    HOME, LOGIN, Session, Stage, csrf_failure, csrf_ok, failed_attempt, load, locked_page, save,
    server_error, set_cookie, start_session,
};
use crate::signin::{self, Channel};
use crate::state::AppState;
use authz_core::OAuthError;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use consent_ui::security as sui;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use webauthn_rs::prelude::PasskeyAuthentication;

const NS: &str = "pk_dash";
const START: &str = "/account/login/passkey";
const FINISH: &str = "/account/login/passkey/finish";
const DASH: Channel = Channel::Dashboard;

#[derive(Serialize, Deserialize)]
struct DashAuthState {
    session: String,
    customer_id: String,
    state: PasskeyAuthentication,
}

fn field<'a>(pairs: &'a [(String, String)], k: &str) -> &'a str {
    pairs
        .iter()
        .find(|(n, _)| n == k)
        .map(|(_, v)| v.as_str())
        .unwrap_or_default()
}

/// The page, with `script-src 'self'` added for `passkey.js` when the ceremony runs.
fn page(
    s: &Session,
    username: &str,
    error: Option<&str>,
    options: Option<String>,
    status: StatusCode,
) -> Response {
    let html = sui::render_dashboard_passkey(&sui::DashboardPasskeyPage {
        csrf: s.csrf.clone(),
        username: username.to_owned(),
        error: error.map(str::to_owned),
        options,
        start_action: START.into(),
        finish_action: FINISH.into(),
        password_href: LOGIN.into(),
    });
    let html = match html {
        Ok(h) => h,
        Err(e) => return server_error(&OAuthError::server_error(e.0)),
    };
    let mut r = html_page(status, html, None);
    let csp = r
        .headers()
        .get(header::CONTENT_SECURITY_POLICY)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.replacen(
                "default-src 'none';",
                "default-src 'none'; script-src 'self';",
                1,
            )
        });
    if let Some(v) = csp.and_then(|c| HeaderValue::from_str(&c).ok()) {
        r.headers_mut().insert(header::CONTENT_SECURITY_POLICY, v);
    }
    r
}

#[tracing::instrument(skip_all)]
pub async fn get_signin(State(st): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    let s = match load(&st, &headers).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let s = match s {
        Some(s) if matches!(s.stage, Stage::SignedIn { .. }) => return redirect_303(HOME),
        Some(s) if s.stage == Stage::Password => s,
        _ => {
            let s = Session::new(st.clock.now());
            if let Err(e) = save(&st, &s).await {
                return server_error(&e);
            }
            s
        }
    };
    set_cookie(page(&s, "", None, None, StatusCode::OK), &s.id)
}

/// A sign-in session at the password stage with the form's CSRF token, or the answer.
async fn session(
    st: &AppState,
    headers: &HeaderMap,
    pairs: &[(String, String)],
) -> Result<Session, Response> {
    let s = match load(st, headers).await? {
        Some(s) => s,
        None => return Err(csrf_failure()),
    };
    if !csrf_ok(&s, field(pairs, "csrf")) {
        return Err(csrf_failure());
    }
    match s.stage {
        Stage::Password => Ok(s),
        Stage::SignedIn { .. } => Err(redirect_303(HOME)),
        Stage::Otp { .. } => Err(redirect_303(LOGIN)),
    }
}

#[tracing::instrument(skip_all)]
pub async fn post_signin(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
    body: String,
) -> Response {
    let pairs = query_pairs(Some(&body));
    let s = match session(&st, &headers, &pairs).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let username = field(&pairs, "username").trim().to_owned();
    let customer = match st.store.find_customer_by_username(&username).await {
        Ok(c) => c,
        Err(e) => return server_error(&store(e)),
    };
    let known = customer.as_ref().map(|c| c.id.clone());
    match signin::locked_until(&st, &username).await {
        Ok(None) => {}
        Ok(Some(until)) => {
            if let Err(e) = signin::audit(
                &st,
                DASH,
                None,
                known.as_deref(),
                "passkey",
                "locked",
                "backoff",
            )
            .await
            {
                return server_error(&e);
            }
            return locked_page(Some(until), st.clock.now());
        }
        Err(e) => return server_error(&e),
    }
    let begun = match pk::begin_sign_in(&st, customer.as_ref()).await {
        Ok(b) => b,
        Err(e) => return server_error(&e),
    };
    let pk::Begun::Challenge {
        options,
        state,
        customer_id,
        ..
    } = begun
    else {
        if let Err(e) = signin::audit(
            &st,
            DASH,
            None,
            known.as_deref(),
            "passkey",
            "failure",
            "no_passkey",
        )
        .await
        {
            return server_error(&e);
        }
        return failed_attempt(&st, s, &username, |s| {
            page(
                s,
                &username,
                Some("There is no passkey for that username. Sign in with your password instead."),
                None,
                StatusCode::UNAUTHORIZED,
            )
        })
        .await;
    };
    let saved = DashAuthState {
        session: crate::digest(&s.id),
        customer_id,
        state,
    };
    if let Err(e) = pk::put_state(&st, NS, &s.id, s.expires_at, &saved).await {
        return server_error(&e);
    }
    page(&s, &username, None, Some(options), StatusCode::OK)
}

async fn failed(
    st: &AppState,
    s: Session,
    username: &str,
    cid: Option<&str>,
    reason: &str,
) -> Response {
    tracing::warn!(
        customer_id = cid.unwrap_or(""),
        reason,
        "dashboard passkey sign-in failed"
    );
    if let Err(e) = signin::audit(st, DASH, None, cid, "passkey", "failure", reason).await {
        return server_error(&e);
    }
    failed_attempt(st, s, username, |s| {
        page(
            s,
            "",
            Some("Your passkey could not be checked. Try again, or sign in with your password."),
            None,
            StatusCode::UNAUTHORIZED,
        )
    })
    .await
}

#[tracing::instrument(skip_all)]
pub async fn post_finish(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
    body: String,
) -> Response {
    let pairs = query_pairs(Some(&body));
    let s = match session(&st, &headers, &pairs).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    // Taken whatever happens next: an answer is checked against a state once.
    let saved = match pk::take_state::<DashAuthState>(&st, NS, &s.id).await {
        Ok(v) => v,
        Err(e) => return server_error(&e),
    };
    let Some(saved) = saved.filter(|v| v.session == crate::digest(&s.id)) else {
        return failed(&st, s, "", None, "no_ceremony").await;
    };
    let cid = saved.customer_id.clone();
    let customer = match st.store.find_customer(&cid).await {
        Ok(Some(c)) => c,
        Ok(None) => return server_error(&OAuthError::server_error("customer vanished")),
        Err(e) => return server_error(&store(e)),
    };
    // A lock that began while the ceremony ran holds for its answer too.
    match signin::locked_until(&st, &customer.username).await {
        Ok(None) => {}
        Ok(Some(until)) => {
            if let Err(e) =
                signin::audit(&st, DASH, None, Some(&cid), "passkey", "locked", "backoff").await
            {
                return server_error(&e);
            }
            return locked_page(Some(until), st.clock.now());
        }
        Err(e) => return server_error(&e),
    }
    match pk::finish_sign_in(&st, &cid, field(&pairs, "credential"), &saved.state).await {
        Ok(Ok(_)) => {}
        Ok(Err(why)) => {
            return failed(&st, s, &customer.username, Some(&cid), why.word()).await;
        }
        Err(e) => return server_error(&e),
    }
    if let Err(e) = signin::audit(
        &st,
        DASH,
        None,
        Some(&cid),
        "passkey",
        "success",
        "hwk_user",
    )
    .await
    {
        return server_error(&e);
    }
    if let Err(e) = signin::clear_failures(&st, &customer.username).await {
        return server_error(&e);
    }
    start_session(&st, &s, cid, vec!["hwk".into(), "user".into()]).await
}
