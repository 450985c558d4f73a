//! The UK Open Banking error response (`OBErrorResponse1`), rendered in exactly one
//! place. Statuses follow the Read/Write API: 400 for a malformed request or an unknown
//! resource id, 401 for a missing/invalid/expired/revoked token, 403 for a permission or
//! resource outside the consent, 404 for an endpoint that does not exist, 406, 415, 429
//! (throttled, with `Retry-After`), 503 (a store did not answer, with `Retry-After`).

use crate::auth::AuthError;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

/// `OBErrorResponse1`.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "PascalCase")]
pub struct ObErrorResponse {
    /// High-level textual code, e.g. `400 BadRequest`.
    pub code: String,
    /// Unique reference of this error instance.
    pub id: String,
    pub message: String,
    pub errors: Vec<ObErrorDetail>,
}

/// `OBError1`.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "PascalCase")]
pub struct ObErrorDetail {
    /// `UK.OBIE.*` error code.
    pub error_code: String,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
}

#[derive(Debug, Clone)]
pub struct ObError {
    pub status: StatusCode,
    pub message: String,
    pub errors: Vec<ObErrorDetail>,
    pub www_authenticate: Option<String>,
    /// `Retry-After` seconds (429, 503).
    pub retry_after: Option<u64>,
}

pub mod codes {
    pub const FIELD_INVALID: &str = "UK.OBIE.Field.Invalid";
    pub const FIELD_INVALID_DATE: &str = "UK.OBIE.Field.InvalidDate";
    pub const FIELD_UNEXPECTED: &str = "UK.OBIE.Field.Unexpected";
    pub const HEADER_INVALID: &str = "UK.OBIE.Header.Invalid";
    pub const HEADER_MISSING: &str = "UK.OBIE.Header.Missing";
    pub const CONSENT_MISMATCH: &str = "UK.OBIE.Resource.ConsentMismatch";
    pub const INVALID_CONSENT_STATUS: &str = "UK.OBIE.Resource.InvalidConsentStatus";
    pub const NOT_FOUND: &str = "UK.OBIE.Resource.NotFound";
    pub const UNEXPECTED: &str = "UK.OBIE.UnexpectedError";
    pub const NOT_IMPLEMENTED: &str = "UK.OBIE.NotFound";
}

impl ObError {
    pub fn new(
        status: StatusCode,
        code: &str,
        message: impl Into<String>,
        path: Option<&str>,
    ) -> Self {
        let message = message.into();
        Self {
            status,
            errors: vec![ObErrorDetail {
                error_code: code.to_owned(),
                message: message.clone(),
                path: path.map(str::to_owned),
            }],
            message,
            www_authenticate: None,
            retry_after: None,
        }
    }

    pub fn bad_request(code: &str, message: impl Into<String>, path: &str) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message, Some(path))
    }

    /// An id the consent covers but the bank does not hold (400, as the spec says).
    pub fn resource_not_found(path: &str) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            codes::NOT_FOUND,
            "resource not found",
            Some(path),
        )
    }

    /// A permission not granted, or a resource outside the consent.
    pub fn forbidden(message: impl Into<String>) -> Self {
        let mut e = Self::new(
            StatusCode::FORBIDDEN,
            codes::CONSENT_MISMATCH,
            message,
            None,
        );
        e.www_authenticate = Some("Bearer error=\"insufficient_scope\"".into());
        e
    }

    pub fn internal() -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            codes::UNEXPECTED,
            "unexpected error",
            None,
        )
    }

    /// The storage or authorization backend did not answer: try again shortly.
    pub fn unavailable() -> Self {
        let mut e = Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            codes::UNEXPECTED,
            "service temporarily unavailable",
            None,
        );
        e.retry_after = Some(1);
        e
    }

    /// Throttled (429) with the seconds until the next request is allowed.
    pub fn too_many_requests(retry_after: u64) -> Self {
        let mut e = Self::new(
            StatusCode::TOO_MANY_REQUESTS,
            codes::UNEXPECTED,
            "too many requests",
            None,
        );
        e.retry_after = Some(retry_after.max(1));
        e
    }

    pub fn endpoint_not_found() -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            codes::NOT_IMPLEMENTED,
            "endpoint not found",
            None,
        )
    }
}

fn code_text(status: StatusCode) -> String {
    let reason: String = status
        .canonical_reason()
        .unwrap_or("Error")
        .split(|c: char| !c.is_ascii_alphanumeric())
        .collect();
    format!("{} {reason}", status.as_u16())
}

