//! "Last used" of a consent, as the customer's dashboard shows it: a [`ConsentSource`]
//! decorator in front of the resource server's consent lookup. The RS looks a consent up
//! only after the access token passed every check (signature, audience, expiry, `cnf`
//! binding, revocation list), so a lookup of an authorised consent is a use by its TPP.
//!
//! Cheap by construction: at most one record per consent per minute. An in-process map
//! answers most calls without I/O; across instances the ephemeral store's
//! `insert_if_absent` elects one writer per minute; the durable UPDATE (which only moves
//! `last_used_at` forward) runs in a spawned task, off the request's path. Failures
//! are logged, never surfaced: a missed mark costs a minute of precision, not a request.

use authz_store::{AuthStore, EphemeralStore};
use resource_server::jwt::{ConsentSource, ConsentStatus, ConsentView};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Granularity of "last used".
pub const RECORD_EVERY_SECS: i64 = 60;
const NS: &str = "consent_used";
const LOCAL_MAX: usize = 100_000;

pub struct UsageRecorder {
    inner: Arc<dyn ConsentSource>,
    auth: Arc<dyn AuthStore>,
    eph: Arc<dyn EphemeralStore>,
    clock: Arc<dyn crate::clock::Clock>,
    /// consent id → when this process last let a record through.
    local: Mutex<HashMap<String, i64>>,
}

impl UsageRecorder {
    pub fn new(
        inner: Arc<dyn ConsentSource>,
        auth: Arc<dyn AuthStore>,
        eph: Arc<dyn EphemeralStore>,
        clock: Arc<dyn crate::clock::Clock>,
    ) -> Self {
        Self {
            inner,
            auth,
            eph,
            clock,
            local: Mutex::new(HashMap::new()),
        }
    }

    fn mark(&self, consent_id: &str) {
        let now = self.clock.now();
        {
            let mut m = self.local.lock().unwrap_or_else(|e| e.into_inner());
            if m.get(consent_id)
                .is_some_and(|last| now - *last < RECORD_EVERY_SECS)
            {
                return;
            }
            if m.len() >= LOCAL_MAX {
                m.clear();
            }
            m.insert(consent_id.to_owned(), now);
        }
        let (auth, eph, id) = (self.auth.clone(), self.eph.clone(), consent_id.to_owned());
        tokio::spawn(async move {
            // One writer per consent per minute across instances: the gate entry lives
            // for a minute.
            let key = crate::digest(&id);
            let first = eph
                .insert_if_absent(NS, &key, "1", now + RECORD_EVERY_SECS, now)
                .await;
            match first {
                Ok(true) => {
                    if let Err(e) = auth.record_consent_use(&id, now).await {
                        tracing::warn!(consent_id = %id, error = %e, "could not record a consent use");
                    }
                }
                Ok(false) => {}
                Err(e) => tracing::warn!(error = %e, "consent use gate unavailable"),
            }
        });
    }
}

#[async_trait::async_trait]
impl ConsentSource for UsageRecorder {
    async fn consent(&self, consent_id: &str) -> anyhow::Result<Option<ConsentView>> {
        let v = self.inner.consent(consent_id).await?;
        if let Some(view) = &v
            && view.status == ConsentStatus::Authorised
        {
            self.mark(consent_id);
        }
        Ok(v)
    }

    async fn is_token_revoked(&self, jti: &str) -> anyhow::Result<bool> {
        self.inner.is_token_revoked(jti).await
    }
}
