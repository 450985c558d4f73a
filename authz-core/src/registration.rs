//! Dynamic client registration (RFC 7591, management RFC 7592) under the FAPI 2.0
//! profile, with no I/O: the software statement is verified against the trust anchor's
//! keys handed in, the request is checked and turned into a [`Client`]; fetching a
//! `jwks_uri` is the caller's job (between [`validate_request`] and [`Validated::finish`]),
//! with [`is_public_address`] as the SSRF rule for where it may connect.
//!
//! Rules: software statement required, PS256/ES256, from the configured issuer, fresh,
//! `jti` single use (the caller checks the replay cache with [`SoftwareStatement::jti`]);
//! its claims win over the request's, and a request value that disagrees is refused.
//! Redirect URIs https, no fragment, within the statement's list; `private_key_jwt` or
//! `tls_client_auth` only (FAPI 2.0 §5.3.2.1-6); PS256/ES256/EdDSA only (§5.4.1);
//! `jwks` (public keys usable with those algorithms) or `jwks_uri` (https), never both;
//! `tls_client_auth_subject_dn` required for `tls_client_auth`; grant and response types
//! consistent and limited to `code`, `refresh_token`, `client_credentials`; scopes and
//! `authorization_details_types` within what the server supports and the software's roles.

use crate::client::{Client, ClientAuthMethod, GrantType};
use crate::error::{ErrorCode, OAuthError, OAuthResult};
use crate::scope::Scope;
use fapi_jose::{Alg, Jwk, Jwks, Unverified};
use serde_json::{Map, Value};
use std::net::IpAddr;

/// Largest JWKS accepted (by value or fetched): a client needs a handful of keys.
pub const MAX_KEYS: usize = 16;
/// Allowed clock difference for the statement's `iat`.
pub const SKEW_SECS: i64 = 60;

fn err(code: ErrorCode, d: impl Into<std::borrow::Cow<'static, str>>) -> OAuthError {
    OAuthError::new(code, d)
}
fn metadata(d: impl Into<std::borrow::Cow<'static, str>>) -> OAuthError {
    err(ErrorCode::InvalidClientMetadata, d)
}
fn statement_err(d: impl Into<std::borrow::Cow<'static, str>>) -> OAuthError {
    err(ErrorCode::InvalidSoftwareStatement, d)
}

/// The directory whose software statements this server accepts.
#[derive(Debug, Clone)]
pub struct TrustAnchor {
    /// Expected `iss` of statements.
    pub issuer: String,
    pub keys: Vec<Jwk>,
    /// Statements issued longer ago than this are refused even if unexpired.
    pub max_age_secs: i64,
}

/// A verified software statement (claim names as in the UK OB directory's SSA).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SoftwareStatement {
    pub jti: String,
    pub iat: i64,
    pub exp: i64,
    pub software_id: String,
    pub software_client_name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub software_client_uri: Option<String>,
    /// The logo the directory holds for the software (copied in at registration).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub software_logo_uri: Option<String>,
    pub software_redirect_uris: Vec<String>,
    pub org_id: String,
    pub org_name: String,
    /// e.g. `AISP`, `PISP`: which resource scopes the software may ask for.
    pub software_roles: Vec<String>,
}

impl SoftwareStatement {
    /// Scopes the software's roles allow (plus the OpenID ones any client may ask for).
    pub fn allowed_scopes(&self) -> Vec<&'static str> {
        let mut v = vec!["openid", "profile", "offline_access"];
        if self.software_roles.iter().any(|r| r == "AISP") {
            v.push("accounts");
        }
        if self.software_roles.iter().any(|r| r == "PISP") {
            v.push("payments");
        }
        v
    }
}

