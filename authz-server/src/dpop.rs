//! DPoP (RFC 9449) at the HTTP layer: reading the `DPoP` header, the protocol checks of
//! `authz_core::dpop`, the `jti` replay cache (in the ephemeral store, so shared by every
//! instance), and server nonces.
//!
//! Nonces (RFC 9449 §8 and §9, FAPI 2.0 §5.3.2.1-10) are off unless
//! `dpop_nonce_required` is set. They are stateless: a nonce is a time window and an HMAC
//! of it under a server secret, valid in its window and the next ([`NONCE_WINDOW`] to
//! twice that). Instances that serve the same clients must share the secret
//! (`dpop_nonce_secret`); without one each instance makes its own at start, which is only
//! right for a single instance.

use crate::client_auth::store;
use crate::http::ApiError;
use crate::state::AppState;
use authz_core::dpop::{NONCE_HEADER, ProofRequest, ValidProof, single_proof, verify_proof};
use authz_core::{ErrorCode, OAuthError, OAuthResult};
use aws_lc_rs::{constant_time, hmac};
use axum::http::{HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};

/// Length of a nonce time window, seconds. A nonce is honoured for one to two windows.
pub const NONCE_WINDOW: i64 = 60;
const NONCE_MAC_LEN: usize = 16;

/// Issues and checks stateless DPoP nonces.
pub struct Nonces {
    key: hmac::Key,
}

impl Nonces {
    /// `secret`: shared by all instances in scaled mode; `None` makes a random one.
    pub fn new(secret: Option<&str>) -> Self {
        let bytes = match secret {
            Some(s) => s.as_bytes().to_vec(),
            None => fapi_jose::b64_decode(&crate::random_token(32)).unwrap_or_default(),
        };
        Self {
            key: hmac::Key::new(hmac::HMAC_SHA256, &bytes),
        }
    }

    fn mac(&self, window: i64) -> Vec<u8> {
        let mut msg = b"wekeza-dpop-nonce\0".to_vec();
        msg.extend_from_slice(&window.to_be_bytes());
        hmac::sign(&self.key, &msg).as_ref()[..NONCE_MAC_LEN].to_vec()
    }

    /// The nonce of the current window.
    pub fn issue(&self, now: i64) -> String {
        let w = now.div_euclid(NONCE_WINDOW);
        let mut b = w.to_be_bytes().to_vec();
        b.extend(self.mac(w));
        fapi_jose::b64(&b)
    }

    /// A nonce this server issued in the current or the previous window.
    pub fn is_valid(&self, nonce: &str, now: i64) -> bool {
        let Ok(b) = fapi_jose::b64_decode(nonce) else {
            return false;
        };
        if b.len() != 8 + NONCE_MAC_LEN {
            return false;
        }
        let mut wb = [0u8; 8];
        wb.copy_from_slice(&b[..8]);
        let w = i64::from_be_bytes(wb);
        let current = now.div_euclid(NONCE_WINDOW);
        (w == current || w == current - 1)
            && constant_time::verify_slices_are_equal(&b[8..], &self.mac(w)).is_ok()
    }
}

/// The request's DPoP proof, checked against `method` and the back-channel URL of `path`
/// (every DPoP endpoint lives on the mTLS listener), its `jti` recorded as used. `None`
/// when the request carries no `DPoP` header.
pub async fn request_proof(
    st: &AppState,
    headers: &HeaderMap,
    method: &str,
    path: &str,
    access_token: Option<&str>,
) -> OAuthResult<Option<ValidProof>> {
    let values = headers
        .get_all(authz_core::dpop::HEADER)
        .iter()
        .map(|v| v.to_str())
        .collect::<Result<Vec<&str>, _>>()
        .map_err(|_| {
            OAuthError::new(
                ErrorCode::InvalidDpopProof,
                "the DPoP header is not valid text",
            )
        })?;
    let Some(proof) = single_proof(&values)? else {
        return Ok(None);
    };
    let now = st.clock.now();
    let uri = format!("{}{path}", st.mtls_base);
    let known = |n: &str| st.dpop_nonces.is_valid(n, now);
    let valid = verify_proof(
        proof,
        &ProofRequest {
            method,
            uri: &uri,
            now,
            access_token,
            nonce: st
                .config
                .dpop_nonce_required
                .then_some(&known as &dyn Fn(&str) -> bool),
        },
    )?;
    // RFC 9449 §11.1: one use of each proof. Keyed by the key and the jti, so one client
    // cannot use up another's identifiers.
    let key = fapi_jose::sha256_b64(format!("{}\u{0}{}", valid.jkt, valid.jti).as_bytes());
    if !st
        .eph
        .insert_if_absent("dpop_jti", &key, "1", valid.replay_until, now)
        .await
        .map_err(store)?
    {
        return Err(OAuthError::new(
            ErrorCode::InvalidDpopProof,
            "the DPoP proof has already been used (jti)",
        ));
    }
    Ok(Some(valid))
}

/// Whether the request carries a `DPoP` header at all.
pub fn sent(headers: &HeaderMap) -> bool {
    headers.contains_key(authz_core::dpop::HEADER)
}

/// Add a fresh `DPoP-Nonce` (RFC 9449 §8.2: the server may send one with any response).
pub fn add_nonce(st: &AppState, resp: &mut Response) {
    if let Ok(v) = HeaderValue::from_str(&st.dpop_nonces.issue(st.clock.now())) {
        resp.headers_mut().insert(NONCE_HEADER, v);
    }
}

/// Render an authorization-server endpoint's outcome (PAR, token): errors as usual, plus a
/// nonce when nonces are on and the client used DPoP or must now use a nonce.
pub fn finish(st: &AppState, dpop_sent: bool, r: Result<Response, ApiError>) -> Response {
    let needs_nonce = matches!(&r, Err(ApiError(e)) if e.code == ErrorCode::UseDpopNonce);
    let mut resp = r.unwrap_or_else(IntoResponse::into_response);
    if st.config.dpop_nonce_required && (dpop_sent || needs_nonce) {
        add_nonce(st, &mut resp);
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nonces_live_one_to_two_windows_and_need_the_secret() {
        let n = Nonces::new(Some("a shared secret of thirty-two bytes!"));
        let t = 1_800_000_000 - 1_800_000_000 % NONCE_WINDOW;
        let nonce = n.issue(t);
        assert!(n.is_valid(&nonce, t));
        assert!(n.is_valid(&nonce, t + NONCE_WINDOW));
        assert!(n.is_valid(&nonce, t + 2 * NONCE_WINDOW - 1));
        assert!(!n.is_valid(&nonce, t + 2 * NONCE_WINDOW));
        assert!(!n.is_valid(&nonce, t - 1), "not before its window");
        // Another instance with the same secret accepts it; another secret does not.
        assert!(Nonces::new(Some("a shared secret of thirty-two bytes!")).is_valid(&nonce, t));
        assert!(!Nonces::new(None).is_valid(&nonce, t));
        // Tampering with the window or the MAC fails.
        let mut b = fapi_jose::b64_decode(&nonce).unwrap_or_default();
        b[7] ^= 1;
        assert!(!n.is_valid(&fapi_jose::b64(&b), t));
        for bad in ["", "x", "AAAA", &nonce[..nonce.len() - 1]] {
            assert!(!n.is_valid(bad, t), "{bad}");
        }
    }
}
