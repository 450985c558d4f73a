//! How long a payment consent (domestic or file) stays usable (ADR 0019). Pure rules:
//! the resource server's sweeper moves lapsed consents, the authorization server refuses
//! to authorise one, both with these functions.
//!
//! * Awaiting authorisation longer than `auth_window_secs` after its creation: the
//!   customer never decided; it lapses to **Rejected** (`RJCT`).
//! * Authorised but not used `authorised_ttl_secs` after its authorisation: it lapses to
//!   **Expired** (`EXPD`).
//!
//! Consumed, rejected, revoked and expired consents never lapse.

use serde_json::Value;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// `ConsentRecord::kind` values these lifetimes apply to.
pub const PAYMENT_CONSENT_KINDS: &[&str] = &["domestic-payment", "file-payment"];

/// `StatusReasonCode` of a lapse: the code the platform already records when a consent
/// passes its expiry (account access, `TKXP`), with a description saying which lifetime.
pub const REASON_LAPSED: &str = "TKXP";

/// The two lifetimes, in seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PaymentConsentLifetimes {
    pub auth_window_secs: i64,
    pub authorised_ttl_secs: i64,
}

impl Default for PaymentConsentLifetimes {
    fn default() -> Self {
        Self {
            auth_window_secs: 3600,
            authorised_ttl_secs: 24 * 3600,
        }
    }
}

/// Which lapse applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lapse {
    /// AWAU past the authorisation window → RJCT.
    NotAuthorisedInTime,
    /// AUTH unused past its lifetime → EXPD.
    NotUsedInTime,
}

impl Lapse {
    pub fn description(self, l: &PaymentConsentLifetimes) -> String {
        match self {
            Self::NotAuthorisedInTime => format!(
                "not authorised within {} seconds of its creation",
                l.auth_window_secs
            ),
            Self::NotUsedInTime => format!(
                "not used within {} seconds of its authorisation",
                l.authorised_ttl_secs
            ),
        }
    }
}

impl PaymentConsentLifetimes {
    /// A consent AWAU since `created_at` lapses at this instant (unix seconds).
    pub fn awaiting_until(&self, created_at: i64) -> i64 {
        created_at.saturating_add(self.auth_window_secs)
    }

    /// A consent authorised at `authorised_at` lapses at this instant.
    pub fn authorised_until(&self, authorised_at: i64) -> i64 {
        authorised_at.saturating_add(self.authorised_ttl_secs)
    }

    /// Whether a consent in `awaiting` (true) or authorised (false) state, created at
    /// `created_at` and last changed (authorised) at `changed_at`, has lapsed at `now`.
    pub fn lapse(
        &self,
        awaiting: bool,
        created_at: i64,
        changed_at: i64,
        now: i64,
    ) -> Option<Lapse> {
        if awaiting {
            (now >= self.awaiting_until(created_at)).then_some(Lapse::NotAuthorisedInTime)
        } else {
            (now >= self.authorised_until(changed_at)).then_some(Lapse::NotUsedInTime)
        }
    }
}

/// `details` of a payment consent (domestic or file: both keep `status_reason` and
/// `status_update_date_time` under these names) with the lapse recorded. Other fields
/// are kept as they are.
pub fn with_lapse(
    details: &Value,
    lapse: Lapse,
    l: &PaymentConsentLifetimes,
    now: OffsetDateTime,
) -> Value {
    let mut d = details.clone();
    if let Value::Object(m) = &mut d {
        m.insert(
            "status_reason".into(),
            serde_json::json!({"code": REASON_LAPSED, "description": lapse.description(l)}),
        );
        if let Ok(t) = now.format(&Rfc3339) {
            m.insert("status_update_date_time".into(), Value::String(t));
        }
    }
    d
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lapses_at_the_edges() {
        let l = PaymentConsentLifetimes {
            auth_window_secs: 100,
            authorised_ttl_secs: 1000,
        };
        assert_eq!(l.lapse(true, 0, 0, 99), None);
        assert_eq!(l.lapse(true, 0, 50, 100), Some(Lapse::NotAuthorisedInTime));
        // Authorised: counted from the authorisation, not the creation.
        assert_eq!(l.lapse(false, 0, 500, 1499), None);
        assert_eq!(l.lapse(false, 0, 500, 1500), Some(Lapse::NotUsedInTime));
    }

    #[test]
    fn the_lapse_is_recorded_in_either_details_shape() {
        let l = PaymentConsentLifetimes::default();
        let now = OffsetDateTime::from_unix_timestamp(1_800_000_000)
            .unwrap_or(OffsetDateTime::UNIX_EPOCH);
        let d = with_lapse(
            &serde_json::json!({"initiation": {"x": 1}, "status_update_date_time": "2020-01-01T00:00:00Z", "status_reason": null}),
            Lapse::NotAuthorisedInTime,
            &l,
            now,
        );
        assert_eq!(d["status_reason"]["code"], REASON_LAPSED);
        assert_eq!(d["initiation"]["x"], 1);
        assert_eq!(d["status_update_date_time"], "2027-01-15T08:00:00Z");
    }
}
