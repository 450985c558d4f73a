//! Records as stored. Times are unix seconds. JSON documents are kept as `serde_json::Value`
//! so the store never depends on the protocol crate's types.

use serde::{Deserialize, Serialize};

/// A registered OAuth client. `metadata` is the RFC 7591-shaped document the protocol
/// layer parses (auth method, JWKS, redirect URIs, scopes, certificate subject...).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClientRecord {
    pub client_id: String,
    pub metadata: serde_json::Value,
    pub created_at: i64,
    pub updated_at: i64,
}

/// A bank customer (PSU). The password is an argon2id PHC string; the TOTP secret is base32.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
pub struct CustomerRecord {
    pub id: String,
    pub username: String,
    pub display_name: String,
    pub password_hash: String,
    pub totp_secret: String,
    /// Last accepted TOTP time-step; 0 if none yet.
    pub totp_last_step: i64,
    pub created_at: i64,
}

impl std::fmt::Debug for CustomerRecord {
    // Keeps the password hash and TOTP secret out of logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CustomerRecord")
            .field("id", &self.id)
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

/// Consent lifecycle, named after the UK Open Banking v3.1 states.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ConsentStatus {
    AwaitingAuthorisation,
    Authorised,
    Rejected,
    Revoked,
    Expired,
    Consumed,
}

impl ConsentStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::AwaitingAuthorisation => "AwaitingAuthorisation",
            Self::Authorised => "Authorised",
            Self::Rejected => "Rejected",
            Self::Revoked => "Revoked",
            Self::Expired => "Expired",
            Self::Consumed => "Consumed",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "AwaitingAuthorisation" => Self::AwaitingAuthorisation,
            "Authorised" => Self::Authorised,
            "Rejected" => Self::Rejected,
            "Revoked" => Self::Revoked,
            "Expired" => Self::Expired,
            "Consumed" => Self::Consumed,
            _ => return None,
        })
    }
}

/// A consent (grant): what a customer allowed a client to do. Every token carries its id.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConsentRecord {
    pub id: String,
    pub client_id: String,
    /// The customer who decided; `None` while awaiting authorisation.
    pub customer_id: Option<String>,
    /// What kind of consent: `oauth` for a plain scope grant; later `account-access`, `payment`...
    pub kind: String,
    pub scopes: String,
    pub status: ConsentStatus,
    /// Kind-specific detail (permissions, RAR `authorization_details`...).
    pub details: serde_json::Value,
    pub created_at: i64,
    pub updated_at: i64,
    pub expires_at: Option<i64>,
}

/// One line of a consent's audit trail.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditEntry {
    pub consent_id: String,
    pub at: i64,
    /// `customer:<id>`, `client:<id>`, `system`.
    pub actor: String,
    /// `created`, `authorised`, `rejected`, `revoked`, `code_replay_revoked`...
    pub action: String,
    pub detail: String,
}

/// A refresh token, looked up by the SHA-256 digest of its value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RefreshTokenRecord {
    pub digest: String,
    pub client_id: String,
    pub consent_id: Option<String>,
    pub subject: String,
    pub scope: String,
    /// The RFC 8705 / RFC 9449 confirmation the token is bound to, e.g. `{"x5t#S256": "..."}`.
    pub cnf: serde_json::Value,
    /// Authentication context of the original login, repeated in refreshed tokens.
    pub auth: serde_json::Value,
    pub created_at: i64,
    pub expires_at: i64,
    pub revoked_at: Option<i64>,
}

/// A customer's WebAuthn passkey. `credential` is the relying-party library's serialized
/// credential (public key, counter, backup state), opaque to the store.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PasskeyRecord {
    /// The credential id, base64url (unpadded). Unique across all customers.
    pub credential_id: String,
    pub customer_id: String,
    /// The customer's name for it, e.g. "Work laptop".
    pub name: String,
    pub credential: serde_json::Value,
    /// The authenticator's signature counter at the last accepted use (0 = no counter).
    pub sign_count: i64,
    pub created_at: i64,
    pub last_used_at: Option<i64>,
}
