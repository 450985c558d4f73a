//! Portal apps (issue 9, ADR 0014): an app owns a sandbox client registered through the
//! dynamic-registration rules (`authz_core::registration::validate_request` with a
//! statement the portal makes for the org, stored by `RegistrationStore`), so portal-made
//! clients pass exactly the FAPI checks registered ones do. Keys: a public JWKS, a
//! `jwks_uri`, or a key pair generated here and shown once (never stored); certificates:
//! generated and shown once, or issued by the sandbox CA for a CSR (the key stays with
//! the developer). The kit download has the shape of `certs/sandbox/kit.json`, with
//! relative paths and the public files inline under `files`. Go-live: a request, the
//! bank reviewer's decision with a reason, and only then a production client.

use crate::routes::portal::{
    self as p, Dev, Form, audit, audit_view, can_manage_apps, flash_redirect, forbidden, message,
    not_found, portal, render, role, server_error, signed_in, store_err, take_flash,
};
use crate::state::AppState;
use authz_core::OAuthError;
use authz_core::client::{Client, ClientAuthMethod};
use authz_core::registration::{SoftwareStatement, validate_request};
use authz_store::{
    AppRecord, ClientRecord, CustomerRecord, OrgRecord, RegistrationRecord, TestCustomerRecord,
};
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use base64::Engine;
use consent_ui::portal as pui;
use fapi_jose::{Alg, SigningKey};
use serde_json::{Value, json};
use std::sync::Arc;

/// Subject organisation of portal-issued client certificates.
pub const CERT_ORG: &str = "Wekeza Sandbox Developer";
const SCOPES_DEFAULT: [&str; 3] = ["openid", "accounts", "payments"];

fn subject_dn(client_id: &str) -> String {
    format!("CN={client_id}, O={CERT_ORG}")
}

fn sandbox_ca(st: &AppState) -> Result<devpki::DevCa, OAuthError> {
    let dir = &st.config.certs_dir;
    let read = |f: &str| {
        std::fs::read_to_string(dir.join(f))
            .map_err(|e| OAuthError::server_error(format!("sandbox CA {f}: {e}")))
    };
    devpki::DevCa::load(&read("ca.pem")?, &read("ca.key")?)
        .map_err(|e| OAuthError::server_error(format!("sandbox CA: {e}")))
}

fn new_id(prefix: &str) -> String {
    format!(
        "{prefix}-{}",
        crate::random_token(12).replace(['-', '_'], "x")
    )
}

/// What the developer chose for the client (kept in the app's metadata).
struct ClientChoice {
    redirect_uris: Vec<String>,
    scope: String,
    method: String,
    jwks: Option<Value>,
    jwks_uri: Option<String>,
}

/// The client for `client_id` under the registration rules, `jwks_uri` fetched as DCR
/// does. A user-facing message on refusal.
async fn build_client(
    st: &AppState,
    org: &OrgRecord,
    app_id: &str,
    name: &str,
    client_id: &str,
    c: &ClientChoice,
) -> Result<Result<(Client, Option<String>), String>, OAuthError> {
    let statement = SoftwareStatement {
        jti: crate::random_token(16),
        iat: st.clock.now(),
        exp: st.clock.now() + 60,
        software_id: app_id.into(),
        software_client_name: name.into(),
        software_client_uri: None,
        software_logo_uri: None,
        software_redirect_uris: c.redirect_uris.clone(),
        org_id: org.id.clone(),
        org_name: org.name.clone(),
        software_roles: vec!["AISP".into(), "PISP".into()],
    };
    let mut body = json!({
        "token_endpoint_auth_method": c.method,
        "redirect_uris": c.redirect_uris,
        "grant_types": ["authorization_code", "refresh_token", "client_credentials"],
        "scope": c.scope,
    });
    if c.method == "tls_client_auth" {
        body["tls_client_auth_subject_dn"] = json!(subject_dn(client_id));
    }
    if let Some(j) = &c.jwks {
        body["jwks"] = j.clone();
    }
    if let Some(u) = &c.jwks_uri {
        body["jwks_uri"] = json!(u);
    }
    let v = match validate_request(
        &body,
        &statement,
        client_id,
        &crate::routes::register::supported(),
    ) {
        Ok(v) => v,
        Err(e) => return Ok(Err(e.description.into_owned())),
    };
    let fetched = match (&v.jwks_uri, st.dcr.as_deref()) {
        (Some(u), Some(dcr)) => match crate::routes::register::fetch_jwks(dcr, u).await {
            Ok(j) => Some(j),
            Err(e) => return Ok(Err(e.0.description.into_owned())),
        },
        (Some(_), None) => return Ok(Err("jwks_uri cannot be fetched here".into())),
        (None, _) => None,
    };
    let jwks_uri = v.jwks_uri.clone();
    match v.finish(fetched.as_ref()) {
        Ok(client) => Ok(Ok((client, jwks_uri))),
        Err(e) => Ok(Err(e.description.into_owned())),
    }
}

/// Store a client made by [`build_client`] as a registration the portal manages (its
/// registration access token is never handed out, so only the portal changes it).
async fn register(
    st: &AppState,
    org: &OrgRecord,
    app_id: &str,
    client: &Client,
    jwks_uri: Option<&str>,
    environment: &str,
) -> Result<(), OAuthError> {
    let regs = st
        .store
        .registrations()
        .ok_or_else(|| OAuthError::server_error("no registration store"))?;
    let now = st.clock.now();
    let metadata =
        serde_json::to_value(client).map_err(|e| OAuthError::server_error(e.to_string()))?;
    regs.insert_registration(
        &ClientRecord {
            client_id: client.client_id.clone(),
            metadata,
            created_at: now,
            updated_at: now,
        },
        &RegistrationRecord {
            client_id: client.client_id.clone(),
            token_digest: crate::digest(&crate::random_token(32)),
            software_id: app_id.into(),
            org_id: org.id.clone(),
            metadata: json!({"portal_app": app_id, "environment": environment, "jwks_uri": jwks_uri}),
            created_at: now,
            updated_at: now,
        },
    )
    .await
    .map_err(crate::client_auth::store)?;
    // The gateway counts the client in its org and on its environment's plan (ADR 0015):
    // sandbox clients share the org's sandbox allowance, production clients start on
    // `standard`; usage pages and statements group by the same org.
    if let Some(u) = st.store.usage() {
        let plan = if environment == "production" {
            "standard"
        } else {
            "sandbox"
        };
        u.set_client_plan(&client.client_id, &org.id, plan, now)
            .await
            .map_err(crate::client_auth::store)?;
    }
    Ok(())
}

