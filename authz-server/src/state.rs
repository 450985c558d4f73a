//! Shared application state, passed to handlers as `Arc<AppState>` (no globals).

use crate::clock::Clock;
use crate::config::Config;
use crate::keys::KeyRing;
use authz_store::{DurableStore, EphemeralStore};
use std::sync::Arc;

pub struct AppState {
    pub config: Config,
    /// `https://localhost:<web port>`: browser listener, discovery, authorization endpoint.
    pub issuer: String,
    /// `https://localhost:<mtls port>`: back-channel endpoints.
    pub mtls_base: String,
    /// Audience of access tokens: the resource server.
    pub resource_base: String,
    pub store: Arc<dyn DurableStore>,
    pub eph: Arc<dyn EphemeralStore>,
    pub keys: Arc<KeyRing>,
    pub clock: Arc<dyn Clock>,
    /// Pre-rendered discovery document.
    pub discovery: serde_json::Value,
    /// A real argon2id hash compared against when the username is unknown, so timing does
    /// not reveal which usernames exist.
    pub dummy_password_hash: String,
    /// Stateless DPoP nonces (RFC 9449 §8), used when `config.dpop_nonce_required`.
    pub dpop_nonces: crate::dpop::Nonces,
}