/// Verify a software statement: signature by the anchor (PS256/ES256 only), `iss`, `iat`
/// (not in the future, not older than the anchor's maximum age), `exp`, and the claims.
/// A statement that is well formed but not signed by the anchor, or issued by someone
/// else, is `unapproved_software_statement`; anything malformed, unsigned, expired or
/// stale is `invalid_software_statement`.
pub fn verify_software_statement(
    jwt: &str,
    anchor: &TrustAnchor,
    now: i64,
) -> OAuthResult<SoftwareStatement> {
    let u = Unverified::parse(jwt)
        .map_err(|_| statement_err("software_statement is not a compact JWS"))?;
    match u.alg() {
        Ok(Alg::PS256 | Alg::ES256) => {}
        _ => {
            return Err(statement_err(
                "software_statement must be signed with PS256 or ES256",
            ));
        }
    }
    if u.verify_with_set(&anchor.keys).is_err() {
        return Err(err(
            ErrorCode::UnapprovedSoftwareStatement,
            "software_statement is not signed by a trusted directory",
        ));
    }
    let c = &u.claims;
    if c.get("iss").and_then(Value::as_str) != Some(anchor.issuer.as_str()) {
        return Err(err(
            ErrorCode::UnapprovedSoftwareStatement,
            "software_statement was not issued by the trusted directory",
        ));
    }
    let int = |k: &str| c.get(k).and_then(Value::as_i64);
    let (Some(iat), Some(exp)) = (int("iat"), int("exp")) else {
        return Err(statement_err("software_statement needs iat and exp"));
    };
    if exp <= now {
        return Err(statement_err("software_statement has expired"));
    }
    if iat > now + SKEW_SECS {
        return Err(statement_err("software_statement is issued in the future"));
    }
    if now - iat > anchor.max_age_secs {
        return Err(statement_err("software_statement is too old"));
    }
    let s: SoftwareStatement = serde_json::from_value(c.clone()).map_err(|_| {
        statement_err(
            "software_statement needs jti, software_id, software_client_name, software_redirect_uris, org_id, org_name and software_roles",
        )
    })?;
    for (name, v) in [
        ("jti", &s.jti),
        ("software_id", &s.software_id),
        ("org_id", &s.org_id),
        ("software_client_name", &s.software_client_name),
    ] {
        if v.trim().is_empty() || v.len() > 255 {
            return Err(statement_err(format!(
                "software_statement {name} must be 1 to 255 characters"
            )));
        }
    }
    for uri in &s.software_redirect_uris {
        check_redirect_uri(uri)
            .map_err(|e| statement_err(format!("software_redirect_uris: {}", e.description)))?;
    }
    Ok(s)
}

/// FAPI redirect URI rules for registration: absolute https, a host, no fragment, no
/// wildcard (compared exactly later).
pub fn check_redirect_uri(uri: &str) -> OAuthResult<()> {
    let bad = |d: &'static str| Err(err(ErrorCode::InvalidRedirectUri, d));
    let Ok(url) = url::Url::parse(uri) else {
        return bad("redirect_uri is not an absolute URI");
    };
    if url.scheme() != "https" {
        return bad("redirect_uri must use https");
    }
    if uri.contains('#') {
        return bad("redirect_uri must not contain a fragment");
    }
    if url.host_str().is_none_or(str::is_empty) || uri.contains('*') {
        return bad("redirect_uri needs an exact host");
    }
    if !url.username().is_empty() || url.password().is_some() {
        return bad("redirect_uri must not carry credentials");
    }
    Ok(())
}

/// What the server supports, for the checks that depend on it.
pub struct Supported<'a> {
    pub scopes: &'a [&'a str],
    pub authorization_details_types: &'a [&'a str],
}

/// A request that passed every check except those needing the keys of a `jwks_uri`.
#[derive(Debug, Clone)]
pub struct Validated {
    pub client: Client,
    /// To be fetched (https, public address) and passed to [`Validated::finish`].
    pub jwks_uri: Option<String>,
    /// The logo to copy in (`logo_uri`, else the statement's `software_logo_uri`): fetched
    /// or decoded by the caller, then checked with [`crate::logo::check_logo`].
    pub logo: Option<crate::logo::LogoSource>,
}

impl Validated {
    /// Add the keys fetched from `jwks_uri` (their JSON) and run the final checks.
    pub fn finish(mut self, fetched_jwks: Option<&Value>) -> OAuthResult<Client> {
        match (&self.jwks_uri, fetched_jwks) {
            (Some(_), Some(v)) => self.client.jwks = check_jwks(v)?,
            (Some(_), None) => return Err(metadata("the keys of jwks_uri are needed")),
            (None, _) => {}
        }
        if self.client.token_endpoint_auth_method == ClientAuthMethod::PrivateKeyJwt
            && self.client.jwks.keys.is_empty()
        {
            return Err(metadata("private_key_jwt needs jwks or jwks_uri"));
        }
        self.client
            .validate()
            .map_err(|e| metadata(e.description))?;
        Ok(self.client)
    }
}

