//! Wekeza resource server: the UK Open Banking (Read/Write v4-shaped) account
//! information API over a [`core_bank::CoreBank`], enforcing on every request exactly
//! what the customer consented to.
//!
//! * [`router`] builds the axum application; tests drive it in-process.
//! * [`auth`]: the [`auth::Grant`] a request carries and the [`auth::TokenVerifier`]
//!   seam; [`jwt::JwtVerifier`] is the production verifier (the AS's JWT access tokens,
//!   JWKS, `cnf` binding, consent lookup through [`jwt::ConsentSource`]).
//! * [`routes`]: the endpoints and the enforcement (permissions, selected accounts,
//!   Basic/Detail fields, credits/debits, the transaction window).
//! * [`error`]: the OB error schema; [`headers`]: FAPI headers, 406/415, no query tokens.
//! * [`openapi`]: the generated OpenAPI 3.1 document and Swagger UI.
//!
//! Depends on `fapi-jose` and `core-bank`, never on the authorization server's crates.

pub mod auth;
pub mod error;
pub mod headers;
pub mod jwt;
pub mod ob;
pub mod openapi;
pub mod routes;

use axum::Router;
use axum::routing::{MethodRouter, get};
use std::sync::Arc;

pub use auth::{AuthError, Grant, PeerCertificate, Permission, TokenVerifier};
pub use jwt::{
    CachedConsentSource, ConsentSource, ConsentStatus, ConsentView, JwtVerifier, JwtVerifierConfig,
};

/// Transactions per page unless configured otherwise.
pub const DEFAULT_PAGE_SIZE: usize = 100;

#[derive(Clone)]
pub struct AppState {
    pub bank: Arc<dyn core_bank::CoreBank>,
    pub verifier: Arc<dyn TokenVerifier>,
    /// Scheme, host and port this server is reached at, without a trailing slash
    /// (`https://localhost:8445`): the base of `Links` and of DPoP `htu`.
    pub base_url: String,
    pub page_size: usize,
}

impl AppState {
    pub fn new(
        bank: Arc<dyn core_bank::CoreBank>,
        verifier: Arc<dyn TokenVerifier>,
        base_url: impl Into<String>,
    ) -> Self {
        Self {
            bank,
            verifier,
            base_url: base_url.into().trim_end_matches('/').to_owned(),
            page_size: DEFAULT_PAGE_SIZE,
        }
    }
}

/// Every API route, in one list: the router and the OpenAPI drift test both read it.
pub fn api_routes() -> Vec<(String, MethodRouter<AppState>)> {
    use routes::*;
    let p = |s: &str| format!("{PREFIX}{s}");
    vec![
        (p("/accounts"), get(get_accounts)),
        (p("/accounts/{AccountId}"), get(get_account)),
        (
            p("/accounts/{AccountId}/balances"),
            get(get_account_balances),
        ),
        (p("/balances"), get(get_balances)),
        (
            p("/accounts/{AccountId}/transactions"),
            get(get_account_transactions),
        ),
        (p("/transactions"), get(get_transactions)),
        (
            p("/accounts/{AccountId}/beneficiaries"),
            get(get_account_beneficiaries),
        ),
        (
            p("/accounts/{AccountId}/standing-orders"),
            get(get_account_standing_orders),
        ),
        (p("/party"), get(get_party)),
        (p("/accounts/{AccountId}/parties"), get(get_account_parties)),
    ]
}

/// The application: the API (every response with `x-fapi-interaction-id`, OB errors for
/// unknown endpoints and methods) plus the OpenAPI document and Swagger UI.
pub fn router(state: AppState) -> Router {
    let mut api = Router::new();
    for (path, route) in api_routes() {
        api = api.route(&path, route);
    }
    let api = api
        .fallback(|| async { error::ObError::endpoint_not_found() })
        .method_not_allowed_fallback(|| async {
            error::ObError::new(
                axum::http::StatusCode::METHOD_NOT_ALLOWED,
                error::codes::NOT_IMPLEMENTED,
                "method not allowed",
                None,
            )
        })
        .layer(axum::middleware::from_fn(headers::fapi_headers))
        .with_state(state);
    api.merge(openapi::swagger_router())
}
