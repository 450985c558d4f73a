//! DPoP proofs (RFC 9449) checked without I/O: the server passes the request's method and
//! URI, `now`, the access token (resource requests) and a nonce check (when nonces are
//! required); it gets back the key thumbprint (`jkt`) and what the `jti` replay cache needs.
//!
//! Rules (RFC 9449 §4.3, FAPI 2.0 §5.3.2.1-5/-13, §5.3.4, §5.4.1):
//! - exactly one proof per request (§4.3 item 1), a well-formed compact JWS (items 2–3);
//! - `typ` is `dpop+jwt` (item 4); `alg` is PS256, ES256 or EdDSA — `none`, `HS*` and
//!   `RS256` cannot even be represented by [`Alg`] (item 5, FAPI 2.0 §5.4.1);
//! - `jwk` is a public key: private members are refused (item 7); the signature verifies
//!   with it (item 6);
//! - `htm` equals the request method (item 8); `htu` equals the request URI, both compared
//!   without query and fragment, after RFC 3986 §6.2.2/§6.2.3 normalisation: scheme and
//!   host are case-insensitive, a default port is the same as none (item 9);
//! - `nonce`, when the server requires one, is a nonce it issued (item 10, §8, §9);
//! - `iat` is at most [`FUTURE_SKEW`] seconds ahead and at most [`MAX_AGE`] seconds old
//!   (item 11, FAPI 2.0 §5.3.2.1-13); `jti` is present, and the caller refuses a second use
//!   until [`ValidProof::replay_until`] (item 11, §11.1);
//! - `ath` is base64url(SHA-256(access token)) when an access token is presented (item 12).
//!
//! `nbf`/`exp` are not DPoP claims, but a proof that carries them must honour them
//! (the suite's `check-dpop-proof-nbf-exp` sends both and expects success).

use crate::error::{ErrorCode, OAuthError, OAuthResult};
use fapi_jose::{Alg, Unverified};

/// Header carrying the proof (RFC 9449 §4.1), also the `Authorization` scheme (§7.1).
pub const HEADER: &str = "DPoP";
/// Response header carrying a server nonce (RFC 9449 §8.1).
pub const NONCE_HEADER: &str = "DPoP-Nonce";
/// The proof's JOSE `typ` (RFC 9449 §4.2).
pub const PROOF_TYP: &str = "dpop+jwt";
/// `dpop_signing_alg_values_supported` (RFC 9449 §5.1): the FAPI 2.0 algorithms.
pub const SIGNING_ALGS: [Alg; 3] = [Alg::PS256, Alg::ES256, Alg::EdDSA];
/// Accept an `iat` this many seconds ahead of our clock. FAPI 2.0 §5.3.2.1-13 requires at
/// least 10 s and forbids more than 60 s; 30 s is what client assertions get too.
pub const FUTURE_SKEW: i64 = crate::assertion::FUTURE_SKEW;
/// Refuse proofs whose `iat` is older than this: a proof is made for one request, sent at
/// once (RFC 9449 §11.1). The `jti` replay cache keeps each proof for as long.
pub const MAX_AGE: i64 = 60;
/// Longest `jti` accepted (it becomes part of a replay-cache key).
pub const MAX_JTI_LEN: usize = 256;

/// What the server knows about the request the proof came with.
pub struct ProofRequest<'a> {
    /// HTTP method, e.g. `POST`.
    pub method: &'a str,
    /// The URI the request was sent to (any query or fragment is ignored).
    pub uri: &'a str,
    pub now: i64,
    /// The access token presented with the proof (resource requests): `ath` must match.
    pub access_token: Option<&'a str>,
    /// When the server requires nonces: whether a nonce is one it issued and still honours.
    pub nonce: Option<&'a dyn Fn(&str) -> bool>,
}

/// A proof that passed every check except the replay check, which needs storage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidProof {
    /// RFC 7638 SHA-256 thumbprint of the proof key: what tokens are bound to (`cnf.jkt`).
    pub jkt: String,
    pub jti: String,
    /// Keep the `jti` in the replay cache until this time: after it, `iat` is too old anyway.
    pub replay_until: i64,
}

fn invalid(d: &'static str) -> OAuthError {
    OAuthError::new(ErrorCode::InvalidDpopProof, d)
}

