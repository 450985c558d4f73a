//! Storage seam of the authorization server.
//!
//! Durable state (clients, customers, consents and their audit trail, refresh tokens,
//! revoked access tokens) lives behind [`DurableStore`], implemented once over SQLite and
//! PostgreSQL (see `sql.rs`). Short-lived state (pushed authorization requests, codes,
//! `jti` replay entries, interactions) lives behind [`EphemeralStore`], implemented over the
//! same SQL database (embedded mode) or Redis (scaled mode).
//!
//! Every record carries its own expiry as unix seconds; callers pass `now` explicitly so
//! the protocol layer can run against a manual clock. Backends may garbage-collect expired
//! rows, but correctness never depends on it: readers check `expires_at` themselves.

pub mod model;
pub mod rate_counters;
mod redis_store;
mod sql;
mod sql_alerts;
mod sql_auth;
mod sql_consent_lapse;
mod sql_events;
mod sql_file_payments;
mod sql_ledger_history;
mod sql_logos;
mod sql_payments;
mod sql_portal;
mod sql_registration;
mod sql_usage;
#[cfg(any(test, feature = "testsuite"))]
pub mod testsuite;
#[cfg(any(test, feature = "testsuite"))]
pub mod testsuite_auth;
#[cfg(any(test, feature = "testsuite"))]
pub mod testsuite_payments;
#[cfg(any(test, feature = "testsuite"))]
pub mod testsuite_registration;

pub use model::*;
pub use redis_store::RedisEphemeral;
pub use sql::{SqlEphemeral, SqlStore};
pub use sql_alerts::{
    AlertStore, Credited, EVENT_BALANCE_THRESHOLD, EVENT_TRANSACTION_CREATED, IncomingTransfer,
    MAX_THRESHOLDS, Party, Purged, Thresholds,
};
pub use sql_auth::{AuthEvent, AuthStore, BackoffPolicy};
pub use sql_consent_lapse::ConsentLapseStore;
pub use sql_events::{
    AttemptResult, ClaimedDelivery, DeliveryAttempt, DeliveryState, DeliveryView,
    EVENT_CONSENT_REVOKED, EVENT_LINKED_ACCOUNT_UPDATE, EVENT_RESOURCE_UPDATE, EVENT_TYPES,
    EventRecord, EventStore, EventSubscription, NewEvent, enqueue_event,
};
pub use sql_file_payments::{
    FileExecuted, FileExecution, FileItem, FilePaymentRecord, FilePaymentStore, StoredFile,
    Uploaded,
};
pub use sql_ledger_history::{
    LedgerHistory, LedgerHistoryQuery, LedgerHistoryStore, LedgerTransaction,
};
pub use sql_logos::{ClientLogo, LogoStore};
pub use sql_payments::{
    Created, Executed, IDEMPOTENCY_TTL_SECS, IdempotencyRecord, LedgerAccount, LedgerAccountSeed,
    LedgerCheck, PaymentExecution, PaymentRecord, PaymentStore, StatusLine, internal_account_id,
};
pub use sql_portal::{
    AppRecord, DeveloperRecord, InvitationRecord, MemberRecord, OrgRecord, PortalAuditEntry,
    PortalStore, TestCustomerRecord,
};
pub use sql_registration::{Deregistered, RegistrationRecord, RegistrationStore};
pub use sql_usage::{
    ApiCall, ClientPlan, ClientUsage, DEFAULT_PLAN, EndpointUsage, UsageBucket, UsageFilter,
    UsageStore, UsageSummary,
};

use async_trait::async_trait;

/// Infrastructure failure. Never shown to a client beyond a generic `server_error`.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Database(String),
    #[error("cache error: {0}")]
    Cache(String),
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    #[error("conflict: {0}")]
    Conflict(String),
}

pub type StoreResult<T> = Result<T, StoreError>;

/// Outcome of consuming a single-use artefact (authorization code).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Consumed {
    /// First use: the stored value.
    Fresh(String),
    /// The artefact exists but was consumed before: the stored value, so the caller can
    /// revoke what was issued from it.
    Replayed(String),
    /// Never stored, or already garbage-collected.
    Missing,
}

