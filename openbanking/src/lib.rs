//! The open-banking consent domain, shared by the authorization server (which records a
//! consent and lets the customer authorise it) and the resource server (which creates
//! intents and enforces them). Pure rules, no I/O: parsing and validating what a TPP
//! asks for through either way in (the UK OB intent body, or RFC 9396
//! `authorization_details`), the stored shape of an account-access consent, and the
//! words a customer reads on the consent page.
//!
//! One stored shape for both ways in means one enforcement path at the resource server.

pub mod account_access;
pub mod consent_lifetime;
pub mod file_payment;
pub mod payment;
pub mod payment_consent;
pub mod permission;

pub use account_access::{
    AccountAccessDetails, AccountAccessRequest, ConsentError, ErrorKind, ObStatus, Source,
    StatusReason, intent_id_from_claims, parse_authorization_details, parse_intent_body,
};
pub use permission::Permission;

/// `ConsentRecord::kind` of an account-access consent.
pub const KIND_ACCOUNT_ACCESS: &str = "account-access";

/// The RFC 9396 `type` that carries an account-access consent.
pub const RAR_TYPE_ACCOUNT_INFORMATION: &str = "account_information";

/// Every `authorization_details` type this platform understands (advertised in discovery
/// as `authorization_details_types_supported`).
pub const RAR_TYPES_SUPPORTED: &[&str] = &[
    RAR_TYPE_ACCOUNT_INFORMATION,
    payment::RAR_TYPE_PAYMENT_INITIATION,
];

/// The scope a TPP needs for account information.
pub const SCOPE_ACCOUNTS: &str = "accounts";

/// `ConsentRecord::kind` of a domestic-payment consent (issue 7).
pub const KIND_DOMESTIC_PAYMENT: &str = "domestic-payment";

/// The scope a TPP needs for payment initiation.
pub const SCOPE_PAYMENTS: &str = "payments";

/// `ConsentRecord::kind` of a file (bulk) payment consent (issue 7, ADR 0016).
pub const KIND_FILE_PAYMENT: &str = "file-payment";
