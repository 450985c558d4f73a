//! Pushed authorization requests (RFC 9126) validated under FAPI 2.0 §5.3.2.2: `code`
//! only, PKCE S256 required, `redirect_uri` required and exactly registered, no nested
//! `request_uri`, no repeated parameters. The authorization endpoint later takes only
//! `client_id` and `request_uri`, so everything the flow uses is checked here, once.

use crate::client::{Client, GrantType, SenderConstraint};
use crate::error::{ErrorCode, OAuthError, OAuthResult};
use crate::redirect::VerifiedRedirectUri;
use crate::scope::Scope;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// Longest `state` kept (the suite sends > 1,000 characters, FAPI 2.0 Note 4).
pub const MAX_STATE_LEN: usize = 4096;
/// FAPI 2.0 §5.3.2.2-14 requires at least 64; we are generous.
pub const MAX_NONCE_LEN: usize = 512;

/// A validated authorization request, as stored behind a `request_uri`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuthorizationRequest {
    pub client_id: String,
    pub redirect_uri: VerifiedRedirectUri,
    pub scope: String,
    #[serde(default)]
    pub state: Option<String>,
    #[serde(default)]
    pub nonce: Option<String>,
    pub code_challenge: String,
    #[serde(default)]
    pub prompt: Option<String>,
    #[serde(default)]
    pub max_age: Option<u64>,
    /// Thumbprint of the DPoP key the authorization code is bound to (RFC 9449 §10): from
    /// the `dpop_jkt` parameter or the key of the DPoP proof sent with the PAR request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dpop_jkt: Option<String>,
    /// JARM (FAPI 2.0 MS §5.4.1): the authorization response goes back as a signed JWT
    /// in a `response` query parameter (`response_mode=jwt` or `query.jwt`).
    /// The algorithm to sign it with (the client's `authorization_signed_response_alg`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jarm: Option<fapi_jose::Alg>,
    /// UK OB intent (an account-access consent created by the TPP beforehand), named by
    /// the `openbanking_intent_id` claim of the `claims` parameter.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub intent_id: Option<String>,
    /// RFC 9396: account access asked for in `authorization_details`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account_access: Option<openbanking::AccountAccessRequest>,
    /// RFC 9396: a domestic payment asked for in `authorization_details` (type
    /// `payment_initiation`). Never stored behind a `request_uri`: the authorization
    /// server turns it into a payment consent at PAR and names that consent in
    /// `intent_id`, so the rest of the flow is the intent path's.
    #[serde(skip)]
    pub payment_initiation: Option<openbanking::payment::ConsentRequest>,
    /// OIDC §5.5: identity claims asked for in the ID token through `claims` (only the
    /// ones this server can release: [`RELEASABLE_ID_TOKEN_CLAIMS`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub id_token_claims: Vec<String>,
}

/// Identity claims the ID token can carry when the `claims` parameter asks for them.
pub const RELEASABLE_ID_TOKEN_CLAIMS: &[&str] = &["name"];

/// OIDC §5.5.1.1: an essential `acr` the server cannot meet is an error, never a weaker
/// login. Every login here is strong customer authentication ([`crate::tokens::ACR_SCA`]).
fn check_essential_acr(claims: &str) -> OAuthResult<()> {
    let Ok(v) = serde_json::from_str::<serde_json::Value>(claims) else {
        return Ok(());
    };
    let Some(acr) = v.get("id_token").and_then(|m| m.get("acr")) else {
        return Ok(());
    };
    if acr.get("essential").and_then(serde_json::Value::as_bool) != Some(true) {
        return Ok(());
    }
    let mut asked: Vec<&str> = Vec::new();
    if let Some(one) = acr.get("value").and_then(serde_json::Value::as_str) {
        asked.push(one);
    }
    if let Some(many) = acr.get("values").and_then(serde_json::Value::as_array) {
        asked.extend(many.iter().filter_map(serde_json::Value::as_str));
    }
    if asked.is_empty() || asked.contains(&crate::tokens::ACR_SCA) {
        return Ok(());
    }
    Err(OAuthError::invalid_request(format!(
        "the essential acr cannot be satisfied; this server authenticates with {}",
        crate::tokens::ACR_SCA
    )))
}

