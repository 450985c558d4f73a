//! Protocol rules of the Wekeza authorization server, with no I/O: no sockets, no
//! database, no clock. Callers pass `now` and random values in; every function here is a
//! pure check or transformation that unit tests can drive directly. See ADR 0001.

pub mod assertion;
pub mod client;
pub mod discovery;
pub mod dpop;
pub mod error;
pub mod interaction;
pub mod logo;
pub mod par;
pub mod redirect;
pub mod registration;
pub mod request_object;
pub mod scope;
pub mod tokens;

pub use error::{ErrorCode, OAuthError, OAuthResult};

/// Longest accepted form body on OAuth endpoints; bigger bodies are refused early.
pub const MAX_FORM_BYTES: usize = 64 * 1024;

/// `urn:ietf:params:oauth:request_uri:` prefix (RFC 9126 §2.2).
pub const REQUEST_URI_PREFIX: &str = "urn:ietf:params:oauth:request_uri:";
