//! UK Open Banking `x-jws-signature`: a detached JWS (RFC 7515 Appendix F) over the exact
//! bytes of an HTTP body, with the OB protected header (`kid`, `typ` JOSE, `cty`, and the
//! critical claims `http://openbanking.org.uk/iat`, `…/iss`, `…/tan`). Sans-IO: the caller
//! finds the signer's keys and its identities; this module only checks and signs.
//!
//! `b64=false` (OB v3.1 before 3.1.4) is refused: the payload is base64url-encoded into the
//! signing input, as RFC 7515 §5.1 says by default.

use crate::{Alg, Jwk, SigningKey, b64, b64_decode};
use serde_json::{Map, Value, json};

pub const CLAIM_IAT: &str = "http://openbanking.org.uk/iat";
pub const CLAIM_ISS: &str = "http://openbanking.org.uk/iss";
pub const CLAIM_TAN: &str = "http://openbanking.org.uk/tan";
/// The `crit` list every OB signature carries (any order, nothing else).
pub const CRIT: [&str; 3] = [CLAIM_IAT, CLAIM_ISS, CLAIM_TAN];

/// Longest header segment accepted, so a hostile value cannot make us decode megabytes.
const MAX_HEADER_LEN: usize = 4096;

/// Which OB error code a failure maps to (`UK.OBIE.Signature.*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// Not a detached compact JWS (`UK.OBIE.Signature.Malformed`).
    Malformed,
    /// A required header member is absent (`UK.OBIE.Signature.MissingClaim`).
    MissingClaim,
    /// A header member has a wrong value: crit, iat, iss, tan, typ, alg
    /// (`UK.OBIE.Signature.InvalidClaim`).
    InvalidClaim,
    /// No registered key under `kid`, or the signature does not verify over the body
    /// (`UK.OBIE.Signature.Invalid`).
    Invalid,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct SignatureError {
    pub failure: Failure,
    pub message: String,
}

fn fail(failure: Failure, message: impl Into<String>) -> SignatureError {
    SignatureError {
        failure,
        message: message.into(),
    }
}

/// What a valid signature must show.
#[derive(Debug, Clone)]
pub struct Expected<'a> {
    /// Algorithms accepted (OB: PS256; see ADR 0017 for ES256).
    pub algs: &'a [Alg],
    /// Values `…/iss` may take (the signer's identities).
    pub issuers: &'a [&'a str],
    /// The trust anchor `…/tan` must name.
    pub trust_anchor: &'a str,
    /// Now (seconds since the epoch).
    pub now: i64,
    /// Oldest `…/iat` accepted: `now - max_age`.
    pub max_age_secs: i64,
    /// Tolerated clock skew for an `iat` in the future.
    pub future_skew_secs: i64,
}

/// What a verified signature said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    pub kid: String,
    pub alg: Alg,
    pub iat: i64,
    pub iss: String,
}

