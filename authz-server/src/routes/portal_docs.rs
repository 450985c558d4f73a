//! Portal documentation (issue 9): the AS and RS OpenAPI documents in the vendored
//! Swagger UI (served here so both documents share the page's origin), a
//! getting-started guide with this deployment's URLs, and the error codes the platform
//! emits, taken from the code's own vocabularies (`authz_core::ErrorCode`, the RS and
//! payment `codes` modules), never a hand-kept list of strings.

use crate::routes::portal::render;
use crate::state::AppState;
use authz_core::ErrorCode;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use consent_ui::portal as pui;
use std::sync::Arc;
use utoipa::OpenApi;

pub const SWAGGER_PATH: &str = "/portal/docs/api";
const AS_DOC: &str = "/portal/docs/api/authorization-server.json";
const RS_DOC: &str = "/portal/docs/api/resource-server.json";

/// Every OAuth error code, each with when the platform answers it.
const OAUTH: [ErrorCode; 23] = [
    ErrorCode::InvalidRequest,
    ErrorCode::InvalidClient,
    ErrorCode::InvalidGrant,
    ErrorCode::UnauthorizedClient,
    ErrorCode::UnsupportedGrantType,
    ErrorCode::InvalidScope,
    ErrorCode::AccessDenied,
    ErrorCode::UnsupportedResponseType,
    ErrorCode::InvalidRequestUri,
    ErrorCode::InvalidRequestObject,
    ErrorCode::InvalidAuthorizationDetails,
    ErrorCode::InvalidToken,
    ErrorCode::InsufficientScope,
    ErrorCode::InvalidDpopProof,
    ErrorCode::UseDpopNonce,
    ErrorCode::UnsupportedTokenType,
    ErrorCode::MethodNotAllowed,
    ErrorCode::ServerError,
    ErrorCode::TemporarilyUnavailable,
    ErrorCode::InvalidRedirectUri,
    ErrorCode::InvalidClientMetadata,
    ErrorCode::InvalidSoftwareStatement,
    ErrorCode::UnapprovedSoftwareStatement,
];

/// Exhaustive on purpose: a new code does not compile until it is explained here.
fn explain(c: ErrorCode) -> &'static str {
    match c {
        ErrorCode::InvalidRequest => {
            "A parameter is missing, repeated or malformed (PAR, token, userinfo, introspection); also a wrong HTTP method."
        }
        ErrorCode::InvalidClient => {
            "Client authentication failed: unknown or deleted client, bad client assertion, wrong certificate."
        }
        ErrorCode::InvalidGrant => {
            "The code, refresh token or PKCE verifier is wrong, expired, used or bound to something else."
        }
        ErrorCode::UnauthorizedClient => {
            "The client is not registered for this grant type or request."
        }
        ErrorCode::UnsupportedGrantType => "The grant type is not one the server supports.",
        ErrorCode::InvalidScope => "A scope is unknown or not registered for the client.",
        ErrorCode::AccessDenied => {
            "The customer refused, or the sign-in failed too often (sent to the redirect URI)."
        }
        ErrorCode::UnsupportedResponseType => "Only response_type=code is supported.",
        ErrorCode::InvalidRequestUri => {
            "The request_uri is unknown, expired, used, or belongs to another client."
        }
        ErrorCode::InvalidRequestObject => {
            "The signed request object fails a check (signature, aud, nbf/exp, claims)."
        }
        ErrorCode::InvalidAuthorizationDetails => {
            "The RFC 9396 authorization_details are malformed or not allowed."
        }
        ErrorCode::InvalidToken => {
            "The access token is missing, expired, revoked or not bound to the presented key or certificate."
        }
        ErrorCode::InsufficientScope => "The token lacks the scope this endpoint needs.",
        ErrorCode::InvalidDpopProof => "The DPoP proof fails a check (RFC 9449).",
        ErrorCode::UseDpopNonce => {
            "Send the DPoP proof again with the nonce in the DPoP-Nonce header."
        }
        ErrorCode::UnsupportedTokenType => "Revocation of this token type is not supported.",
        ErrorCode::MethodNotAllowed => {
            "The endpoint does not accept this HTTP method (answered as invalid_request, status 405)."
        }
        ErrorCode::ServerError => "Something failed on our side; try again.",
        // One wire code for both: 503 while overloaded or starting, 429 when the client's
        // plan limit or quota is spent (ADR 0015); both carry Retry-After when known.
        ErrorCode::TemporarilyUnavailable | ErrorCode::RateLimited => {
            "HTTP 503: the server is overloaded or starting. HTTP 429: your plan's rate limit or daily quota is reached. Retry after the Retry-After seconds."
        }
        ErrorCode::InvalidRedirectUri => {
            "Registration: a redirect URI is not https, has a fragment or is not allowed."
        }
        ErrorCode::InvalidClientMetadata => {
            "Registration: metadata breaks the FAPI profile (auth method, keys, algorithms)."
        }
        ErrorCode::InvalidSoftwareStatement => {
            "Registration: the software statement is malformed, expired or used."
        }
        ErrorCode::UnapprovedSoftwareStatement => {
            "Registration: the software statement is not signed by the trusted directory."
        }
    }
}