/// The releasable claim names requested for the ID token in a `claims` parameter
/// (already known to be a JSON object).
fn requested_id_token_claims(claims: &str) -> Vec<String> {
    serde_json::from_str::<serde_json::Value>(claims)
        .ok()
        .and_then(|v| v.get("id_token").and_then(|m| m.as_object()).cloned())
        .map(|m| {
            m.keys()
                .filter(|k| RELEASABLE_ID_TOKEN_CLAIMS.contains(&k.as_str()))
                .cloned()
                .collect()
        })
        .unwrap_or_default()
}

impl AuthorizationRequest {
    pub fn is_openid(&self) -> bool {
        self.scope.split(' ').any(|s| s == "openid")
    }
}

/// Turn form pairs into a map, refusing repeated parameters (RFC 6749 §3.1, RFC 9126 §2.1).
pub fn single_valued(pairs: &[(String, String)]) -> OAuthResult<HashMap<&str, &str>> {
    let mut map = HashMap::with_capacity(pairs.len());
    for (k, v) in pairs {
        if map.insert(k.as_str(), v.as_str()).is_some() {
            return Err(OAuthError::invalid_request(format!(
                "parameter {} is repeated",
                truncate(k)
            )));
        }
    }
    Ok(map)
}

fn truncate(s: &str) -> String {
    s.chars().take(40).collect()
}

