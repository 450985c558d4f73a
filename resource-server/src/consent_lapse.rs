//! Payment consent lifetimes in the housekeeping sweep (ADR 0019): a domestic- or
//! file-payment consent still awaiting authorisation past its window moves to RJCT, an
//! authorised one unused past its lifetime to EXPD, each through the guarded
//! `update_consent` (from the state read, with its audit line and its `resource-update`
//! event in the same transaction). Racing sweepers, the customer's decision and the
//! payment that consumes the consent all go through guarded updates of the same row, so
//! exactly one of them wins: a consent consumed (COND) or decided just before the sweep is
//! never touched, and no consent is moved (or announced) twice.

use authz_store::{AuditEntry, ConsentStatus, DurableStore};
use openbanking::consent_lifetime::{PAYMENT_CONSENT_KINDS, PaymentConsentLifetimes, with_lapse};
use time::OffsetDateTime;

/// Consents looked at per sweep round at most.
const SWEEP_BATCH: i64 = 200;

/// One round; returns how many consents this call moved.
pub async fn sweep_lapsed_payment_consents(
    store: &dyn DurableStore,
    now: OffsetDateTime,
    l: &PaymentConsentLifetimes,
) -> anyhow::Result<usize> {
    let Some(q) = store.consent_lapse() else {
        return Ok(0);
    };
    let t = now.unix_timestamp();
    let mut moved = 0;
    for id in q
        .lapsed_payment_consents(
            t.saturating_sub(l.auth_window_secs),
            t.saturating_sub(l.authorised_ttl_secs),
            SWEEP_BATCH,
        )
        .await?
    {
        // Read again: another sweeper, the decision or the payment may have moved it.
        let Some(r) = store.find_consent(&id).await? else {
            continue;
        };
        let awaiting = match r.status {
            ConsentStatus::AwaitingAuthorisation => true,
            ConsentStatus::Authorised => false,
            _ => continue,
        };
        if !PAYMENT_CONSENT_KINDS.contains(&r.kind.as_str()) {
            continue;
        }
        let Some(lapse) = l.lapse(awaiting, r.created_at, r.updated_at, t) else {
            continue;
        };
        let (to, action) = if awaiting {
            (ConsentStatus::Rejected, "rejected")
        } else {
            (ConsentStatus::Expired, "expired")
        };
        let audit = AuditEntry {
            consent_id: id.clone(),
            at: t,
            actor: "system".into(),
            action: action.into(),
            detail: lapse.description(l),
        };
        let details = with_lapse(&r.details, lapse, l, now);
        if store
            .update_consent(&id, &[r.status], to, None, Some(&details), &audit)
            .await?
        {
            moved += 1;
        }
    }
    Ok(moved)
}
