//! Passkey pages of the customer's interaction (issue 6):
//!
//! * `GET/POST /login/passkey`, `POST /login/passkey/finish`: sign in with a passkey,
//!   username first; success takes the interaction from the login step straight to
//!   consent with `acr = urn:openbanking:psd2:sca`, `amr = [hwk, user]`.
//! * `GET/POST /passkey`, `POST /passkey/rename`, `POST /passkey/remove`: after a
//!   sign-in (interaction at the consent step), add a passkey and manage the customer's
//!   passkeys; the consent page links here, skipping is one link back.
//!
//! Ceremony state lives in the ephemeral store under the interaction (see
//! `crate::passkey`), is taken once, and every form carries the interaction's CSRF
//! token. Failed passkey sign-ins count as failed attempts of the interaction.

use crate::client_auth::store;
use crate::http::{html_page, query_pairs, redirect_303};
use crate::passkey::{self as pk, AuthState, RegState};
use crate::routes::authorize::{
    csrf_failure, csrf_ok, error_page, failed_attempt, load, save, server_error_page, where_next,
};
use crate::signin::{self, Channel};
use crate::state::AppState;
use authz_core::OAuthError;
use authz_core::client::Client;
use authz_core::interaction::{Interaction, Step};
use authz_store::PasskeyRecord;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use consent_ui::passkey as ui;
use std::sync::Arc;
use webauthn_rs::prelude::{Passkey, RegisterPublicKeyCredential};

/// A page that runs `/assets/passkey.js`: the usual CSP plus `script-src 'self'`.
fn script_page(status: StatusCode, html: Result<String, consent_ui::RenderError>) -> Response {
    let html = match html {
        Ok(h) => h,
        Err(e) => return server_error_page(&OAuthError::server_error(e.0)),
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

fn field<'a>(pairs: &'a [(String, String)], k: &str) -> &'a str {
    pairs
        .iter()
        .find(|(n, _)| n == k)
        .map(|(_, v)| v.as_str())
        .unwrap_or_default()
}

// --- sign in ---------------------------------------------------------------------

fn signin_page(
    ix: &Interaction,
    client: &Client,
    username: &str,
    error: Option<&str>,
    options: Option<String>,
    status: StatusCode,
) -> Response {
    script_page(
        status,
        ui::render_passkey_signin(&ui::PasskeySignInPage {
            client_name: client.client_name.clone(),
            csrf: ix.csrf.clone(),
            username: username.to_owned(),
            error: error.map(str::to_owned),
            options,
            start_action: "/login/passkey".into(),
            finish_action: "/login/passkey/finish".into(),
            password_href: "/login".into(),
        }),
    )
}

pub async fn get_signin(State(st): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    let (ix, client) = match load(&st, &headers).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    if ix.step != Step::Login {
        return redirect_303(where_next(&ix));
    }
    signin_page(&ix, &client, "", None, None, StatusCode::OK)
}

