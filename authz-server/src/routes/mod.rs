//! One module per endpoint family; handlers extract, call the core, render.

pub mod authorize;
pub mod dashboard;
pub(crate) mod dashboard_file_payments;
pub mod dashboard_passkey;
pub mod dashboard_payments;
pub mod meta;
pub mod par;
pub mod passkey;
pub mod portal;
pub mod portal_apps;
pub mod portal_docs;
pub mod portal_sandbox;
pub mod portal_usage;
pub mod register;
pub mod security;
pub mod token;
pub mod userinfo;
