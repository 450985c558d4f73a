//! Registered client metadata (RFC 7591 names) and the rules FAPI 2.0 puts on it:
//! confidential clients only (§5.3.2.1-3), `private_key_jwt` or `tls_client_auth` only
//! (§5.3.2.1-6), https redirect URIs except loopback (§5.3.2.2-8).

use crate::error::{OAuthError, OAuthResult};
use crate::redirect::validate_registered_redirect_uri;
use crate::scope::Scope;
use fapi_jose::{Alg, Jwks};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClientAuthMethod {
    PrivateKeyJwt,
    TlsClientAuth,
}

impl ClientAuthMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::PrivateKeyJwt => "private_key_jwt",
            Self::TlsClientAuth => "tls_client_auth",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GrantType {
    AuthorizationCode,
    RefreshToken,
    ClientCredentials,
}

impl GrantType {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "authorization_code" => Some(Self::AuthorizationCode),
            "refresh_token" => Some(Self::RefreshToken),
            "client_credentials" => Some(Self::ClientCredentials),
            _ => None,
        }
    }
}

/// The one proof-of-possession mechanism a client's tokens use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SenderConstraint {
    /// RFC 8705 §3: bound to the client certificate of the connection.
    Mtls,
    /// RFC 9449: bound to the key of the client's DPoP proofs.
    Dpop,
}

/// A client as the protocol layer sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Client {
    pub client_id: String,
    pub client_name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_uri: Option<String>,
    pub token_endpoint_auth_method: ClientAuthMethod,
    /// Keys for `private_key_jwt` (and later request objects and DPoP-less signing).
    #[serde(default)]
    pub jwks: Jwks,
    pub redirect_uris: Vec<String>,
    pub grant_types: Vec<GrantType>,
    /// Space-separated scopes this client may ask for.
    pub scope: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_client_auth_subject_dn: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_client_auth_san_dns: Option<String>,
    #[serde(default = "default_id_token_alg")]
    pub id_token_signed_response_alg: Alg,
    /// Platform extension: this client is a resource server allowed to introspect any
    /// token (RFC 7662 §4 asks us to decide who may).
    #[serde(default)]
    pub introspection_allowed: bool,
    /// RFC 9449 §5.2: this client's access tokens are DPoP-bound (`cnf.jkt`) and every
    /// token request carries a DPoP proof; otherwise they are bound to its certificate
    /// (RFC 8705, `cnf.x5t#S256`). One sender constraint per client, never both.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub dpop_bound_access_tokens: bool,
    /// RFC 9101 §10.5 / FAPI 2.0 MS §5.3.1: every pushed authorization request of this
    /// client must be a signed request object.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub require_signed_request_object: bool,
    /// JARM §3 / FAPI 2.0 MS §5.4.1: this client's authorization responses are signed
    /// JWTs (`response_mode=jwt`), with this algorithm; it must ask for them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authorization_signed_response_alg: Option<Alg>,
    /// RFC 9396 §10: the `authorization_details` types this client may send.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub authorization_details_types: Vec<String>,
}

fn default_id_token_alg() -> Alg {
    Alg::ES256
}