/// Verify `signature` (the `x-jws-signature` value) over `body` against the signer's
/// registered `keys`.
pub fn verify(
    signature: &str,
    body: &[u8],
    keys: &[Jwk],
    want: &Expected<'_>,
) -> Result<Verified, SignatureError> {
    let signature = signature.trim();
    let mut parts = signature.split('.');
    let (Some(h), Some(payload), Some(s), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(fail(
            Failure::Malformed,
            "not a compact JWS (header..signature)",
        ));
    };
    if !payload.is_empty() {
        return Err(fail(
            Failure::Malformed,
            "the payload must be detached (empty middle segment)",
        ));
    }
    if h.is_empty() || h.len() > MAX_HEADER_LEN || s.is_empty() {
        return Err(fail(Failure::Malformed, "empty or oversized segment"));
    }
    let header: Map<String, Value> = b64_decode(h)
        .ok()
        .and_then(|raw| serde_json::from_slice(&raw).ok())
        .ok_or_else(|| {
            fail(
                Failure::Malformed,
                "the header is not base64url JSON object",
            )
        })?;
    let sig =
        b64_decode(s).map_err(|_| fail(Failure::Malformed, "the signature is not base64url"))?;

    let alg = match header.get("alg").and_then(Value::as_str) {
        None => return Err(fail(Failure::MissingClaim, "alg is missing")),
        Some(a) => Alg::parse(a)
            .ok()
            .filter(|a| want.algs.contains(a))
            .ok_or_else(|| fail(Failure::InvalidClaim, format!("alg {a} is not accepted")))?,
    };
    let kid = str_member(&header, "kid")?;
    if let Some(t) = header.get("typ")
        && t.as_str() != Some("JOSE")
    {
        return Err(fail(Failure::InvalidClaim, "typ must be JOSE"));
    }
    if let Some(c) = header.get("cty")
        && !matches!(c.as_str(), Some("json" | "application/json"))
    {
        return Err(fail(Failure::InvalidClaim, "cty must be application/json"));
    }
    if let Some(b) = header.get("b64")
        && b != &Value::Bool(true)
    {
        return Err(fail(Failure::InvalidClaim, "b64=false is not supported"));
    }
    match header.get("crit") {
        None => return Err(fail(Failure::MissingClaim, "crit is missing")),
        Some(Value::Array(list)) => {
            let names: Vec<&str> = list.iter().filter_map(Value::as_str).collect();
            let exact = names.len() == list.len()
                && names.len() == CRIT.len()
                && CRIT.iter().all(|c| names.contains(c));
            if !exact {
                return Err(fail(
                    Failure::InvalidClaim,
                    "crit must list exactly the OB iat, iss and tan claims",
                ));
            }
        }
        Some(_) => return Err(fail(Failure::InvalidClaim, "crit must be an array")),
    }
    let iat = match header.get(CLAIM_IAT) {
        None => {
            return Err(fail(
                Failure::MissingClaim,
                format!("{CLAIM_IAT} is missing"),
            ));
        }
        Some(v) => v.as_i64().ok_or_else(|| {
            fail(
                Failure::InvalidClaim,
                format!("{CLAIM_IAT} must be a number"),
            )
        })?,
    };
    if iat > want.now + want.future_skew_secs {
        return Err(fail(
            Failure::InvalidClaim,
            format!("{CLAIM_IAT} is in the future"),
        ));
    }
    if iat < want.now - want.max_age_secs {
        return Err(fail(
            Failure::InvalidClaim,
            format!("{CLAIM_IAT} is too old"),
        ));
    }
    let iss = str_member(&header, CLAIM_ISS)?;
    if !want.issuers.contains(&iss.as_str()) {
        return Err(fail(
            Failure::InvalidClaim,
            format!("{CLAIM_ISS} is not the caller's identity"),
        ));
    }
    let tan = str_member(&header, CLAIM_TAN)?;
    if tan != want.trust_anchor {
        return Err(fail(
            Failure::InvalidClaim,
            format!("{CLAIM_TAN} is not the trust anchor {}", want.trust_anchor),
        ));
    }

    let mut input = Vec::with_capacity(h.len() + 1 + body.len() * 4 / 3 + 4);
    input.extend_from_slice(h.as_bytes());
    input.push(b'.');
    input.extend_from_slice(b64(body).as_bytes());
    let mut tried = false;
    for k in keys
        .iter()
        .filter(|k| k.kid.as_deref() == Some(kid.as_str()))
        .filter(|k| k.matches(alg) && !k.has_private_material())
    {
        tried = true;
        if k.verify(alg, &input, &sig).is_ok() {
            return Ok(Verified { kid, alg, iat, iss });
        }
    }
    Err(fail(
        Failure::Invalid,
        if tried {
            "the signature does not verify over the body"
        } else {
            "no registered key has this kid and algorithm"
        },
    ))
}

fn str_member(header: &Map<String, Value>, name: &str) -> Result<String, SignatureError> {
    match header.get(name) {
        None => Err(fail(Failure::MissingClaim, format!("{name} is missing"))),
        Some(Value::String(s)) if !s.is_empty() => Ok(s.clone()),
        Some(_) => Err(fail(
            Failure::InvalidClaim,
            format!("{name} must be a non-empty string"),
        )),
    }
}

