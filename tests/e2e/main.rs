//! End-to-end tests: one binary, one module per area. Every test starts its own platform.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod accounts;
mod ais_payments;
mod alerts;
mod auth_factors;
mod authorize;
mod client_auth;
mod dashboard;
mod dashboard_file_payments;
mod dashboard_payments;
mod dpop;
mod events;
mod file_payments;
mod flow;
mod gateway;
mod logos;
mod message_signing;
mod metrics;
mod par;
mod passkey_backoff;
mod payment_consent_lifetimes;
mod payment_events;
mod payment_signatures;
mod payments;
mod portal;
mod rar_payments;
mod registration;
mod resource;
mod tls;
mod token;
