//! Token shapes: JWT access tokens (RFC 9068) always sender-constrained (FAPI 2.0
//! §5.3.2.1-4/5), ID tokens (OIDC Core §2), and the confirmation (`cnf`) that binds them.

use serde::{Deserialize, Serialize};

/// Exactly one proof-of-possession binding per token: mTLS (RFC 8705 §3.1) or DPoP
/// (RFC 9449 §6). "Both" and "neither" cannot be expressed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Confirmation {
    Mtls { x5t_s256: String },
    Dpop { jkt: String },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Cnf {
    #[serde(rename = "x5t#S256", default, skip_serializing_if = "Option::is_none")]
    pub x5t_s256: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jkt: Option<String>,
}

impl Confirmation {
    pub fn to_cnf(&self) -> Cnf {
        match self {
            Self::Mtls { x5t_s256 } => Cnf {
                x5t_s256: Some(x5t_s256.clone()),
                jkt: None,
            },
            Self::Dpop { jkt } => Cnf {
                x5t_s256: None,
                jkt: Some(jkt.clone()),
            },
        }
    }

    pub fn from_cnf(cnf: &Cnf) -> Option<Self> {
        match (&cnf.x5t_s256, &cnf.jkt) {
            (Some(x), None) => Some(Self::Mtls {
                x5t_s256: x.clone(),
            }),
            (None, Some(j)) => Some(Self::Dpop { jkt: j.clone() }),
            _ => None,
        }
    }
}

/// RFC 9068 §2.2 claims plus the platform's `consent_id`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AccessTokenClaims {
    pub iss: String,
    pub sub: String,
    pub aud: String,
    pub client_id: String,
    pub iat: i64,
    pub exp: i64,
    pub jti: String,
    pub scope: String,
    pub cnf: Cnf,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consent_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acr: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_time: Option<i64>,
    /// RFC 9396 §9.1: the granted details, for consents that came in as
    /// `authorization_details`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authorization_details: Option<serde_json::Value>,
}

pub const ACCESS_TOKEN_TYP: &str = "at+jwt";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IdTokenClaims {
    pub iss: String,
    pub sub: String,
    pub aud: String,
    pub azp: String,
    pub iat: i64,
    pub exp: i64,
    pub auth_time: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nonce: Option<String>,
    pub acr: String,
    pub amr: Vec<String>,
    /// UK OB: the intent this authorization was for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub openbanking_intent_id: Option<String>,
    /// Released when the `claims` parameter asked for it (OIDC §5.5).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// How the customer authenticated; carried from login to every token of the grant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthContext {
    pub auth_time: i64,
    pub acr: String,
    pub amr: Vec<String>,
}

/// Strong customer authentication (PSD2 RTS), the value UK Open Banking uses.
pub const ACR_SCA: &str = "urn:openbanking:psd2:sca";

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn cnf_is_exactly_one_binding() {
        let m = Confirmation::Mtls {
            x5t_s256: "abc".into(),
        };
        assert_eq!(
            serde_json::to_string(&m.to_cnf()).unwrap(),
            r#"{"x5t#S256":"abc"}"#
        );
        assert_eq!(Confirmation::from_cnf(&m.to_cnf()), Some(m));
        let both = Cnf {
            x5t_s256: Some("a".into()),
            jkt: Some("b".into()),
        };
        assert_eq!(Confirmation::from_cnf(&both), None);
        assert_eq!(Confirmation::from_cnf(&Cnf::default()), None);
    }
}
