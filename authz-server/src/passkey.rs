//! WebAuthn relying party for customer passkeys (webauthn-rs): the RP configuration
//! (rp_id = the public host, origin = the issuer), the opaque user handle, and the
//! ceremony state kept server-side in the ephemeral store, bound to one interaction and
//! taken (single use) when the browser answers.
//!
//! Sign-in is username-first: the allowed credentials are the customer's stored passkeys
//! (webauthn-rs `start_passkey_authentication`, user verification required), because
//! `start_passkey_registration` does not ask for discoverable (resident) credentials.

use crate::state::AppState;
use authz_core::{OAuthError, OAuthResult};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use webauthn_rs::prelude::{
    CredentialID, Passkey, PasskeyAuthentication, PasskeyRegistration, PublicKeyCredential, Url,
    Uuid, Webauthn, WebauthnBuilder,
};

/// Ephemeral namespaces of the ceremony states, keyed by the interaction id's digest.
pub const NS_AUTH: &str = "pk_auth";
pub const NS_REG: &str = "pk_reg";

/// A ceremony must finish within this many seconds (and within the interaction).
pub const CEREMONY_TTL_SECS: i64 = 300;

/// The longest passkey name kept.
pub const MAX_NAME_CHARS: usize = 60;

/// The relying party: `rp_id` is the configured public host (`localhost` in the sandbox),
/// the only accepted origin is the issuer (scheme, host and port).
pub fn relying_party(st: &AppState) -> OAuthResult<Webauthn> {
    let origin = Url::parse(&st.issuer).map_err(|e| OAuthError::server_error(e.to_string()))?;
    WebauthnBuilder::new(&st.config.public_host, &origin)
        .and_then(|b| b.rp_name("Wekeza Bank").build())
        .map_err(|e| OAuthError::server_error(format!("webauthn configuration: {e}")))
}

/// The WebAuthn user handle of a customer: stable, opaque (reveals neither the customer
/// id nor the username), 16 bytes as webauthn-rs wants a UUID.
pub fn user_handle(customer_id: &str) -> Uuid {
    let d = Sha256::digest(format!("wekeza-passkey-user-handle:{customer_id}").as_bytes());
    let mut b = [0u8; 16];
    b.copy_from_slice(&d[..16]);
    Uuid::from_bytes(b)
}

/// The credential id as stored: base64url without padding.
pub fn credential_id_text(id: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(id)
}

pub fn cred_id_of(p: &Passkey) -> String {
    let id: &CredentialID = p.cred_id();
    credential_id_text(id.as_ref())
}

/// The signature counter inside a serialized passkey (0 when it has none).
pub fn counter_of(credential: &serde_json::Value) -> i64 {
    credential
        .pointer("/cred/counter")
        .and_then(serde_json::Value::as_i64)
        .unwrap_or(0)
}

/// Sign-in ceremony state: who is signing in and webauthn-rs's challenge state.
#[derive(Serialize, Deserialize)]
pub struct AuthState {
    pub interaction_id: String,
    pub customer_id: String,
    pub state: PasskeyAuthentication,
}

/// Enrolment ceremony state.
#[derive(Serialize, Deserialize)]
pub struct RegState {
    pub interaction_id: String,
    pub customer_id: String,
    pub state: PasskeyRegistration,
}

/// Store a ceremony state for the interaction, replacing an unfinished one.
pub async fn put_state<T: Serialize>(
    st: &AppState,
    ns: &str,
    interaction_id: &str,
    interaction_expires_at: i64,
    value: &T,
) -> OAuthResult<()> {
    let now = st.clock.now();
    let v = serde_json::to_string(value).map_err(|e| OAuthError::server_error(e.to_string()))?;
    let expires = interaction_expires_at.min(now + CEREMONY_TTL_SECS);
    st.eph
        .put(ns, &crate::digest(interaction_id), &v, expires, now)
        .await
        .map_err(crate::client_auth::store)
}

/// Take (read and delete, atomically) the interaction's ceremony state: a state is
/// answered at most once, whatever the outcome.
pub async fn take_state<T: for<'de> Deserialize<'de>>(
    st: &AppState,
    ns: &str,
    interaction_id: &str,
) -> OAuthResult<Option<T>> {
    let now = st.clock.now();
    let v = st
        .eph
        .take(ns, &crate::digest(interaction_id), now)
        .await
        .map_err(crate::client_auth::store)?;
    Ok(v.and_then(|v| serde_json::from_str(&v).ok()))
}

// --- the sign-in ceremony, shared by the authorization and the dashboard ------------

/// The start of a passkey sign-in for the customer a username named.
pub enum Begun {
    /// Options for `navigator.credentials.get` (JSON) and the state to keep server-side.
    Challenge {
        options: String,
        state: PasskeyAuthentication,
        customer_id: String,
        passkeys: usize,
    },
    /// Unknown username, or a customer without a (readable) passkey: callers answer both
    /// the same way so usernames cannot be probed.
    NoPasskey,
}

/// Start the authentication ceremony over the customer's stored passkeys (user
/// verification required by webauthn-rs's passkey flow).
pub async fn begin_sign_in(
    st: &AppState,
    customer: Option<&authz_store::CustomerRecord>,
) -> OAuthResult<Begun> {
    let Some(customer) = customer else {
        return Ok(Begun::NoPasskey);
    };
    let records = st
        .store
        .list_passkeys(&customer.id)
        .await
        .map_err(crate::client_auth::store)?;
    let keys: Vec<Passkey> = records
        .iter()
        .filter_map(|r| match serde_json::from_value::<Passkey>(r.credential.clone()) {
            Ok(k) => Some(k),
            Err(e) => {
                tracing::error!(credential_id = %r.credential_id, error = %e, "stored passkey unreadable");
                None
            }
        })
        .collect();
    if keys.is_empty() {
        return Ok(Begun::NoPasskey);
    }
    let rp = relying_party(st)?;
    let (challenge, state) = rp
        .start_passkey_authentication(&keys)
        .map_err(|e| OAuthError::server_error(e.to_string()))?;
    let options =
        serde_json::to_string(&challenge).map_err(|e| OAuthError::server_error(e.to_string()))?;
    Ok(Begun::Challenge {
        options,
        state,
        customer_id: customer.id.clone(),
        passkeys: keys.len(),
    })
}