/// The proof of a request, given every `DPoP` header value it carried: none, or exactly
/// one (RFC 9449 §4.3 item 1). A comma inside a value is two proofs folded into one line.
pub fn single_proof<'a>(values: &[&'a str]) -> OAuthResult<Option<&'a str>> {
    match values {
        [] => Ok(None),
        [one] if !one.contains(',') => Ok(Some(one.trim())),
        _ => Err(invalid("exactly one DPoP proof is allowed per request")),
    }
}

/// Check `proof` against the request. Errors are `invalid_dpop_proof`, except a missing or
/// stale nonce, which is `use_dpop_nonce` (RFC 9449 §8).
pub fn verify_proof(proof: &str, req: &ProofRequest<'_>) -> OAuthResult<ValidProof> {
    let u = Unverified::parse(proof).map_err(|e| {
        invalid("the DPoP proof is not a well-formed signed JWT").with_detail(e.to_string())
    })?;
    if !u
        .header
        .typ
        .as_deref()
        .is_some_and(|t| t.eq_ignore_ascii_case(PROOF_TYP))
    {
        return Err(invalid("the DPoP proof typ must be dpop+jwt"));
    }
    let alg = u
        .alg()
        .map_err(|_| invalid("the DPoP proof alg must be PS256, ES256 or EdDSA"))?;
    let jwk = u
        .header
        .jwk
        .as_ref()
        .ok_or_else(|| invalid("the DPoP proof header has no jwk"))?;
    if jwk.has_private_material() {
        return Err(invalid("the DPoP proof jwk must be a public key"));
    }
    if !jwk.matches(alg) {
        return Err(invalid("the DPoP proof jwk does not fit its alg"));
    }
    u.verify_with(jwk).map_err(|e| {
        invalid("the DPoP proof signature does not verify").with_detail(e.to_string())
    })?;

    let c = &u.claims;
    let s = |k: &str| c.get(k).and_then(|v| v.as_str());
    let jti = match s("jti") {
        Some(j) if !j.is_empty() && j.len() <= MAX_JTI_LEN => j.to_owned(),
        Some(_) => return Err(invalid("the DPoP proof jti is empty or too long")),
        None => return Err(invalid("the DPoP proof has no jti")),
    };
    let htm = s("htm").ok_or_else(|| invalid("the DPoP proof has no htm"))?;
    let htu = s("htu").ok_or_else(|| invalid("the DPoP proof has no htu"))?;
    let iat = numeric(c, "iat")?.ok_or_else(|| invalid("the DPoP proof has no iat"))?;

    if htm != req.method {
        return Err(invalid(
            "the DPoP proof htm does not match the request method",
        ));
    }
    match (normalize_htu(htu), normalize_htu(req.uri)) {
        (Some(a), Some(b)) if a == b => {}
        _ => return Err(invalid("the DPoP proof htu does not match the request URI")),
    }
    if let Some(known) = req.nonce {
        match s("nonce") {
            Some(n) if known(n) => {}
            Some(_) => {
                return Err(OAuthError::new(
                    ErrorCode::UseDpopNonce,
                    "the DPoP nonce is unknown or stale; use the nonce in the DPoP-Nonce header",
                ));
            }
            None => {
                return Err(OAuthError::new(
                    ErrorCode::UseDpopNonce,
                    "a DPoP nonce is required; use the nonce in the DPoP-Nonce header",
                ));
            }
        }
    }
    if iat > req.now + FUTURE_SKEW {
        return Err(invalid("the DPoP proof iat is too far in the future"));
    }
    if iat < req.now - MAX_AGE {
        return Err(invalid("the DPoP proof is too old (iat)"));
    }
    if numeric(c, "exp")?.is_some_and(|e| e <= req.now) {
        return Err(invalid("the DPoP proof has expired (exp)"));
    }
    if numeric(c, "nbf")?.is_some_and(|n| n > req.now + FUTURE_SKEW) {
        return Err(invalid("the DPoP proof is not yet valid (nbf)"));
    }
    if let Some(token) = req.access_token {
        match s("ath") {
            Some(a) if a == fapi_jose::sha256_b64(token.as_bytes()) => {}
            Some(_) => {
                return Err(invalid(
                    "the DPoP proof ath does not match the access token",
                ));
            }
            None => {
                return Err(invalid(
                    "the DPoP proof has no ath (required with an access token)",
                ));
            }
        }
    }
    let jkt = jwk
        .thumbprint_s256()
        .map_err(|_| invalid("the DPoP proof jwk has no thumbprint"))?;
    Ok(ValidProof {
        jkt,
        jti,
        replay_until: iat + MAX_AGE + 1,
    })
}

