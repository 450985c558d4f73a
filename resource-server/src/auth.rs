//! What a request is allowed to see: the [`Grant`] a [`TokenVerifier`] derives from the
//! access token (and its consent), and the UK OB permission vocabulary.
//!
//! The resource server enforces the grant itself (`routes`); how a token becomes a grant
//! is behind the trait, so the authorization server's integration (JWT + consent lookup,
//! [`crate::jwt::JwtVerifier`]) can change without touching the API layer.

use std::collections::BTreeSet;
use time::OffsetDateTime;

/// UK Open Banking account-access permissions (Read/Write API v4,
/// `OBInternalPermissions1Code`): the consent domain's own type, so the authorization
/// server and the resource server read one vocabulary.
pub use openbanking::Permission;

/// What one access token, through its consent, allows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    /// The customer (the authorization server's `sub`).
    pub subject: String,
    pub client_id: String,
    pub consent_id: String,
    pub permissions: BTreeSet<Permission>,
    /// The accounts the customer selected; `None` means every account the customer holds.
    pub account_ids: Option<BTreeSet<String>>,
    /// The consent's transaction window (inclusive booking date-times).
    pub transaction_from: Option<OffsetDateTime>,
    pub transaction_to: Option<OffsetDateTime>,
    /// The earlier of the token's and the consent's expiry.
    pub expires_at: OffsetDateTime,
}

impl Grant {
    pub fn has(&self, p: Permission) -> bool {
        self.permissions.contains(&p)
    }

    pub fn has_any(&self, ps: &[Permission]) -> bool {
        ps.iter().any(|p| self.has(*p))
    }
}

/// Why a token was not accepted. Rendered as an OB error with an RFC 6750 / RFC 9449
/// `WWW-Authenticate` challenge.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("no access token in the Authorization header")]
    MissingToken,
    #[error("malformed request: {0}")]
    InvalidRequest(&'static str),
    #[error("invalid access token: {0}")]
    InvalidToken(&'static str),
    #[error("the token is not bound to the presented certificate or proof: {0}")]
    BindingMismatch(&'static str),
    #[error("invalid DPoP proof: {0}")]
    InvalidDpopProof(&'static str),
    /// The consent behind the token is revoked, rejected, expired or unknown.
    #[error("consent is not authorised: {0}")]
    ConsentInactive(&'static str),
    #[error("the token's scope does not cover this API")]
    InsufficientScope,
    #[error("authorization backend unavailable")]
    Unavailable(String),
    /// The caller's plan refused the call (rate or quota, ADR 0015): 429 after this many
    /// seconds.
    #[error("too many requests: {1}")]
    Throttled(u64, String),
}

/// What a client-credentials access token allows: calls a client makes for itself (the
/// consent endpoints), with no customer and no consent behind them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientGrant {
    pub client_id: String,
}

/// A customer's (authorization-code) token for an API other than account information
/// (payments): who, which client, which consent. The caller checks the consent itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CustomerToken {
    pub subject: String,
    pub client_id: String,
    pub consent_id: String,
}

/// Turns the credentials on a request into a [`Grant`].
#[async_trait::async_trait]
pub trait TokenVerifier: Send + Sync {
    /// * `authorization`: the single `Authorization` header value (`Bearer …` / `DPoP …`).
    /// * `client_cert_der`: the TLS client certificate of the connection, if any.
    /// * `dpop`: the single `DPoP` header value, if any.
    /// * `method`, `url`: the request's method and absolute URL without query (DPoP `htm`/`htu`).
    async fn verify(
        &self,
        authorization: &str,
        client_cert_der: Option<&[u8]>,
        dpop: Option<&str>,
        method: &str,
        url: &str,
    ) -> Result<Grant, AuthError>;

    /// The same checks for a client-credentials token (`sub` = `client_id`, no
    /// `consent_id`): what the consent endpoints need. A customer's token is refused
    /// ([`AuthError::InsufficientScope`]).
    async fn verify_client(
        &self,
        authorization: &str,
        client_cert_der: Option<&[u8]>,
        dpop: Option<&str>,
        method: &str,
        url: &str,
    ) -> Result<ClientGrant, AuthError>;

    /// [`Self::verify_client`] for a token that must carry `scope` (e.g. `payments`)
    /// instead of the account-information scope.
    async fn verify_client_scope(
        &self,
        _authorization: &str,
        _client_cert_der: Option<&[u8]>,
        _dpop: Option<&str>,
        _method: &str,
        _url: &str,
        _scope: &str,
    ) -> Result<ClientGrant, AuthError> {
        Err(AuthError::InsufficientScope)
    }

    /// Every token check for a customer's token that must carry `scope`, without the
    /// account-access consent checks: the consent is the caller's to check. A
    /// client-credentials token is refused ([`AuthError::InsufficientScope`]).
    async fn verify_customer_scope(
        &self,
        _authorization: &str,
        _client_cert_der: Option<&[u8]>,
        _dpop: Option<&str>,
        _method: &str,
        _url: &str,
        _scope: &str,
    ) -> Result<CustomerToken, AuthError> {
        Err(AuthError::InsufficientScope)
    }
}

/// The TLS client certificate of the connection, placed in the request extensions by
/// the listener (the RS's mTLS acceptor, wired in with the platform start).
#[derive(Debug, Clone)]
pub struct PeerCertificate(pub std::sync::Arc<[u8]>);

/// Splits `Authorization: <scheme> <token>`; the scheme is case-insensitive (RFC 9110
/// §11.1, FAPI 2.0 §5.3.4 R1).
pub fn parse_authorization(value: &str) -> Result<(Scheme, &str), AuthError> {
    let (scheme, token) = value
        .split_once(' ')
        .ok_or(AuthError::InvalidToken("expected `<scheme> <token>`"))?;
    let token = token.trim_start_matches(' ');
    let scheme = if scheme.eq_ignore_ascii_case("bearer") {
        Scheme::Bearer
    } else if scheme.eq_ignore_ascii_case("dpop") {
        Scheme::Dpop
    } else {
        return Err(AuthError::MissingToken);
    };
    // RFC 6750 §2.1 b64token.
    let ok = !token.is_empty()
        && token.bytes().all(|b| {
            b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'+' | b'/' | b'=')
        });
    if !ok {
        return Err(AuthError::InvalidToken("malformed token"));
    }
    Ok((scheme, token))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    Bearer,
    Dpop,
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn permissions_round_trip_and_schemes_are_case_insensitive() {
        for p in Permission::ALL {
            assert_eq!(p.as_str().parse::<Permission>(), Ok(p));
        }
        assert!("readbalances".parse::<Permission>().is_err());
        assert_eq!(
            parse_authorization("bEaReR abc.def").unwrap(),
            (Scheme::Bearer, "abc.def")
        );
        assert_eq!(parse_authorization("DPOP x").unwrap().0, Scheme::Dpop);
        assert_eq!(
            parse_authorization("Basic abc"),
            Err(AuthError::MissingToken)
        );
        assert!(parse_authorization("Bearer a b").is_err());
        assert!(parse_authorization("Bearer").is_err());
    }
}
