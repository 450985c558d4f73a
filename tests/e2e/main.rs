//! End-to-end tests: one binary, one module per area. Every test starts its own platform.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod accounts;
mod authorize;
mod client_auth;
mod dashboard;
mod dpop;
mod flow;
mod message_signing;
mod metrics;
mod par;
mod registration;
mod resource;
mod tls;
mod token;