/// Validate a pushed authorization request from an already authenticated `client`.
pub fn validate_par(
    params: &HashMap<&str, &str>,
    client: &Client,
    now: i64,
) -> OAuthResult<AuthorizationRequest> {
    let get = |k: &str| params.get(k).copied().filter(|v| !v.is_empty());
    if !client.may_use(GrantType::AuthorizationCode) {
        return Err(OAuthError::new(
            ErrorCode::UnauthorizedClient,
            "client is not registered for authorization_code",
        ));
    }
    if params.contains_key("request_uri") {
        return Err(OAuthError::invalid_request(
            "request_uri is not allowed in a pushed authorization request",
        ));
    }
    if params.contains_key("request") {
        return Err(OAuthError::new(
            ErrorCode::InvalidRequestObject,
            "request must not appear inside a request object",
        ));
    }
    if let Some(id) = get("client_id")
        && id != client.client_id
    {
        return Err(OAuthError::invalid_request(
            "client_id does not match the authenticated client",
        ));
    }
    match get("response_type") {
        None => return Err(OAuthError::invalid_request("response_type is required")),
        Some("code") => {}
        Some(_) => {
            return Err(OAuthError::new(
                ErrorCode::UnsupportedResponseType,
                "only response_type=code is supported",
            ));
        }
    }
    let jarm = match get("response_mode") {
        None | Some("query") if client.uses_jarm() => {
            return Err(OAuthError::invalid_request(
                "this client is registered for JWT-secured responses: send response_mode=jwt",
            ));
        }
        None | Some("query") => None,
        Some("jwt" | "query.jwt") if client.uses_jarm() => client.authorization_signed_response_alg,
        Some("jwt" | "query.jwt") => {
            return Err(OAuthError::invalid_request(
                "response_mode=jwt needs a client registered with authorization_signed_response_alg",
            ));
        }
        Some(_) => {
            return Err(OAuthError::invalid_request(
                "only response_mode query, jwt and query.jwt are supported",
            ));
        }
    };
    let redirect = get("redirect_uri")
        .ok_or_else(|| OAuthError::invalid_request("redirect_uri is required"))?;
    let redirect_uri = VerifiedRedirectUri::verify(redirect, &client.redirect_uris)?;

    let challenge = get("code_challenge")
        .ok_or_else(|| OAuthError::invalid_request("code_challenge is required (PKCE)"))?;
    match get("code_challenge_method") {
        Some("S256") => {}
        None => {
            return Err(OAuthError::invalid_request(
                "code_challenge_method is required and must be S256",
            ));
        }
        Some(_) => {
            return Err(OAuthError::invalid_request(
                "code_challenge_method must be S256",
            ));
        }
    }
    // An S256 challenge is base64url(SHA-256): exactly 43 characters.
    if challenge.len() != 43
        || !challenge
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err(OAuthError::invalid_request(
            "code_challenge is not a base64url SHA-256 value",
        ));
    }

    let scope_str = get("scope").ok_or_else(|| OAuthError::invalid_scope("scope is required"))?;
    let scope =
        Scope::parse(scope_str).map_err(|_| OAuthError::invalid_scope("scope is malformed"))?;
    if scope.is_empty() {
        return Err(OAuthError::invalid_scope("scope is required"));
    }
    if !scope.is_subset(&client.allowed_scope()) {
        return Err(OAuthError::invalid_scope(
            "scope includes values this client may not request",
        ));
    }

    let state = get("state").map(str::to_owned);
    if state.as_ref().is_some_and(|s| s.len() > MAX_STATE_LEN) {
        return Err(OAuthError::invalid_request("state is too long"));
    }
    let nonce = get("nonce").map(str::to_owned);
    if nonce.as_ref().is_some_and(|s| s.len() > MAX_NONCE_LEN) {
        return Err(OAuthError::invalid_request("nonce is too long"));
    }
    let prompt = get("prompt").map(str::to_owned);
    if let Some(p) = &prompt
        && !p
            .split(' ')
            .all(|v| matches!(v, "none" | "login" | "consent" | "select_account"))
    {
        return Err(OAuthError::invalid_request(
            "prompt has an unsupported value",
        ));
    }
    let max_age =
        match get("max_age") {
            None => None,
            Some(v) => Some(v.parse::<u64>().map_err(|_| {
                OAuthError::invalid_request("max_age must be a non-negative integer")
            })?),
        };
    // RFC 9449 §10: the code may be bound to a DPoP key; only DPoP clients have one.
    let dpop_jkt = get("dpop_jkt").map(str::to_owned);
    if let Some(j) = &dpop_jkt {
        if client.sender_constraint() != SenderConstraint::Dpop {
            return Err(OAuthError::invalid_request(
                "dpop_jkt is only for clients registered for DPoP-bound access tokens",
            ));
        }
        if !crate::dpop::is_jkt(j) {
            return Err(OAuthError::invalid_request(
                "dpop_jkt is not a base64url SHA-256 JWK thumbprint",
            ));
        }
    }
    let (intent_id, account_access, payment_initiation) =
        open_banking_request(params, client, &scope, now)?;
    // Parsed (and refused when malformed) by open_banking_request above.
    let id_token_claims = get("claims")
        .map(requested_id_token_claims)
        .unwrap_or_default();
    if let Some(c) = get("claims") {
        check_essential_acr(c)?;
    }
    Ok(AuthorizationRequest {
        client_id: client.client_id.clone(),
        redirect_uri,
        scope: scope.to_string(),
        state,
        nonce,
        code_challenge: challenge.to_owned(),
        prompt,
        max_age,
        dpop_jkt,
        jarm,
        intent_id,
        account_access,
        payment_initiation,
        id_token_claims,
    })
}