/// Remove a portal client: consents revoked, refresh tokens revoked, the client gone
/// (so `/par` and `/token` refuse it), the cache entry dropped.
async fn deregister(st: &AppState, client_id: &str, actor: &str) -> Result<(), OAuthError> {
    let regs = st
        .store
        .registrations()
        .ok_or_else(|| OAuthError::server_error("no registration store"))?;
    if let Some(reg) = regs
        .find_registration(client_id)
        .await
        .map_err(crate::client_auth::store)?
    {
        regs.delete_registration(client_id, &reg.token_digest, actor, st.clock.now())
            .await
            .map_err(crate::client_auth::store)?;
    }
    st.client_cache.remove(client_id);
    Ok(())
}

/// Replace a portal client's metadata (keys rotated).
async fn update_client(
    st: &AppState,
    client: &Client,
    jwks_uri: Option<&str>,
) -> Result<bool, OAuthError> {
    let regs = st
        .store
        .registrations()
        .ok_or_else(|| OAuthError::server_error("no registration store"))?;
    let Some(mut reg) = regs
        .find_registration(&client.client_id)
        .await
        .map_err(crate::client_auth::store)?
    else {
        return Ok(false);
    };
    let now = st.clock.now();
    let expected = reg.token_digest.clone();
    reg.updated_at = now;
    reg.metadata["jwks_uri"] = json!(jwks_uri);
    let rec = ClientRecord {
        client_id: client.client_id.clone(),
        metadata: serde_json::to_value(client)
            .map_err(|e| OAuthError::server_error(e.to_string()))?,
        created_at: now,
        updated_at: now,
    };
    let ok = regs
        .update_registration(&rec, &reg, &expected)
        .await
        .map_err(crate::client_auth::store)?;
    st.client_cache.remove(&client.client_id);
    Ok(ok)
}

/// The app and the developer's role in its org; 404 for non-members.
async fn app_for(
    st: &AppState,
    dev: &Dev,
    app_id: &str,
) -> Result<(AppRecord, OrgRecord, String), Response> {
    let pst = portal(st)?;
    let Some(app) = pst.find_app(app_id).await.map_err(store_err)? else {
        return Err(not_found(Some(&dev.nav())));
    };
    let Some(r) = role(st, &app.org_id, dev).await? else {
        return Err(not_found(Some(&dev.nav())));
    };
    let Some(org) = pst.find_org(&app.org_id).await.map_err(store_err)? else {
        return Err(not_found(Some(&dev.nav())));
    };
    Ok((app, org, r))
}

/// For a POST: signed in, CSRF, member, role allows app management, app active.
async fn managed_app(
    st: &AppState,
    headers: &HeaderMap,
    f: &Form,
    app_id: &str,
    what: &str,
) -> Result<(Dev, AppRecord, OrgRecord), Response> {
    let dev = signed_in(st, headers, Some(f.get("csrf"))).await?;
    let (app, org, r) = app_for(st, &dev, app_id).await?;
    if !can_manage_apps(&r) {
        return Err(forbidden(Some(&dev.nav()), what));
    }
    if app.status != "active" {
        return Err(message(
            Some(&dev.nav()),
            StatusCode::CONFLICT,
            "App deleted",
            "This app was deleted; it cannot be changed.",
            ("Back", &format!("/portal/orgs/{}", org.id)),
        ));
    }
    Ok((dev, app, org))
}

// ---------- test customers (sandbox tools) ----------

/// The org's first sandbox test customer, made on first need: known password and TOTP
/// secret, linked to the sandbox bank's seeded customer so it has accounts to share.
pub(crate) async fn ensure_test_customer(
    st: &AppState,
    org_id: &str,
) -> Result<(String, String, String), OAuthError> {
    let pst = st
        .store
        .portal()
        .ok_or_else(|| OAuthError::server_error("no portal store"))?;
    let existing = pst
        .test_customers(Some(org_id))
        .await
        .map_err(crate::client_auth::store)?;
    if let Some(t) = existing.first() {
        return open_test_customer(st, t).await;
    }
    create_test_customer(st, org_id).await
}

pub(crate) async fn open_test_customer(
    st: &AppState,
    t: &TestCustomerRecord,
) -> Result<(String, String, String), OAuthError> {
    let password = st
        .secrets
        .open(&t.customer_id, &t.password_sealed)
        .map_err(|e| OAuthError::server_error(e.to_string()))?
        .secret;
    let c = st
        .store
        .find_customer(&t.customer_id)
        .await
        .map_err(crate::client_auth::store)?
        .ok_or_else(|| OAuthError::server_error("test customer without customer row"))?;
    let totp = crate::signin::totp_secret(st, &c).await?;
    Ok((t.username.clone(), password, totp))
}

