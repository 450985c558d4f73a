//! `private_key_jwt` client authentication (OIDC Core §9, RFC 7523 §3) under FAPI 2.0:
//! PS256/ES256/EdDSA only (§5.4.1), `aud` must be the issuer identifier as a plain string
//! (§5.3.2.1-8), `iat`/`nbf` tolerated up to [`FUTURE_SKEW`] in the future (§5.3.2.1-13),
//! `jti` required (its replay check needs storage, so the server does it with the
//! returned expiry). Every failure is `invalid_client`.

use crate::client::{Client, ClientAuthMethod};
use crate::error::{OAuthError, OAuthResult};
use fapi_jose::Unverified;

pub const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
/// Accept `iat`/`nbf` this many seconds ahead of our clock: FAPI requires ≥ 10 s and
/// forbids > 60 s; 30 s matches several ecosystems.
pub const FUTURE_SKEW: i64 = 30;
/// Refuse assertions valid for longer than this (they would pin replay-cache entries).
pub const MAX_LIFETIME: i64 = 3600 + 60;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidAssertion {
    pub client_id: String,
    pub jti: String,
    pub exp: i64,
}

/// Read the client id (`sub`, falling back to `iss`) from an assertion before verifying it,
/// so the server can load the client's keys.
pub fn peek_client_id(assertion: &str) -> OAuthResult<(Unverified, String)> {
    let u = Unverified::parse(assertion).map_err(|e| {
        OAuthError::invalid_client("client_assertion is not a valid JWS").with_detail(e.to_string())
    })?;
    let id = u
        .claims
        .get("sub")
        .or_else(|| u.claims.get("iss"))
        .and_then(|v| v.as_str())
        .ok_or_else(|| OAuthError::invalid_client("client_assertion has no sub"))?
        .to_owned();
    Ok((u, id))
}