/// A NumericDate claim (RFC 7519 §2): absent, or a number (fractions are truncated).
fn numeric(c: &serde_json::Value, k: &'static str) -> OAuthResult<Option<i64>> {
    match c.get(k) {
        None => Ok(None),
        Some(v) => v
            .as_i64()
            .or_else(|| v.as_f64().filter(|f| f.is_finite()).map(|f| f as i64))
            .map(Some)
            .ok_or_else(|| invalid("a DPoP proof time claim is not a number")),
    }
}

/// An `htu` (or request URI) reduced for comparison (RFC 9449 §4.3 item 9): query and
/// fragment dropped; scheme and host lower-cased, default port removed, dot segments
/// resolved (RFC 3986 §6.2.2/§6.2.3, which `url` applies to http(s)); percent-encodings of
/// unreserved characters decoded and hex digits upper-cased (§6.2.2.1/§6.2.2.2).
/// `None` for anything that is not an absolute http(s) URI without user information.
pub fn normalize_htu(s: &str) -> Option<String> {
    let mut u = url::Url::parse(s.trim()).ok()?;
    if !matches!(u.scheme(), "https" | "http")
        || u.host_str().is_none()
        || !u.username().is_empty()
        || u.password().is_some()
    {
        return None;
    }
    u.set_query(None);
    u.set_fragment(None);
    let path = normalize_percent(u.path());
    u.set_path(&path);
    Some(u.to_string())
}

fn normalize_percent(p: &str) -> String {
    let b = p.as_bytes();
    let mut out = String::with_capacity(p.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && let (Some(h), Some(l)) = (
                b.get(i + 1).and_then(|c| (*c as char).to_digit(16)),
                b.get(i + 2).and_then(|c| (*c as char).to_digit(16)),
            )
        {
            let c = (h * 16 + l) as u8;
            if c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b'_' | b'~') {
                out.push(c as char);
            } else {
                out.push_str(&format!("%{c:02X}"));
            }
            i += 3;
            continue;
        }
        out.push(b[i] as char);
        i += 1;
    }
    out
}