/// The open-banking part of a request: an intent named in `claims`
/// (`openbanking_intent_id`) or a consent carried in `authorization_details` (RFC 9396),
/// never both. Whether the intent exists and is this client's is checked by the server,
/// which holds the consent store.
fn open_banking_request(
    params: &HashMap<&str, &str>,
    client: &Client,
    scope: &Scope,
    now: i64,
) -> OAuthResult<(
    Option<String>,
    Option<openbanking::AccountAccessRequest>,
    Option<openbanking::payment::ConsentRequest>,
)> {
    let intent_id = match params.get("claims").copied().filter(|v| !v.is_empty()) {
        None => None,
        Some(c) => openbanking::intent_id_from_claims(c).map_err(OAuthError::invalid_request)?,
    };
    let details = params
        .get("authorization_details")
        .copied()
        .filter(|v| !v.is_empty());
    let rar_error = |e: openbanking::ConsentError| {
        OAuthError::new(ErrorCode::InvalidAuthorizationDetails, e.to_string())
    };
    // RFC 9396 §5: a client uses only the types it registered.
    let registered = |ty: &str| {
        if client.authorization_details_types.iter().any(|t| t == ty) {
            Ok(())
        } else {
            Err(OAuthError::new(
                ErrorCode::InvalidAuthorizationDetails,
                format!("this client is not registered for authorization_details of type {ty}"),
            ))
        }
    };
    let payment = match details.and_then(openbanking::payment::payment_initiation_from_details) {
        None => None,
        Some(r) => {
            let req = r.map_err(rar_error)?;
            registered(openbanking::payment::RAR_TYPE_PAYMENT_INITIATION)?;
            if !scope.contains(openbanking::SCOPE_PAYMENTS) {
                return Err(OAuthError::invalid_scope(
                    "a payment_initiation request needs the payments scope",
                ));
            }
            Some(req)
        }
    };
    let account_access = match details.filter(|_| payment.is_none()) {
        None => None,
        Some(raw) => {
            let now = time::OffsetDateTime::from_unix_timestamp(now)
                .map_err(|_| OAuthError::server_error("clock out of range"))?;
            let req = openbanking::parse_authorization_details(raw, now).map_err(|e| {
                OAuthError::new(ErrorCode::InvalidAuthorizationDetails, e.to_string())
            })?;
            // RFC 9396 §5: a client uses only the types it registered.
            if !client
                .authorization_details_types
                .iter()
                .any(|t| t == openbanking::RAR_TYPE_ACCOUNT_INFORMATION)
            {
                return Err(OAuthError::new(
                    ErrorCode::InvalidAuthorizationDetails,
                    "this client is not registered for authorization_details of type account_information",
                ));
            }
            Some(req)
        }
    };
    if intent_id.is_some() && (account_access.is_some() || payment.is_some()) {
        return Err(OAuthError::invalid_request(
            "send either openbanking_intent_id or authorization_details, not both",
        ));
    }
    // Which of the two an intent needs depends on its kind (account access or payment),
    // which only the store knows: the authorization server checks that at PAR.
    if intent_id.is_some()
        && !scope.contains(openbanking::SCOPE_ACCOUNTS)
        && !scope.contains(openbanking::SCOPE_PAYMENTS)
    {
        return Err(OAuthError::invalid_scope(
            "an intent needs the accounts or the payments scope",
        ));
    }
    Ok((intent_id, account_access, payment))
}

/// RFC 9449 §10.1: a DPoP proof sent with the PAR request binds the code to its key. With
/// `dpop_jkt` as well, both must name the same key.
pub fn bind_dpop_key(req: &mut AuthorizationRequest, proof_jkt: Option<&str>) -> OAuthResult<()> {
    match (&req.dpop_jkt, proof_jkt) {
        (Some(param), Some(key)) if param != key => Err(OAuthError::invalid_request(
            "dpop_jkt does not match the key of the DPoP proof",
        )),
        (None, Some(key)) => {
            req.dpop_jkt = Some(key.to_owned());
            Ok(())
        }
        _ => Ok(()),
    }
}

