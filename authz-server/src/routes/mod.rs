//! One module per endpoint family; handlers extract, call the core, render.

pub mod authorize;
pub mod dashboard;
pub mod dashboard_passkey;
pub mod meta;
pub mod par;
pub mod passkey;
pub mod security;
pub mod register;
pub mod token;
pub mod userinfo;