pub(crate) async fn create_test_customer(
    st: &AppState,
    org_id: &str,
) -> Result<(String, String, String), OAuthError> {
    let pst = st
        .store
        .portal()
        .ok_or_else(|| OAuthError::server_error("no portal store"))?;
    let sealing = |e: anyhow::Error| OAuthError::server_error(e.to_string());
    let id = format!("cust-{}", uuid::Uuid::new_v4());
    let username = format!(
        "tester-{}",
        crate::random_token(6)
            .replace(['-', '_'], "x")
            .to_lowercase()
    );
    let password = crate::random_password();
    let totp = crate::password::new_totp_secret();
    let now = st.clock.now();
    st.store
        .upsert_customer(&CustomerRecord {
            totp_secret: st.secrets.seal(&id, &totp).map_err(sealing)?,
            id: id.clone(),
            username: username.clone(),
            display_name: format!("Test customer {username}"),
            password_hash: crate::password::hash(&password).map_err(sealing)?,
            totp_last_step: 0,
            created_at: now,
        })
        .await
        .map_err(crate::client_auth::store)?;
    pst.insert_test_customer(&TestCustomerRecord {
        customer_id: id.clone(),
        org_id: org_id.into(),
        username: username.clone(),
        password_sealed: st.secrets.seal(&id, &password).map_err(sealing)?,
        created_at: now,
    })
    .await
    .map_err(crate::client_auth::store)?;
    link(st, &id);
    Ok((username, password, totp))
}

#[tracing::instrument(skip_all)]
pub async fn post_test_customer(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(org_id): Path<String>,
    body: Bytes,
) -> Response {
    let f = Form::parse(&body);
    let mut dev = match signed_in(&st, &headers, Some(f.get("csrf"))).await {
        Ok(d) => d,
        Err(r) => return r,
    };
    match role(&st, &org_id, &dev).await {
        Ok(Some(r)) if can_manage_apps(&r) => {}
        Ok(Some(_)) => return forbidden(Some(&dev.nav()), "create test customers"),
        Ok(None) => return not_found(Some(&dev.nav())),
        Err(r) => return r,
    }
    let (username, _, _) = match create_test_customer(&st, &org_id).await {
        Ok(c) => c,
        Err(e) => return server_error(&e),
    };
    let a = audit(
        &st,
        &org_id,
        None,
        &dev.rec.username,
        "test_customer_created",
        &username,
    )
    .await;
    let pst = match portal(&st) {
        Ok(p) => p,
        Err(r) => return r,
    };
    if let Err(e) = pst.insert_portal_audit(&a).await {
        return store_err(e);
    }
    flash_redirect(
        &st,
        &mut dev,
        &format!("Test customer {username} created."),
        &format!("/portal/orgs/{org_id}"),
    )
    .await
}

/// Reset the org's sandbox data: every test customer's live consents are revoked (with
/// their refresh tokens), the customers are locked out (password and TOTP replaced by
/// unknown values) and forgotten, and one fresh test customer is made.
#[tracing::instrument(skip_all)]
pub async fn post_sandbox_reset(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(org_id): Path<String>,
    body: Bytes,
) -> Response {
    let f = Form::parse(&body);
    let mut dev = match signed_in(&st, &headers, Some(f.get("csrf"))).await {
        Ok(d) => d,
        Err(r) => return r,
    };
    match role(&st, &org_id, &dev).await {
        Ok(Some(r)) if can_manage_apps(&r) => {}
        Ok(Some(_)) => return forbidden(Some(&dev.nav()), "reset sandbox data"),
        Ok(None) => return not_found(Some(&dev.nav())),
        Err(r) => return r,
    }
    match reset(&st, &org_id, &dev.rec.username).await {
        Ok(n) => {
            let a = audit(
                &st,
                &org_id,
                None,
                &dev.rec.username,
                "sandbox_reset",
                &format!("{n} consents revoked"),
            )
            .await;
            let pst = match portal(&st) {
                Ok(p) => p,
                Err(r) => return r,
            };
            if let Err(e) = pst.insert_portal_audit(&a).await {
                return store_err(e);
            }
            flash_redirect(
                &st,
                &mut dev,
                "Sandbox data reset: a fresh test customer is ready.",
                &format!("/portal/orgs/{org_id}"),
            )
            .await
        }
        Err(e) => server_error(&e),
    }
}

async fn reset(st: &AppState, org_id: &str, actor: &str) -> Result<usize, OAuthError> {
    use authz_store::{AuditEntry, ConsentStatus};
    let s = crate::client_auth::store;
    let pst = st
        .store
        .portal()
        .ok_or_else(|| OAuthError::server_error("no portal store"))?;
    let now = st.clock.now();
    let mut revoked = 0;
    for t in pst.test_customers(Some(org_id)).await.map_err(s)? {
        for c in st
            .store
            .list_consents_for_customer(&t.customer_id)
            .await
            .map_err(s)?
        {
            let audit = AuditEntry {
                consent_id: c.id.clone(),
                at: now,
                actor: format!("portal:{actor}"),
                action: "revoked".into(),
                detail: "sandbox reset".into(),
            };
            if st
                .store
                .transition_consent(
                    &c.id,
                    &[
                        ConsentStatus::AwaitingAuthorisation,
                        ConsentStatus::Authorised,
                    ],
                    ConsentStatus::Revoked,
                    &audit,
                )
                .await
                .map_err(s)?
            {
                st.store
                    .revoke_refresh_tokens_for_consent(&c.id, now)
                    .await
                    .map_err(s)?;
                revoked += 1;
            }
        }
        if let Some(mut c) = st.store.find_customer(&t.customer_id).await.map_err(s)? {
            let sealing = |e: anyhow::Error| OAuthError::server_error(e.to_string());
            c.password_hash = crate::password::hash(&crate::random_token(24)).map_err(sealing)?;
            c.totp_secret = st
                .secrets
                .seal(&c.id, &crate::password::new_totp_secret())
                .map_err(sealing)?;
            st.store.upsert_customer(&c).await.map_err(s)?;
        }
    }
    pst.delete_test_customers(org_id).await.map_err(s)?;
    create_test_customer(st, org_id).await?;
    Ok(revoked)
}