/// Short-lived key/value state, partitioned by namespace (`par`, `code`, `jti`, `ix`...).
/// Keys are digests or random identifiers, never raw secrets.
#[async_trait]
pub trait EphemeralStore: Send + Sync {
    /// Store `value` under (`ns`, `key`) until `expires_at`, replacing any previous value.
    async fn put(
        &self,
        ns: &str,
        key: &str,
        value: &str,
        expires_at: i64,
        now: i64,
    ) -> StoreResult<()>;
    /// Read a value that has not expired.
    async fn get(&self, ns: &str, key: &str, now: i64) -> StoreResult<Option<String>>;
    /// Atomically read and delete. Exactly one concurrent caller gets `Some`.
    async fn take(&self, ns: &str, key: &str, now: i64) -> StoreResult<Option<String>>;
    /// Delete; absent keys are fine.
    async fn delete(&self, ns: &str, key: &str) -> StoreResult<()>;
    /// Atomically insert if no unexpired entry exists. Returns `true` when inserted
    /// (i.e. the key was not seen before): the replay-cache primitive.
    async fn insert_if_absent(
        &self,
        ns: &str,
        key: &str,
        value: &str,
        expires_at: i64,
        now: i64,
    ) -> StoreResult<bool>;
    /// Atomically mark as used, keeping the record until it expires, so a second use is
    /// told apart from an unknown key.
    async fn consume(&self, ns: &str, key: &str, now: i64) -> StoreResult<Consumed>;
    /// Liveness probe for `/readyz`.
    async fn ping(&self) -> StoreResult<()>;
}

/// Durable state. One implementation per SQL backend family.
#[async_trait]
pub trait DurableStore: Send + Sync {
    async fn ping(&self) -> StoreResult<()>;

    // clients
    async fn upsert_client(&self, client: &ClientRecord) -> StoreResult<()>;
    async fn find_client(&self, client_id: &str) -> StoreResult<Option<ClientRecord>>;

    // customers
    async fn upsert_customer(&self, customer: &CustomerRecord) -> StoreResult<()>;
    async fn find_customer_by_username(
        &self,
        username: &str,
    ) -> StoreResult<Option<CustomerRecord>>;
    async fn find_customer(&self, id: &str) -> StoreResult<Option<CustomerRecord>>;
    /// Record the TOTP time-step just accepted. Returns `false` (and changes nothing) if a
    /// step at or after `step` was already accepted: a code is never usable twice.
    async fn advance_totp_step(&self, customer_id: &str, step: i64) -> StoreResult<bool>;

    // consents (grants)
    /// Insert the consent and its first audit entry in one transaction.
    async fn insert_consent(&self, consent: &ConsentRecord, audit: &AuditEntry) -> StoreResult<()>;
    async fn find_consent(&self, id: &str) -> StoreResult<Option<ConsentRecord>>;
    async fn list_consents_for_customer(
        &self,
        customer_id: &str,
    ) -> StoreResult<Vec<ConsentRecord>>;
    /// Change status only if the current status is one of `from`; append the audit entry in
    /// the same transaction. Returns `false` if the consent was not in an allowed state.
    async fn transition_consent(
        &self,
        id: &str,
        from: &[ConsentStatus],
        to: ConsentStatus,
        audit: &AuditEntry,
    ) -> StoreResult<bool>;
    /// [`Self::transition_consent`] that also sets the deciding customer and/or replaces
    /// the details document (e.g. the accounts picked), in the same guarded update.
    #[allow(clippy::too_many_arguments)]
    async fn update_consent(
        &self,
        id: &str,
        from: &[ConsentStatus],
        to: ConsentStatus,
        customer_id: Option<&str>,
        details: Option<&serde_json::Value>,
        audit: &AuditEntry,
    ) -> StoreResult<bool>;
    async fn list_audit(&self, consent_id: &str) -> StoreResult<Vec<AuditEntry>>;

