//! Authorization server metadata (RFC 8414 / OIDC Discovery 1.0), listing exactly what
//! this server does. `mtls_endpoint_aliases` (RFC 8705 §5) point at the listener that asks
//! for client certificates, so browser pages never are. DPoP (RFC 9449) is the other
//! sender constraint, chosen per client. Message Signing: request objects at PAR, JARM.

use fapi_jose::Alg;
use serde_json::{Value, json};

pub struct Endpoints {
    /// Browser-facing base (issuer), e.g. `https://localhost:8443`.
    pub issuer: String,
    /// Back-channel base on the mTLS listener, e.g. `https://localhost:8444`.
    pub mtls_base: String,
}

pub const SCOPES: [&str; 5] = [
    "openid",
    "profile",
    "accounts",
    "payments",
    "offline_access",
];

pub fn metadata(e: &Endpoints, id_token_algs: &[Alg]) -> Value {
    let algs: Vec<&str> = Alg::ALL.iter().map(|a| a.as_str()).collect();
    let id_algs: Vec<&str> = id_token_algs.iter().map(|a| a.as_str()).collect();
    let dpop_algs: Vec<&str> = crate::dpop::SIGNING_ALGS
        .iter()
        .map(|a| a.as_str())
        .collect();
    let m = |p: &str| format!("{}{}", e.mtls_base, p);
    json!({
        "issuer": e.issuer,
        "authorization_endpoint": format!("{}/authorize", e.issuer),
        "jwks_uri": format!("{}/jwks", e.issuer),
        // Back-channel endpoints live only on the listener that asks for a client
        // certificate (mTLS-bound tokens need it; DPoP clients may present none), so they
        // are listed there directly as well as in the aliases.
        "pushed_authorization_request_endpoint": m("/par"),
        "token_endpoint": m("/token"),
        "userinfo_endpoint": m("/userinfo"),
        "introspection_endpoint": m("/introspect"),
        "revocation_endpoint": m("/revoke"),
        "mtls_endpoint_aliases": {
            "pushed_authorization_request_endpoint": m("/par"),
            "token_endpoint": m("/token"),
            "userinfo_endpoint": m("/userinfo"),
            "introspection_endpoint": m("/introspect"),
            "revocation_endpoint": m("/revoke"),
        },
        "require_pushed_authorization_requests": true,
        "response_types_supported": ["code"],
        // JARM (FAPI 2.0 MS §5.4.1) for clients registered with
        // authorization_signed_response_alg.
        "response_modes_supported": ["query", "jwt", "query.jwt"],
        "authorization_signing_alg_values_supported": id_algs,
        "grant_types_supported": ["authorization_code", "refresh_token", "client_credentials"],
        "code_challenge_methods_supported": ["S256"],
        "token_endpoint_auth_methods_supported": ["private_key_jwt", "tls_client_auth"],
        "token_endpoint_auth_signing_alg_values_supported": algs,
        "introspection_endpoint_auth_methods_supported": ["private_key_jwt", "tls_client_auth"],
        "introspection_endpoint_auth_signing_alg_values_supported": algs,
        // RFC 9701: signed introspection responses, for authorised resource servers.
        "introspection_signing_alg_values_supported": ["ES256"],
        "revocation_endpoint_auth_methods_supported": ["private_key_jwt", "tls_client_auth"],
        "revocation_endpoint_auth_signing_alg_values_supported": algs,
        "tls_client_certificate_bound_access_tokens": true,
        // RFC 9449 §5.1: DPoP proofs are accepted with the FAPI 2.0 algorithms.
        "dpop_signing_alg_values_supported": dpop_algs,
        "authorization_response_iss_parameter_supported": true,
        "scopes_supported": SCOPES,
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": id_algs,
        "claims_supported": ["sub", "iss", "aud", "exp", "iat", "auth_time", "nonce", "acr", "amr", "azp", "name", "openbanking_intent_id"],
        "claims_parameter_supported": true,
        "authorization_details_types_supported": openbanking::RAR_TYPES_SUPPORTED,
        // Signed request objects (RFC 9101) at the PAR endpoint only (FAPI 2.0 MS §5.3.1).
        "request_parameter_supported": true,
        "request_object_signing_alg_values_supported": algs,
        // Only PAR-issued request_uris are accepted, but they are accepted.
        "request_uri_parameter_supported": true,
        "acr_values_supported": [crate::tokens::ACR_SCA],
        "prompt_values_supported": ["none", "login", "consent"],
    })
}

/// RFC 7591 §3 / RFC 8414 §2: advertise the registration endpoint (on the mTLS listener,
/// where registration requests must arrive) once dynamic registration is configured.
pub fn add_registration_endpoint(doc: &mut Value, mtls_base: &str) {
    let url = Value::String(format!("{mtls_base}/register"));
    if let Some(aliases) = doc
        .get_mut("mtls_endpoint_aliases")
        .and_then(Value::as_object_mut)
    {
        aliases.insert("registration_endpoint".into(), url.clone());
    }
    if let Some(o) = doc.as_object_mut() {
        o.insert("registration_endpoint".into(), url);
    }
}