/// Test customers share the seeded sandbox customer's accounts (as the load-test pool does).
fn link(st: &AppState, customer_id: &str) {
    if let Some(bank) = &st.sandbox_bank {
        let target = bank.read(|b| {
            b.customer_by_username(crate::provision::SANDBOX_USERNAME)
                .map(|c| c.id.clone())
        });
        if let Some(t) = target
            && let Err(e) = bank.link_customer(customer_id, &t)
        {
            tracing::warn!(error = %e, "could not link a test customer to sandbox accounts");
        }
    }
}

pub(crate) async fn relink_test_customers(st: &AppState) -> anyhow::Result<()> {
    let Some(pst) = st.store.portal() else {
        return Ok(());
    };
    for t in pst
        .test_customers(None)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?
    {
        link(st, &t.customer_id);
    }
    Ok(())
}

// ---------- create ----------

fn new_app_page(
    st: &AppState,
    dev: &Dev,
    org: &OrgRecord,
    f: Option<&Form>,
    error: Option<String>,
) -> Response {
    let chosen: Vec<String> = f
        .map(|f| f.all("scope"))
        .unwrap_or_else(|| SCOPES_DEFAULT.iter().map(|s| (*s).to_owned()).collect());
    let page = pui::NewAppPage {
        csrf: dev.session.csrf.clone(),
        org_id: org.id.clone(),
        org_name: org.name.clone(),
        sandbox_callback: format!("{}/sandbox/callback", st.issuer),
        scopes: authz_core::discovery::SCOPES
            .iter()
            .map(|s| ((*s).to_owned(), chosen.iter().any(|c| c == s)))
            .collect(),
        name: f.map(|f| f.get("name").to_owned()).unwrap_or_default(),
        redirect_uris: f
            .map(|f| f.get("redirect_uris").to_owned())
            .unwrap_or_else(|| format!("{}/sandbox/callback", st.issuer)),
        auth_method: f
            .map(|f| f.get("auth_method").to_owned())
            .unwrap_or_else(|| "private_key_jwt".into()),
        keys: f
            .map(|f| f.get("keys").to_owned())
            .unwrap_or_else(|| "generate".into()),
        jwks: f.map(|f| f.get("jwks").to_owned()).unwrap_or_default(),
        jwks_uri: f.map(|f| f.get("jwks_uri").to_owned()).unwrap_or_default(),
        error: error.clone(),
    };
    render(
        pui::render_new_app(Some(&dev.nav()), &page),
        if error.is_some() {
            StatusCode::BAD_REQUEST
        } else {
            StatusCode::OK
        },
    )
}

async fn org_for_apps(st: &AppState, dev: &Dev, org_id: &str) -> Result<OrgRecord, Response> {
    let Some(r) = role(st, org_id, dev).await? else {
        return Err(not_found(Some(&dev.nav())));
    };
    if !can_manage_apps(&r) {
        return Err(forbidden(Some(&dev.nav()), "create apps"));
    }
    portal(st)?
        .find_org(org_id)
        .await
        .map_err(store_err)?
        .ok_or_else(|| not_found(Some(&dev.nav())))
}

#[tracing::instrument(skip_all)]
pub async fn get_new_app(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(org_id): Path<String>,
) -> Response {
    let dev = match signed_in(&st, &headers, None).await {
        Ok(d) => d,
        Err(r) => return r,
    };
    match org_for_apps(&st, &dev, &org_id).await {
        Ok(org) => new_app_page(&st, &dev, &org, None, None),
        Err(r) => r,
    }
}

/// Generated private material, shown once.
struct Generated {
    private_jwk: Option<Value>,
    cert_pem: String,
    key_pem: String,
}

