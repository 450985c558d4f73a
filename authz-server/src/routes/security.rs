//! The dashboard's "Sign-in and security" page (`/account/security`) and its actions:
//!
//! * authenticator (TOTP) enrolment: `POST /account/totp/start` makes a new 160-bit
//!   secret and keeps it, sealed, as enrolment state in the ephemeral store under the
//!   dashboard session (10 minutes, at most 5 confirmation attempts);
//!   `GET /account/totp` shows it as an `otpauth://` QR code and as text;
//!   `POST /account/totp/confirm` takes the state (single use) and, only if the code
//!   matches the *new* secret, replaces the old secret and issues ten recovery codes
//!   in one transaction, showing them once;
//! * `POST /account/recovery-codes`: ten new recovery codes, the old ones void;
//! * passkeys: rename and remove (the same store calls as the interaction's page);
//! * sign-in activity: the customer's last sign-in events.
//!
//! Every change needs a session signed in with both factors within [`FRESH_SECS`]
//! (a step-up: an older session is ended and the customer signs in again, landing back
//! here), the session's CSRF token, and is audited.

use crate::client_auth::{find_client, store};
use crate::http::{html_page, query_pairs, redirect_303};
use crate::passkey as pk;
use crate::routes::dashboard::{
    LOGIN, SECURITY, Session, Stage, clear_cookie, csrf_failure, csrf_ok, drop_session, message,
    save, server_error, signed_in, when,
};
use crate::signin::{self, Channel};
use crate::state::AppState;
use authz_core::OAuthError;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use consent_ui::dashboard as dui;
use consent_ui::security as sui;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// Changes need a sign-in at most this old.
pub const FRESH_SECS: i64 = 5 * 60;
/// Sign-in events shown.
pub const ACTIVITY_SHOWN: i64 = 20;
const NS_ENROL: &str = "totp_enrol";
const ENROL_TTL_SECS: i64 = 10 * 60;
const ENROL_ATTEMPTS: u32 = 5;
const TOTP_PAGE: &str = "/account/totp";
const DASH: Channel = Channel::Dashboard;

#[derive(Serialize, Deserialize)]
struct Enrolment {
    /// Digest of the dashboard session id it belongs to.
    session: String,
    customer_id: String,
    /// The new secret, sealed like a stored one.
    sealed: String,
    attempts: u32,
    expires_at: i64,
}

fn render(html: Result<String, consent_ui::RenderError>) -> Response {
    match html {
        Ok(h) => html_page(StatusCode::OK, h, None),
        Err(e) => server_error(&OAuthError::server_error(e.0)),
    }
}

fn field<'a>(pairs: &'a [(String, String)], k: &str) -> &'a str {
    pairs
        .iter()
        .find(|(n, _)| n == k)
        .map(|(_, v)| v.as_str())
        .unwrap_or_default()
}

/// A signed-in session whose sign-in is recent enough for a change, with the form's
/// CSRF token checked; otherwise the response (step-up or refusal).
async fn for_change(
    st: &AppState,
    headers: &HeaderMap,
    pairs: &[(String, String)],
) -> Result<(Session, String, dui::SignedIn), Response> {
    let (s, customer_id, header) = signed_in(st, headers, true).await?;
    if !csrf_ok(&s, field(pairs, "csrf")) {
        tracing::warn!(target: "audit", event = "dashboard_security", outcome = "csrf", customer_id = %customer_id, "security change refused: bad CSRF token");
        return Err(csrf_failure());
    }
    let since = match &s.stage {
        Stage::SignedIn { since, .. } => *since,
        _ => 0,
    };
    if st.clock.now() - since > FRESH_SECS {
        // Step-up: this session is ended; a new sign-in with both factors comes back here.
        tracing::info!(target: "audit", event = "dashboard_security", outcome = "step_up", customer_id = %customer_id, "security change needs a fresh sign-in");
        drop_session(st, &s).await;
        return Err(clear_cookie(redirect_303(&format!("{LOGIN}?reauth=1"))));
    }
    Ok((s, customer_id, header))
}

fn method_words(m: &str) -> &'static str {
    match m {
        "password" => "Password",
        "totp" => "Security code from your app",
        "recovery" => "Recovery code",
        "passkey" => "Passkey",
        _ => "Other",
    }
}