fn str_field<'a>(m: &'a Map<String, Value>, k: &str) -> OAuthResult<Option<&'a str>> {
    match m.get(k) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(metadata(format!("{k} must be a string"))),
    }
}

fn str_list(m: &Map<String, Value>, k: &str) -> OAuthResult<Option<Vec<String>>> {
    match m.get(k) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Array(a)) => a
            .iter()
            .map(|v| {
                v.as_str()
                    .map(str::to_owned)
                    .ok_or_else(|| metadata(format!("{k} must be an array of strings")))
            })
            .collect::<OAuthResult<Vec<_>>>()
            .map(Some),
        Some(_) => Err(metadata(format!("{k} must be an array of strings"))),
    }
}

fn bool_field(m: &Map<String, Value>, k: &str) -> OAuthResult<Option<bool>> {
    match m.get(k) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(_) => Err(metadata(format!("{k} must be a boolean"))),
    }
}

fn fapi_alg(m: &Map<String, Value>, k: &str) -> OAuthResult<Option<Alg>> {
    match str_field(m, k)? {
        None => Ok(None),
        Some(s) => Alg::parse(s)
            .map(Some)
            .map_err(|_| metadata(format!("{k} must be PS256, ES256 or EdDSA"))),
    }
}

/// Check a request (RFC 7591 §2 metadata as a JSON object, `software_statement` already
/// taken out and verified) and build the client it registers as `client_id`.
pub fn validate_request(
    request: &Value,
    statement: &SoftwareStatement,
    client_id: &str,
    supported: &Supported<'_>,
) -> OAuthResult<Validated> {
    let m = request
        .as_object()
        .ok_or_else(|| metadata("the request body must be a JSON object"))?;

    // The statement's claims win; a request that says something else is refused.
    let name = match str_field(m, "client_name")? {
        Some(n) if n != statement.software_client_name => {
            return Err(metadata(
                "client_name conflicts with the software statement's software_client_name",
            ));
        }
        _ => statement.software_client_name.clone(),
    };
    if let Some(id) = str_field(m, "software_id")?
        && id != statement.software_id
    {
        return Err(metadata(
            "software_id conflicts with the software statement",
        ));
    }
    let client_uri = match (str_field(m, "client_uri")?, &statement.software_client_uri) {
        (Some(r), Some(s)) if r != s => {
            return Err(metadata("client_uri conflicts with the software statement"));
        }
        (r, s) => s.clone().or(r.map(str::to_owned)),
    };
    if let Some(u) = &client_uri {
        let ok = url::Url::parse(u).is_ok_and(|u| u.scheme() == "https");
        if !ok {
            return Err(metadata("client_uri must be an https URL"));
        }
    }
    let logo = match (str_field(m, "logo_uri")?, &statement.software_logo_uri) {
        (Some(r), Some(s)) if r != s => {
            return Err(metadata("logo_uri conflicts with the software statement"));
        }
        (r, s) => s.as_deref().or(r),
    };
    let logo = logo
        .map(crate::logo::parse_logo_uri)
        .transpose()
        .map_err(|e| metadata(format!("logo_uri: {e}")))?;

    let method = match str_field(m, "token_endpoint_auth_method")? {
        Some("private_key_jwt") => ClientAuthMethod::PrivateKeyJwt,
        Some("tls_client_auth") => ClientAuthMethod::TlsClientAuth,
        Some(_) => {
            return Err(metadata(
                "token_endpoint_auth_method must be private_key_jwt or tls_client_auth",
            ));
        }
        // RFC 7591's default (client_secret_basic) is not a FAPI method.
        None => {
            return Err(metadata(
                "token_endpoint_auth_method is required (private_key_jwt or tls_client_auth)",
            ));
        }
    };
    fapi_alg(m, "token_endpoint_auth_signing_alg")?;
    fapi_alg(m, "request_object_signing_alg")?;
    let id_alg = fapi_alg(m, "id_token_signed_response_alg")?.unwrap_or(Alg::ES256);
    let jarm_alg = fapi_alg(m, "authorization_signed_response_alg")?;
    for k in [
        "userinfo_signed_response_alg",
        "introspection_signed_response_alg",
    ] {
        fapi_alg(m, k)?;
    }
    for k in [
        "id_token_encrypted_response_alg",
        "userinfo_encrypted_response_alg",
        "request_object_encryption_alg",
        "authorization_encrypted_response_alg",
    ] {
        if m.get(k).is_some_and(|v| !v.is_null()) {
            return Err(metadata(format!("{k}: encryption is not supported")));
        }
    }

    // Redirect URIs: https, exact, and within the statement's list.
    let redirect_uris = match str_list(m, "redirect_uris")? {
        Some(r) => r,
        None => statement.software_redirect_uris.clone(),
    };
    for uri in &redirect_uris {
        check_redirect_uri(uri)?;
        if !statement.software_redirect_uris.contains(uri) {
            return Err(err(
                ErrorCode::InvalidRedirectUri,
                "redirect_uri is not one of the software statement's software_redirect_uris",
            ));
        }
    }

    // Grant and response types.
    let grant_types = match str_list(m, "grant_types")? {
        None => vec![GrantType::AuthorizationCode],
        Some(g) if g.is_empty() => return Err(metadata("grant_types must not be empty")),
        Some(g) => {
            let mut out = Vec::new();
            for s in g {
                let t = GrantType::parse(&s).ok_or_else(|| {
                    metadata(
                        "grant_types may hold authorization_code, refresh_token and client_credentials only",
                    )
                })?;
                if !out.contains(&t) {
                    out.push(t);
                }
            }
            out
        }
    };
    let code = grant_types.contains(&GrantType::AuthorizationCode);
    match str_list(m, "response_types")? {
        None => {}
        Some(r) if code && r.iter().all(|t| t == "code") && !r.is_empty() => {}
        Some(r) if !code && r.is_empty() => {}
        Some(_) if code => return Err(metadata("response_types must be [\"code\"]")),
        Some(_) => {
            return Err(metadata(
                "response_types must be empty without the authorization_code grant",
            ));
        }
    }
    if grant_types == [GrantType::RefreshToken] {
        return Err(metadata("refresh_token needs authorization_code"));
    }
    if code && redirect_uris.is_empty() {
        return Err(err(
            ErrorCode::InvalidRedirectUri,
            "authorization_code clients need redirect_uris",
        ));
    }

    // Scopes: supported by the server and allowed by the software's roles.
    let roles = statement.allowed_scopes();
    let scope = match str_field(m, "scope")? {
        Some(s) => {
            let parsed = Scope::parse(s).map_err(|_| metadata("scope is malformed"))?;
            for t in s.split(' ').filter(|t| !t.is_empty()) {
                if !supported.scopes.contains(&t) {
                    return Err(metadata(format!("scope {t} is not supported")));
                }
                if !roles.contains(&t) {
                    return Err(metadata(format!(
                        "scope {t} is not allowed for the software's roles"
                    )));
                }
            }
            if parsed.is_empty() {
                return Err(metadata("scope must not be empty"));
            }
            s.split(' ')
                .filter(|t| !t.is_empty())
                .collect::<Vec<_>>()
                .join(" ")
        }
        None => roles
            .iter()
            .filter(|s| supported.scopes.contains(s))
            .copied()
            .collect::<Vec<_>>()
            .join(" "),
    };

    let authorization_details_types =
        str_list(m, "authorization_details_types")?.unwrap_or_default();
    for t in &authorization_details_types {
        if !supported.authorization_details_types.contains(&t.as_str()) {
            return Err(metadata(format!(
                "authorization_details_types: {t} is not supported"
            )));
        }
    }

    // Keys.
    let jwks_uri = str_field(m, "jwks_uri")?.map(str::to_owned);
    let jwks = match (m.get("jwks").filter(|v| !v.is_null()), &jwks_uri) {
        (Some(_), Some(_)) => return Err(metadata("jwks and jwks_uri must not both be sent")),
        (Some(v), None) => check_jwks(v)?,
        (None, Some(u)) => {
            check_jwks_uri(u)?;
            Jwks::default()
        }
        (None, None) => Jwks::default(),
    };

    // Certificate-bound client authentication needs the subject to compare with.
    let subject_dn = str_field(m, "tls_client_auth_subject_dn")?.map(str::to_owned);
    for k in [
        "tls_client_auth_san_dns",
        "tls_client_auth_san_uri",
        "tls_client_auth_san_ip",
        "tls_client_auth_san_email",
    ] {
        if m.get(k).is_some_and(|v| !v.is_null()) {
            return Err(metadata(format!(
                "{k} is not supported; register tls_client_auth_subject_dn"
            )));
        }
    }
    match (method, &subject_dn) {
        (ClientAuthMethod::TlsClientAuth, None) => {
            return Err(metadata("tls_client_auth needs tls_client_auth_subject_dn"));
        }
        (ClientAuthMethod::PrivateKeyJwt, Some(_)) => {
            return Err(metadata(
                "tls_client_auth_subject_dn is only for tls_client_auth",
            ));
        }
        (_, Some(dn)) => check_subject_dn(dn)?,
        _ => {}
    }

    // One sender constraint: DPoP if asked for, else the certificate (never neither).
    let dpop = bool_field(m, "dpop_bound_access_tokens")?.unwrap_or(false);
    if !dpop && bool_field(m, "tls_client_certificate_bound_access_tokens")? == Some(false) {
        return Err(metadata(
            "access tokens must be sender-constrained: certificate-bound or dpop_bound_access_tokens",
        ));
    }
    let require_signed = bool_field(m, "require_signed_request_object")?.unwrap_or(false);

    let client = Client {
        client_id: client_id.to_owned(),
        client_name: name,
        client_uri,
        token_endpoint_auth_method: method,
        jwks,
        redirect_uris,
        grant_types,
        scope,
        tls_client_auth_subject_dn: subject_dn,
        tls_client_auth_san_dns: None,
        id_token_signed_response_alg: id_alg,
        introspection_allowed: false,
        dpop_bound_access_tokens: dpop,
        require_signed_request_object: require_signed,
        authorization_signed_response_alg: jarm_alg,
        authorization_details_types,
    };
    Ok(Validated {
        client,
        jwks_uri,
        logo,
    })
}

