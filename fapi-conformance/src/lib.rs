//! TPP-side tooling: a FAPI 2.0 client that speaks to any deployment described by a
//! sandbox TPP kit (`certs/sandbox/kit.json`), and a form-driving "browser" for the
//! customer's side. The end-to-end tests, the load tool and the conformance runner all
//! drive the platform through this crate, exactly as a third party would: over TLS,
//! with real client certificates, from the outside.

pub mod browser;
pub mod kit;
pub mod runner;
pub mod tpp;

pub use kit::Kit;
pub use tpp::{Pkce, Tpp};