    // refresh tokens (stored by digest)
    async fn insert_refresh_token(&self, token: &RefreshTokenRecord) -> StoreResult<()>;
    async fn find_refresh_token(&self, digest: &str) -> StoreResult<Option<RefreshTokenRecord>>;
    async fn revoke_refresh_token(&self, digest: &str, now: i64) -> StoreResult<()>;
    async fn revoke_refresh_tokens_for_consent(
        &self,
        consent_id: &str,
        now: i64,
    ) -> StoreResult<u64>;

    // access-token revocation list (JWT access tokens are self-contained; their `jti` is
    // recorded here when revoked, until they would have expired anyway)
    async fn revoke_access_token(&self, jti: &str, expires_at: i64) -> StoreResult<()>;
    async fn is_access_token_revoked(&self, jti: &str) -> StoreResult<bool>;

    // passkeys (WebAuthn credentials, several per customer)
    /// Store a newly registered passkey; a credential id already stored (for anyone) is a
    /// `StoreError::Conflict`.
    async fn insert_passkey(&self, passkey: &PasskeyRecord) -> StoreResult<()>;
    /// The customer's passkeys, oldest first.
    async fn list_passkeys(&self, customer_id: &str) -> StoreResult<Vec<PasskeyRecord>>;
    async fn find_passkey(&self, credential_id: &str) -> StoreResult<Option<PasskeyRecord>>;
    /// Record an accepted use: the updated credential, its counter and the time. Refused
    /// (`false`, nothing changed) unless the counter moved forward, or both the stored and
    /// the new counter are 0 (authenticators without a counter): a cloned authenticator
    /// racing the real one cannot both succeed.
    async fn record_passkey_use(
        &self,
        credential_id: &str,
        credential: &serde_json::Value,
        sign_count: i64,
        used_at: i64,
    ) -> StoreResult<bool>;
    /// Rename one of the customer's passkeys; `false` if the customer has no such passkey.
    async fn rename_passkey(
        &self,
        customer_id: &str,
        credential_id: &str,
        name: &str,
    ) -> StoreResult<bool>;
    /// Remove one of the customer's passkeys; `false` if the customer has no such passkey.
    async fn delete_passkey(&self, customer_id: &str, credential_id: &str) -> StoreResult<bool>;

    /// The payment ledger kept in this store (issue 7), if it keeps one.
    fn payments(&self) -> Option<&dyn PaymentStore> {
        None
    }

    /// The file (bulk) payments kept in this store (issue 7, ADR 0016), if it keeps them.
    fn file_payments(&self) -> Option<&dyn FilePaymentStore> {
        None
    }

    // dynamic client registration
    /// The registration storage of this backend (`sql_registration.rs`), if it has one.
    fn registrations(&self) -> Option<&dyn RegistrationStore> {
        None
    }

    /// TPP logos kept in this store (`sql_logos.rs`), if it keeps them.
    fn logos(&self) -> Option<&dyn LogoStore> {
        None
    }

    /// Transaction alerts, balance thresholds, incoming credits, expiry and retention
    /// (`sql_alerts.rs`), if this backend keeps them.
    fn alerts(&self) -> Option<&dyn AlertStore> {
        None
    }

    /// Plans and metered calls (`sql_usage.rs`, issue 9), if this backend keeps them.
    fn usage(&self) -> Option<&dyn UsageStore> {
        None
    }

    /// The developer portal's storage (`sql_portal.rs`), if this backend has one.
    fn portal(&self) -> Option<&dyn PortalStore> {
        None
    }

    /// An account's ledger postings as transactions (`sql_ledger_history.rs`), if this
    /// backend keeps the payment ledger.
    fn ledger_history(&self) -> Option<&dyn LedgerHistoryStore> {
        None
    }

    /// Payment consents past their lifetimes (`sql_consent_lapse.rs`, ADR 0019), if this
    /// backend keeps consents in SQL.
    fn consent_lapse(&self) -> Option<&dyn ConsentLapseStore> {
        None
    }
}