/// RFC 7636 §4.6 with S256 only.
pub fn verify_pkce(code_verifier: Option<&str>, code_challenge: &str) -> OAuthResult<()> {
    let v = code_verifier.ok_or_else(|| OAuthError::invalid_grant("code_verifier is required"))?;
    if !(43..=128).contains(&v.len())
        || !v
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'))
    {
        return Err(OAuthError::invalid_grant("code_verifier is malformed"));
    }
    if fapi_jose::sha256_b64(v.as_bytes()) != code_challenge {
        return Err(OAuthError::invalid_grant(
            "code_verifier does not match the code_challenge",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use crate::client::ClientAuthMethod;

    const NOW: i64 = 1_800_000_000;

    fn client() -> Client {
        Client {
            client_id: "c1".into(),
            client_name: "TPP".into(),
            client_uri: None,
            token_endpoint_auth_method: ClientAuthMethod::TlsClientAuth,
            jwks: Default::default(),
            redirect_uris: vec!["https://tpp.example/cb".into()],
            grant_types: vec![GrantType::AuthorizationCode],
            scope: "openid accounts".into(),
            tls_client_auth_subject_dn: Some("CN=c1".into()),
            tls_client_auth_san_dns: None,
            id_token_signed_response_alg: fapi_jose::Alg::ES256,
            introspection_allowed: false,
            dpop_bound_access_tokens: false,
            require_signed_request_object: false,
            authorization_signed_response_alg: None,
            authorization_details_types: vec![],
        }
    }

    const CH: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";

    fn base() -> Vec<(String, String)> {
        [
            ("response_type", "code"),
            ("client_id", "c1"),
            ("redirect_uri", "https://tpp.example/cb"),
            ("scope", "openid"),
            ("code_challenge", CH),
            ("code_challenge_method", "S256"),
            ("state", "xyz"),
        ]
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
    }

    fn run(edit: impl FnOnce(&mut Vec<(String, String)>)) -> OAuthResult<AuthorizationRequest> {
        let mut p = base();
        edit(&mut p);
        let m = single_valued(&p)?;
        validate_par(&m, &client(), NOW)
    }

    fn set(p: &mut Vec<(String, String)>, k: &str, v: Option<&str>) {
        p.retain(|(a, _)| a != k);
        if let Some(v) = v {
            p.push((k.into(), v.into()));
        }
    }

    #[test]
    fn accepts_a_good_request() {
        let r = run(|_| {}).unwrap();
        assert_eq!(r.redirect_uri.as_str(), "https://tpp.example/cb");
        assert!(r.is_openid());
    }

    type Edit = Box<dyn FnOnce(&mut Vec<(String, String)>)>;

    #[test]
    fn every_rule_rejects() {
        let cases: Vec<(&str, Edit, ErrorCode)> = vec![
            (
                "token response type",
                Box::new(|p| set(p, "response_type", Some("token"))),
                ErrorCode::UnsupportedResponseType,
            ),
            (
                "hybrid",
                Box::new(|p| set(p, "response_type", Some("code id_token"))),
                ErrorCode::UnsupportedResponseType,
            ),
            (
                "no response type",
                Box::new(|p| set(p, "response_type", None)),
                ErrorCode::InvalidRequest,
            ),
            (
                "no pkce",
                Box::new(|p| set(p, "code_challenge", None)),
                ErrorCode::InvalidRequest,
            ),
            (
                "plain pkce",
                Box::new(|p| set(p, "code_challenge_method", Some("plain"))),
                ErrorCode::InvalidRequest,
            ),
            (
                "no pkce method",
                Box::new(|p| set(p, "code_challenge_method", None)),
                ErrorCode::InvalidRequest,
            ),
            (
                "no redirect",
                Box::new(|p| set(p, "redirect_uri", None)),
                ErrorCode::InvalidRequest,
            ),
            (
                "wrong redirect",
                Box::new(|p| set(p, "redirect_uri", Some("https://evil.example/cb"))),
                ErrorCode::InvalidRequest,
            ),
            (
                "nested request_uri",
                Box::new(|p| set(p, "request_uri", Some("urn:x"))),
                ErrorCode::InvalidRequest,
            ),
            (
                "other client",
                Box::new(|p| set(p, "client_id", Some("c2"))),
                ErrorCode::InvalidRequest,
            ),
            (
                "bad scope",
                Box::new(|p| set(p, "scope", Some("openid payments"))),
                ErrorCode::InvalidScope,
            ),
            (
                "no scope",
                Box::new(|p| set(p, "scope", None)),
                ErrorCode::InvalidScope,
            ),
            (
                "repeated",
                Box::new(|p| p.push(("state".into(), "again".into()))),
                ErrorCode::InvalidRequest,
            ),
            (
                "long nonce",
                Box::new(|p| set(p, "nonce", Some(&"n".repeat(513)))),
                ErrorCode::InvalidRequest,
            ),
            (
                "jarm",
                Box::new(|p| set(p, "response_mode", Some("jwt"))),
                ErrorCode::InvalidRequest,
            ),
        ];
        for (name, edit, code) in cases {
            let e = run(edit).expect_err(name);
            assert_eq!(e.code, code, "{name}");
        }
    }

    const JKT: &str = "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs";

    fn run_dpop(
        edit: impl FnOnce(&mut Vec<(String, String)>),
    ) -> OAuthResult<AuthorizationRequest> {
        let mut p = base();
        edit(&mut p);
        let m = single_valued(&p)?;
        let mut c = client();
        c.dpop_bound_access_tokens = true;
        validate_par(&m, &c, NOW)
    }

    #[test]
    fn dpop_jkt_binds_the_code_for_dpop_clients_only() {
        let r = run_dpop(|p| set(p, "dpop_jkt", Some(JKT))).unwrap();
        assert_eq!(r.dpop_jkt.as_deref(), Some(JKT));
        assert_eq!(run_dpop(|_| {}).unwrap().dpop_jkt, None);
        for bad in ["short", &JKT.replace('-', "+"), &format!("{JKT}A")] {
            let e = run_dpop(|p| set(p, "dpop_jkt", Some(bad))).expect_err(bad);
            assert_eq!(e.code, ErrorCode::InvalidRequest, "{bad}");
        }
        // A certificate-bound client has no DPoP key to bind to.
        let e = run(|p| set(p, "dpop_jkt", Some(JKT))).unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidRequest);
    }

    #[test]
    fn proof_at_par_binds_and_must_agree_with_dpop_jkt() {
        let other = "0000000000000000000000000000000000000000000";
        let mut r = run_dpop(|_| {}).unwrap();
        bind_dpop_key(&mut r, Some(other)).unwrap();
        assert_eq!(r.dpop_jkt.as_deref(), Some(other));
        let mut r = run_dpop(|p| set(p, "dpop_jkt", Some(JKT))).unwrap();
        bind_dpop_key(&mut r, Some(JKT)).unwrap();
        bind_dpop_key(&mut r, None).unwrap();
        assert_eq!(r.dpop_jkt.as_deref(), Some(JKT));
        let e = bind_dpop_key(&mut r, Some(other)).unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidRequest);
    }

    #[test]
    fn long_state_and_64_char_nonce_are_fine() {
        let r = run(|p| {
            set(p, "state", Some(&"s".repeat(1500)));
            set(p, "nonce", Some(&"n".repeat(64)));
        })
        .unwrap();
        assert_eq!(r.nonce.unwrap().len(), 64);
    }

    #[test]
    fn pkce_s256() {
        // RFC 7636 appendix B.
        verify_pkce(Some("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"), CH).unwrap();
        assert!(verify_pkce(Some("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXX"), CH).is_err());
        assert!(verify_pkce(None, CH).is_err());
        assert!(verify_pkce(Some("short"), CH).is_err());
    }

    #[test]
    fn open_banking_intent_and_authorization_details() {
        let intent = r#"{"id_token":{"openbanking_intent_id":{"value":"aac-1","essential":true}}}"#;
        let r = run(|p| {
            set(p, "scope", Some("openid accounts"));
            set(p, "claims", Some(intent));
        })
        .unwrap();
        assert_eq!(r.intent_id.as_deref(), Some("aac-1"));
        assert!(r.id_token_claims.is_empty());
        // Identity claims asked for the ID token: only releasable ones are kept.
        let named = r#"{"id_token":{"name":{"essential":true},"email":null,"acr":null}}"#;
        let r = run(|p| set(p, "claims", Some(named))).unwrap();
        assert_eq!(r.id_token_claims, vec!["name".to_owned()]);
        // An essential acr: met when it includes SCA, refused otherwise (never weaker).
        let sca = r#"{"id_token":{"acr":{"essential":true,"values":["urn:openbanking:psd2:sca","urn:openbanking:psd2:ca"]}}}"#;
        assert!(run(|p| set(p, "claims", Some(sca))).is_ok());
        let weaker = r#"{"id_token":{"acr":{"essential":true,"value":"urn:openbanking:psd2:ca"}}}"#;
        let e = run(|p| set(p, "claims", Some(weaker))).unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidRequest);
        let voluntary = r#"{"id_token":{"acr":{"value":"urn:openbanking:psd2:ca"}}}"#;
        assert!(run(|p| set(p, "claims", Some(voluntary))).is_ok());
        // An intent needs the accounts scope.
        let e = run(|p| set(p, "claims", Some(intent))).unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidScope);
        let e = run(|p| set(p, "claims", Some("{not json"))).unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidRequest);

        let rar = r#"[{"type":"account_information","permissions":["ReadBalances"]}]"#;
        let registered = |c: &mut Client| {
            c.authorization_details_types = vec!["account_information".into()];
        };
        type Edit<'a> = &'a dyn Fn(&mut Vec<(String, String)>);
        let with = |edit: Edit<'_>, reg: bool| {
            let mut p = base();
            edit(&mut p);
            let m = single_valued(&p).unwrap();
            let mut c = client();
            if reg {
                registered(&mut c);
            }
            validate_par(&m, &c, NOW)
        };
        let r = with(&|p| set(p, "authorization_details", Some(rar)), true).unwrap();
        assert!(r.account_access.is_some_and(|a| a.permissions.len() == 1));
        // Unregistered client, unknown type, malformed: invalid_authorization_details.
        for (raw, reg) in [
            (rar, false),
            (r#"[{"type":"payment_initiation"}]"#, true),
            ("[{}]", true),
            (
                r#"[{"type":"account_information","permissions":["ReadPAN"]}]"#,
                true,
            ),
        ] {
            let e = with(&|p| set(p, "authorization_details", Some(raw)), reg).unwrap_err();
            assert_eq!(e.code, ErrorCode::InvalidAuthorizationDetails, "{raw}");
        }
        // Not both ways in at once.
        let e = with(
            &|p| {
                set(p, "scope", Some("openid accounts"));
                set(p, "claims", Some(intent));
                set(p, "authorization_details", Some(rar));
            },
            true,
        )
        .unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidRequest);
    }

    #[test]
    fn payment_initiation_details() {
        let pay = r#"[{"type":"payment_initiation","instructedAmount":{"amount":"1.00","currency":"KES"},"creditorAccount":{"schemeName":"KE.WEKEZA.AccountNumber","identification":"0100123456789","name":"Bob"}}]"#;
        let with = |scope: &str, types: &[&str]| {
            let mut p = base();
            set(&mut p, "scope", Some(scope));
            set(&mut p, "authorization_details", Some(pay));
            let m = single_valued(&p).unwrap();
            let mut c = client();
            c.scope = "openid accounts payments".into();
            c.authorization_details_types = types.iter().map(|t| (*t).to_owned()).collect();
            validate_par(&m, &c, NOW)
        };
        let r = with("openid payments", &["payment_initiation"]).unwrap();
        assert!(r.payment_initiation.is_some() && r.account_access.is_none());
        // Never written behind the request_uri: the server turns it into a consent.
        let stored = serde_json::to_value(&r).unwrap();
        assert!(stored.get("payment_initiation").is_none());
        // A client registered for account_information only: refused.
        let e = with("openid payments", &["account_information"]).unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidAuthorizationDetails);
        // Scope payments is needed, as on the intent path.
        let e = with("openid accounts", &["payment_initiation"]).unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidScope);
    }
}
