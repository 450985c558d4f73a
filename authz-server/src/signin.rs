//! What the authorization login, the passkey login and the dashboard sign-in share:
//!
//! * the **back-off** per username (known or not, so it reveals nothing): 5 failures
//!   lock for 1 minute, each further lock doubles, capped at 1 hour; a day without
//!   failures starts over; a success clears it. Kept in the durable store
//!   (`login_throttle`), so it survives restarts and holds across instances;
//! * the **second factor**: a TOTP code (the secret opened from its sealed form, each
//!   time-step accepted once) or a single-use recovery code;
//! * the **sign-in audit** (`auth_events`), written for every success and failure.

use crate::client_auth::store;
use crate::state::AppState;
use authz_core::OAuthError;
use authz_store::{AuthEvent, BackoffPolicy, CustomerRecord};

pub const BACKOFF: BackoffPolicy = BackoffPolicy {
    threshold: 5,
    base_secs: 60,
    cap_secs: 60 * 60,
    quiet_secs: 24 * 60 * 60,
};

/// `amr` value for a recovery code (not registered in RFC 8176, which has nothing for
/// it; see ADR 0010): password plus a single-use code from the list the customer was
/// given, so `amr = [pwd, rec, mfa]`.
pub const AMR_RECOVERY: &str = "rec";

/// The throttle subject of a username: a digest of its normalised form.
fn subject(username: &str) -> String {
    crate::digest(&format!("login:{}", username.trim().to_lowercase()))
}

/// When the username's lock ends, if it is locked now.
pub async fn locked_until(st: &AppState, username: &str) -> Result<Option<i64>, OAuthError> {
    st.auth
        .throttle_locked_until(&subject(username), st.clock.now())
        .await
        .map_err(store)
}

/// Count a failure against the username; the lock's end if this one started a lock.
pub async fn count_failure(st: &AppState, username: &str) -> Result<Option<i64>, OAuthError> {
    st.auth
        .throttle_failure(&subject(username), st.clock.now(), &BACKOFF)
        .await
        .map_err(store)
}

pub async fn clear_failures(st: &AppState, username: &str) -> Result<(), OAuthError> {
    st.auth
        .throttle_reset(&subject(username))
        .await
        .map_err(store)
}

/// Adds `Retry-After` (RFC 9110 §10.2.3, delay in seconds) to a back-off answer: the
/// time left on the username's lock, or the first lock's length when no lock is known
/// (a sign-in ended by its own attempt limit).
pub fn with_retry_after(
    mut r: axum::response::Response,
    until: Option<i64>,
    now: i64,
) -> axum::response::Response {
    let secs = until.map_or(BACKOFF.base_secs, |u| (u - now).max(1));
    r.headers_mut().insert(
        axum::http::header::RETRY_AFTER,
        axum::http::HeaderValue::from(secs),
    );
    r
}

/// "Try again in about N minutes", rounded up.
pub fn wait_text(until: i64, now: i64) -> String {
    let mins = ((until - now).max(1) + 59) / 60;
    if mins <= 1 {
        "Please try again in a minute.".into()
    } else {
        format!("Please try again in {mins} minutes.")
    }
}

/// Where a sign-in happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Channel {
    Interaction,
    Dashboard,
}

/// Write one audit row. A failure to write is a failure of the sign-in step (the
/// trail must not have gaps); the caller answers with a server error.
#[allow(clippy::too_many_arguments)]
pub async fn audit(
    st: &AppState,
    channel: Channel,
    client_id: Option<&str>,
    customer_id: Option<&str>,
    method: &str,
    outcome: &str,
    reason: &str,
) -> Result<(), OAuthError> {
    let e = AuthEvent {
        customer_id: customer_id.map(str::to_owned),
        at: st.clock.now(),
        method: method.into(),
        outcome: outcome.into(),
        reason: reason.into(),
        channel: match channel {
            Channel::Interaction => "interaction",
            Channel::Dashboard => "dashboard",
        }
        .into(),
        client_id: client_id.map(str::to_owned),
    };
    tracing::info!(
        target: "audit",
        event = "sign_in",
        channel = %e.channel,
        client_id = e.client_id.as_deref().unwrap_or(""),
        customer_id = e.customer_id.as_deref().unwrap_or(""),
        method = %e.method,
        outcome = %e.outcome,
        reason = %e.reason,
        "sign-in event"
    );
    st.auth.insert_auth_event(&e).await.map_err(store)
}

