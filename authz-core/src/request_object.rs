//! Signed request objects (JAR, RFC 9101) at the PAR endpoint under FAPI 2.0 Message
//! Signing §5.3.1: signed by a key of the client it names (PS256/ES256/EdDSA only, never
//! `none` or RS256), `typ` `oauth-authz-req+jwt` (or absent/`JWT`), `iss` and `client_id`
//! the authenticated client, `aud` the issuer (a string, or an array containing it), `nbf`
//! and `exp` required with `nbf` at most 60 minutes old and `exp - nbf` at most 60
//! minutes, no `request_uri` inside. Only the parameters inside the object count
//! (RFC 9101 §6.3). Every failure is `invalid_request_object`.

use crate::assertion::FUTURE_SKEW;
use crate::client::Client;
use crate::error::{ErrorCode, OAuthError, OAuthResult};
use crate::par::{AuthorizationRequest, validate_par};
use fapi_jose::Unverified;
use serde_json::Value;
use std::collections::HashMap;

/// RFC 9101 §10.8 media type, used as the JWS `typ`.
pub const TYP: &str = "oauth-authz-req+jwt";
/// FAPI 2.0 MS §5.3.1-3: `nbf` no longer ago than this.
pub const MAX_NBF_AGE: i64 = 3600;
/// FAPI 2.0 MS §5.3.1-4: `exp` no later than this after `nbf`.
pub const MAX_LIFETIME: i64 = 3600;

/// JWT claims that describe the object itself, not the authorization request.
const ENVELOPE: [&str; 6] = ["iss", "aud", "exp", "nbf", "iat", "jti"];

fn bad(d: impl Into<std::borrow::Cow<'static, str>>) -> OAuthError {
    OAuthError::new(ErrorCode::InvalidRequestObject, d)
}

/// Verify a request object from the authenticated `client` and return the authorization
/// request parameters it carries (strings as they are, numbers as decimal text).
pub fn verify_request_object(
    jws: &str,
    client: &Client,
    issuer: &str,
    now: i64,
) -> OAuthResult<HashMap<String, String>> {
    let u = Unverified::parse(jws)
        .map_err(|e| bad("request is not a valid signed JWT").with_detail(e.to_string()))?;
    if u.alg().is_err() {
        return Err(bad(
            "request object algorithm must be PS256, ES256 or EdDSA",
        ));
    }
    match u.header.typ.as_deref() {
        None | Some(TYP) | Some("JWT") => {}
        Some(_) => return Err(bad("request object typ must be oauth-authz-req+jwt")),
    }
    if let Err(e) = u.verify_with_set(&client.jwks.keys) {
        return Err(
            bad("request object signature does not verify with the client's keys")
                .with_detail(e.to_string()),
        );
    }
    let c = &u.claims;
    let s = |k: &str| c.get(k).and_then(Value::as_str);
    if s("iss") != Some(client.client_id.as_str()) {
        return Err(bad("request object iss must be the client_id"));
    }
    if s("client_id") != Some(client.client_id.as_str()) {
        return Err(bad(
            "request object client_id must be the authenticated client",
        ));
    }
    let aud_ok = match c.get("aud") {
        Some(Value::String(a)) => a == issuer,
        Some(Value::Array(v)) => v.iter().any(|a| a.as_str() == Some(issuer)),
        _ => false,
    };
    if !aud_ok {
        return Err(bad("request object aud must be the issuer identifier"));
    }
    let num = |k: &str| -> OAuthResult<i64> {
        match c.get(k) {
            None | Some(Value::Null) => Err(bad(format!("request object {k} is required"))),
            Some(v) => v
                .as_i64()
                .ok_or_else(|| bad(format!("request object {k} must be a number"))),
        }
    };
    let nbf = num("nbf")?;
    let exp = num("exp")?;
    if exp <= now {
        return Err(bad("request object has expired"));
    }
    if nbf > now + FUTURE_SKEW {
        return Err(bad("request object is not yet valid"));
    }
    if nbf < now - MAX_NBF_AGE {
        return Err(bad(
            "request object nbf is more than 60 minutes in the past",
        ));
    }
    if exp - nbf > MAX_LIFETIME {
        return Err(bad(
            "request object lifetime (exp - nbf) exceeds 60 minutes",
        ));
    }
    let obj = c
        .as_object()
        .ok_or_else(|| bad("request object payload is not an object"))?;
    if obj.contains_key("request_uri") || obj.contains_key("request") {
        return Err(bad(
            "a request object must not contain request_uri or request",
        ));
    }
    let mut out = HashMap::new();
    for (k, v) in obj {
        if ENVELOPE.contains(&k.as_str()) {
            continue;
        }
        let text = match v {
            Value::String(s) => s.clone(),
            Value::Number(n) => n.to_string(),
            Value::Null => continue,
            other => other.to_string(),
        };
        out.insert(k.clone(), text);
    }
    Ok(out)
}