/// A JWKS of public signing keys, each usable with PS256, ES256 or EdDSA.
pub fn check_jwks(v: &Value) -> OAuthResult<Jwks> {
    let keys = v
        .get("keys")
        .and_then(Value::as_array)
        .ok_or_else(|| metadata("jwks must be an object with a keys array"))?;
    if keys.is_empty() || keys.len() > MAX_KEYS {
        return Err(metadata("jwks must hold 1 to 16 keys"));
    }
    let mut out = Vec::new();
    for k in keys {
        let o = k
            .as_object()
            .ok_or_else(|| metadata("every jwks key must be an object"))?;
        // Every private member of RFC 7518 §6 (and symmetric keys' "k").
        if ["d", "p", "q", "dp", "dq", "qi", "oth", "k"]
            .iter()
            .any(|m| o.contains_key(*m))
        {
            return Err(metadata("jwks must hold public keys only"));
        }
        let jwk: Jwk =
            serde_json::from_value(k.clone()).map_err(|_| metadata("a jwks key is malformed"))?;
        if !Alg::ALL.iter().any(|a| jwk.matches(*a)) {
            return Err(metadata(
                "every jwks key must be a signing key for PS256, ES256 or EdDSA",
            ));
        }
        if jwk.thumbprint_s256().is_err() {
            return Err(metadata("a jwks key is missing members"));
        }
        // FAPI 2.0 §5.4.1-2: RSA keys of at least 2048 bits.
        if jwk.kty == "RSA" {
            let n = jwk
                .n
                .as_deref()
                .and_then(|n| fapi_jose::b64_decode(n).ok())
                .unwrap_or_default();
            let bits = n.iter().skip_while(|b| **b == 0).count() * 8;
            if bits < 2048 {
                return Err(metadata("RSA keys must have at least 2048 bits"));
            }
        }
        out.push(jwk);
    }
    Ok(Jwks { keys: out })
}

