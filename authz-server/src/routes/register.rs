//! Dynamic client registration (RFC 7591) and its management (RFC 7592) on the mTLS
//! listener. The rules are `authz_core::registration`'s; here: the certificate
//! requirement, the software statement's replay cache, fetching `jwks_uri` safely, the
//! registration access token (random, stored by digest, rotated on every PUT) and the
//! client cache (evicted here at once; other instances within `ClientCache::TTL_SECS`).
//! See ADR 0013.

use crate::client_auth::{cert_matches, store};
use crate::config::{Config, Mode};
use crate::http::{ApiError, ClientCert, PeerCert, json_no_store};
use crate::state::AppState;
use anyhow::Context;
use authz_core::client::{Client, ClientAuthMethod, GrantType};
use authz_core::logo::{LogoSource, MAX_LOGO_BYTES, check_logo};
use authz_core::registration::{
    SoftwareStatement, Supported, TrustAnchor, Validated, is_public_address, validate_request,
    verify_software_statement,
};
use authz_core::{ErrorCode, OAuthError};
use authz_store::{ClientRecord, RegistrationRecord, RegistrationStore};
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use std::sync::Arc;
use std::time::Duration;

/// Registration configuration, built once at start.
pub struct Dcr {
    pub anchor: TrustAnchor,
    /// Sandbox only: `jwks_uri` may point at loopback (the developer's machine).
    pub allow_loopback_jwks_uri: bool,
    /// Extra trust roots for fetching `jwks_uri` (the sandbox CA), PEM.
    pub extra_roots_pem: Option<String>,
}

/// Room for a 64 KiB logo inline as a data: URI (base64: 4/3) next to the metadata.
const MAX_BODY: usize = 128 * 1024;
const MAX_JWKS_BYTES: usize = 64 * 1024;

impl Dcr {
    /// Registration is on in sandbox mode (anchor: the sandbox directory, generated on
    /// first start) and, in production, when `software_statement_jwks_file` is set.
    pub fn configure(
        cfg: &Config,
        sandbox: Option<&mut crate::provision::Sandbox>,
        now: i64,
    ) -> anyhow::Result<Option<Arc<Self>>> {
        let from_file = |p: &std::path::Path| -> anyhow::Result<Vec<fapi_jose::Jwk>> {
            let bytes = std::fs::read(p).with_context(|| format!("reading {}", p.display()))?;
            let jwks: fapi_jose::Jwks = serde_json::from_slice(&bytes)
                .with_context(|| format!("{} is not a JWKS", p.display()))?;
            Ok(jwks.keys)
        };
        let (keys, issuer, roots) = match (cfg.mode, sandbox) {
            (Mode::Sandbox, Some(sb)) => {
                let dir = crate::provision::sandbox_directory(
                    &cfg.keys_dir,
                    sb,
                    now,
                    cfg.software_statement_max_age_secs,
                )?;
                let mut keys = dir.keys;
                if let Some(p) = &cfg.software_statement_jwks_file {
                    keys.extend(from_file(p)?);
                }
                (
                    keys,
                    cfg.software_statement_issuer
                        .clone()
                        .unwrap_or_else(|| crate::provision::SANDBOX_DIRECTORY_ISSUER.into()),
                    Some(sb.client_ca_pem.clone()),
                )
            }
            _ => match (
                &cfg.software_statement_jwks_file,
                &cfg.software_statement_issuer,
            ) {
                (Some(p), Some(iss)) => (from_file(p)?, iss.clone(), None),
                _ => return Ok(None),
            },
        };
        Ok(Some(Arc::new(Self {
            anchor: TrustAnchor {
                issuer,
                keys,
                max_age_secs: cfg.software_statement_max_age_secs,
            },
            allow_loopback_jwks_uri: cfg.mode == Mode::Sandbox,
            extra_roots_pem: roots,
        })))
    }
}

fn reg_err(code: ErrorCode, d: &'static str) -> ApiError {
    ApiError(OAuthError::new(code, d))
}

/// Registration storage and configuration, when registration is on.
fn enabled(st: &AppState) -> Option<(&Dcr, &dyn RegistrationStore)> {
    Some((st.dcr.as_deref()?, st.store.registrations()?))
}

