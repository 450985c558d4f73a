//! The customer's path through an authorization, as an explicit state machine:
//! password → second factor → consent. Each step consumes the previous state, so a
//! consent cannot be reached without both factors.

use crate::par::AuthorizationRequest;
use crate::tokens::{ACR_SCA, AuthContext};
use serde::{Deserialize, Serialize};

/// Failed password or OTP attempts allowed within one interaction.
pub const MAX_ATTEMPTS: u32 = 5;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "step", rename_all = "snake_case")]
pub enum Step {
    Login,
    SecondFactor {
        customer_id: String,
    },
    Consent {
        customer_id: String,
        auth: AuthContext,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Interaction {
    pub id: String,
    /// Synchroniser token for every form of this interaction.
    pub csrf: String,
    /// Digest under which the pushed request is stored; consumed when the customer decides.
    pub request_key: String,
    pub request: AuthorizationRequest,
    pub step: Step,
    pub failed_attempts: u32,
    pub expires_at: i64,
}

impl Interaction {
    pub fn password_verified(&mut self, customer_id: String) -> bool {
        if self.step != Step::Login {
            return false;
        }
        self.step = Step::SecondFactor { customer_id };
        true
    }

    pub fn second_factor_verified(&mut self, now: i64, method: &str) -> bool {
        let Step::SecondFactor { customer_id } = &self.step else {
            return false;
        };
        self.step = Step::Consent {
            customer_id: customer_id.clone(),
            auth: AuthContext {
                auth_time: now,
                acr: ACR_SCA.into(),
                amr: vec!["pwd".into(), method.into(), "mfa".into()],
            },
        };
        true
    }

    /// A passkey with user verification (possession + inherence) signed the customer in:
    /// straight from the login step to consent.
    pub fn passkey_verified(&mut self, now: i64, customer_id: String) -> bool {
        if self.step != Step::Login {
            return false;
        }
        self.step = Step::Consent {
            customer_id,
            auth: AuthContext {
                auth_time: now,
                acr: ACR_SCA.into(),
                amr: vec!["hwk".into(), "user".into()],
            },
        };
        true
    }

    /// Count a failure; `true` once the interaction must be abandoned.
    pub fn record_failure(&mut self) -> bool {
        self.failed_attempts += 1;
        self.failed_attempts >= MAX_ATTEMPTS
    }
}