fn outcome_words(e: &authz_store::AuthEvent) -> (&'static str, bool) {
    match (e.outcome.as_str(), e.method.as_str(), e.reason.as_str()) {
        ("success", "password", _) => ("Password accepted", true),
        ("success", "recovery", _) => ("Signed in with a recovery code", true),
        ("success", _, _) => ("Signed in", true),
        ("locked", _, _) => ("Blocked after too many attempts", false),
        ("enrolled", _, _) => ("Authenticator app set up", true),
        ("regenerated", _, _) => ("New recovery codes made", true),
        _ => ("Refused", false),
    }
}

#[tracing::instrument(skip_all)]
pub async fn get_security(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
    axum::extract::RawQuery(q): axum::extract::RawQuery,
) -> Response {
    let (mut s, customer_id, header) = match signed_in(&st, &headers, false).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let mut notice = s.flash.take();
    if let Err(e) = save(&st, &s).await {
        return server_error(&e);
    }
    if notice.is_none() && query_pairs(q.as_deref()).iter().any(|(k, _)| k == "done") {
        notice = Some(dui::Notice {
            kind: dui::NoticeKind::Success,
            message: "Saved.".into(),
        });
    }
    let left = match st.auth.recovery_codes_left(&customer_id).await {
        Ok(n) => n,
        Err(e) => return server_error(&store(e)),
    };
    let passkeys = match st.store.list_passkeys(&customer_id).await {
        Ok(p) => p,
        Err(e) => return server_error(&store(e)),
    };
    let events = match st.auth.list_auth_events(&customer_id, ACTIVITY_SHOWN).await {
        Ok(e) => e,
        Err(e) => return server_error(&store(e)),
    };
    let mut activity = Vec::new();
    for e in &events {
        let Some(w) = when(e.at) else { continue };
        let place = match (&e.channel[..], &e.client_id) {
            ("interaction", Some(cid)) => match find_client(&st, cid).await {
                Ok(Some(c)) => format!("Signing in for {}", c.client_name),
                Ok(None) => "Signing in for an app".into(),
                Err(e) => return server_error(&e),
            },
            ("interaction", None) => "Signing in for an app".into(),
            _ => "Wekeza Bank dashboard".into(),
        };
        let (outcome, ok) = outcome_words(e);
        activity.push(sui::ActivityRow {
            when: w,
            method: method_words(&e.method).into(),
            outcome: outcome.into(),
            ok,
            place,
        });
    }
    render(sui::render_security(&sui::SecurityPage {
        signed_in: header,
        notice,
        totp_start_action: "/account/totp/start".into(),
        recovery_left: left,
        recovery_action: "/account/recovery-codes".into(),
        passkeys: passkeys
            .iter()
            .map(|r| sui::PasskeyRow {
                id: r.credential_id.clone(),
                name: r.name.clone(),
                created: pk::date_text(r.created_at),
                last_used: r.last_used_at.map(pk::date_time_text),
            })
            .collect(),
        passkey_rename_action: "/account/passkeys/rename".into(),
        passkey_remove_action: "/account/passkeys/remove".into(),
        activity,
        back_url: crate::routes::dashboard::HOME.into(),
    }))
}

// ---------- authenticator enrolment ----------

#[tracing::instrument(skip_all)]
pub async fn post_totp_start(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
    body: String,
) -> Response {
    let pairs = query_pairs(Some(&body));
    let (s, customer_id, _) = match for_change(&st, &headers, &pairs).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let secret = crate::password::new_totp_secret();
    if crate::password::totp_secret_len(&secret) < crate::password::MIN_TOTP_SECRET_BYTES {
        return server_error(&OAuthError::server_error("TOTP secret too short"));
    }
    let sealed = match st.secrets.seal(&customer_id, &secret) {
        Ok(v) => v,
        Err(e) => return server_error(&OAuthError::server_error(e.to_string())),
    };
    let now = st.clock.now();
    let state = Enrolment {
        session: crate::digest(&s.id),
        customer_id: customer_id.clone(),
        sealed,
        attempts: 0,
        expires_at: (now + ENROL_TTL_SECS).min(s.expires_at.max(now + 60)),
    };
    if let Err(e) = put_enrolment(&st, &s, &state).await {
        return server_error(&e);
    }
    tracing::info!(target: "audit", event = "totp_enrolment", outcome = "started", customer_id = %customer_id, "authenticator enrolment started");
    redirect_303(TOTP_PAGE)
}

async fn put_enrolment(st: &AppState, s: &Session, e: &Enrolment) -> Result<(), OAuthError> {
    let v = serde_json::to_string(e).map_err(|e| OAuthError::server_error(e.to_string()))?;
    st.eph
        .put(
            NS_ENROL,
            &crate::digest(&s.id),
            &v,
            e.expires_at,
            st.clock.now(),
        )
        .await
        .map_err(store)
}