/// `jwks_uri` syntax: https, a host, no credentials or fragment. Where it resolves to is
/// checked by the caller with [`is_public_address`] before connecting.
pub fn check_jwks_uri(u: &str) -> OAuthResult<url::Url> {
    let url = url::Url::parse(u).map_err(|_| metadata("jwks_uri is not a URL"))?;
    if url.scheme() != "https" {
        return Err(metadata("jwks_uri must use https"));
    }
    if url.host_str().is_none_or(str::is_empty)
        || url.fragment().is_some()
        || !url.username().is_empty()
        || url.password().is_some()
    {
        return Err(metadata("jwks_uri must be a plain https URL"));
    }
    Ok(url)
}

/// Whether the server may connect to `ip` for a client's `jwks_uri` (SSRF: no loopback,
/// private, link-local — cloud metadata —, unspecified, multicast or documentation
/// ranges).
pub fn is_public_address(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            !(v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || v4.is_documentation()
                || o[0] == 0
                || (o[0] == 100 && (64..128).contains(&o[1]))
                || o[0] >= 240)
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public_address(IpAddr::V4(v4));
            }
            let s = v6.segments();
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (s[0] & 0xfe00) == 0xfc00
                || (s[0] & 0xffc0) == 0xfe80
                || s[0] == 0x2001 && s[1] == 0xdb8)
        }
    }
}

