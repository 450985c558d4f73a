//! The one OAuth error vocabulary (RFC 6749 §5.2, RFC 6750 §3.1, RFC 9126 §2.3,
//! RFC 9449 §5/§7.1, RFC 7009 §2.2.1). Rendered to JSON in exactly one place, in the server.

use std::borrow::Cow;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    InvalidRequest,
    InvalidClient,
    InvalidGrant,
    UnauthorizedClient,
    UnsupportedGrantType,
    InvalidScope,
    AccessDenied,
    UnsupportedResponseType,
    InvalidRequestUri,
    InvalidRequestObject,
    InvalidAuthorizationDetails,
    InvalidToken,
    InsufficientScope,
    InvalidDpopProof,
    UseDpopNonce,
    UnsupportedTokenType,
    MethodNotAllowed,
    ServerError,
    TemporarilyUnavailable,
    /// RFC 7591 §3.2.2 registration errors.
    InvalidRedirectUri,
    InvalidClientMetadata,
    InvalidSoftwareStatement,
    UnapprovedSoftwareStatement,
    /// Throttled by a plan's rate limit or quota (ADR 0015). RFC 6749 has no code for
    /// it: `temporarily_unavailable` (RFC 6749 §4.1.2.1, "temporary overloading") with
    /// HTTP 429 and `Retry-After`, as `MethodNotAllowed` is `invalid_request` with 405.
    RateLimited,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InvalidRequest => "invalid_request",
            Self::InvalidClient => "invalid_client",
            Self::InvalidGrant => "invalid_grant",
            Self::UnauthorizedClient => "unauthorized_client",
            Self::UnsupportedGrantType => "unsupported_grant_type",
            Self::InvalidScope => "invalid_scope",
            Self::AccessDenied => "access_denied",
            Self::UnsupportedResponseType => "unsupported_response_type",
            Self::InvalidRequestUri => "invalid_request_uri",
            Self::InvalidRequestObject => "invalid_request_object",
            Self::InvalidAuthorizationDetails => "invalid_authorization_details",
            Self::InvalidToken => "invalid_token",
            Self::InsufficientScope => "insufficient_scope",
            Self::InvalidDpopProof => "invalid_dpop_proof",
            Self::UseDpopNonce => "use_dpop_nonce",
            Self::UnsupportedTokenType => "unsupported_token_type",
            Self::MethodNotAllowed => "invalid_request",
            Self::ServerError => "server_error",
            Self::TemporarilyUnavailable => "temporarily_unavailable",
            Self::InvalidRedirectUri => "invalid_redirect_uri",
            Self::InvalidClientMetadata => "invalid_client_metadata",
            Self::InvalidSoftwareStatement => "invalid_software_statement",
            Self::UnapprovedSoftwareStatement => "unapproved_software_statement",
            Self::RateLimited => "temporarily_unavailable",
        }
    }

    /// HTTP status for a direct (non-redirect) error response.
    pub fn http_status(self) -> u16 {
        match self {
            Self::InvalidClient | Self::InvalidToken => 401,
            Self::InsufficientScope | Self::AccessDenied => 403,
            Self::MethodNotAllowed => 405,
            Self::ServerError => 500,
            Self::TemporarilyUnavailable => 503,
            Self::RateLimited => 429,
            _ => 400,
        }
    }
}

/// An OAuth error: a code, a description safe to show the client, and an optional detail
/// for our logs only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OAuthError {
    pub code: ErrorCode,
    pub description: Cow<'static, str>,
    pub detail: Option<String>,
}

impl OAuthError {
    pub fn new(code: ErrorCode, description: impl Into<Cow<'static, str>>) -> Self {
        Self {
            code,
            description: description.into(),
            detail: None,
        }
    }

    pub fn with_detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }

    pub fn invalid_request(d: impl Into<Cow<'static, str>>) -> Self {
        Self::new(ErrorCode::InvalidRequest, d)
    }
    pub fn invalid_client(d: impl Into<Cow<'static, str>>) -> Self {
        Self::new(ErrorCode::InvalidClient, d)
    }
    pub fn invalid_grant(d: impl Into<Cow<'static, str>>) -> Self {
        Self::new(ErrorCode::InvalidGrant, d)
    }
    pub fn invalid_scope(d: impl Into<Cow<'static, str>>) -> Self {
        Self::new(ErrorCode::InvalidScope, d)
    }
    pub fn invalid_token(d: impl Into<Cow<'static, str>>) -> Self {
        Self::new(ErrorCode::InvalidToken, d)
    }
    /// Infrastructure failures: the client learns nothing but that it was our fault.
    pub fn server_error(detail: impl Into<String>) -> Self {
        Self::new(
            ErrorCode::ServerError,
            "the server could not complete the request",
        )
        .with_detail(detail)
    }
}

impl std::fmt::Display for OAuthError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code.as_str(), self.description)
    }
}

impl std::error::Error for OAuthError {}

pub type OAuthResult<T> = Result<T, OAuthError>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_map_to_rfc_strings_and_statuses() {
        let table = [
            (ErrorCode::InvalidRequest, "invalid_request", 400),
            (ErrorCode::InvalidClient, "invalid_client", 401),
            (ErrorCode::InvalidGrant, "invalid_grant", 400),
            (ErrorCode::UnauthorizedClient, "unauthorized_client", 400),
            (
                ErrorCode::UnsupportedGrantType,
                "unsupported_grant_type",
                400,
            ),
            (ErrorCode::InvalidScope, "invalid_scope", 400),
            (ErrorCode::AccessDenied, "access_denied", 403),
            (
                ErrorCode::UnsupportedResponseType,
                "unsupported_response_type",
                400,
            ),
            (ErrorCode::InvalidRequestUri, "invalid_request_uri", 400),
            (
                ErrorCode::InvalidRequestObject,
                "invalid_request_object",
                400,
            ),
            (ErrorCode::InvalidToken, "invalid_token", 401),
            (ErrorCode::InsufficientScope, "insufficient_scope", 403),
            (ErrorCode::InvalidDpopProof, "invalid_dpop_proof", 400),
            (ErrorCode::UseDpopNonce, "use_dpop_nonce", 400),
            (
                ErrorCode::UnsupportedTokenType,
                "unsupported_token_type",
                400,
            ),
            (ErrorCode::MethodNotAllowed, "invalid_request", 405),
            (ErrorCode::ServerError, "server_error", 500),
            (
                ErrorCode::TemporarilyUnavailable,
                "temporarily_unavailable",
                503,
            ),
            (ErrorCode::RateLimited, "temporarily_unavailable", 429),
        ];
        for (code, s, status) in table {
            assert_eq!(code.as_str(), s);
            assert_eq!(code.http_status(), status);
        }
    }
}