#[tracing::instrument(skip_all)]
pub async fn post_app(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(org_id): Path<String>,
    body: Bytes,
) -> Response {
    let f = Form::parse(&body);
    let dev = match signed_in(&st, &headers, Some(f.get("csrf"))).await {
        Ok(d) => d,
        Err(r) => return r,
    };
    let org = match org_for_apps(&st, &dev, &org_id).await {
        Ok(o) => o,
        Err(r) => return r,
    };
    let again = |e: &str| new_app_page(&st, &dev, &org, Some(&f), Some(e.to_owned()));
    let name = f.get("name").trim().to_owned();
    if name.is_empty() || name.chars().count() > 80 {
        return again("Give the app a name of 1 to 80 characters.");
    }
    let redirect_uris: Vec<String> = f
        .get("redirect_uris")
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect();
    if redirect_uris.is_empty() || redirect_uris.len() > 10 {
        return again("Give 1 to 10 redirect URIs, one per line.");
    }
    let scopes = f.all("scope");
    if scopes.is_empty() {
        return again("Choose at least one scope.");
    }
    let method = f.get("auth_method").to_owned();
    let keys = f.get("keys");
    let app_id = new_id("app");
    let client_id = new_id("portal");
    let mut generated = None;
    let (jwks, jwks_uri) = match keys {
        "generate" => {
            let (jwk, pub_jwks) = if method == "private_key_jwt" {
                match SigningKey::generate(Alg::ES256, format!("{client_id}-1"))
                    .and_then(|k| Ok((k.to_private_jwk()?, k.public_jwk())))
                {
                    Ok((private, public)) => (Some(private), Some(json!({"keys": [public]}))),
                    Err(e) => return server_error(&OAuthError::server_error(e.to_string())),
                }
            } else {
                (None, None)
            };
            let issued = match sandbox_ca(&st).and_then(|ca| {
                ca.issue_client(&client_id, CERT_ORG, None)
                    .map_err(|e| OAuthError::server_error(e.to_string()))
            }) {
                Ok(i) => i,
                Err(e) => return server_error(&e),
            };
            generated = Some(Generated {
                private_jwk: jwk,
                cert_pem: issued.cert_pem,
                key_pem: issued.key_pem,
            });
            (pub_jwks, None)
        }
        "jwks" => match serde_json::from_str::<Value>(f.get("jwks")) {
            Ok(v) => (Some(v), None),
            Err(_) => return again("The JWKS is not valid JSON."),
        },
        "jwks_uri" => (None, Some(f.get("jwks_uri").trim().to_owned())),
        _ => return again("Choose how the app's keys are provided."),
    };
    let choice = ClientChoice {
        redirect_uris,
        scope: scopes.join(" "),
        method,
        jwks,
        jwks_uri,
    };
    let (client, fetched_uri) =
        match build_client(&st, &org, &app_id, &name, &client_id, &choice).await {
            Ok(Ok(c)) => c,
            Ok(Err(msg)) => return again(&msg),
            Err(e) => return server_error(&e),
        };
    if let Err(e) = register(
        &st,
        &org,
        &app_id,
        &client,
        fetched_uri.as_deref(),
        "sandbox",
    )
    .await
    {
        return server_error(&e);
    }
    let now = st.clock.now();
    let cert_pem = generated.as_ref().map(|g| g.cert_pem.clone());
    let app = AppRecord {
        id: app_id.clone(),
        org_id: org.id.clone(),
        name: name.clone(),
        client_id: client_id.clone(),
        status: "active".into(),
        metadata: json!({
            "auth_method": choice.method,
            "redirect_uris": choice.redirect_uris,
            "scope": choice.scope,
            "jwks": if fetched_uri.is_none() { serde_json::to_value(&client.jwks).ok() } else { None },
            "jwks_uri": fetched_uri,
            "subject_dn": client.tls_client_auth_subject_dn,
            "cert_pem": cert_pem,
            "keys": keys,
        }),
        golive_status: "none".into(),
        golive_reason: String::new(),
        production_client_id: None,
        created_at: now,
        updated_at: now,
    };
    let a = audit(
        &st,
        &org.id,
        Some(&app_id),
        &dev.rec.username,
        "app_created",
        &format!("{name}: sandbox client {client_id} ({})", choice.method),
    )
    .await;
    let pst = match portal(&st) {
        Ok(p) => p,
        Err(r) => return r,
    };
    if let Err(e) = pst.insert_app(&app, &a).await {
        // Do not leave a client without its app.
        let _ = deregister(&st, &client_id, &dev.rec.username).await;
        return store_err(e);
    }
    if let Err(e) = ensure_test_customer(&st, &org.id).await {
        return server_error(&e);
    }
    match generated {
        Some(g) => secrets_page(&st, &dev, &app, &org, &g).await,
        None => {
            let mut dev = dev;
            flash_redirect(
                &st,
                &mut dev,
                "App created; its sandbox client is ready. Add a client certificate from a CSR to call the APIs.",
                &format!("/portal/apps/{app_id}"),
            )
            .await
        }
    }
}

// ---------- kit ----------

/// The kit in `kit.json`'s shape: paths relative to the kit file, files inline.
async fn kit_json(
    st: &AppState,
    app: &AppRecord,
    g: Option<&Generated>,
) -> Result<Value, OAuthError> {
    let (username, password, totp) = ensure_test_customer(st, &app.org_id).await?;
    let ca = std::fs::read_to_string(st.config.certs_dir.join("ca.pem"))
        .map_err(|e| OAuthError::server_error(format!("sandbox CA: {e}")))?;
    let m = &app.metadata;
    let id = &app.client_id;
    let mut files = serde_json::Map::new();
    files.insert("ca.pem".into(), json!(ca));
    if let Some(c) = g
        .map(|g| g.cert_pem.as_str())
        .or_else(|| m.get("cert_pem").and_then(Value::as_str))
    {
        files.insert(format!("{id}.pem"), json!(c));
    }
    let method = m.get("auth_method").and_then(Value::as_str).unwrap_or("");
    let mut client = json!({
        "client_id": id,
        "token_endpoint_auth_method": method,
        "cert": format!("{id}.pem"),
        "key": format!("{id}.key"),
        "redirect_uri": m.get("redirect_uris").and_then(|r| r.get(0)).cloned().unwrap_or(json!("")),
        "scope": m.get("scope").cloned().unwrap_or(json!("")),
    });
    if method == "private_key_jwt" {
        client["private_jwk"] = json!(format!("{id}.jwk.json"));
    }
    if let Some(dn) = m.get("subject_dn").filter(|d| d.is_string()) {
        client["tls_client_auth_subject_dn"] = dn.clone();
    }
    if let Some(g) = g {
        files.insert(format!("{id}.key"), json!(g.key_pem));
        if let Some(j) = &g.private_jwk {
            files.insert(
                format!("{id}.jwk.json"),
                json!(serde_json::to_string_pretty(j).unwrap_or_default()),
            );
        }
    }
    Ok(json!({
        "issuer": st.issuer,
        "resource_base_url": st.resource_base,
        "ca_cert": "ca.pem",
        "customer": {"username": username, "password": password, "totp_secret": totp},
        "clients": [client],
        "discovery_url": format!("{}/.well-known/openid-configuration", st.issuer),
        "mtls_base_url": st.mtls_base,
        "files": files,
    }))
}

async fn secrets_page(
    st: &AppState,
    dev: &Dev,
    app: &AppRecord,
    _org: &OrgRecord,
    g: &Generated,
) -> Response {
    let kit = match kit_json(st, app, Some(g)).await {
        Ok(k) => k,
        Err(e) => return server_error(&e),
    };
    let text = serde_json::to_string_pretty(&kit).unwrap_or_default();
    let mut secrets = Vec::new();
    if let Some(j) = &g.private_jwk {
        secrets.push((
            format!("Private signing key ({}.jwk.json)", app.client_id),
            serde_json::to_string_pretty(j).unwrap_or_default(),
        ));
    }
    secrets.push((
        format!("Client certificate private key ({}.key)", app.client_id),
        g.key_pem.clone(),
    ));
    secrets.push((
        format!("Client certificate ({}.pem)", app.client_id),
        g.cert_pem.clone(),
    ));
    render(
        pui::render_secrets(
            Some(&dev.nav()),
            &pui::SecretsPage {
                app_id: app.id.clone(),
                app_name: app.name.clone(),
                secrets,
                kit_data_uri: format!(
                    "data:application/json;base64,{}",
                    base64::engine::general_purpose::STANDARD.encode(text)
                ),
            },
        ),
        StatusCode::CREATED,
    )
}