/// A verified passkey sign-in.
pub struct SignedIn {
    pub credential_id: String,
    pub counter: i64,
    pub backup_state: bool,
}

/// Why the browser's answer was refused: a short word for the audit trail (the detail
/// goes to the log).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    NoCredential,
    MalformedCredential,
    NotTheCustomers,
    VerificationFailed,
    UserNotVerified,
    CounterNotIncreasing,
}

impl Refused {
    pub fn word(self) -> &'static str {
        match self {
            Self::NoCredential => "no_credential",
            Self::MalformedCredential => "malformed_credential",
            Self::NotTheCustomers => "not_the_customers",
            Self::VerificationFailed => "verification_failed",
            Self::UserNotVerified => "user_not_verified",
            Self::CounterNotIncreasing => "counter_not_increasing",
        }
    }
}

/// Check the browser's assertion (`raw`, JSON) against the ceremony state taken for
/// `customer_id`: the credential must be that customer's; webauthn-rs checks origin,
/// rp_id hash, challenge, signature and user verification; the new counter and backup
/// state are stored only if no other sign-in moved the counter past it (a cloned
/// authenticator racing). `Err` is a server fault, `Ok(Err)` a refused answer.
pub async fn finish_sign_in(
    st: &AppState,
    customer_id: &str,
    raw: &str,
    state: &PasskeyAuthentication,
) -> OAuthResult<Result<SignedIn, Refused>> {
    if raw.is_empty() {
        return Ok(Err(Refused::NoCredential));
    }
    let Ok(answer) = serde_json::from_str::<PublicKeyCredential>(raw) else {
        return Ok(Err(Refused::MalformedCredential));
    };
    let credential_id = credential_id_text(answer.get_credential_id());
    let record = st
        .store
        .find_passkey(&credential_id)
        .await
        .map_err(crate::client_auth::store)?;
    let Some(record) = record.filter(|r| r.customer_id == customer_id) else {
        return Ok(Err(Refused::NotTheCustomers));
    };
    let mut key: Passkey = serde_json::from_value(record.credential.clone())
        .map_err(|e| OAuthError::server_error(e.to_string()))?;
    let result = match relying_party(st)?.finish_passkey_authentication(&answer, state) {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(customer_id, error = ?e, "passkey verification failed");
            return Ok(Err(Refused::VerificationFailed));
        }
    };
    if !result.user_verified() {
        return Ok(Err(Refused::UserNotVerified));
    }
    key.update_credential(&result);
    let updated =
        serde_json::to_value(&key).map_err(|e| OAuthError::server_error(e.to_string()))?;
    let counter = i64::from(result.counter());
    let moved = st
        .store
        .record_passkey_use(&credential_id, &updated, counter, st.clock.now())
        .await
        .map_err(crate::client_auth::store)?;
    if !moved {
        return Ok(Err(Refused::CounterNotIncreasing));
    }
    Ok(Ok(SignedIn {
        credential_id,
        counter,
        backup_state: result.backup_state(),
    }))
}

/// A customer-given name, trimmed, control characters dropped, at most
/// [`MAX_NAME_CHARS`]; empty input gives `default`.
pub fn clean_name(input: &str, default: &str) -> String {
    let s: String = input
        .chars()
        .filter(|c| !c.is_control())
        .collect::<String>()
        .trim()
        .chars()
        .take(MAX_NAME_CHARS)
        .collect();
    if s.is_empty() { default.to_owned() } else { s }
}

/// "3 Mar 2026".
pub fn date_text(unix: i64) -> String {
    let f = time::macros::format_description!("[day padding:none] [month repr:short] [year]");
    time::OffsetDateTime::from_unix_timestamp(unix)
        .ok()
        .and_then(|t| t.format(&f).ok())
        .unwrap_or_default()
}

/// "3 Mar 2026, 14:05 UTC".
pub fn date_time_text(unix: i64) -> String {
    let f = time::macros::format_description!(
        "[day padding:none] [month repr:short] [year], [hour]:[minute] UTC"
    );
    time::OffsetDateTime::from_unix_timestamp(unix)
        .ok()
        .and_then(|t| t.format(&f).ok())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_handle_is_stable_and_opaque() {
        assert_eq!(user_handle("cust-1"), user_handle("cust-1"));
        assert_ne!(user_handle("cust-1"), user_handle("cust-2"));
        assert!(!user_handle("cust-1").to_string().contains("cust"));
    }

    #[test]
    fn names_are_cleaned() {
        assert_eq!(clean_name("  Laptop\u{0007} ", "d"), "Laptop");
        assert_eq!(clean_name(" \n ", "Passkey added"), "Passkey added");
        assert_eq!(
            clean_name(&"x".repeat(100), "d").chars().count(),
            MAX_NAME_CHARS
        );
    }

    #[test]
    fn dates_read_well() {
        assert_eq!(date_text(1_772_546_700), "3 Mar 2026");
        assert_eq!(date_time_text(1_772_546_700), "3 Mar 2026, 14:05 UTC");
        assert_eq!(counter_of(&serde_json::json!({"cred": {"counter": 7}})), 7);
        assert_eq!(counter_of(&serde_json::json!({})), 0);
    }
}