/// A JWK SHA-256 thumbprint as `dpop_jkt` carries it (RFC 9449 §10): base64url, 43 chars.
pub fn is_jkt(s: &str) -> bool {
    s.len() == 43
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use fapi_jose::{SigningKey, b64};
    use serde_json::{Map, Value, json};

    const NOW: i64 = 1_800_000_000;
    const URI: &str = "https://as.example:8444/token";
    const AT: &str = "an-access-token";

    fn header(k: &SigningKey) -> Map<String, Value> {
        let mut h = Map::new();
        h.insert("typ".into(), json!(PROOF_TYP));
        h.insert("jwk".into(), serde_json::to_value(k.public_jwk()).unwrap());
        h
    }

    fn claims() -> Value {
        json!({"jti": "j-1", "htm": "POST", "htu": URI, "iat": NOW,
               "ath": fapi_jose::sha256_b64(AT.as_bytes()), "nonce": "n-good"})
    }

    /// `edit` changes the header and claims before signing.
    fn proof(k: &SigningKey, edit: impl FnOnce(&mut Map<String, Value>, &mut Value)) -> String {
        let mut h = header(k);
        let mut c = claims();
        edit(&mut h, &mut c);
        k.sign_with_header(&h, &c).unwrap()
    }

    fn req() -> ProofRequest<'static> {
        ProofRequest {
            method: "POST",
            uri: URI,
            now: NOW,
            access_token: None,
            nonce: None,
        }
    }

    fn check(p: &str) -> OAuthResult<ValidProof> {
        verify_proof(p, &req())
    }

    fn set(c: &mut Value, k: &str, v: Value) {
        if v.is_null() {
            c.as_object_mut().unwrap().remove(k);
        } else {
            c[k] = v;
        }
    }

    #[test]
    fn accepts_every_fapi_algorithm_and_returns_the_thumbprint() {
        for alg in Alg::ALL {
            let k = SigningKey::generate(alg, "dpop").unwrap();
            let v = check(&proof(&k, |_, _| {})).unwrap();
            assert_eq!(v.jkt, k.public_jwk().thumbprint_s256().unwrap());
            assert_eq!(v.jti, "j-1");
            assert_eq!(v.replay_until, NOW + MAX_AGE + 1);
            assert!(is_jkt(&v.jkt));
        }
    }

    type Edit = Box<dyn FnOnce(&mut Map<String, Value>, &mut Value)>;

    #[test]
    fn every_broken_claim_or_header_is_invalid_dpop_proof() {
        let k = SigningKey::generate(Alg::ES256, "dpop").unwrap();
        let other = SigningKey::generate(Alg::ES256, "other").unwrap();
        let other_jwk = serde_json::to_value(other.public_jwk()).unwrap();
        let mut private = k.to_private_jwk().unwrap();
        private["kid"] = json!("dpop");
        let rsa = SigningKey::generate(Alg::PS256, "rsa").unwrap();
        let rsa_jwk = serde_json::to_value(rsa.public_jwk()).unwrap();
        let cases: Vec<(&str, Edit)> = vec![
            (
                "no typ",
                Box::new(|h, _| {
                    h.remove("typ");
                }),
            ),
            (
                "typ JWT",
                Box::new(|h, _| {
                    h.insert("typ".into(), json!("JWT"));
                }),
            ),
            (
                "typ with suffix",
                Box::new(|h, _| {
                    h.insert("typ".into(), json!("dpop+jwt+wrongyousee"));
                }),
            ),
            (
                "no jwk",
                Box::new(|h, _| {
                    h.remove("jwk");
                }),
            ),
            (
                "private jwk",
                Box::new(move |h, _| {
                    h.insert("jwk".into(), private);
                }),
            ),
            (
                "other key's jwk",
                Box::new(move |h, _| {
                    h.insert("jwk".into(), other_jwk);
                }),
            ),
            (
                "jwk of another type",
                Box::new(move |h, _| {
                    h.insert("jwk".into(), rsa_jwk);
                }),
            ),
            ("no jti", Box::new(|_, c| set(c, "jti", Value::Null))),
            ("empty jti", Box::new(|_, c| set(c, "jti", json!("")))),
            (
                "long jti",
                Box::new(|_, c| set(c, "jti", json!("j".repeat(257)))),
            ),
            ("numeric jti", Box::new(|_, c| set(c, "jti", json!(7)))),
            ("no htm", Box::new(|_, c| set(c, "htm", Value::Null))),
            ("htm GET", Box::new(|_, c| set(c, "htm", json!("GET")))),
            (
                "htm lower case",
                Box::new(|_, c| set(c, "htm", json!("post"))),
            ),
            ("htm PUT", Box::new(|_, c| set(c, "htm", json!("PUT")))),
            ("no htu", Box::new(|_, c| set(c, "htu", Value::Null))),
            (
                "htu other path",
                Box::new(|_, c| set(c, "htu", json!("https://as.example:8444/par"))),
            ),
            (
                "htu appended",
                Box::new(|_, c| set(c, "htu", json!(format!("{URI}ohnonotagain")))),
            ),
            (
                "htu other port",
                Box::new(|_, c| set(c, "htu", json!("https://as.example:8445/token"))),
            ),
            (
                "htu no port",
                Box::new(|_, c| set(c, "htu", json!("https://as.example/token"))),
            ),
            (
                "htu other host",
                Box::new(|_, c| set(c, "htu", json!("https://evil.example:8444/token"))),
            ),
            (
                "htu http",
                Box::new(|_, c| set(c, "htu", json!("http://as.example:8444/token"))),
            ),
            (
                "htu path case",
                Box::new(|_, c| set(c, "htu", json!("https://as.example:8444/TOKEN"))),
            ),
            (
                "htu relative",
                Box::new(|_, c| set(c, "htu", json!("/token"))),
            ),
            (
                "htu userinfo",
                Box::new(|_, c| set(c, "htu", json!("https://u:p@as.example:8444/token"))),
            ),
            ("no iat", Box::new(|_, c| set(c, "iat", Value::Null))),
            (
                "string iat",
                Box::new(|_, c| set(c, "iat", json!("1800000000"))),
            ),
            (
                "iat 1 h ago",
                Box::new(|_, c| set(c, "iat", json!(NOW - 3600))),
            ),
            (
                "iat 61 s ago",
                Box::new(|_, c| set(c, "iat", json!(NOW - MAX_AGE - 1))),
            ),
            (
                "iat 1 h ahead",
                Box::new(|_, c| set(c, "iat", json!(NOW + 3600))),
            ),
            (
                "iat 31 s ahead",
                Box::new(|_, c| set(c, "iat", json!(NOW + FUTURE_SKEW + 1))),
            ),
            ("expired exp", Box::new(|_, c| set(c, "exp", json!(NOW)))),
            (
                "future nbf",
                Box::new(|_, c| set(c, "nbf", json!(NOW + 3600))),
            ),
        ];
        for (name, edit) in cases {
            let e = check(&proof(&k, edit)).expect_err(name);
            assert_eq!(e.code, ErrorCode::InvalidDpopProof, "{name}: {e}");
        }
    }

    #[test]
    fn accepted_variations() {
        let k = SigningKey::generate(Alg::EdDSA, "dpop").unwrap();
        let cases: Vec<(&str, Edit)> = vec![
            (
                "iat 10 s ago",
                Box::new(|_, c| set(c, "iat", json!(NOW - 10))),
            ),
            (
                "iat 10 s ahead",
                Box::new(|_, c| set(c, "iat", json!(NOW + 10))),
            ),
            (
                "iat at the skew limit",
                Box::new(|_, c| set(c, "iat", json!(NOW + FUTURE_SKEW))),
            ),
            (
                "iat at the age limit",
                Box::new(|_, c| set(c, "iat", json!(NOW - MAX_AGE))),
            ),
            (
                "fractional iat",
                Box::new(|_, c| set(c, "iat", json!(NOW as f64 + 0.5))),
            ),
            (
                "nbf now, exp in 5 min",
                Box::new(|_, c| {
                    set(c, "nbf", json!(NOW));
                    set(c, "exp", json!(NOW + 300));
                }),
            ),
            (
                "htu with query and fragment",
                Box::new(|_, c| set(c, "htu", json!(format!("{URI}?a=b#frag")))),
            ),
            (
                "htu upper-case scheme and host",
                Box::new(|_, c| set(c, "htu", json!("HTTPS://AS.EXAMPLE:8444/token"))),
            ),
            (
                "htu percent-encoded unreserved",
                Box::new(|_, c| set(c, "htu", json!("https://as.example:8444/%74oken"))),
            ),
            (
                "htu dot segment",
                Box::new(|_, c| set(c, "htu", json!("https://as.example:8444/x/../token"))),
            ),
            (
                "extra header and claims",
                Box::new(|h, c| {
                    h.insert("tx_id".into(), json!(1));
                    set(c, "tx_id_key", json!(2));
                }),
            ),
            (
                "typ in another case",
                Box::new(|h, _| {
                    h.insert("typ".into(), json!("DPoP+JWT"));
                }),
            ),
        ];
        for (name, edit) in cases {
            check(&proof(&k, edit)).unwrap_or_else(|e| panic!("{name}: {e}"));
        }
    }

    #[test]
    fn default_ports_and_request_uri_query_are_ignored() {
        let k = SigningKey::generate(Alg::ES256, "dpop").unwrap();
        let p = proof(&k, |_, c| {
            set(c, "htu", json!("https://as.example:443/token"))
        });
        let r = ProofRequest {
            uri: "https://as.example/token?x=1#y",
            ..req()
        };
        verify_proof(&p, &r).unwrap();
        let p = proof(&k, |_, c| set(c, "htu", json!("https://as.example/token")));
        verify_proof(&p, &r).unwrap();
        let r = ProofRequest {
            uri: "https://as.example:4443/token",
            ..req()
        };
        assert!(verify_proof(&p, &r).is_err(), "non-default port matters");
    }

    #[test]
    fn algorithms_outside_fapi_and_bad_signatures_are_refused() {
        let k = SigningKey::generate(Alg::ES256, "dpop").unwrap();
        let good = proof(&k, |_, _| {});
        let parts: Vec<&str> = good.split('.').collect();
        let hdr = |alg: &str| {
            let mut h = header(&k);
            h.insert("alg".into(), json!(alg));
            b64(&serde_json::to_vec(&h).unwrap())
        };
        let cases = vec![
            ("alg none", format!("{}.{}.", hdr("none"), parts[1])),
            (
                "alg HS256",
                format!("{}.{}.{}", hdr("HS256"), parts[1], parts[2]),
            ),
            (
                "alg RS256",
                format!("{}.{}.{}", hdr("RS256"), parts[1], parts[2]),
            ),
            (
                "no alg",
                format!(
                    "{}.{}.{}",
                    b64(&serde_json::to_vec(&header(&k)).unwrap()),
                    parts[1],
                    parts[2]
                ),
            ),
            ("signature of other claims", {
                let other = proof(&k, |_, c| set(c, "jti", json!("j-2")));
                format!(
                    "{}.{}.{}",
                    parts[0],
                    parts[1],
                    other.split('.').nth(2).unwrap()
                )
            }),
            (
                "truncated signature",
                format!("{}.{}.{}", parts[0], parts[1], &parts[2][..20]),
            ),
            ("two segments", format!("{}.{}", parts[0], parts[1])),
            ("garbage", "not-a-jwt".to_owned()),
            ("empty", String::new()),
        ];
        for (name, p) in cases {
            let e = check(&p).expect_err(name);
            assert_eq!(e.code, ErrorCode::InvalidDpopProof, "{name}");
        }
    }

    #[test]
    fn ath_is_checked_when_a_token_is_presented() {
        let k = SigningKey::generate(Alg::ES256, "dpop").unwrap();
        let with_token = ProofRequest {
            access_token: Some(AT),
            ..req()
        };
        verify_proof(&proof(&k, |_, _| {}), &with_token).unwrap();
        for (name, ath) in [
            ("missing", Value::Null),
            ("wrong", json!(fapi_jose::sha256_b64(b"other"))),
            ("plain token", json!(AT)),
        ] {
            let p = proof(&k, |_, c| set(c, "ath", ath));
            let e = verify_proof(&p, &with_token).expect_err(name);
            assert_eq!(e.code, ErrorCode::InvalidDpopProof, "{name}");
        }
        // Without a token (token endpoint, PAR) ath is not looked at.
        check(&proof(&k, |_, c| set(c, "ath", Value::Null))).unwrap();
    }

    #[test]
    fn nonce_is_checked_only_when_required() {
        let k = SigningKey::generate(Alg::ES256, "dpop").unwrap();
        let known = |n: &str| n == "n-good";
        let strict = ProofRequest {
            nonce: Some(&known),
            ..req()
        };
        verify_proof(&proof(&k, |_, _| {}), &strict).unwrap();
        for (name, n) in [("missing", Value::Null), ("stale", json!("n-old"))] {
            let p = proof(&k, |_, c| set(c, "nonce", n));
            let e = verify_proof(&p, &strict).expect_err(name);
            assert_eq!(e.code, ErrorCode::UseDpopNonce, "{name}");
            check(&p).unwrap();
        }
    }

    #[test]
    fn exactly_one_proof_header() {
        assert_eq!(single_proof(&[]).unwrap(), None);
        assert_eq!(single_proof(&["a.b.c"]).unwrap(), Some("a.b.c"));
        for bad in [
            &["a.b.c", "d.e.f"][..],
            &["a.b.c, d.e.f"],
            &["a.b.c", "a.b.c"],
        ] {
            assert_eq!(
                single_proof(bad).unwrap_err().code,
                ErrorCode::InvalidDpopProof
            );
        }
    }

    #[test]
    fn jkt_shape() {
        assert!(is_jkt("NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"));
        assert!(!is_jkt("NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9X"));
        assert!(!is_jkt("NzbLsXh8uDCcd+6MNwXF4W/7noWXFZAfHkxZsRGC9Xs"));
        assert!(!is_jkt(""));
    }
}
