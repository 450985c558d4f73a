//! [`ConsentSource`] over the shared data layer (`authz-store`): the consent records the
//! authorization server writes, read directly. The platform wraps it in
//! [`crate::CachedConsentSource`] (at most 1 s), so a revocation at the AS, or a TPP's
//! `DELETE`, reaches every resource-server instance within a second.

use crate::auth::Permission;
use crate::jwt::{ConsentSource, ConsentStatus, ConsentView};
use authz_store::{ConsentRecord, ConsentStatus as StoredStatus, DurableStore};
use openbanking::{AccountAccessDetails, KIND_ACCOUNT_ACCESS};
use std::collections::BTreeSet;
use std::sync::Arc;
use time::OffsetDateTime;

pub struct StoreConsentSource {
    store: Arc<dyn DurableStore>,
}

impl StoreConsentSource {
    pub fn new(store: Arc<dyn DurableStore>) -> Self {
        Self { store }
    }
}

/// The view of a stored status. `Consumed` (a single-use consent already used) is not
/// authorised; it reads as rejected, which refuses every call.
pub fn view_status(s: StoredStatus) -> ConsentStatus {
    match s {
        StoredStatus::AwaitingAuthorisation => ConsentStatus::AwaitingAuthorisation,
        StoredStatus::Authorised => ConsentStatus::Authorised,
        StoredStatus::Rejected | StoredStatus::Consumed => ConsentStatus::Rejected,
        StoredStatus::Revoked => ConsentStatus::Revoked,
        StoredStatus::Expired => ConsentStatus::Expired,
    }
}

/// Maps a stored record to what the resource server enforces.
///
/// * account-access consents: the permissions, picked accounts (none picked = no
///   account), expiry and transaction window of their [`AccountAccessDetails`];
/// * any other kind (`oauth` scope grants...): no permission at all, so every account
///   information call answers 403.
///
/// An account-access record whose details do not parse is an error (the caller fails
/// closed), never a grant.
pub fn consent_view(r: &ConsentRecord) -> anyhow::Result<ConsentView> {
    let record_expiry = r
        .expires_at
        .and_then(|e| OffsetDateTime::from_unix_timestamp(e).ok());
    let mut view = ConsentView {
        consent_id: r.id.clone(),
        status: view_status(r.status),
        client_id: r.client_id.clone(),
        subject: r.customer_id.clone(),
        permissions: BTreeSet::new(),
        account_ids: Some(BTreeSet::new()),
        expires_at: record_expiry,
        transaction_from: None,
        transaction_to: None,
    };
    if r.kind != KIND_ACCOUNT_ACCESS {
        return Ok(view);
    }
    let d = AccountAccessDetails::from_value(&r.details)
        .map_err(|e| anyhow::anyhow!("consent {}: corrupt account-access details: {e}", r.id))?;
    view.permissions = d
        .permissions
        .iter()
        .copied()
        .collect::<BTreeSet<Permission>>();
    view.account_ids = Some(d.account_ids.unwrap_or_default().into_iter().collect());
    view.expires_at = match (d.expiration_date_time, record_expiry) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
    view.transaction_from = d.transaction_from_date_time;
    view.transaction_to = d.transaction_to_date_time;
    Ok(view)
}

#[async_trait::async_trait]
impl ConsentSource for StoreConsentSource {
    async fn consent(&self, consent_id: &str) -> anyhow::Result<Option<ConsentView>> {
        match self.store.find_consent(consent_id).await? {
            None => Ok(None),
            Some(r) => consent_view(&r).map(Some),
        }
    }

    async fn is_token_revoked(&self, jti: &str) -> anyhow::Result<bool> {
        Ok(self.store.is_access_token_revoked(jti).await?)
    }
}