fn enrol_page(
    header: dui::SignedIn,
    username: &str,
    secret: &str,
    error: Option<&str>,
) -> Response {
    let uri = crate::password::otpauth_uri("Wekeza Bank", username, secret);
    let svg = match crate::password::qr_svg(&uri) {
        Ok(s) => s,
        Err(e) => return server_error(&OAuthError::server_error(e.to_string())),
    };
    let grouped = secret
        .trim_end_matches('=')
        .as_bytes()
        .chunks(4)
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect::<Vec<_>>()
        .join(" ");
    let page = sui::TotpEnrolPage {
        signed_in: header,
        qr_svg: svg,
        secret_text: grouped,
        account: username.to_owned(),
        error: error.map(str::to_owned),
        confirm_action: "/account/totp/confirm".into(),
        cancel_url: SECURITY.into(),
    };
    let mut r = render(sui::render_totp_enrol(&page));
    if error.is_some() {
        *r.status_mut() = StatusCode::UNPROCESSABLE_ENTITY;
    }
    r
}

/// The session's enrolment, if any (read, not taken).
async fn pending(
    st: &AppState,
    s: &Session,
    customer_id: &str,
) -> Result<Option<Enrolment>, OAuthError> {
    let now = st.clock.now();
    let v = st
        .eph
        .get(NS_ENROL, &crate::digest(&s.id), now)
        .await
        .map_err(store)?;
    Ok(v.and_then(|v| serde_json::from_str::<Enrolment>(&v).ok())
        .filter(|e| {
            e.session == crate::digest(&s.id) && e.customer_id == customer_id && e.expires_at > now
        }))
}

#[tracing::instrument(skip_all)]
pub async fn get_totp(State(st): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    let (s, customer_id, header) = match signed_in(&st, &headers, false).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    if let Err(e) = save(&st, &s).await {
        return server_error(&e);
    }
    let e = match pending(&st, &s, &customer_id).await {
        Ok(Some(e)) => e,
        Ok(None) => return redirect_303(SECURITY),
        Err(e) => return server_error(&e),
    };
    let customer = match st.store.find_customer(&customer_id).await {
        Ok(Some(c)) => c,
        Ok(None) => return server_error(&OAuthError::server_error("customer vanished")),
        Err(e) => return server_error(&store(e)),
    };
    let secret = match st.secrets.open(&customer_id, &e.sealed) {
        Ok(o) => o.secret,
        Err(e) => return server_error(&OAuthError::server_error(e.to_string())),
    };
    enrol_page(header, &customer.username, &secret, None)
}

#[tracing::instrument(skip_all)]
pub async fn post_totp_confirm(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
    body: String,
) -> Response {
    let pairs = query_pairs(Some(&body));
    let (s, customer_id, header) = match for_change(&st, &headers, &pairs).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let now = st.clock.now();
    // Taken: of two concurrent confirmations only one sees the state.
    let taken = match st.eph.take(NS_ENROL, &crate::digest(&s.id), now).await {
        Ok(v) => v.and_then(|v| serde_json::from_str::<Enrolment>(&v).ok()),
        Err(e) => return server_error(&store(e)),
    };
    let Some(mut e) = taken.filter(|e| {
        e.session == crate::digest(&s.id) && e.customer_id == customer_id && e.expires_at > now
    }) else {
        return message(
            StatusCode::BAD_REQUEST,
            Some(header),
            "Set-up expired",
            "That set-up of an authenticator app has ended or was already finished. Nothing was changed. Please start again.",
            true,
            Some(("Back to sign-in and security", SECURITY)),
        );
    };
    let customer = match st.store.find_customer(&customer_id).await {
        Ok(Some(c)) => c,
        Ok(None) => return server_error(&OAuthError::server_error("customer vanished")),
        Err(e) => return server_error(&store(e)),
    };
    let secret = match st.secrets.open(&customer_id, &e.sealed) {
        Ok(o) => o.secret,
        Err(e) => return server_error(&OAuthError::server_error(e.to_string())),
    };
    let Some(step) = crate::password::totp_step(&secret, field(&pairs, "otp").trim(), now) else {
        e.attempts += 1;
        if let Err(err) = signin::audit(
            &st,
            DASH,
            None,
            Some(&customer_id),
            "totp",
            "failure",
            "enrolment_bad_code",
        )
        .await
        {
            return server_error(&err);
        }
        if e.attempts >= ENROL_ATTEMPTS {
            return message(
                StatusCode::BAD_REQUEST,
                Some(header),
                "Set-up stopped",
                "The codes did not match too many times, so this set-up was stopped. Your current authenticator app still works. You can start again.",
                true,
                Some(("Back to sign-in and security", SECURITY)),
            );
        }
        if let Err(err) = put_enrolment(&st, &s, &e).await {
            return server_error(&err);
        }
        return enrol_page(
            header,
            &customer.username,
            &secret,
            Some(
                "That code does not match the new key. Check the app shows Wekeza Bank and try the code it shows now.",
            ),
        );
    };
    let codes = crate::password::new_recovery_codes();
    let digests: Vec<String> = codes
        .iter()
        .filter_map(|c| crate::password::normalize_recovery_code(c))
        .map(|c| crate::password::recovery_digest(&customer_id, &c))
        .collect();
    match st
        .auth
        .replace_totp(&customer_id, &e.sealed, step as i64, &digests, now)
        .await
    {
        Ok(true) => {}
        Ok(false) => return server_error(&OAuthError::server_error("customer vanished")),
        Err(err) => return server_error(&store(err)),
    }
    if let Err(err) = signin::audit(
        &st,
        DASH,
        None,
        Some(&customer_id),
        "totp",
        "enrolled",
        "authenticator_replaced",
    )
    .await
    {
        return server_error(&err);
    }
    render(sui::render_recovery_codes(&sui::RecoveryCodesPage {
        signed_in: header,
        title: "Your new authenticator app is set up".into(),
        intro: "From now on, use the codes from the new app. Your old app no longer works for Wekeza Bank. Here are your recovery codes.".into(),
        codes,
        done_url: SECURITY.into(),
    }))
}