#[tracing::instrument(skip_all)]
pub async fn get_kit(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(app_id): Path<String>,
) -> Response {
    let dev = match signed_in(&st, &headers, None).await {
        Ok(d) => d,
        Err(r) => return r,
    };
    let (app, _, _) = match app_for(&st, &dev, &app_id).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    if app.status != "active" {
        return not_found(Some(&dev.nav()));
    }
    let kit = match kit_json(&st, &app, None).await {
        Ok(k) => k,
        Err(e) => return server_error(&e),
    };
    let mut r = crate::http::json_no_store(StatusCode::OK, kit);
    r.headers_mut().insert(
        header::CONTENT_DISPOSITION,
        HeaderValue::from_static("attachment; filename=\"kit.json\""),
    );
    r
}

// ---------- app page ----------

#[tracing::instrument(skip_all)]
pub async fn get_app(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(app_id): Path<String>,
) -> Response {
    let mut dev = match signed_in(&st, &headers, None).await {
        Ok(d) => d,
        Err(r) => return r,
    };
    let (app, org, r) = match app_for(&st, &dev, &app_id).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let notice = take_flash(&st, &mut dev).await;
    let m = &app.metadata;
    let s = |k: &str| m.get(k).and_then(Value::as_str).unwrap_or("").to_owned();
    let keys_summary = if let Some(u) = m.get("jwks_uri").and_then(Value::as_str) {
        format!("published at {u}")
    } else {
        let n = m
            .get("jwks")
            .and_then(|j| j.get("keys"))
            .and_then(Value::as_array)
            .map_or(0, Vec::len);
        format!("{n} public key{} registered", if n == 1 { "" } else { "s" })
    };
    let cert_summary = match m.get("cert_pem").and_then(Value::as_str) {
        Some(_) => format!(
            "issued by the sandbox CA, subject {}",
            subject_dn(&app.client_id)
        ),
        None => "none yet: send a CSR below".into(),
    };
    let page = pui::AppPage {
        csrf: dev.session.csrf.clone(),
        id: app.id.clone(),
        name: app.name.clone(),
        org_id: org.id.clone(),
        org_name: org.name.clone(),
        status: app.status.clone(),
        client_id: app.client_id.clone(),
        auth_method: s("auth_method"),
        subject_dn: m
            .get("subject_dn")
            .and_then(Value::as_str)
            .map(str::to_owned),
        redirect_uris: m
            .get("redirect_uris")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default(),
        scope: s("scope"),
        keys_summary,
        cert_summary,
        golive_status: app.golive_status.clone(),
        golive_reason: app.golive_reason.clone(),
        production_client_id: app.production_client_id.clone(),
        can_manage: can_manage_apps(&r),
        notice,
        error: None,
    };
    render(pui::render_app(Some(&dev.nav()), &page), StatusCode::OK)
}

// ---------- CSR, keys, delete ----------

#[tracing::instrument(skip_all)]
pub async fn post_csr(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(app_id): Path<String>,
    body: Bytes,
) -> Response {
    let f = Form::parse(&body);
    let (mut dev, mut app, org) =
        match managed_app(&st, &headers, &f, &app_id, "change certificates").await {
            Ok(v) => v,
            Err(r) => return r,
        };
    let csr = f.get("csr").trim();
    let signed = match sandbox_ca(&st) {
        Ok(ca) => ca.sign_client_csr(csr, &app.client_id, CERT_ORG),
        Err(e) => return server_error(&e),
    };
    let back = format!("/portal/apps/{app_id}");
    let (pem, _der) = match signed {
        Ok(v) => v,
        Err(_) => {
            return message(
                Some(&dev.nav()),
                StatusCode::BAD_REQUEST,
                "Certificate request refused",
                "That is not a valid PKCS#10 certificate signing request (PEM, signed with its key).",
                ("Back to the app", &back),
            );
        }
    };
    app.metadata["cert_pem"] = json!(pem);
    app.updated_at = st.clock.now();
    let a = audit(
        &st,
        &org.id,
        Some(&app.id),
        &dev.rec.username,
        "certificate_issued",
        &format!("from a CSR, subject {}", subject_dn(&app.client_id)),
    )
    .await;
    let pst = match portal(&st) {
        Ok(p) => p,
        Err(r) => return r,
    };
    if let Err(e) = pst.update_app(&app, &a).await {
        return store_err(e);
    }
    flash_redirect(
        &st,
        &mut dev,
        "Certificate issued by the sandbox CA. Download the kit to get it.",
        &back,
    )
    .await
}