/// Off (no trust anchor configured): the endpoints do not exist.
fn not_found() -> Response {
    (
        StatusCode::NOT_FOUND,
        axum::Json(json!({"error": "not_found", "error_description": "no such endpoint"})),
    )
        .into_response()
}

/// RFC 7591 §3: registration requests come over mutual TLS with a certificate from the
/// TPP CA (the handshake has verified it).
fn need_cert(cert: Option<PeerCert>) -> Result<PeerCert, ApiError> {
    cert.ok_or_else(|| {
        ApiError(OAuthError::invalid_client(
            "client registration requires a client certificate (mutual TLS)",
        ))
    })
}

fn json_body(headers: &HeaderMap, body: &Bytes) -> Result<Value, ApiError> {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !ct
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .eq_ignore_ascii_case("application/json")
    {
        return Err(reg_err(
            ErrorCode::InvalidClientMetadata,
            "content type must be application/json",
        ));
    }
    if body.len() > MAX_BODY {
        return Err(reg_err(
            ErrorCode::InvalidClientMetadata,
            "request body is too large",
        ));
    }
    let v: Value = serde_json::from_slice(body).map_err(|_| {
        reg_err(
            ErrorCode::InvalidClientMetadata,
            "request body is not a JSON object",
        )
    })?;
    if !v.is_object() {
        return Err(reg_err(
            ErrorCode::InvalidClientMetadata,
            "request body is not a JSON object",
        ));
    }
    Ok(v)
}

pub(crate) fn supported() -> Supported<'static> {
    Supported {
        scopes: &authz_core::discovery::SCOPES,
        authorization_details_types: openbanking::RAR_TYPES_SUPPORTED,
    }
}

/// The statement in the request, verified (signature, issuer, times, claims).
fn statement_of(
    st: &AppState,
    dcr: &Dcr,
    body: &Value,
) -> Result<Option<(String, SoftwareStatement)>, ApiError> {
    match body.get("software_statement") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(jwt)) => {
            let s = verify_software_statement(jwt, &dcr.anchor, st.clock.now())?;
            Ok(Some((jwt.clone(), s)))
        }
        Some(_) => Err(reg_err(
            ErrorCode::InvalidSoftwareStatement,
            "software_statement must be a JWT string",
        )),
    }
}

/// `jti` single use (RFC 7591 leaves replay to us; a statement is a bearer credential).
async fn consume_statement(st: &AppState, s: &SoftwareStatement) -> Result<(), ApiError> {
    let now = st.clock.now();
    let key = crate::digest(&format!("{}\u{0}{}", s.software_id, s.jti));
    if !st
        .eph
        .insert_if_absent("ssa", &key, "1", s.exp.max(now + 1), now)
        .await
        .map_err(store)?
    {
        return Err(reg_err(
            ErrorCode::InvalidSoftwareStatement,
            "software_statement has already been used",
        ));
    }
    Ok(())
}