#[tracing::instrument(skip_all)]
pub async fn post_recovery_codes(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
    body: String,
) -> Response {
    let pairs = query_pairs(Some(&body));
    let (_s, customer_id, header) = match for_change(&st, &headers, &pairs).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let codes = crate::password::new_recovery_codes();
    let digests: Vec<String> = codes
        .iter()
        .filter_map(|c| crate::password::normalize_recovery_code(c))
        .map(|c| crate::password::recovery_digest(&customer_id, &c))
        .collect();
    if let Err(e) = st
        .auth
        .replace_recovery_codes(&customer_id, &digests, st.clock.now())
        .await
    {
        return server_error(&store(e));
    }
    if let Err(e) = signin::audit(
        &st,
        DASH,
        None,
        Some(&customer_id),
        "recovery",
        "regenerated",
        "codes_replaced",
    )
    .await
    {
        return server_error(&e);
    }
    render(sui::render_recovery_codes(&sui::RecoveryCodesPage {
        signed_in: header,
        title: "Your new recovery codes".into(),
        intro: "Your old recovery codes no longer work.".into(),
        codes,
        done_url: SECURITY.into(),
    }))
}

// ---------- passkeys ----------

#[tracing::instrument(skip_all)]
pub async fn post_passkey_rename(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
    body: String,
) -> Response {
    passkey_change(&st, &headers, &body, true).await
}

#[tracing::instrument(skip_all)]
pub async fn post_passkey_remove(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
    body: String,
) -> Response {
    passkey_change(&st, &headers, &body, false).await
}

async fn passkey_change(st: &AppState, headers: &HeaderMap, body: &str, rename: bool) -> Response {
    let pairs = query_pairs(Some(body));
    let (mut s, customer_id, header) = match for_change(st, headers, &pairs).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let id = field(&pairs, "id");
    let done = if rename {
        let name = pk::clean_name(field(&pairs, "name"), "Passkey");
        st.store.rename_passkey(&customer_id, id, &name).await
    } else {
        st.store.delete_passkey(&customer_id, id).await
    };
    match done {
        Ok(true) => {
            tracing::info!(target: "audit", event = "dashboard_passkey", customer_id = %customer_id, credential_id = %id, action = if rename { "renamed" } else { "removed" }, "passkey changed in the dashboard");
            s.flash = Some(dui::Notice {
                kind: dui::NoticeKind::Success,
                message: if rename {
                    "Passkey renamed.".into()
                } else {
                    "Passkey removed. It can no longer be used to sign in.".into()
                },
            });
            match save(st, &s).await {
                Ok(()) => redirect_303(SECURITY),
                Err(e) => server_error(&e),
            }
        }
        Ok(false) => message(
            StatusCode::NOT_FOUND,
            Some(header),
            "Passkey not found",
            "That passkey does not exist or was already removed. Nothing was changed.",
            true,
            Some(("Back to sign-in and security", SECURITY)),
        ),
        Err(e) => server_error(&store(e)),
    }
}