pub fn verify_client_assertion(
    u: &Unverified,
    client: &Client,
    issuer: &str,
    now: i64,
) -> OAuthResult<ValidAssertion> {
    let fail = |d: &'static str| Err(OAuthError::invalid_client(d));
    if client.token_endpoint_auth_method != ClientAuthMethod::PrivateKeyJwt {
        return fail("client is not registered for private_key_jwt");
    }
    if u.alg().is_err() {
        return fail("client_assertion algorithm must be PS256, ES256 or EdDSA");
    }
    if let Err(e) = u.verify_with_set(&client.jwks.keys) {
        return Err(
            OAuthError::invalid_client("client_assertion signature is invalid")
                .with_detail(e.to_string()),
        );
    }
    let c = &u.claims;
    let s = |k: &str| c.get(k).and_then(|v| v.as_str());
    let n = |k: &str| c.get(k).map(|v| v.as_i64());
    if s("iss") != Some(client.client_id.as_str()) || s("sub") != Some(client.client_id.as_str()) {
        return fail("client_assertion iss and sub must both be the client_id");
    }
    match c.get("aud") {
        Some(serde_json::Value::String(a)) if a == issuer => {}
        Some(serde_json::Value::Array(_)) => {
            return fail(
                "client_assertion aud must be the issuer as a single string, not an array",
            );
        }
        _ => return fail("client_assertion aud must be the issuer identifier"),
    }
    let exp = match n("exp") {
        Some(Some(e)) => e,
        _ => return fail("client_assertion exp is required"),
    };
    if exp <= now {
        return fail("client_assertion has expired");
    }
    for k in ["iat", "nbf"] {
        match n(k) {
            None => {}
            Some(Some(t)) if t <= now + FUTURE_SKEW => {}
            Some(Some(_)) => return fail("client_assertion iat/nbf is too far in the future"),
            Some(None) => return fail("client_assertion iat/nbf must be numeric"),
        }
    }
    let start = match n("iat") {
        Some(Some(t)) => t.min(now),
        _ => now,
    };
    if exp - start > MAX_LIFETIME {
        return fail("client_assertion lifetime is too long");
    }
    let jti = match s("jti") {
        Some(j) if !j.is_empty() && j.len() <= 256 => j.to_owned(),
        _ => return fail("client_assertion jti is required"),
    };
    Ok(ValidAssertion {
        client_id: client.client_id.clone(),
        jti,
        exp,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use crate::client::GrantType;
    use fapi_jose::{Alg, Jwks, SigningKey};
    use serde_json::json;

    const ISS: &str = "https://as.example";
    const NOW: i64 = 1_800_000_000;

    fn setup() -> (SigningKey, Client) {
        let k = SigningKey::generate(Alg::ES256, "k1").unwrap();
        let c = Client {
            client_id: "c1".into(),
            client_name: "TPP".into(),
            client_uri: None,
            token_endpoint_auth_method: ClientAuthMethod::PrivateKeyJwt,
            jwks: Jwks {
                keys: vec![k.public_jwk()],
            },
            redirect_uris: vec![],
            grant_types: vec![GrantType::ClientCredentials],
            scope: "accounts".into(),
            tls_client_auth_subject_dn: None,
            tls_client_auth_san_dns: None,
            id_token_signed_response_alg: Alg::ES256,
            introspection_allowed: false,
            dpop_bound_access_tokens: false,
            require_signed_request_object: false,
            authorization_signed_response_alg: None,
            authorization_details_types: vec![],
        };
        (k, c)
    }

    fn claims() -> serde_json::Value {
        json!({"iss": "c1", "sub": "c1", "aud": ISS, "jti": "j1", "iat": NOW, "exp": NOW + 60})
    }

    fn check(k: &SigningKey, c: &Client, claims: serde_json::Value) -> OAuthResult<ValidAssertion> {
        let t = k.sign_jwt(None, &claims).unwrap();
        let (u, _) = peek_client_id(&t)?;
        verify_client_assertion(&u, c, ISS, NOW)
    }

    #[test]
    fn accepts_valid_and_small_future_skew() {
        let (k, c) = setup();
        assert_eq!(check(&k, &c, claims()).unwrap().jti, "j1");
        let t = k.sign_jwt(None, &claims()).unwrap();
        assert_eq!(peek_client_id(&t).unwrap().1, "c1");
        let mut cl = claims();
        cl["nbf"] = json!(NOW + 8);
        cl["iat"] = json!(NOW + 10);
        assert!(check(&k, &c, cl).is_ok());
    }

    #[test]
    fn rejects_each_broken_rule() {
        let (k, c) = setup();
        let edits: Vec<(&str, serde_json::Value)> = vec![
            ("aud", json!([ISS])),
            ("aud", json!("https://as.example/token")),
            ("aud", json!("https://as.example/par")),
            ("iss", json!("c2")),
            ("sub", json!("c2")),
            ("exp", json!(NOW - 1)),
            ("exp", json!(null)),
            ("nbf", json!(NOW + 61)),
            ("iat", json!(NOW + 120)),
            ("jti", json!(null)),
            ("exp", json!(NOW + 100_000)),
        ];
        for (field, value) in edits {
            let mut cl = claims();
            if value.is_null() {
                cl.as_object_mut().unwrap().remove(field);
            } else {
                cl[field] = value.clone();
            }
            let e = check(&k, &c, cl).expect_err(field);
            assert_eq!(e.code, crate::ErrorCode::InvalidClient, "{field}={value}");
        }
    }

    #[test]
    fn rejects_other_keys_and_auth_methods() {
        let (_, c) = setup();
        let other = SigningKey::generate(Alg::ES256, "k1").unwrap();
        assert!(check(&other, &c, claims()).is_err());
        let (k, mut c) = setup();
        c.token_endpoint_auth_method = ClientAuthMethod::TlsClientAuth;
        assert!(check(&k, &c, claims()).is_err());
    }
}
