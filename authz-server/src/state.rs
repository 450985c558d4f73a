//! Shared application state, passed to handlers as `Arc<AppState>` (no globals).

use crate::clock::Clock;
use crate::config::Config;
use crate::keys::KeyRing;
use authz_store::{DurableStore, EphemeralStore};
use std::sync::Arc;

/// Registered clients change rarely (start-up seeding, later registration) but are read on
/// every back-channel request; a short-lived in-process copy saves a database round trip per
/// request (it cost more than the token's cryptography). A change is seen by every instance
/// within [`ClientCache::TTL_SECS`]. Unknown ids are never cached.
#[derive(Default)]
pub struct ClientCache {
    map: std::sync::RwLock<
        std::collections::HashMap<String, (i64, Arc<authz_core::client::Client>)>,
    >,
}

impl ClientCache {
    pub const TTL_SECS: i64 = 5;
    const MAX_ENTRIES: usize = 10_000;

    pub fn get(&self, id: &str, now: i64) -> Option<Arc<authz_core::client::Client>> {
        let map = self.map.read().ok()?;
        map.get(id)
            .filter(|(exp, _)| *exp > now)
            .map(|(_, c)| c.clone())
    }

    /// Forget a client at once (after its registration changed or was deleted here;
    /// other instances see the change within [`Self::TTL_SECS`]).
    pub fn remove(&self, id: &str) {
        if let Ok(mut map) = self.map.write() {
            map.remove(id);
        }
    }

    pub fn put(&self, client: Arc<authz_core::client::Client>, now: i64) {
        if let Ok(mut map) = self.map.write() {
            if map.len() >= Self::MAX_ENTRIES {
                map.clear();
            }
            map.insert(client.client_id.clone(), (now + Self::TTL_SECS, client));
        }
    }
}

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
    pub client_cache: ClientCache,
    /// Stateless DPoP nonces (RFC 9449 §8), used when `config.dpop_nonce_required`.
    pub dpop_nonces: crate::dpop::Nonces,
    /// The core bank: the consent page lists the customer's accounts from it.
    pub bank: Arc<dyn core_bank::CoreBank>,
    /// Authentication factors, back-off and sign-in audit (same database as `store`).
    pub auth: Arc<dyn authz_store::AuthStore>,
    /// Seals customer secrets at rest (TOTP seeds).
    pub secrets: Arc<crate::secrets::SecretBox>,
    /// Dynamic client registration, when a trust anchor is configured (always in sandbox).
    pub dcr: Option<Arc<crate::routes::register::Dcr>>,
    /// The sandbox bank itself (sandbox mode), to link portal test customers to accounts.
    pub sandbox_bank: Option<Arc<core_bank::SandboxBank>>,
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn client_cache_entries_expire() {
        let c: authz_core::client::Client = serde_json::from_value(serde_json::json!({
            "client_id": "c1", "client_name": "C", "token_endpoint_auth_method": "tls_client_auth",
            "redirect_uris": [], "grant_types": ["client_credentials"], "scope": "accounts",
            "tls_client_auth_subject_dn": "CN=c1"
        }))
        .unwrap();
        let cache = ClientCache::default();
        cache.put(Arc::new(c), 100);
        assert!(cache.get("c1", 100 + ClientCache::TTL_SECS - 1).is_some());
        assert!(cache.get("c1", 100 + ClientCache::TTL_SECS).is_none());
        assert!(cache.get("c2", 100).is_none());
    }
}