/// Fetch a document the client registered by URL (`jwks_uri`, `logo_uri`): https only,
/// every resolved address public (loopback too in sandbox), the connection pinned to the
/// checked address (no DNS rebinding), no redirects, 5 s, at most `max` bytes. Returns
/// the body and the declared content type.
async fn fetch_registered(
    dcr: &Dcr,
    url: url::Url,
    max: usize,
    what: &str,
) -> Result<(Vec<u8>, Option<String>), ApiError> {
    let bad = |d: &str| {
        ApiError(OAuthError::new(
            ErrorCode::InvalidClientMetadata,
            format!("{what} {d}"),
        ))
    };
    let host = url.host_str().unwrap_or_default().to_owned();
    let port = url.port_or_known_default().unwrap_or(443);
    let lookup_host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    let addrs: Vec<std::net::SocketAddr> = tokio::time::timeout(
        Duration::from_secs(3),
        tokio::net::lookup_host((lookup_host.as_str(), port)),
    )
    .await
    .map_err(|_| bad("host could not be resolved"))?
    .map_err(|_| bad("host could not be resolved"))?
    .collect();
    let allowed = |ip: std::net::IpAddr| {
        is_public_address(ip) || (dcr.allow_loopback_jwks_uri && ip.is_loopback())
    };
    if addrs.is_empty() || !addrs.iter().all(|a| allowed(a.ip())) {
        return Err(bad("must resolve to public addresses only"));
    }
    let mut b = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(5))
        .resolve_to_addrs(&lookup_host, &addrs);
    if let Some(pem) = &dcr.extra_roots_pem
        && let Ok(c) = reqwest::Certificate::from_pem(pem.as_bytes())
    {
        b = b.tls_certs_merge([c]);
    }
    let http = b
        .build()
        .map_err(|e| ApiError(OAuthError::server_error(format!("{what} client: {e}"))))?;
    let mut resp = http
        .get(url)
        .send()
        .await
        .map_err(|_| bad("could not be fetched"))?;
    if !resp.status().is_success() {
        return Err(bad("did not answer 200"));
    }
    let content_type = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let mut buf = Vec::new();
    while let Some(chunk) = resp
        .chunk()
        .await
        .map_err(|_| bad("could not be fetched"))?
    {
        buf.extend_from_slice(&chunk);
        if buf.len() > max {
            return Err(bad("document is too large"));
        }
    }
    Ok((buf, content_type))
}

pub(crate) async fn fetch_jwks(dcr: &Dcr, uri: &str) -> Result<Value, ApiError> {
    let url = authz_core::registration::check_jwks_uri(uri)?;
    let (buf, _) = fetch_registered(dcr, url, MAX_JWKS_BYTES, "jwks_uri").await?;
    serde_json::from_slice(&buf).map_err(|_| {
        reg_err(
            ErrorCode::InvalidClientMetadata,
            "jwks_uri is not a JWKS document",
        )
    })
}