/// The customer's TOTP secret in clear. A legacy plaintext or stale-key value is
/// re-sealed on the way (best effort; the start-up migration does the rest).
pub async fn totp_secret(st: &AppState, c: &CustomerRecord) -> Result<String, OAuthError> {
    let opened = st
        .secrets
        .open(&c.id, &c.totp_secret)
        .map_err(|e| OAuthError::server_error(format!("TOTP secret of {}: {e}", c.id)))?;
    if opened.stale {
        match st.secrets.seal(&c.id, &opened.secret) {
            Ok(sealed) => {
                if let Err(e) = st
                    .auth
                    .swap_totp_secret(&c.id, &c.totp_secret, &sealed)
                    .await
                {
                    tracing::warn!(customer_id = %c.id, error = %e, "could not re-seal a TOTP secret");
                }
            }
            Err(e) => {
                tracing::warn!(customer_id = %c.id, error = %e, "could not seal a TOTP secret")
            }
        }
    }
    Ok(opened.secret)
}

/// How the second factor was shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecondFactor {
    Totp,
    Recovery,
}

impl SecondFactor {
    pub fn method(self) -> &'static str {
        match self {
            SecondFactor::Totp => "totp",
            SecondFactor::Recovery => "recovery",
        }
    }

    /// The `amr` member for it.
    pub fn amr(self) -> &'static str {
        match self {
            SecondFactor::Totp => "otp",
            SecondFactor::Recovery => AMR_RECOVERY,
        }
    }
}

/// The outcome of a second-factor attempt (see [`second_factor_step`]).
pub enum SecondStep {
    /// The username is locked until this time; nothing was checked.
    Locked(i64),
    /// The code was wrong (audited); the caller counts the failure with its own
    /// attempt bookkeeping.
    Refused,
    /// Accepted (audited, the username's failures cleared).
    Accepted(SecondFactor),
}

/// A second-factor attempt after the password, the same for the authorization and the
/// dashboard: refused while the username is locked, the code checked once, every outcome
/// in the audit trail, and success clearing the username's failures.
pub async fn second_factor_step(
    st: &AppState,
    channel: Channel,
    client_id: Option<&str>,
    customer: &CustomerRecord,
    input: &str,
) -> Result<SecondStep, OAuthError> {
    let cid = Some(customer.id.as_str());
    if let Some(until) = locked_until(st, &customer.username).await? {
        audit(st, channel, client_id, cid, "totp", "locked", "backoff").await?;
        return Ok(SecondStep::Locked(until));
    }
    let factor = match verify_second_factor(st, customer, input).await? {
        Ok(f) => f,
        Err(method) => {
            audit(st, channel, client_id, cid, method, "failure", "bad_code").await?;
            return Ok(SecondStep::Refused);
        }
    };
    let reason = match factor {
        SecondFactor::Totp => "second_factor",
        SecondFactor::Recovery => "recovery_code_used",
    };
    audit(
        st,
        channel,
        client_id,
        cid,
        factor.method(),
        "success",
        reason,
    )
    .await?;
    clear_failures(st, &customer.username).await?;
    Ok(SecondStep::Accepted(factor))
}

/// Check what the customer typed as second factor: six digits are a TOTP code (its
/// time-step accepted once), a recovery-code shape is a recovery code (spent once).
/// `Ok(Err(method))` names the method that failed.
pub async fn verify_second_factor(
    st: &AppState,
    c: &CustomerRecord,
    input: &str,
) -> Result<Result<SecondFactor, &'static str>, OAuthError> {
    let input = input.trim();
    let now = st.clock.now();
    if let Some(code) = crate::password::normalize_recovery_code(input) {
        let digest = crate::password::recovery_digest(&c.id, &code);
        let ok = st
            .auth
            .use_recovery_code(&c.id, &digest, now)
            .await
            .map_err(store)?;
        return Ok(if ok {
            Ok(SecondFactor::Recovery)
        } else {
            Err("recovery")
        });
    }
    let secret = totp_secret(st, c).await?;
    let Some(step) = crate::password::totp_step(&secret, input, now) else {
        return Ok(Err("totp"));
    };
    // A code is accepted once: the store refuses a time-step at or before the last one.
    let ok = st
        .store
        .advance_totp_step(&c.id, step as i64)
        .await
        .map_err(store)?;
    Ok(if ok {
        Ok(SecondFactor::Totp)
    } else {
        Err("totp")
    })
}