#[tracing::instrument(skip_all)]
pub async fn post_keys(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(app_id): Path<String>,
    body: Bytes,
) -> Response {
    let f = Form::parse(&body);
    let (mut dev, mut app, org) = match managed_app(&st, &headers, &f, &app_id, "rotate keys").await
    {
        Ok(v) => v,
        Err(r) => return r,
    };
    let back = format!("/portal/apps/{app_id}");
    let refuse = |dev: &Dev, msg: &str| {
        message(
            Some(&dev.nav()),
            StatusCode::BAD_REQUEST,
            "Keys refused",
            msg,
            ("Back to the app", &back),
        )
    };
    let mut generated = None;
    let jwks: Value = if f.get("jwks").trim().is_empty() {
        match SigningKey::generate(Alg::ES256, new_id(&app.client_id))
            .and_then(|k| Ok((k.to_private_jwk()?, k.public_jwk())))
        {
            Ok((private, public)) => {
                generated = Some(private);
                json!({"keys": [public]})
            }
            Err(e) => return server_error(&OAuthError::server_error(e.to_string())),
        }
    } else {
        match serde_json::from_str(f.get("jwks")) {
            Ok(v) => v,
            Err(_) => return refuse(&dev, "The JWKS is not valid JSON."),
        }
    };
    let m = &app.metadata;
    let strs = |k: &str| -> Vec<String> {
        m.get(k)
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    };
    let choice = ClientChoice {
        redirect_uris: strs("redirect_uris"),
        scope: m.get("scope").and_then(Value::as_str).unwrap_or("").into(),
        method: m
            .get("auth_method")
            .and_then(Value::as_str)
            .unwrap_or("")
            .into(),
        jwks: Some(jwks),
        jwks_uri: None,
    };
    let mut clients = vec![app.client_id.clone()];
    clients.extend(app.production_client_id.clone());
    for cid in &clients {
        let client = match build_client(&st, &org, &app.id, &app.name, cid, &choice).await {
            Ok(Ok((c, _))) => c,
            Ok(Err(msg)) => return refuse(&dev, &msg),
            Err(e) => return server_error(&e),
        };
        match update_client(&st, &client, None).await {
            Ok(true) => {}
            Ok(false) => return not_found(Some(&dev.nav())),
            Err(e) => return server_error(&e),
        }
        if cid == &app.client_id {
            app.metadata["jwks"] = serde_json::to_value(&client.jwks).unwrap_or(Value::Null);
            app.metadata["jwks_uri"] = Value::Null;
        }
    }
    app.updated_at = st.clock.now();
    let a = audit(
        &st,
        &org.id,
        Some(&app.id),
        &dev.rec.username,
        "keys_rotated",
        if generated.is_some() {
            "new key generated"
        } else {
            "public JWKS uploaded"
        },
    )
    .await;
    let pst = match portal(&st) {
        Ok(p) => p,
        Err(r) => return r,
    };
    if let Err(e) = pst.update_app(&app, &a).await {
        return store_err(e);
    }
    match generated {
        Some(private) => render(
            pui::render_secrets(
                Some(&dev.nav()),
                &pui::SecretsPage {
                    app_id: app.id.clone(),
                    app_name: app.name.clone(),
                    secrets: vec![(
                        format!("New private signing key ({}.jwk.json)", app.client_id),
                        serde_json::to_string_pretty(&private).unwrap_or_default(),
                    )],
                    kit_data_uri: format!(
                        "data:application/json;base64,{}",
                        base64::engine::general_purpose::STANDARD
                            .encode(serde_json::to_string_pretty(&private).unwrap_or_default())
                    ),
                },
            ),
            StatusCode::OK,
        ),
        None => flash_redirect(&st, &mut dev, "Signing keys replaced.", &back).await,
    }
}

#[tracing::instrument(skip_all)]
pub async fn post_delete(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(app_id): Path<String>,
    body: Bytes,
) -> Response {
    let f = Form::parse(&body);
    let (mut dev, mut app, org) = match managed_app(&st, &headers, &f, &app_id, "delete apps").await
    {
        Ok(v) => v,
        Err(r) => return r,
    };
    let actor = format!("portal:{}", dev.rec.username);
    let mut clients = vec![app.client_id.clone()];
    clients.extend(app.production_client_id.clone());
    for c in &clients {
        if let Err(e) = deregister(&st, c, &actor).await {
            return server_error(&e);
        }
    }
    app.status = "deleted".into();
    app.updated_at = st.clock.now();
    let a = audit(
        &st,
        &org.id,
        Some(&app.id),
        &dev.rec.username,
        "app_deleted",
        &format!("clients {} removed", clients.join(", ")),
    )
    .await;
    let pst = match portal(&st) {
        Ok(p) => p,
        Err(r) => return r,
    };
    if let Err(e) = pst.update_app(&app, &a).await {
        return store_err(e);
    }
    flash_redirect(
        &st,
        &mut dev,
        "App deleted; its clients no longer work.",
        &format!("/portal/orgs/{}", org.id),
    )
    .await
}

// ---------- go-live ----------

#[tracing::instrument(skip_all)]
pub async fn post_golive(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(app_id): Path<String>,
    body: Bytes,
) -> Response {
    let f = Form::parse(&body);
    let (mut dev, mut app, org) =
        match managed_app(&st, &headers, &f, &app_id, "request production access").await {
            Ok(v) => v,
            Err(r) => return r,
        };
    let back = format!("/portal/apps/{app_id}");
    if !(app.golive_status == "none" || app.golive_status == "rejected") {
        return message(
            Some(&dev.nav()),
            StatusCode::CONFLICT,
            "Already requested",
            "Production access was already requested or granted for this app.",
            ("Back to the app", &back),
        );
    }
    app.golive_status = "requested".into();
    app.golive_reason = String::new();
    app.updated_at = st.clock.now();
    let a = audit(
        &st,
        &org.id,
        Some(&app.id),
        &dev.rec.username,
        "golive_requested",
        &app.name,
    )
    .await;
    let pst = match portal(&st) {
        Ok(p) => p,
        Err(r) => return r,
    };
    if let Err(e) = pst.update_app(&app, &a).await {
        return store_err(e);
    }
    flash_redirect(
        &st,
        &mut dev,
        "Production access requested. A Wekeza reviewer will decide.",
        &back,
    )
    .await
}

#[allow(clippy::result_large_err)]
fn admin_only(dev: &Dev) -> Result<(), Response> {
    if dev.rec.is_admin {
        Ok(())
    } else {
        Err(not_found(Some(&dev.nav())))
    }
}