/// RFC 4514 string form, checked for shape: `type=value` pairs separated by unescaped
/// commas, known attribute names or dotted OIDs, non-empty values, no control characters.
pub fn check_subject_dn(dn: &str) -> OAuthResult<()> {
    let bad = || metadata("tls_client_auth_subject_dn is not a well-formed RFC 4514 name");
    if dn.trim().is_empty() || dn.len() > 1024 || dn.chars().any(char::is_control) {
        return Err(bad());
    }
    const TYPES: [&str; 16] = [
        "CN",
        "O",
        "OU",
        "C",
        "L",
        "ST",
        "STREET",
        "DC",
        "UID",
        "SERIALNUMBER",
        "EMAILADDRESS",
        "ORGANIZATIONIDENTIFIER",
        "GIVENNAME",
        "SURNAME",
        "TITLE",
        "POSTALCODE",
    ];
    let mut rdns = Vec::new();
    let mut cur = String::new();
    let mut escaped = false;
    for ch in dn.chars() {
        if escaped {
            cur.push(ch);
            escaped = false;
        } else if ch == '\\' {
            cur.push(ch);
            escaped = true;
        } else if ch == ',' || ch == '+' {
            rdns.push(std::mem::take(&mut cur));
        } else {
            cur.push(ch);
        }
    }
    if escaped {
        return Err(bad());
    }
    rdns.push(cur);
    for rdn in rdns {
        let (t, v) = rdn.split_once('=').ok_or_else(bad)?;
        let t = t.trim();
        let oid = !t.is_empty()
            && t.split('.').count() > 1
            && t.split('.')
                .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
        if !(TYPES.contains(&t.to_ascii_uppercase().as_str()) || oid) || v.trim().is_empty() {
            return Err(bad());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use fapi_jose::SigningKey;
    use serde_json::json;

    const NOW: i64 = 1_800_000_000;

    fn anchor(key: &SigningKey) -> TrustAnchor {
        TrustAnchor {
            issuer: "dir".into(),
            keys: vec![key.public_jwk()],
            max_age_secs: 3600,
        }
    }

    fn claims() -> Value {
        json!({"iss": "dir", "iat": NOW - 10, "exp": NOW + 600, "jti": "j1",
            "software_id": "sw1", "software_client_name": "App",
            "software_redirect_uris": ["https://tpp.example/cb", "https://tpp.example/cb2"],
            "org_id": "org1", "org_name": "Org", "software_roles": ["AISP"]})
    }

    fn statement() -> SoftwareStatement {
        serde_json::from_value(claims()).unwrap()
    }

    const SUPPORTED: Supported<'static> = Supported {
        scopes: &[
            "openid",
            "profile",
            "accounts",
            "payments",
            "offline_access",
        ],
        authorization_details_types: &["account_information"],
    };

    fn jwks() -> Value {
        let k = SigningKey::generate(Alg::ES256, "c1").unwrap();
        json!({"keys": [serde_json::to_value(k.public_jwk()).unwrap()]})
    }

    fn request() -> Value {
        json!({"token_endpoint_auth_method": "private_key_jwt", "jwks": jwks(),
            "redirect_uris": ["https://tpp.example/cb"],
            "grant_types": ["authorization_code", "refresh_token"], "scope": "openid accounts"})
    }

    fn code(r: OAuthResult<impl std::fmt::Debug>) -> &'static str {
        r.unwrap_err().code.as_str()
    }

    #[test]
    fn statement_checks() {
        let k = SigningKey::generate(Alg::ES256, "dir-1").unwrap();
        let a = anchor(&k);
        let ok = k.sign_jwt(None, &claims()).unwrap();
        assert_eq!(
            verify_software_statement(&ok, &a, NOW).unwrap(),
            statement()
        );
        // EdDSA and foreign keys / issuers.
        let ed = SigningKey::generate(Alg::EdDSA, "dir-1").unwrap();
        let mut a2 = a.clone();
        a2.keys.push(ed.public_jwk());
        let t = ed.sign_jwt(None, &claims()).unwrap();
        assert_eq!(
            code(verify_software_statement(&t, &a2, NOW)),
            "invalid_software_statement"
        );
        let other = SigningKey::generate(Alg::ES256, "dir-1").unwrap();
        let t = other.sign_jwt(None, &claims()).unwrap();
        assert_eq!(
            code(verify_software_statement(&t, &a, NOW)),
            "unapproved_software_statement"
        );
        let mut c = claims();
        c["iss"] = json!("elsewhere");
        let t = k.sign_jwt(None, &c).unwrap();
        assert_eq!(
            code(verify_software_statement(&t, &a, NOW)),
            "unapproved_software_statement"
        );
        // Unsigned.
        let parts: Vec<&str> = ok.split('.').collect();
        let none = format!("{}.{}.", fapi_jose::b64(br#"{"alg":"none"}"#), parts[1]);
        assert_eq!(
            code(verify_software_statement(&none, &a, NOW)),
            "invalid_software_statement"
        );
        // Times.
        for (iat, exp) in [
            (NOW - 700, NOW - 1),
            (NOW + 120, NOW + 600),
            (NOW - 4000, NOW + 600),
        ] {
            let mut c = claims();
            c["iat"] = json!(iat);
            c["exp"] = json!(exp);
            let t = k.sign_jwt(None, &c).unwrap();
            assert_eq!(
                code(verify_software_statement(&t, &a, NOW)),
                "invalid_software_statement",
                "{iat} {exp}"
            );
        }
        let mut c = claims();
        c.as_object_mut().unwrap().remove("software_id");
        let t = k.sign_jwt(None, &c).unwrap();
        assert_eq!(
            code(verify_software_statement(&t, &a, NOW)),
            "invalid_software_statement"
        );
    }

    #[test]
    fn a_good_request_builds_a_valid_client() {
        let v = validate_request(&request(), &statement(), "dcr-1", &SUPPORTED).unwrap();
        let c = v.finish(None).unwrap();
        assert_eq!(c.client_name, "App");
        assert_eq!(c.scope, "openid accounts");
        assert_eq!(
            c.token_endpoint_auth_method,
            ClientAuthMethod::PrivateKeyJwt
        );
        // Defaults from the statement.
        let r = json!({"token_endpoint_auth_method": "tls_client_auth",
            "tls_client_auth_subject_dn": "CN=tpp,O=Org"});
        let c = validate_request(&r, &statement(), "dcr-2", &SUPPORTED)
            .unwrap()
            .finish(None)
            .unwrap();
        assert_eq!(c.redirect_uris.len(), 2);
        assert_eq!(c.scope, "openid profile offline_access accounts");
    }

    #[test]
    fn every_rule_refuses() {
        let cases: Vec<(Value, &str)> = vec![
            (
                json!({"redirect_uris": ["http://tpp.example/cb"]}),
                "invalid_redirect_uri",
            ),
            (
                json!({"redirect_uris": ["https://tpp.example/cb#f"]}),
                "invalid_redirect_uri",
            ),
            (
                json!({"redirect_uris": ["https://other.example/cb"]}),
                "invalid_redirect_uri",
            ),
            (
                json!({"token_endpoint_auth_method": "client_secret_basic"}),
                "invalid_client_metadata",
            ),
            (
                json!({"token_endpoint_auth_method": "none"}),
                "invalid_client_metadata",
            ),
            (
                json!({"token_endpoint_auth_method": null}),
                "invalid_client_metadata",
            ),
            (
                json!({"id_token_signed_response_alg": "RS256"}),
                "invalid_client_metadata",
            ),
            (
                json!({"token_endpoint_auth_signing_alg": "none"}),
                "invalid_client_metadata",
            ),
            (json!({"client_name": "Other"}), "invalid_client_metadata"),
            (json!({"software_id": "other"}), "invalid_client_metadata"),
            (
                json!({"grant_types": ["implicit"]}),
                "invalid_client_metadata",
            ),
            (
                json!({"grant_types": ["password"]}),
                "invalid_client_metadata",
            ),
            (
                json!({"response_types": ["code id_token"]}),
                "invalid_client_metadata",
            ),
            (
                json!({"grant_types": ["client_credentials"], "response_types": ["code"]}),
                "invalid_client_metadata",
            ),
            (
                json!({"scope": "openid payments"}),
                "invalid_client_metadata",
            ),
            (json!({"scope": "openid admin"}), "invalid_client_metadata"),
            (
                json!({"authorization_details_types": ["payment_initiation"]}),
                "invalid_client_metadata",
            ),
            (
                json!({"jwks_uri": "https://tpp.example/jwks"}),
                "invalid_client_metadata",
            ),
            (
                json!({"jwks": null, "jwks_uri": "http://tpp.example/jwks"}),
                "invalid_client_metadata",
            ),
            (
                json!({"jwks": {"keys": [{"kty": "EC", "crv": "P-256", "x": "a", "y": "b", "d": "c"}]}}),
                "invalid_client_metadata",
            ),
            (
                json!({"jwks": {"keys": [{"kty": "oct", "k": "c2VjcmV0"}]}}),
                "invalid_client_metadata",
            ),
            (
                json!({"jwks": {"keys": [{"kty": "RSA", "n": "AQAB", "e": "AQAB"}]}}),
                "invalid_client_metadata",
            ),
            (json!({"jwks": {"keys": []}}), "invalid_client_metadata"),
            (
                json!({"tls_client_certificate_bound_access_tokens": false}),
                "invalid_client_metadata",
            ),
            (
                json!({"id_token_encrypted_response_alg": "RSA-OAEP"}),
                "invalid_client_metadata",
            ),
            (
                json!({"tls_client_auth_subject_dn": "CN=x"}),
                "invalid_client_metadata",
            ),
        ];
        for (patch, want) in cases {
            let mut r = request();
            for (k, v) in patch.as_object().unwrap() {
                r[k] = v.clone();
            }
            let got =
                validate_request(&r, &statement(), "c", &SUPPORTED).and_then(|v| v.finish(None));
            assert_eq!(code(got), want, "{patch}");
        }
        // tls_client_auth without / with a malformed subject.
        for dn in [
            None,
            Some("not a dn"),
            Some("CN="),
            Some("XX=a"),
            Some("CN=a\\"),
        ] {
            let mut r = json!({"token_endpoint_auth_method": "tls_client_auth"});
            if let Some(d) = dn {
                r["tls_client_auth_subject_dn"] = json!(d);
            }
            assert_eq!(
                code(validate_request(&r, &statement(), "c", &SUPPORTED)),
                "invalid_client_metadata",
                "{dn:?}"
            );
        }
        assert!(check_subject_dn("CN=a\\,b, O=Org Ltd, 2.5.4.97=PSDGB-FCA-1").is_ok());
    }

    #[test]
    fn jwks_uri_keys_are_checked_after_fetching() {
        let mut r = request();
        r.as_object_mut().unwrap().remove("jwks");
        r["jwks_uri"] = json!("https://tpp.example/jwks");
        let v = validate_request(&r, &statement(), "c", &SUPPORTED).unwrap();
        assert_eq!(v.jwks_uri.as_deref(), Some("https://tpp.example/jwks"));
        assert!(v.clone().finish(None).is_err());
        assert!(
            v.clone()
                .finish(Some(&json!({"keys": [{"kty": "EC", "d": "x"}]})))
                .is_err()
        );
        assert_eq!(v.finish(Some(&jwks())).unwrap().jwks.keys.len(), 1);
    }

    #[test]
    fn ssrf_ranges() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "169.254.169.254",
            "192.168.1.1",
            "172.16.0.1",
            "0.0.0.0",
            "100.64.0.1",
            "::1",
            "fe80::1",
            "fd00::1",
            "::ffff:127.0.0.1",
        ] {
            assert!(!is_public_address(ip.parse().unwrap()), "{ip}");
        }
        for ip in ["8.8.8.8", "2606:4700::1111"] {
            assert!(is_public_address(ip.parse().unwrap()), "{ip}");
        }
    }
}