/// A logo checked and ready to store: content type and bytes.
type CheckedLogo = (&'static str, Vec<u8>);

/// `logo_uri` copied in once: decoded (data: URI) or fetched, then checked. The consent
/// page serves our copy; the TPP's server is never contacted by a customer's browser.
async fn fetch_logo(dcr: &Dcr, src: LogoSource) -> Result<CheckedLogo, ApiError> {
    let (bytes, declared) = match src {
        LogoSource::Inline {
            bytes,
            content_type,
        } => (bytes, Some(content_type)),
        LogoSource::Https(url) => fetch_registered(dcr, url, MAX_LOGO_BYTES, "logo_uri").await?,
    };
    let kind = check_logo(&bytes, declared.as_deref()).map_err(|e| {
        ApiError(OAuthError::new(
            ErrorCode::InvalidClientMetadata,
            format!("logo_uri: {e}"),
        ))
    })?;
    Ok((kind.content_type(), bytes))
}

/// Validation, keys and the certificate rule shared by POST and PUT.
async fn build_client(
    dcr: &Dcr,
    body: &Value,
    statement: &SoftwareStatement,
    client_id: &str,
    cert: &PeerCert,
) -> Result<Built, ApiError> {
    let mut v: Validated = validate_request(body, statement, client_id, &supported())?;
    let fetched = match &v.jwks_uri {
        Some(u) => Some(fetch_jwks(dcr, u).await?),
        None => None,
    };
    let logo = match v.logo.take() {
        Some(src) => Some(fetch_logo(dcr, src).await?),
        None => None,
    };
    let jwks_uri = v.jwks_uri.clone();
    let client = v.finish(fetched.as_ref())?;
    // Proof of possession: a client authenticated by certificate is registered only by
    // the holder of that certificate.
    if client.token_endpoint_auth_method == ClientAuthMethod::TlsClientAuth
        && !cert_matches(&client, &cert.der)
    {
        return Err(reg_err(
            ErrorCode::InvalidClientMetadata,
            "tls_client_auth_subject_dn must be the subject of the certificate presented on this request",
        ));
    }
    Ok(Built {
        client,
        jwks_uri,
        logo,
    })
}

/// What POST and PUT store.
struct Built {
    client: Client,
    jwks_uri: Option<String>,
    logo: Option<CheckedLogo>,
}

/// RFC 7591 §3.2.1 / RFC 7592 §3: the client's metadata plus the registration's.
fn client_info(st: &AppState, client: &Client, reg: &RegistrationRecord, token: &str) -> Value {
    let mut v = serde_json::to_value(client).unwrap_or_else(|_| json!({}));
    if let Some(o) = v.as_object_mut() {
        o.remove("introspection_allowed");
        let code = client.grant_types.contains(&GrantType::AuthorizationCode);
        o.insert(
            "response_types".into(),
            if code { json!(["code"]) } else { json!([]) },
        );
        if let Some(u) = reg.metadata.get("jwks_uri").filter(|u| u.is_string()) {
            o.remove("jwks");
            o.insert("jwks_uri".into(), u.clone());
        }
        if client.jwks.keys.is_empty() {
            o.remove("jwks");
        }
        o.insert("client_id_issued_at".into(), json!(reg.created_at));
        o.insert("registration_access_token".into(), json!(token));
        o.insert(
            "registration_client_uri".into(),
            json!(format!("{}/register/{}", st.mtls_base, client.client_id)),
        );
        if reg
            .metadata
            .get("logo_sha256")
            .is_some_and(Value::is_string)
        {
            // Our copy, the one the consent page shows (RFC 7591 §3.2.1 lets the server
            // substitute values it provisions).
            o.insert(
                "logo_uri".into(),
                json!(crate::logo::logo_path_abs(&st.issuer, &client.client_id)),
            );
        }
        o.insert("software_id".into(), json!(reg.software_id));
        o.insert("org_id".into(), json!(reg.org_id));
        if let Some(s) = reg.metadata.get("software_statement") {
            o.insert("software_statement".into(), s.clone());
        }
    }
    v
}

fn reg_metadata(jwt: &str, s: &SoftwareStatement, jwks_uri: Option<&str>) -> Value {
    json!({"software_statement": jwt, "statement": s, "jwks_uri": jwks_uri})
}

#[tracing::instrument(skip_all)]
pub async fn post_register(
    State(st): State<Arc<AppState>>,
    ClientCert(cert): ClientCert,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (dcr, regs) = match enabled(&st) {
        Some(x) => x,
        None => return not_found(),
    };
    register(&st, dcr, regs, cert, &headers, &body)
        .await
        .unwrap_or_else(IntoResponse::into_response)
}

async fn register(
    st: &AppState,
    dcr: &Dcr,
    regs: &dyn RegistrationStore,
    cert: Option<PeerCert>,
    headers: &HeaderMap,
    body: &Bytes,
) -> Result<Response, ApiError> {
    let cert = need_cert(cert)?;
    let body = json_body(headers, body)?;
    let (jwt, statement) = statement_of(st, dcr, &body)?.ok_or_else(|| {
        reg_err(
            ErrorCode::InvalidSoftwareStatement,
            "a software_statement from the trusted directory is required",
        )
    })?;
    let client_id = format!("dcr-{}", crate::random_token(16));
    let Built {
        client,
        jwks_uri,
        logo,
    } = build_client(dcr, &body, &statement, &client_id, &cert).await?;
    consume_statement(st, &statement).await?;
    let now = st.clock.now();
    let token = crate::random_token(32);
    let mut metadata = reg_metadata(&jwt, &statement, jwks_uri.as_deref());
    // The logo goes in first, under the fresh (unguessable, not yet used) client id: if
    // the registration then fails it is removed; a left-over row names no client.
    let saved_logo = match (&logo, st.store.logos()) {
        (Some((ct, bytes)), Some(logos)) => {
            let saved = logos.put_logo(&client_id, ct, bytes, now).await?;
            metadata["logo_sha256"] = json!(saved.sha256);
            Some(logos)
        }
        _ => None,
    };
    let reg = RegistrationRecord {
        client_id: client_id.clone(),
        token_digest: crate::digest(&token),
        software_id: statement.software_id.clone(),
        org_id: statement.org_id.clone(),
        metadata,
        created_at: now,
        updated_at: now,
    };
    let rec = ClientRecord {
        client_id: client_id.clone(),
        metadata: serde_json::to_value(&client)
            .map_err(|e| ApiError(OAuthError::server_error(e.to_string())))?,
        created_at: now,
        updated_at: now,
    };
    if let Err(e) = regs.insert_registration(&rec, &reg).await {
        if let Some(logos) = saved_logo {
            let _ = logos.delete_logo(&client_id).await;
        }
        return Err(e.into());
    }
    tracing::info!(client_id = %client_id, software_id = %reg.software_id, org_id = %reg.org_id, "client registered");
    Ok(json_no_store(
        StatusCode::CREATED,
        client_info(st, &client, &reg, &token),
    ))
}

/// RFC 7592 §2: the registration access token, as a Bearer token, for this client.
async fn authorize_management(
    regs: &dyn RegistrationStore,
    headers: &HeaderMap,
    client_id: &str,
) -> Result<(RegistrationRecord, String), ApiError> {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.get(..7)
                .filter(|p| p.eq_ignore_ascii_case("bearer "))
                .map(|_| v[7..].trim())
        })
        .filter(|t| !t.is_empty())
        .ok_or_else(|| {
            ApiError(OAuthError::invalid_token(
                "the registration access token is required as a Bearer token",
            ))
        })?;
    let reg = regs.find_registration(client_id).await?;
    match reg {
        // Digests compared: equal-length, and the stored value is not the secret.
        Some(r) if r.token_digest == crate::digest(token) => {
            crate::gateway::admit_oauth(client_id).await?;
            Ok((r, token.to_owned()))
        }
        _ => Err(ApiError(OAuthError::invalid_token(
            "the registration access token is not valid for this client",
        ))),
    }
}