impl Client {
    /// Check a registration document before it is stored.
    pub fn validate(&self) -> OAuthResult<()> {
        let bad = |d: &'static str| Err(OAuthError::invalid_request(d));
        if self.client_id.is_empty() || self.client_id.len() > 128 {
            return bad("client_id must be 1 to 128 characters");
        }
        if self.client_name.trim().is_empty() {
            return bad("client_name is required");
        }
        match self.token_endpoint_auth_method {
            ClientAuthMethod::PrivateKeyJwt => {
                if self.jwks.keys.is_empty() {
                    return bad("private_key_jwt needs at least one key in jwks");
                }
                if self.jwks.keys.iter().any(|k| k.has_private_material()) {
                    return bad("jwks must hold public keys only");
                }
            }
            ClientAuthMethod::TlsClientAuth => {
                if self.tls_client_auth_subject_dn.is_none()
                    == self.tls_client_auth_san_dns.is_none()
                {
                    return bad(
                        "tls_client_auth needs exactly one of tls_client_auth_subject_dn or tls_client_auth_san_dns",
                    );
                }
            }
        }
        if self.require_signed_request_object
            && (self.jwks.keys.is_empty()
                || self.jwks.keys.iter().any(|k| k.has_private_material()))
        {
            return bad("require_signed_request_object needs public keys in jwks");
        }
        if self.grant_types.contains(&GrantType::AuthorizationCode) && self.redirect_uris.is_empty()
        {
            return bad("authorization_code clients need at least one redirect_uri");
        }
        for uri in &self.redirect_uris {
            validate_registered_redirect_uri(uri)?;
        }
        if Scope::parse(&self.scope).is_err() {
            return bad("scope is not a valid scope list");
        }
        Ok(())
    }

    pub fn allowed_scope(&self) -> Scope {
        Scope::parse(&self.scope).unwrap_or_default()
    }

    pub fn may_use(&self, grant: GrantType) -> bool {
        self.grant_types.contains(&grant)
    }

    /// Whether this client is registered for JWT-secured authorization responses.
    pub fn uses_jarm(&self) -> bool {
        self.authorization_signed_response_alg.is_some()
    }

    /// How this client's tokens are sender-constrained (FAPI 2.0 §5.3.2.1-5).
    pub fn sender_constraint(&self) -> SenderConstraint {
        if self.dpop_bound_access_tokens {
            SenderConstraint::Dpop
        } else {
            SenderConstraint::Mtls
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn sender_constraint_defaults_to_mtls_and_round_trips() {
        let mut doc = serde_json::json!({
            "client_id": "c1", "client_name": "TPP", "token_endpoint_auth_method": "tls_client_auth",
            "redirect_uris": ["https://tpp.example/cb"], "grant_types": ["authorization_code"],
            "scope": "openid", "tls_client_auth_subject_dn": "CN=c1",
        });
        // Metadata stored before DPoP existed has no such member: certificate-bound.
        let c: Client = serde_json::from_value(doc.clone()).unwrap();
        assert_eq!(c.sender_constraint(), SenderConstraint::Mtls);
        assert!(
            serde_json::to_value(&c)
                .unwrap()
                .get("dpop_bound_access_tokens")
                .is_none()
        );
        doc["dpop_bound_access_tokens"] = serde_json::json!(true);
        let c: Client = serde_json::from_value(doc).unwrap();
        assert_eq!(c.sender_constraint(), SenderConstraint::Dpop);
        assert!(c.validate().is_ok());
        assert_eq!(
            serde_json::to_value(&c).unwrap()["dpop_bound_access_tokens"],
            true
        );
    }

    #[test]
    fn message_signing_metadata_is_optional_and_checked() {
        let doc = serde_json::json!({
            "client_id": "c1", "client_name": "TPP", "token_endpoint_auth_method": "tls_client_auth",
            "redirect_uris": ["https://tpp.example/cb"], "grant_types": ["authorization_code"],
            "scope": "openid", "tls_client_auth_subject_dn": "CN=c1",
        });
        let c: Client = serde_json::from_value(doc.clone()).unwrap();
        assert!(!c.require_signed_request_object && !c.uses_jarm());
        let v = serde_json::to_value(&c).unwrap();
        assert!(v.get("require_signed_request_object").is_none());
        assert!(v.get("authorization_signed_response_alg").is_none());
        let mut d = doc;
        d["authorization_signed_response_alg"] = serde_json::json!("ES256");
        d["require_signed_request_object"] = serde_json::json!(true);
        let c: Client = serde_json::from_value(d).unwrap();
        assert!(c.uses_jarm());
        // Nothing to verify request objects with.
        assert!(c.validate().is_err());
    }
}