impl From<AuthError> for ObError {
    fn from(e: AuthError) -> Self {
        let msg = e.to_string();
        let challenge = |err: &str| {
            format!(
                "Bearer error=\"{err}\", error_description=\"{}\"",
                msg.replace('"', "'")
            )
        };
        match &e {
            AuthError::MissingToken => {
                let mut o = ObError::new(
                    StatusCode::UNAUTHORIZED,
                    codes::HEADER_MISSING,
                    msg.clone(),
                    Some("Authorization"),
                );
                o.www_authenticate = Some("Bearer, DPoP algs=\"ES256 PS256 EdDSA\"".into());
                o
            }
            AuthError::InvalidRequest(_) => {
                let mut o = ObError::new(
                    StatusCode::BAD_REQUEST,
                    codes::HEADER_INVALID,
                    msg.clone(),
                    Some("Authorization"),
                );
                o.www_authenticate = Some(challenge("invalid_request"));
                o
            }
            AuthError::InvalidToken(_) | AuthError::BindingMismatch(_) => {
                let mut o = ObError::new(
                    StatusCode::UNAUTHORIZED,
                    codes::HEADER_INVALID,
                    msg.clone(),
                    Some("Authorization"),
                );
                o.www_authenticate = Some(challenge("invalid_token"));
                o
            }
            AuthError::InvalidDpopProof(_) => {
                let mut o = ObError::new(
                    StatusCode::UNAUTHORIZED,
                    codes::HEADER_INVALID,
                    msg.clone(),
                    Some("DPoP"),
                );
                o.www_authenticate = Some(format!(
                    "DPoP error=\"invalid_dpop_proof\", error_description=\"{}\", algs=\"ES256 PS256 EdDSA\"",
                    msg.replace('"', "'")
                ));
                o
            }
            AuthError::ConsentInactive(_) => {
                let mut o = ObError::new(
                    StatusCode::UNAUTHORIZED,
                    codes::INVALID_CONSENT_STATUS,
                    msg.clone(),
                    None,
                );
                o.www_authenticate = Some(challenge("invalid_token"));
                o
            }
            AuthError::InsufficientScope => {
                let mut o = ObError::new(
                    StatusCode::FORBIDDEN,
                    codes::CONSENT_MISMATCH,
                    msg.clone(),
                    None,
                );
                o.www_authenticate = Some(challenge("insufficient_scope"));
                o
            }
            AuthError::Throttled(retry_after, _) => {
                let mut o = ObError::too_many_requests(*retry_after);
                o.message = msg.clone();
                if let Some(d) = o.errors.first_mut() {
                    d.message = msg.clone();
                }
                o
            }
            AuthError::Unavailable(detail) => {
                tracing::error!(%detail, "token verification backend failed");
                ObError::unavailable()
            }
        }
    }
}

impl From<core_bank::CoreError> for ObError {
    fn from(e: core_bank::CoreError) -> Self {
        tracing::error!(error = %e, "core bank error");
        ObError::internal()
    }
}

impl From<authz_store::StoreError> for ObError {
    fn from(e: authz_store::StoreError) -> Self {
        tracing::error!(error = %e, "store error");
        match e {
            authz_store::StoreError::Database(_) | authz_store::StoreError::Cache(_) => {
                ObError::unavailable()
            }
            authz_store::StoreError::Corrupt(_) | authz_store::StoreError::Conflict(_) => {
                ObError::internal()
            }
        }
    }
}

impl IntoResponse for ObError {
    fn into_response(self) -> Response {
        if self.status.is_server_error() {
            tracing::error!(status = %self.status, message = %self.message, "request failed");
        } else {
            tracing::info!(status = %self.status, message = %self.message, "request refused");
        }
        let body = ObErrorResponse {
            code: code_text(self.status),
            id: uuid::Uuid::new_v4().to_string(),
            message: self.message,
            errors: self.errors,
        };
        let mut r = (self.status, axum::Json(body)).into_response();
        let h = r.headers_mut();
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        if let Some(v) = self
            .www_authenticate
            .and_then(|v| HeaderValue::from_str(&v).ok())
        {
            h.insert(header::WWW_AUTHENTICATE, v);
        }
        if let Some(s) = self.retry_after {
            h.insert(header::RETRY_AFTER, HeaderValue::from(s));
        }
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn code_text_is_status_and_reason_without_spaces() {
        assert_eq!(code_text(StatusCode::BAD_REQUEST), "400 BadRequest");
        assert_eq!(
            code_text(StatusCode::UNSUPPORTED_MEDIA_TYPE),
            "415 UnsupportedMediaType"
        );
        assert_eq!(code_text(StatusCode::NOT_ACCEPTABLE), "406 NotAcceptable");
    }
}