async fn load_client(st: &AppState, id: &str) -> Result<Client, ApiError> {
    let rec = st.store.find_client(id).await?.ok_or_else(|| {
        ApiError(OAuthError::invalid_token(
            "the registration access token is not valid for this client",
        ))
    })?;
    serde_json::from_value(rec.metadata)
        .map_err(|e| ApiError(OAuthError::server_error(format!("client {id}: {e}"))))
}

#[tracing::instrument(skip_all)]
pub async fn get_client(
    State(st): State<Arc<AppState>>,
    ClientCert(cert): ClientCert,
    Path(client_id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let (_, regs) = match enabled(&st) {
        Some(x) => x,
        None => return not_found(),
    };
    async {
        need_cert(cert)?;
        let (reg, token) = authorize_management(regs, &headers, &client_id).await?;
        let client = load_client(&st, &client_id).await?;
        Ok::<_, ApiError>(json_no_store(
            StatusCode::OK,
            client_info(&st, &client, &reg, &token),
        ))
    }
    .await
    .unwrap_or_else(IntoResponse::into_response)
}

#[tracing::instrument(skip_all)]
pub async fn put_client(
    State(st): State<Arc<AppState>>,
    ClientCert(cert): ClientCert,
    Path(client_id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (dcr, regs) = match enabled(&st) {
        Some(x) => x,
        None => return not_found(),
    };
    update(&st, dcr, regs, cert, &client_id, &headers, &body)
        .await
        .unwrap_or_else(IntoResponse::into_response)
}

async fn update(
    st: &AppState,
    dcr: &Dcr,
    regs: &dyn RegistrationStore,
    cert: Option<PeerCert>,
    client_id: &str,
    headers: &HeaderMap,
    body: &Bytes,
) -> Result<Response, ApiError> {
    let cert = need_cert(cert)?;
    let (reg, _) = authorize_management(regs, headers, client_id).await?;
    let body = json_body(headers, body)?;
    // RFC 7592 §2.2: the body names the client and carries no registration secrets.
    if body.get("client_id").and_then(Value::as_str) != Some(client_id) {
        return Err(reg_err(
            ErrorCode::InvalidClientMetadata,
            "client_id must be sent and match the client being updated",
        ));
    }
    for k in [
        "registration_access_token",
        "registration_client_uri",
        "client_id_issued_at",
        "client_secret",
        "client_secret_expires_at",
    ] {
        if body.get(k).is_some() {
            return Err(reg_err(
                ErrorCode::InvalidClientMetadata,
                "registration fields (registration_access_token, ...) must not be sent",
            ));
        }
    }
    // A new statement may replace the stored one, for the same software and org only;
    // without one, the stored statement still bounds what may be registered.
    let (jwt, statement, fresh) = match statement_of(st, dcr, &body)? {
        Some((jwt, s)) => {
            if s.software_id != reg.software_id || s.org_id != reg.org_id {
                return Err(reg_err(
                    ErrorCode::InvalidSoftwareStatement,
                    "software_statement is for other software or another organisation",
                ));
            }
            (jwt, s, true)
        }
        None => {
            let s: SoftwareStatement =
                serde_json::from_value(reg.metadata.get("statement").cloned().unwrap_or_default())
                    .map_err(|e| {
                        ApiError(OAuthError::server_error(format!(
                            "registration {client_id}: {e}"
                        )))
                    })?;
            let jwt = reg
                .metadata
                .get("software_statement")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned();
            (jwt, s, false)
        }
    };
    let Built {
        client,
        jwks_uri,
        logo,
    } = build_client(dcr, &body, &statement, client_id, &cert).await?;
    if fresh {
        consume_statement(st, &statement).await?;
    }
    let now = st.clock.now();
    // Rotated on every update (RFC 7592 §2.2 allows it): a leaked token is good only
    // until the client's next update, and the old one stops working at once.
    let token = crate::random_token(32);
    let mut metadata = reg_metadata(&jwt, &statement, jwks_uri.as_deref());
    if let Some((_, bytes)) = &logo {
        metadata["logo_sha256"] = json!(hex::encode(Sha256::digest(bytes)));
    }
    let new_reg = RegistrationRecord {
        token_digest: crate::digest(&token),
        metadata,
        updated_at: now,
        ..reg.clone()
    };
    let rec = ClientRecord {
        client_id: client_id.to_owned(),
        metadata: serde_json::to_value(&client)
            .map_err(|e| ApiError(OAuthError::server_error(e.to_string())))?,
        created_at: reg.created_at,
        updated_at: now,
    };
    if !regs
        .update_registration(&rec, &new_reg, &reg.token_digest)
        .await?
    {
        return Err(ApiError(OAuthError::invalid_token(
            "the registration access token is not valid for this client",
        )));
    }
    // RFC 7592 §2.2: the update replaces the metadata, so a logo not sent is removed.
    if let Some(logos) = st.store.logos() {
        match &logo {
            Some((ct, bytes)) => {
                logos.put_logo(client_id, ct, bytes, now).await?;
            }
            None => {
                logos.delete_logo(client_id).await?;
            }
        }
    }
    st.client_cache.remove(client_id);
    tracing::info!(client_id = %client_id, "client registration updated");
    Ok(json_no_store(
        StatusCode::OK,
        client_info(st, &client, &new_reg, &token),
    ))
}

#[tracing::instrument(skip_all)]
pub async fn delete_client(
    State(st): State<Arc<AppState>>,
    ClientCert(cert): ClientCert,
    Path(client_id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let (_, regs) = match enabled(&st) {
        Some(x) => x,
        None => return not_found(),
    };
    async {
        need_cert(cert)?;
        let (reg, _) = authorize_management(regs, &headers, &client_id).await?;
        let done = regs
            .delete_registration(
                &client_id,
                &reg.token_digest,
                &format!("client:{client_id}"),
                st.clock.now(),
            )
            .await?
            .ok_or_else(|| {
                ApiError(OAuthError::invalid_token(
                    "the registration access token is not valid for this client",
                ))
            })?;
        st.client_cache.remove(&client_id);
        tracing::info!(client_id = %client_id, consents_revoked = done.consents_revoked, refresh_tokens_revoked = done.refresh_tokens_revoked, "client deregistered");
        let mut r = StatusCode::NO_CONTENT.into_response();
        crate::http::no_store(r.headers_mut());
        Ok::<_, ApiError>(r)
    }
    .await
    .unwrap_or_else(IntoResponse::into_response)
}
