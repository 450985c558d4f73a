//! Discovery (RFC 8414 §3, OIDC Discovery §4), JWKS (RFC 7517), health and readiness.

use crate::http::ApiError;
use crate::state::AppState;
use axum::Json;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use std::sync::Arc;

pub async fn get_discovery(State(st): State<Arc<AppState>>) -> Response {
    let mut r = Json(st.discovery.clone()).into_response();
    r.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=300"),
    );
    r
}

pub async fn get_jwks(State(st): State<Arc<AppState>>) -> Response {
    let mut r = Json(st.keys.jwks().clone()).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/jwk-set+json"),
    );
    r.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=300"),
    );
    r
}

pub async fn get_healthz() -> &'static str {
    "ok"
}

pub async fn get_readyz(State(st): State<Arc<AppState>>) -> Result<Response, ApiError> {
    let (a, b) = tokio::join!(st.store.ping(), st.eph.ping());
    match (a, b) {
        (Ok(()), Ok(())) => Ok((StatusCode::OK, "ready").into_response()),
        (a, b) => {
            tracing::warn!(durable = ?a.err(), ephemeral = ?b.err(), "not ready");
            Ok((StatusCode::SERVICE_UNAVAILABLE, "not ready").into_response())
        }
    }
}

pub async fn method_not_allowed() -> ApiError {
    ApiError(authz_core::OAuthError::new(
        authz_core::ErrorCode::MethodNotAllowed,
        "method not allowed on this endpoint",
    ))
}

pub async fn not_found() -> Response {
    (
        StatusCode::NOT_FOUND,
        Json(serde_json::json!({"error": "not_found", "error_description": "no such endpoint"})),
    )
        .into_response()
}

/// The OpenAPI description of this server's HTTP API (kept in `docs/openapi/`).
pub const OPENAPI: &str = include_str!("../../../docs/openapi/authorization-server.json");

pub async fn get_openapi() -> Response {
    let mut r = OPENAPI.into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}