fn ob_codes() -> Vec<(String, String)> {
    use openbanking::payment::codes as pay;
    use resource_server::error::codes as rs;
    let mut v: Vec<(&str, &str)> = vec![
        (
            rs::FIELD_INVALID,
            "A field of the request body or query has a value the API refuses.",
        ),
        (
            rs::FIELD_INVALID_DATE,
            "A date-time field is malformed or out of range.",
        ),
        (
            rs::FIELD_UNEXPECTED,
            "The body carries a field that is not allowed here.",
        ),
        (pay::FIELD_MISSING, "A required field is missing."),
        (
            rs::HEADER_INVALID,
            "A header has a bad value (e.g. x-fapi-interaction-id, x-idempotency-key).",
        ),
        (rs::HEADER_MISSING, "A required header is missing."),
        (
            rs::CONSENT_MISMATCH,
            "The request does not match the consent (other account, other payment details, other client).",
        ),
        (
            rs::INVALID_CONSENT_STATUS,
            "The consent is not in a status that allows this call.",
        ),
        (
            rs::NOT_FOUND,
            "No such resource among those the consent covers.",
        ),
        (rs::UNEXPECTED, "Something failed on our side."),
        (rs::NOT_IMPLEMENTED, "No such endpoint."),
        (
            pay::UNSUPPORTED_CURRENCY,
            "The payment's currency is not supported.",
        ),
        (
            pay::UNSUPPORTED_SCHEME,
            "The account identification scheme is not supported.",
        ),
    ];
    v.sort_by(|a, b| a.0.cmp(b.0));
    v.dedup_by(|a, b| a.0 == b.0);
    v.into_iter()
        .map(|(c, w)| (c.to_owned(), w.to_owned()))
        .collect()
}

fn docs_page(st: &AppState) -> pui::DocsPage {
    pui::DocsPage {
        issuer: st.issuer.clone(),
        mtls_base: st.mtls_base.clone(),
        resource_base: st.resource_base.clone(),
        swagger_url: format!("{SWAGGER_PATH}/"),
        as_openapi_url: AS_DOC.into(),
        rs_openapi_url: RS_DOC.into(),
        rs_docs_url: format!(
            "{}{}",
            st.resource_base,
            resource_server::openapi::SWAGGER_UI_PATH
        ),
        discovery_url: format!("{}/.well-known/openid-configuration", st.issuer),
    }
}

#[tracing::instrument(skip_all)]
pub async fn get_docs(State(st): State<Arc<AppState>>) -> Response {
    render(pui::render_docs(None, &docs_page(&st)), StatusCode::OK)
}

#[tracing::instrument(skip_all)]
pub async fn get_guide(State(st): State<Arc<AppState>>) -> Response {
    render(pui::render_guide(None, &docs_page(&st)), StatusCode::OK)
}

#[tracing::instrument(skip_all)]
pub async fn get_errors() -> Response {
    let page = pui::ErrorsPage {
        oauth: OAUTH
            .iter()
            .map(|c| {
                (
                    c.as_str().to_owned(),
                    c.http_status(),
                    explain(*c).to_owned(),
                )
            })
            .collect(),
        ob: ob_codes(),
    };
    render(pui::render_errors(None, &page), StatusCode::OK)
}

/// Swagger UI (vendored assets in the binary) over both documents.
pub fn swagger_router<S: Clone + Send + Sync + 'static>() -> axum::Router<S> {
    let as_doc: serde_json::Value =
        serde_json::from_str(crate::routes::meta::OPENAPI).unwrap_or(serde_json::Value::Null);
    utoipa_swagger_ui::SwaggerUi::new(SWAGGER_PATH)
        .external_url_unchecked(
            utoipa_swagger_ui::Url::new("Authorization server", AS_DOC),
            as_doc,
        )
        .url(
            utoipa_swagger_ui::Url::new("Resource server", RS_DOC),
            resource_server::openapi::ApiDoc::openapi(),
        )
        .into()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn every_ob_code_the_apis_emit_is_listed() {
        let listed: Vec<String> = ob_codes().into_iter().map(|(c, _)| c).collect();
        // Every `UK.OBIE.*` error-code constant in the sources that answer errors.
        for src in [
            include_str!("../../../resource-server/src/error.rs"),
            include_str!("../../../openbanking/src/payment.rs"),
            include_str!("../../../openbanking/src/account_access.rs"),
        ] {
            for line in src.lines() {
                let t = line.trim();
                if t.starts_with("//") || !(t.contains("const ") || t.contains("=> \"UK.OBIE.")) {
                    continue;
                }
                if let Some(i) = t.find("\"UK.OBIE.") {
                    let code = t[i + 1..].split('"').next().unwrap();
                    assert!(listed.iter().any(|l| l == code), "{code} is not documented");
                }
            }
        }
    }
}