/// Username submitted: start the authentication ceremony over the customer's passkeys.
#[tracing::instrument(skip_all)]
pub async fn post_signin(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
    body: String,
) -> Response {
    let (ix, client) = match load(&st, &headers).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let pairs = query_pairs(Some(&body));
    if !csrf_ok(&ix, field(&pairs, "csrf")) {
        return csrf_failure();
    }
    if ix.step != Step::Login {
        return redirect_303(where_next(&ix));
    }
    let username = field(&pairs, "username").trim().to_owned();
    let customer = match st.store.find_customer_by_username(&username).await {
        Ok(c) => c,
        Err(e) => return server_error_page(&store(e)),
    };
    // The sign-in back-off holds here too (a locked username gets no ceremony).
    match signin::locked_until(&st, &username).await {
        Ok(None) => {}
        Ok(Some(until)) => {
            let cid = customer.as_ref().map(|c| c.id.as_str());
            if let Err(e) = signin::audit(
                &st,
                Channel::Interaction,
                Some(&client.client_id),
                cid,
                "passkey",
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
            let page = signin_page(
                &ix,
                &client,
                &username,
                Some(&msg),
                None,
                StatusCode::TOO_MANY_REQUESTS,
            );
            return signin::with_retry_after(page, Some(until), st.clock.now());
        }
        Err(e) => return server_error_page(&e),
    }
    let known_id = customer.as_ref().map(|c| c.id.clone());
    let begun = match pk::begin_sign_in(&st, customer.as_ref()).await {
        Ok(b) => b,
        Err(e) => return server_error_page(&e),
    };
    let pk::Begun::Challenge {
        options,
        state,
        customer_id,
        passkeys,
    } = begun
    else {
        // Unknown username or no passkey: the same answer, and it counts as a failed
        // attempt, so probing usernames here is as limited as on the password form.
        tracing::info!(
            client_id = %client.client_id,
            "passkey sign-in refused: no passkey for that username"
        );
        if let Err(e) = signin::audit(
            &st,
            Channel::Interaction,
            Some(&client.client_id),
            known_id.as_deref(),
            "passkey",
            "failure",
            "no_passkey",
        )
        .await
        {
            return server_error_page(&e);
        }
        if let Err(e) = signin::count_failure(&st, &username).await {
            return server_error_page(&e);
        }
        return failed_attempt(&st, ix, |ix| {
            signin_page(
                ix,
                &client,
                &username,
                Some("There is no passkey for that username. Sign in with your password; afterwards you can add a passkey."),
                None,
                StatusCode::UNAUTHORIZED,
            )
        })
        .await;
    };
    let saved = AuthState {
        interaction_id: ix.id.clone(),
        customer_id: customer_id.clone(),
        state,
    };
    if let Err(e) = pk::put_state(&st, pk::NS_AUTH, &ix.id, ix.expires_at, &saved).await {
        return server_error_page(&e);
    }
    tracing::info!(
        client_id = %client.client_id,
        customer_id = %customer_id,
        passkeys,
        "passkey sign-in started"
    );
    signin_page(&ix, &client, &username, None, Some(options), StatusCode::OK)
}

/// Why a passkey sign-in failed: what the log says; the customer sees one message.
async fn signin_failed(
    st: &AppState,
    ix: Interaction,
    client: &Client,
    customer_id: Option<&str>,
    reason: &str,
) -> Response {
    tracing::warn!(
        client_id = %client.client_id,
        customer_id = customer_id.unwrap_or(""),
        reason,
        "passkey sign-in failed"
    );
    // The audit keeps a short word; the detail stays in the log.
    let word = reason.split(':').next().unwrap_or(reason).replace(' ', "_");
    if let Err(e) = signin::audit(
        st,
        Channel::Interaction,
        Some(&client.client_id),
        customer_id,
        "passkey",
        "failure",
        &word,
    )
    .await
    {
        return server_error_page(&e);
    }
    // A failed verification counts against the username's back-off, as a wrong
    // password does (the customer is known from the ceremony).
    if let Some(cid) = customer_id {
        let username = match st.store.find_customer(cid).await {
            Ok(c) => c.map(|c| c.username),
            Err(e) => return server_error_page(&store(e)),
        };
        if let Some(u) = username
            && let Err(e) = signin::count_failure(st, &u).await
        {
            return server_error_page(&e);
        }
    }
    failed_attempt(st, ix, |ix| {
        signin_page(
            ix,
            client,
            "",
            Some("Your passkey could not be checked. Try again, or sign in with your password."),
            None,
            StatusCode::UNAUTHORIZED,
        )
    })
    .await
}

/// The browser's assertion: verify it against the interaction's ceremony state.
#[tracing::instrument(skip_all)]
pub async fn post_signin_finish(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
    body: String,
) -> Response {
    let (mut ix, client) = match load(&st, &headers).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let pairs = query_pairs(Some(&body));
    if !csrf_ok(&ix, field(&pairs, "csrf")) {
        return csrf_failure();
    }
    if ix.step != Step::Login {
        return redirect_303(where_next(&ix));
    }
    // Taken whatever happens next: an answer is checked against a state once.
    let saved = match pk::take_state::<AuthState>(&st, pk::NS_AUTH, &ix.id).await {
        Ok(s) => s,
        Err(e) => return server_error_page(&e),
    };
    let Some(saved) = saved.filter(|s| s.interaction_id == ix.id) else {
        return signin_failed(&st, ix, &client, None, "no passkey ceremony pending").await;
    };
    let cid = saved.customer_id.clone();
    // A lock that began while the ceremony ran holds for its answer too.
    let username = match st.store.find_customer(&cid).await {
        Ok(c) => c.map(|c| c.username).unwrap_or_default(),
        Err(e) => return server_error_page(&store(e)),
    };
    match signin::locked_until(&st, &username).await {
        Ok(None) => {}
        Ok(Some(until)) => {
            if let Err(e) = signin::audit(
                &st,
                Channel::Interaction,
                Some(&client.client_id),
                Some(&cid),
                "passkey",
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
            let page = signin_page(
                &ix,
                &client,
                "",
                Some(&msg),
                None,
                StatusCode::TOO_MANY_REQUESTS,
            );
            return signin::with_retry_after(page, Some(until), st.clock.now());
        }
        Err(e) => return server_error_page(&e),
    }
    let done = match pk::finish_sign_in(&st, &cid, field(&pairs, "credential"), &saved.state).await
    {
        Ok(Ok(d)) => d,
        Ok(Err(why)) => return signin_failed(&st, ix, &client, Some(&cid), why.word()).await,
        Err(e) => return server_error_page(&e),
    };
    let now = st.clock.now();
    if !ix.passkey_verified(now, cid.clone()) {
        return redirect_303(where_next(&ix));
    }
    if let Err(e) = signin::audit(
        &st,
        Channel::Interaction,
        Some(&client.client_id),
        Some(&cid),
        "passkey",
        "success",
        "hwk_user",
    )
    .await
    {
        return server_error_page(&e);
    }
    if let Err(e) = save(&st, &ix).await {
        return server_error_page(&e);
    }
    tracing::info!(
        client_id = %client.client_id,
        customer_id = %cid,
        credential_id = %done.credential_id,
        counter = done.counter,
        backup_state = done.backup_state,
        "passkey sign-in succeeded"
    );
    redirect_303("/consent")
}

// --- add and manage (after sign-in) ---------------------------------------------------

/// The add/manage page, with a fresh enrolment ceremony (excluding the customer's
/// existing credentials).
async fn manage_page(
    st: &AppState,
    ix: &Interaction,
    client: &Client,
    customer_id: &str,
    notice: Option<&str>,
    error: Option<&str>,
    status: StatusCode,
) -> Response {
    let customer = match st.store.find_customer(customer_id).await {
        Ok(Some(c)) => c,
        Ok(None) => return server_error_page(&OAuthError::server_error("customer vanished")),
        Err(e) => return server_error_page(&store(e)),
    };
    let records = match st.store.list_passkeys(customer_id).await {
        Ok(r) => r,
        Err(e) => return server_error_page(&store(e)),
    };
    let exclude = records
        .iter()
        .filter_map(|r| serde_json::from_value::<Passkey>(r.credential.clone()).ok())
        .map(|k| k.cred_id().clone())
        .collect::<Vec<_>>();
    let rp = match pk::relying_party(st) {
        Ok(rp) => rp,
        Err(e) => return server_error_page(&e),
    };
    let started = rp.start_passkey_registration(
        pk::user_handle(customer_id),
        &customer.username,
        &customer.display_name,
        Some(exclude),
    );
    let (challenge, state) = match started {
        Ok(x) => x,
        Err(e) => return server_error_page(&OAuthError::server_error(e.to_string())),
    };
    let options = match serde_json::to_string(&challenge) {
        Ok(o) => o,
        Err(e) => return server_error_page(&OAuthError::server_error(e.to_string())),
    };
    let saved = RegState {
        interaction_id: ix.id.clone(),
        customer_id: customer_id.to_owned(),
        state,
    };
    if let Err(e) = pk::put_state(st, pk::NS_REG, &ix.id, ix.expires_at, &saved).await {
        return server_error_page(&e);
    }
    let now = st.clock.now();
    script_page(
        status,
        ui::render_passkey_manage(&ui::PasskeyManagePage {
            client_name: client.client_name.clone(),
            customer_name: customer.display_name,
            csrf: ix.csrf.clone(),
            options,
            default_name: format!("Passkey added {}", pk::date_text(now)),
            passkeys: records
                .iter()
                .map(|r| ui::PasskeyView {
                    id: r.credential_id.clone(),
                    name: r.name.clone(),
                    created: pk::date_text(r.created_at),
                    last_used: r.last_used_at.map(pk::date_time_text),
                })
                .collect(),
            error: error.map(str::to_owned),
            notice: notice.map(str::to_owned),
            add_action: "/passkey".into(),
            rename_action: "/passkey/rename".into(),
            remove_action: "/passkey/remove".into(),
            continue_href: "/consent".into(),
        }),
    )
}

/// The signed-in customer of the interaction (at the consent step).
fn signed_in(ix: &Interaction) -> Option<String> {
    match &ix.step {
        Step::Consent { customer_id, .. } => Some(customer_id.clone()),
        _ => None,
    }
}

pub async fn get_manage(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> Response {
    let (ix, client) = match load(&st, &headers).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let Some(customer_id) = signed_in(&ix) else {
        return redirect_303(where_next(&ix));
    };
    let notice = match query_pairs(q.as_deref())
        .iter()
        .find(|(k, _)| k == "done")
        .map(|(_, v)| v.as_str())
    {
        Some("added") => Some("Passkey added. Next time, choose “Sign in with a passkey”."),
        Some("renamed") => Some("Passkey renamed."),
        Some("removed") => Some("Passkey removed. It can no longer be used to sign in."),
        _ => None,
    };
    manage_page(
        &st,
        &ix,
        &client,
        &customer_id,
        notice,
        None,
        StatusCode::OK,
    )
    .await
}

/// The browser's new credential: verify it against the enrolment state and store it.
#[tracing::instrument(skip_all)]
pub async fn post_add(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
    body: String,
) -> Response {
    let (ix, client) = match load(&st, &headers).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let pairs = query_pairs(Some(&body));
    if !csrf_ok(&ix, field(&pairs, "csrf")) {
        return csrf_failure();
    }
    let Some(customer_id) = signed_in(&ix) else {
        return redirect_303(where_next(&ix));
    };
    let failed = |reason: String| {
        tracing::warn!(customer_id = %customer_id, reason, "passkey enrolment failed");
    };
    let saved = match pk::take_state::<RegState>(&st, pk::NS_REG, &ix.id).await {
        Ok(s) => s,
        Err(e) => return server_error_page(&e),
    };
    let Some(saved) = saved.filter(|s| s.interaction_id == ix.id && s.customer_id == customer_id)
    else {
        failed("no enrolment ceremony pending".into());
        let msg = "That request to add a passkey has expired. Please try again.";
        return manage_page(
            &st,
            &ix,
            &client,
            &customer_id,
            None,
            Some(msg),
            StatusCode::BAD_REQUEST,
        )
        .await;
    };
    let answer: Option<RegisterPublicKeyCredential> =
        serde_json::from_str(field(&pairs, "credential")).ok();
    let rp = match pk::relying_party(&st) {
        Ok(rp) => rp,
        Err(e) => return server_error_page(&e),
    };
    let key = match answer.map(|a| rp.finish_passkey_registration(&a, &saved.state)) {
        Some(Ok(k)) => k,
        Some(Err(e)) => {
            failed(format!("verification failed: {e:?}"));
            let msg =
                "Your new passkey could not be checked, so it was not added. Please try again.";
            return manage_page(
                &st,
                &ix,
                &client,
                &customer_id,
                None,
                Some(msg),
                StatusCode::BAD_REQUEST,
            )
            .await;
        }
        None => {
            failed("no or malformed credential (JavaScript off?)".into());
            let msg = "Adding a passkey needs JavaScript in this browser.";
            return manage_page(
                &st,
                &ix,
                &client,
                &customer_id,
                None,
                Some(msg),
                StatusCode::BAD_REQUEST,
            )
            .await;
        }
    };
    let credential = match serde_json::to_value(&key) {
        Ok(v) => v,
        Err(e) => return server_error_page(&OAuthError::server_error(e.to_string())),
    };
    let now = st.clock.now();
    let default_name = format!("Passkey added {}", pk::date_text(now));
    let record = PasskeyRecord {
        credential_id: pk::cred_id_of(&key),
        customer_id: customer_id.clone(),
        name: pk::clean_name(field(&pairs, "name"), &default_name),
        sign_count: pk::counter_of(&credential),
        credential,
        created_at: now,
        last_used_at: None,
    };
    match st.store.insert_passkey(&record).await {
        Ok(()) => {}
        Err(authz_store::StoreError::Conflict(_)) => {
            failed("credential id already registered".into());
            let msg = "That passkey is already registered.";
            return manage_page(
                &st,
                &ix,
                &client,
                &customer_id,
                None,
                Some(msg),
                StatusCode::CONFLICT,
            )
            .await;
        }
        Err(e) => return server_error_page(&store(e)),
    }
    tracing::info!(
        client_id = %client.client_id,
        customer_id = %customer_id,
        credential_id = %record.credential_id,
        "passkey enrolled"
    );
    redirect_303("/passkey?done=added")
}

#[tracing::instrument(skip_all)]
pub async fn post_rename(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
    body: String,
) -> Response {
    manage_change(&st, &headers, &body, true).await
}

#[tracing::instrument(skip_all)]
pub async fn post_remove(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
    body: String,
) -> Response {
    manage_change(&st, &headers, &body, false).await
}

async fn manage_change(st: &AppState, headers: &HeaderMap, body: &str, rename: bool) -> Response {
    let (ix, client) = match load(st, headers).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let pairs = query_pairs(Some(body));
    if !csrf_ok(&ix, field(&pairs, "csrf")) {
        return csrf_failure();
    }
    let Some(customer_id) = signed_in(&ix) else {
        return redirect_303(where_next(&ix));
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
            tracing::info!(
                client_id = %client.client_id,
                customer_id = %customer_id,
                credential_id = %id,
                action = if rename { "renamed" } else { "removed" },
                "passkey changed"
            );
            redirect_303(if rename {
                "/passkey?done=renamed"
            } else {
                "/passkey?done=removed"
            })
        }
        Ok(false) => error_page(
            StatusCode::NOT_FOUND,
            "Passkey not found",
            "That passkey does not exist or was already removed.",
            Some("not_found"),
        ),
        Err(e) => server_error_page(&store(e)),
    }
}

pub async fn get_script() -> Response {
    let mut r = ui::PASSKEY_SCRIPT.into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/javascript; charset=utf-8"),
    );
    r.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=3600"),
    );
    r
}