/// The whole PAR rule set (FAPI 2.0 §5.3.2.2 and MS §5.3.1): with a `request` parameter,
/// the request object is verified and only its parameters are validated; without one,
/// the form parameters are, unless the client must sign its requests.
pub fn validate_pushed(
    params: &HashMap<&str, &str>,
    client: &Client,
    issuer: &str,
    now: i64,
) -> OAuthResult<AuthorizationRequest> {
    let Some(jws) = params.get("request").copied() else {
        if client.require_signed_request_object {
            return Err(OAuthError::invalid_request(
                "this client must send its authorization request as a signed request object",
            ));
        }
        return validate_par(params, client, now);
    };
    if params.contains_key("request_uri") {
        return Err(OAuthError::invalid_request(
            "request_uri is not allowed in a pushed authorization request",
        ));
    }
    if let Some(id) = params.get("client_id")
        && *id != client.client_id
    {
        return Err(OAuthError::invalid_request(
            "client_id does not match the authenticated client",
        ));
    }
    let inner = verify_request_object(jws, client, issuer, now)?;
    let map: HashMap<&str, &str> = inner
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    validate_par(&map, client, now)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use crate::client::{ClientAuthMethod, GrantType};
    use fapi_jose::{Alg, Jwks, SigningKey};
    use serde_json::json;

    const ISS: &str = "https://as.example";
    const NOW: i64 = 1_800_000_000;
    const CH: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";

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
            redirect_uris: vec!["https://tpp.example/cb".into()],
            grant_types: vec![GrantType::AuthorizationCode],
            scope: "openid accounts".into(),
            tls_client_auth_subject_dn: None,
            tls_client_auth_san_dns: None,
            id_token_signed_response_alg: Alg::ES256,
            introspection_allowed: false,
            dpop_bound_access_tokens: false,
            require_signed_request_object: true,
            authorization_signed_response_alg: None,
            authorization_details_types: vec![],
        };
        (k, c)
    }

    fn claims() -> Value {
        json!({"iss": "c1", "client_id": "c1", "aud": ISS, "nbf": NOW, "exp": NOW + 300,
            "response_type": "code", "redirect_uri": "https://tpp.example/cb",
            "scope": "openid", "code_challenge": CH, "code_challenge_method": "S256",
            "state": "inner", "max_age": 300})
    }

    fn run(
        k: &SigningKey,
        c: &Client,
        typ: Option<&str>,
        cl: &Value,
    ) -> OAuthResult<AuthorizationRequest> {
        let t = k.sign_jwt(typ, cl).unwrap();
        let p: HashMap<&str, &str> = [
            ("request", t.as_str()),
            ("client_id", "c1"),
            ("state", "outer"),
        ]
        .into_iter()
        .collect();
        validate_pushed(&p, c, ISS, NOW)
    }

    #[test]
    fn accepts_good_objects_and_ignores_outer_values() {
        let (k, c) = setup();
        let r = run(&k, &c, Some(TYP), &claims()).unwrap();
        assert_eq!(r.state.as_deref(), Some("inner"));
        assert_eq!(r.max_age, Some(300));
        for typ in [None, Some("JWT")] {
            assert!(run(&k, &c, typ, &claims()).is_ok());
        }
        let mut cl = claims();
        cl["aud"] = json!(["https://other.example", ISS]);
        cl["nbf"] = json!(NOW + 8);
        assert!(run(&k, &c, Some(TYP), &cl).is_ok());
    }

    #[test]
    fn rejects_each_broken_rule() {
        let (k, c) = setup();
        let edits: Vec<(&str, Value)> = vec![
            ("exp", Value::Null),
            ("nbf", Value::Null),
            ("exp", json!(NOW - 1)),
            ("nbf", json!(NOW - 3601)),
            ("nbf", json!(NOW + 61)),
            ("iss", json!("c2")),
            ("client_id", json!("c2")),
            ("aud", json!("https://as.example/par")),
            ("aud", json!(["https://other.example"])),
            ("request_uri", json!("urn:x")),
        ];
        for (field, value) in edits {
            let mut cl = claims();
            if value.is_null() {
                cl.as_object_mut().unwrap().remove(field);
            } else {
                cl[field] = value.clone();
            }
            let e = run(&k, &c, Some(TYP), &cl).expect_err(field);
            assert_eq!(e.code, ErrorCode::InvalidRequestObject, "{field}={value}");
        }
        let mut cl = claims();
        cl["nbf"] = json!(NOW - 100);
        cl["exp"] = json!(NOW - 100 + 3601);
        assert!(run(&k, &c, Some(TYP), &cl).is_err());
        assert!(run(&k, &c, Some("at+jwt"), &claims()).is_err());
        let other = SigningKey::generate(Alg::ES256, "k1").unwrap();
        assert!(run(&other, &c, Some(TYP), &claims()).is_err());
    }

    #[test]
    fn require_signed_refuses_plain_par() {
        let (_, mut c) = setup();
        let p: HashMap<&str, &str> = [
            ("response_type", "code"),
            ("redirect_uri", "https://tpp.example/cb"),
            ("scope", "openid"),
            ("code_challenge", CH),
            ("code_challenge_method", "S256"),
        ]
        .into_iter()
        .collect();
        let e = validate_pushed(&p, &c, ISS, NOW).unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidRequest);
        c.require_signed_request_object = false;
        assert!(validate_pushed(&p, &c, ISS, NOW).is_ok());
    }
}
