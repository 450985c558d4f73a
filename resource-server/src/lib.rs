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
//! * [`consents`]: `account-access-consents` (create, read, delete) for
//!   client-credentials tokens, over the shared consent store.
//! * [`payments`]: domestic payment consents and payments (`/open-banking/v4.0/pisp`)
//!   over the durable ledger; [`ledger`]: its seeding and ledger-backed balances.
//! * [`file_payments`]: file (bulk) payment consents, uploads and file payments.
//! * [`store`]: [`store::StoreConsentSource`], consent state read from `authz-store`.
//! * [`ratelimit`]: per-client throttling (429 + `Retry-After`).
//! * [`error`]: the OB error schema; [`headers`]: FAPI headers, 406/415, no query tokens.
//! * [`openapi`]: the generated OpenAPI 3.1 document and Swagger UI.
//!
//! Depends on `fapi-jose`, `core-bank`, `openbanking` (the consent domain) and the shared
//! data layer `authz-store`; never on `authz-server` or `authz-core`.

pub mod alerts;
pub mod auth;
pub mod consent_lapse;
pub mod consents;
pub mod error;
pub mod event_dispatch;
pub mod events;
pub mod file_payments;
pub mod headers;
pub mod jws_signature;
pub mod jwt;
pub mod ledger;
pub mod ob;
pub mod openapi;
mod payment_consents;
pub mod payments;
pub mod ratelimit;
pub mod routes;
pub mod store;

use axum::Router;
use axum::routing::{MethodRouter, get, post};
use std::sync::Arc;

pub use auth::{
    AuthError, ClientGrant, CustomerToken, Grant, PeerCertificate, Permission, TokenVerifier,
};
pub use jwt::{
    CachedConsentSource, Clock, ConsentSource, ConsentStatus, ConsentView, JwtVerifier,
    JwtVerifierConfig, SystemClock,
};
pub use ratelimit::RateLimit;
pub use store::StoreConsentSource;

/// Transactions per page unless configured otherwise.
pub const DEFAULT_PAGE_SIZE: usize = 100;

#[derive(Clone)]
pub struct AppState {
    pub bank: Arc<dyn core_bank::CoreBank>,
    pub verifier: Arc<dyn TokenVerifier>,
    /// The shared consent store: account-access consents are created, read and revoked
    /// here (the authorization server reads the same records).
    pub store: Arc<dyn authz_store::DurableStore>,
    /// "Now" for consent timestamps and expiry; the verifier's clock.
    pub clock: Arc<dyn Clock>,
    /// Scheme, host and port this server is reached at, without a trailing slash
    /// (`https://localhost:8445`): the base of `Links` and of DPoP `htu`.
    pub base_url: String,
    pub page_size: usize,
    /// Per-client throttling after authentication; `None` = off.
    pub rate_limit: Option<RateLimit>,
    /// Event subscriptions and polling; `None` = the event endpoints answer 404.
    pub events: Option<events::EventsState>,
    limiter: Arc<ratelimit::RateLimiter>,
    /// A sandbox deployment: the sandbox tools' endpoints (incoming transfers) answer.
    pub sandbox: bool,
    /// `x-jws-signature` on payment requests and responses; `None` = neither (ADR 0017).
    pub jws: Option<Arc<jws_signature::JwsSignatures>>,
    /// How long a payment consent stays usable (ADR 0019): a payment on an authorised
    /// consent past its lifetime is refused even before the sweep expires it.
    pub payment_consent_lifetimes: openbanking::consent_lifetime::PaymentConsentLifetimes,
}

impl AppState {
    /// What the platform builds once per process and hands to [`router`]:
    /// * `bank`: the core bank;
    /// * `verifier`: normally a [`JwtVerifier`] over
    ///   `CachedConsentSource::new(Arc::new(StoreConsentSource::new(store)), 1 s)`, with
    ///   [`JwtVerifier::with_replay_store`] on the shared ephemeral store;
    /// * `store`: the same durable store (consent endpoints);
    /// * `clock`: the verifier's clock ([`SystemClock`] in production);
    /// * `base_url`: the RS's external base URL (the tokens' `aud`).
    ///
    /// Page size is [`DEFAULT_PAGE_SIZE`] and throttling is off until `rate_limit` is set.
    pub fn new(
        bank: Arc<dyn core_bank::CoreBank>,
        verifier: Arc<dyn TokenVerifier>,
        store: Arc<dyn authz_store::DurableStore>,
        clock: Arc<dyn Clock>,
        base_url: impl Into<String>,
    ) -> Self {
        Self {
            bank,
            verifier,
            store,
            clock,
            base_url: base_url.into().trim_end_matches('/').to_owned(),
            page_size: DEFAULT_PAGE_SIZE,
            rate_limit: None,
            events: None,
            limiter: Arc::new(ratelimit::RateLimiter::default()),
            sandbox: false,
            jws: None,
            payment_consent_lifetimes: Default::default(),
        }
    }

    /// Spends one request of `client_id`'s allowance; 429 with `Retry-After` when none
    /// is left.
    pub fn throttle(&self, client_id: &str) -> Result<(), error::ObError> {
        match self.rate_limit {
            None => Ok(()),
            Some(limit) => self
                .limiter
                .check(limit, client_id)
                .map_err(error::ObError::too_many_requests),
        }
    }
}

/// Every API route, in one list: the router and the OpenAPI drift test both read it.
pub fn api_routes() -> Vec<(String, MethodRouter<AppState>)> {
    use routes::*;
    let p = |s: &str| format!("{PREFIX}{s}");
    let mut routes = vec![
        (
            p("/account-access-consents"),
            post(crate::consents::create_account_access_consent),
        ),
        (
            p("/account-access-consents/{ConsentId}"),
            get(crate::consents::get_account_access_consent)
                .delete(crate::consents::delete_account_access_consent),
        ),
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
        (
            format!("{}/event-subscriptions", events::EVENTS_PREFIX),
            post(events::create_subscription).get(events::list_subscriptions),
        ),
        (
            format!(
                "{}/event-subscriptions/{{EventSubscriptionId}}",
                events::EVENTS_PREFIX
            ),
            axum::routing::put(events::update_subscription).delete(events::delete_subscription),
        ),
        (
            format!(
                "{}/event-subscriptions/{{EventSubscriptionId}}/deliveries",
                events::EVENTS_PREFIX
            ),
            get(events::get_deliveries),
        ),
        (
            format!(
                "{}/event-subscriptions/{{EventSubscriptionId}}/deliveries/{{EventId}}/redeliver",
                events::EVENTS_PREFIX
            ),
            post(events::redeliver),
        ),
        (events::EVENTS_PREFIX.to_owned(), post(events::poll_events)),
        (
            alerts::THRESHOLDS_PATH.to_owned(),
            axum::routing::put(alerts::put_thresholds)
                .get(alerts::get_thresholds)
                .delete(alerts::delete_thresholds),
        ),
        (
            alerts::INCOMING_PATH.to_owned(),
            post(alerts::post_incoming_transfer),
        ),
    ];
    routes.extend(crate::payments::routes());
    routes.extend(crate::file_payments::routes());
    routes
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
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            jws_signature::sign_responses,
        ))
        .layer(axum::middleware::from_fn(headers::fapi_headers))
        .with_state(state);
    api.merge(openapi::swagger_router())
}