/// The OB protected header for a signature by `key`.
pub fn header(key: &SigningKey, iss: &str, trust_anchor: &str, iat: i64) -> Map<String, Value> {
    let v = json!({
        "alg": key.alg().as_str(),
        "kid": key.kid(),
        "typ": "JOSE",
        "cty": "application/json",
        CLAIM_IAT: iat,
        CLAIM_ISS: iss,
        CLAIM_TAN: trust_anchor,
        "crit": CRIT,
    });
    match v {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}

/// Sign `body` with a caller-built protected `header` (tests use it to build bad ones);
/// `alg` is forced to the key's.
pub fn sign_with_header(
    key: &SigningKey,
    header: &Map<String, Value>,
    body: &[u8],
) -> crate::Result<String> {
    let mut header = header.clone();
    header.insert("alg".into(), key.alg().as_str().into());
    let h = b64(&serde_json::to_vec(&header).map_err(|_| crate::JoseError::Crypto)?);
    let mut input = String::with_capacity(h.len() + 1 + body.len() * 4 / 3 + 4);
    input.push_str(&h);
    input.push('.');
    input.push_str(&b64(body));
    let sig = key.sign(input.as_bytes())?;
    Ok(format!("{h}..{}", b64(&sig)))
}

/// The `alg` a (not yet verified) detached signature names in its protected header, if
/// it names one we know. Used only to choose how to answer, never to trust anything.
pub fn header_alg(signature: &str) -> Option<Alg> {
    let h = signature.trim().split('.').next()?;
    if h.is_empty() || h.len() > MAX_HEADER_LEN {
        return None;
    }
    let header: Map<String, Value> = serde_json::from_slice(&b64_decode(h).ok()?).ok()?;
    Alg::parse(header.get("alg")?.as_str()?).ok()
}

/// The `x-jws-signature` value for `body`, signed by `key` as `iss` under `trust_anchor`.
pub fn sign(
    key: &SigningKey,
    body: &[u8],
    iss: &str,
    trust_anchor: &str,
    iat: i64,
) -> crate::Result<String> {
    sign_with_header(key, &header(key, iss, trust_anchor, iat), body)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const NOW: i64 = 1_800_000_000;

    #[test]
    fn header_alg_reads_the_protected_header_only() {
        let es = SigningKey::generate(Alg::ES256, "e").unwrap();
        let sig = sign(&es, b"{}", "c", "ta", NOW).unwrap();
        assert_eq!(header_alg(&sig), Some(Alg::ES256));
        assert_eq!(header_alg(&format!(" {sig} ")), Some(Alg::ES256));
        for bad in [
            "",
            "..",
            "x..y",
            "eyJhbGciOiJub25lIn0..x",
            "eyJ0eXAiOiJKT1NFIn0..x",
        ] {
            assert_eq!(header_alg(bad), None, "{bad}");
        }
    }

    fn want<'a>(issuers: &'a [&'a str]) -> Expected<'a> {
        Expected {
            algs: &[Alg::PS256, Alg::ES256],
            issuers,
            trust_anchor: "ta.example",
            now: NOW,
            max_age_secs: 300,
            future_skew_secs: 30,
        }
    }

    fn check(sig: &str, body: &[u8], k: &SigningKey) -> Result<Verified, SignatureError> {
        verify(sig, body, &[k.public_jwk()], &want(&["tpp-1"]))
    }

    #[test]
    fn round_trip_and_every_rule() {
        for alg in [Alg::PS256, Alg::ES256] {
            let k = SigningKey::generate(alg, "k1").unwrap();
            let body = br#"{"Data":{"a":1}}"#;
            let sig = sign(&k, body, "tpp-1", "ta.example", NOW).unwrap();
            assert!(sig.contains(".."));
            let v = check(&sig, body, &k).unwrap();
            assert_eq!((v.kid.as_str(), v.alg, v.iat), ("k1", alg, NOW));

            let f = |s: &str, b: &[u8]| check(s, b, &k).unwrap_err().failure;
            assert_eq!(f(&sig, br#"{"Data":{"a":2}}"#), Failure::Invalid);
            let other = SigningKey::generate(alg, "k1").unwrap();
            assert_eq!(
                check(&sig, body, &other).unwrap_err().failure,
                Failure::Invalid
            );
            assert_eq!(f("abc", body), Failure::Malformed);
            let attached = sig.replacen("..", &format!(".{}.", b64(body)), 1);
            assert_eq!(f(&attached, body), Failure::Malformed);

            let edit = |m: &dyn Fn(&mut Map<String, Value>)| {
                let mut h = header(&k, "tpp-1", "ta.example", NOW);
                m(&mut h);
                sign_with_header(&k, &h, body).unwrap()
            };
            type Edit = Box<dyn Fn(&mut Map<String, Value>)>;
            let cases: Vec<(Edit, Failure)> = vec![
                (Box::new(|h| drop(h.remove("crit"))), Failure::MissingClaim),
                (
                    Box::new(|h| drop(h.insert("crit".into(), json!([CLAIM_IAT, CLAIM_ISS])))),
                    Failure::InvalidClaim,
                ),
                (
                    Box::new(|h| {
                        drop(h.insert(
                            "crit".into(),
                            json!([CLAIM_IAT, CLAIM_ISS, CLAIM_TAN, "b64"]),
                        ))
                    }),
                    Failure::InvalidClaim,
                ),
                (Box::new(|h| drop(h.remove("kid"))), Failure::MissingClaim),
                (
                    Box::new(|h| drop(h.insert("kid".into(), json!("k2")))),
                    Failure::Invalid,
                ),
                (
                    Box::new(|h| drop(h.insert(CLAIM_ISS.into(), json!("tpp-2")))),
                    Failure::InvalidClaim,
                ),
                (
                    Box::new(|h| drop(h.insert(CLAIM_TAN.into(), json!("other.example")))),
                    Failure::InvalidClaim,
                ),
                (
                    Box::new(|h| drop(h.insert(CLAIM_IAT.into(), json!(NOW - 301)))),
                    Failure::InvalidClaim,
                ),
                (
                    Box::new(|h| drop(h.insert(CLAIM_IAT.into(), json!(NOW + 31)))),
                    Failure::InvalidClaim,
                ),
                (
                    Box::new(|h| drop(h.remove(CLAIM_IAT))),
                    Failure::MissingClaim,
                ),
                (
                    Box::new(|h| drop(h.insert("b64".into(), json!(false)))),
                    Failure::InvalidClaim,
                ),
                (
                    Box::new(|h| drop(h.insert("typ".into(), json!("JWT")))),
                    Failure::InvalidClaim,
                ),
            ];
            for (i, (m, want)) in cases.iter().enumerate() {
                assert_eq!(f(&edit(m.as_ref()), body), *want, "case {i} {alg:?}");
            }
        }
        // EdDSA is a FAPI algorithm but not accepted here.
        let k = SigningKey::generate(Alg::EdDSA, "k1").unwrap();
        let sig = sign(&k, b"{}", "tpp-1", "ta.example", NOW).unwrap();
        assert_eq!(
            check(&sig, b"{}", &k).unwrap_err().failure,
            Failure::InvalidClaim
        );
    }
}