#[tracing::instrument(skip_all)]
pub async fn get_admin(State(st): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    let mut dev = match signed_in(&st, &headers, None).await {
        Ok(d) => d,
        Err(r) => return r,
    };
    if let Err(r) = admin_only(&dev) {
        return r;
    }
    let pst = match portal(&st) {
        Ok(p) => p,
        Err(r) => return r,
    };
    let apps = match pst.golive_requests().await {
        Ok(a) => a,
        Err(e) => return store_err(e),
    };
    let mut requests = Vec::new();
    for app in apps {
        let (org, members, audit_rows) = match async {
            Ok::<_, authz_store::StoreError>((
                pst.find_org(&app.org_id).await?,
                pst.members(&app.org_id).await?,
                pst.portal_audit(&app.org_id, 50).await?,
            ))
        }
        .await
        {
            Ok(v) => v,
            Err(e) => return store_err(e),
        };
        let Some(org) = org else { continue };
        let m = &app.metadata;
        requests.push(pui::GoLiveRequestView {
            app_id: app.id.clone(),
            app_name: app.name.clone(),
            org_id: org.id.clone(),
            org_name: org.name.clone(),
            org_created: p::when(org.created_at),
            members: members
                .iter()
                .map(|m| format!("{} <{}> ({})", m.username, m.email, m.role))
                .collect::<Vec<_>>()
                .join(", "),
            client_id: app.client_id.clone(),
            auth_method: m
                .get("auth_method")
                .and_then(Value::as_str)
                .unwrap_or("")
                .into(),
            redirect_uris: m
                .get("redirect_uris")
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(Value::as_str)
                        .collect::<Vec<_>>()
                        .join(" ")
                })
                .unwrap_or_default(),
            scope: m.get("scope").and_then(Value::as_str).unwrap_or("").into(),
            audit: audit_rows.into_iter().map(audit_view).collect(),
        });
    }
    let notice = take_flash(&st, &mut dev).await;
    render(
        pui::render_admin(
            Some(&dev.nav()),
            &pui::AdminPage {
                csrf: dev.session.csrf.clone(),
                requests,
                notice,
            },
        ),
        StatusCode::OK,
    )
}

#[tracing::instrument(skip_all)]
pub async fn post_decide(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(app_id): Path<String>,
    body: Bytes,
) -> Response {
    let f = Form::parse(&body);
    let mut dev = match signed_in(&st, &headers, Some(f.get("csrf"))).await {
        Ok(d) => d,
        Err(r) => return r,
    };
    if let Err(r) = admin_only(&dev) {
        return r;
    }
    let pst = match portal(&st) {
        Ok(p) => p,
        Err(r) => return r,
    };
    let (mut app, org) = match async {
        let app = pst.find_app(&app_id).await?;
        let org = match &app {
            Some(a) => pst.find_org(&a.org_id).await?,
            None => None,
        };
        Ok::<_, authz_store::StoreError>((app, org))
    }
    .await
    {
        Ok((Some(a), Some(o))) if a.golive_status == "requested" && a.status == "active" => (a, o),
        Ok(_) => return not_found(Some(&dev.nav())),
        Err(e) => return store_err(e),
    };
    let reason = f.get("reason").trim().to_owned();
    let decision = f.get("decision");
    if reason.is_empty()
        || reason.chars().count() > 300
        || !(decision == "approve" || decision == "reject")
    {
        return message(
            Some(&dev.nav()),
            StatusCode::BAD_REQUEST,
            "Reason needed",
            "Approve or reject with a reason of 1 to 300 characters.",
            ("Back to the reviews", "/portal/admin"),
        );
    }
    if decision == "approve" {
        let m = &app.metadata;
        let strs = |k: &str| -> Vec<String> {
            m.get(k)
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(|v| v.as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default()
        };
        let prod_id = new_id("prod");
        let choice = ClientChoice {
            redirect_uris: strs("redirect_uris"),
            scope: m.get("scope").and_then(Value::as_str).unwrap_or("").into(),
            method: m
                .get("auth_method")
                .and_then(Value::as_str)
                .unwrap_or("")
                .into(),
            jwks: m.get("jwks").filter(|j| !j.is_null()).cloned(),
            jwks_uri: m.get("jwks_uri").and_then(Value::as_str).map(str::to_owned),
        };
        let mut client = match build_client(&st, &org, &app.id, &app.name, &prod_id, &choice).await
        {
            Ok(Ok((c, _))) => c,
            Ok(Err(msg)) => {
                return message(
                    Some(&dev.nav()),
                    StatusCode::CONFLICT,
                    "Cannot approve",
                    &msg,
                    ("Back to the reviews", "/portal/admin"),
                );
            }
            Err(e) => return server_error(&e),
        };
        // The production client authenticates with the app's certificate too.
        if client.token_endpoint_auth_method == ClientAuthMethod::TlsClientAuth {
            client.tls_client_auth_subject_dn = Some(subject_dn(&app.client_id));
        }
        if let Err(e) = register(
            &st,
            &org,
            &app.id,
            &client,
            choice.jwks_uri.as_deref(),
            "production",
        )
        .await
        {
            return server_error(&e);
        }
        app.production_client_id = Some(prod_id);
        app.golive_status = "approved".into();
    } else {
        app.golive_status = "rejected".into();
    }
    app.golive_reason = reason.clone();
    app.updated_at = st.clock.now();
    let action = if decision == "approve" {
        "golive_approved"
    } else {
        "golive_rejected"
    };
    let a = audit(
        &st,
        &org.id,
        Some(&app.id),
        &dev.rec.username,
        action,
        &reason,
    )
    .await;
    if let Err(e) = pst.update_app(&app, &a).await {
        return store_err(e);
    }
    let done = if decision == "approve" {
        "approved"
    } else {
        "rejected"
    };
    flash_redirect(
        &st,
        &mut dev,
        &format!("{} {done}.", app.name),
        "/portal/admin",
    )
    .await
}
