//! Compact JWS for FAPI 2.0 (RFC 7515 / 7517 / 7518 / 7638 / 8037), limited on purpose to
//! the three algorithms FAPI 2.0 §5.4.1 permits: PS256, ES256 and EdDSA (Ed25519).
//!
//! Signing uses aws-lc-rs key objects held in memory (parsed once), which is what makes
//! the token endpoint fast; see ADR 0003. `none`, `HS*` and `RS256` cannot be expressed
//! by [`Alg`], so no code path can accept them.
//!
//! Shared by the authorization server, the resource server and the test/TPP tooling, so
//! none of them depends on the others' internals.

pub mod detached;

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{
    self, ECDSA_P256_SHA256_FIXED, ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair,
    KeyPair, RSA_PSS_2048_8192_SHA256, RSA_PSS_SHA256, RsaKeyPair, RsaPublicKeyComponents,
    UnparsedPublicKey,
};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum JoseError {
    #[error("malformed JWS: {0}")]
    Malformed(&'static str),
    #[error("algorithm not allowed: {0}")]
    AlgNotAllowed(String),
    #[error("signature does not verify")]
    BadSignature,
    #[error("unusable key: {0}")]
    BadKey(&'static str),
    #[error("crypto failure")]
    Crypto,
}

pub type Result<T> = std::result::Result<T, JoseError>;

/// The JWS algorithms FAPI 2.0 allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Alg {
    ES256,
    PS256,
    EdDSA,
}

impl Alg {
    pub fn as_str(self) -> &'static str {
        match self {
            Alg::ES256 => "ES256",
            Alg::PS256 => "PS256",
            Alg::EdDSA => "EdDSA",
        }
    }

    /// Parses an `alg` header value; anything outside the FAPI set is refused.
    pub fn parse(s: &str) -> Result<Self> {
        match s {
            "ES256" => Ok(Alg::ES256),
            "PS256" => Ok(Alg::PS256),
            "EdDSA" => Ok(Alg::EdDSA),
            other => Err(JoseError::AlgNotAllowed(other.chars().take(16).collect())),
        }
    }

    pub const ALL: [Alg; 3] = [Alg::ES256, Alg::PS256, Alg::EdDSA];

    fn kty(self) -> &'static str {
        match self {
            Alg::ES256 => "EC",
            Alg::PS256 => "RSA",
            Alg::EdDSA => "OKP",
        }
    }
}

pub fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

pub fn b64_decode(s: &str) -> Result<Vec<u8>> {
    URL_SAFE_NO_PAD
        .decode(s.as_bytes())
        .map_err(|_| JoseError::Malformed("base64url"))
}

/// base64url(SHA-256(bytes)): `x5t#S256` over a certificate's DER, PKCE S256, `ath`...
pub fn sha256_b64(bytes: &[u8]) -> String {
    b64(&Sha256::digest(bytes))
}

/// RFC 8705 §3.1 certificate thumbprint.
pub fn x5t_s256(cert_der: &[u8]) -> String {
    sha256_b64(cert_der)
}

/// A public JWK (RFC 7517). Private members are captured only so they can be refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Jwk {
    pub kty: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kid: Option<String>,
    #[serde(rename = "use", skip_serializing_if = "Option::is_none")]
    pub use_: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub alg: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub crv: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub x: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub y: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub n: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub e: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub x5c: Option<Vec<String>>,
    /// Present only if someone published a private key; never serialised back.
    #[serde(default, skip_serializing)]
    pub d: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Jwks {
    pub keys: Vec<Jwk>,
}

impl Jwk {
    pub fn has_private_material(&self) -> bool {
        self.d.is_some()
    }

    /// Whether this key can verify `alg` (RFC 7517 `kty`/`crv`/`alg`/`use` matching; the
    /// suite adds decoy keys with the same `kid`, FAPI 2.0 §5.4.3).
    pub fn matches(&self, alg: Alg) -> bool {
        if self.kty != alg.kty() {
            return false;
        }
        if let Some(a) = &self.alg
            && a != alg.as_str()
        {
            return false;
        }
        if let Some(u) = &self.use_
            && u != "sig"
        {
            return false;
        }
        match alg {
            Alg::ES256 => self.crv.as_deref() == Some("P-256"),
            Alg::EdDSA => self.crv.as_deref() == Some("Ed25519"),
            Alg::PS256 => true,
        }
    }

    /// RFC 7638 thumbprint (SHA-256, base64url): DPoP `jkt`.
    pub fn thumbprint_s256(&self) -> Result<String> {
        let get = |v: &Option<String>| v.clone().ok_or(JoseError::BadKey("missing member"));
        // Members in lexicographic order, no whitespace (RFC 7638 §3.2).
        let canonical = match self.kty.as_str() {
            "EC" => format!(
                r#"{{"crv":{},"kty":"EC","x":{},"y":{}}}"#,
                json_str(&get(&self.crv)?),
                json_str(&get(&self.x)?),
                json_str(&get(&self.y)?)
            ),
            "RSA" => format!(
                r#"{{"e":{},"kty":"RSA","n":{}}}"#,
                json_str(&get(&self.e)?),
                json_str(&get(&self.n)?)
            ),
            "OKP" => format!(
                r#"{{"crv":{},"kty":"OKP","x":{}}}"#,
                json_str(&get(&self.crv)?),
                json_str(&get(&self.x)?)
            ),
            _ => return Err(JoseError::BadKey("unsupported kty")),
        };
        Ok(sha256_b64(canonical.as_bytes()))
    }

    /// Verify `sig` over `msg` with this key under `alg`.
    pub fn verify(&self, alg: Alg, msg: &[u8], sig: &[u8]) -> Result<()> {
        if !self.matches(alg) {
            return Err(JoseError::BadKey("key does not fit the algorithm"));
        }
        let field = |v: &Option<String>| -> Result<Vec<u8>> {
            b64_decode(v.as_deref().ok_or(JoseError::BadKey("missing member"))?)
        };
        let ok = match alg {
            Alg::ES256 => {
                let (x, y) = (field(&self.x)?, field(&self.y)?);
                if x.len() != 32 || y.len() != 32 {
                    return Err(JoseError::BadKey("bad P-256 point"));
                }
                let mut point = Vec::with_capacity(65);
                point.push(4u8);
                point.extend_from_slice(&x);
                point.extend_from_slice(&y);
                UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, point).verify(msg, sig)
            }
            Alg::PS256 => {
                let n = field(&self.n)?;
                let e = field(&self.e)?;
                let n = strip_leading_zeros(&n);
                // FAPI 2.0 §5.4.1-2: RSA keys of at least 2048 bits.
                if n.len() < 256 {
                    return Err(JoseError::BadKey("RSA key shorter than 2048 bits"));
                }
                RsaPublicKeyComponents {
                    n,
                    e: strip_leading_zeros(&e),
                }
                .verify(&RSA_PSS_2048_8192_SHA256, msg, sig)
            }
            Alg::EdDSA => {
                let x = field(&self.x)?;
                UnparsedPublicKey::new(&signature::ED25519, x).verify(msg, sig)
            }
        };
        ok.map_err(|_| JoseError::BadSignature)
    }
}

fn strip_leading_zeros(b: &[u8]) -> &[u8] {
    let i = b.iter().position(|x| *x != 0).unwrap_or(b.len());
    &b[i..]
}

fn json_str(s: &str) -> String {
    serde_json::Value::String(s.to_owned()).to_string()
}

enum KeyKind {
    Ec(EcdsaKeyPair),
    Rsa(RsaKeyPair),
    Ed(Ed25519KeyPair),
}

/// A private signing key held in memory. Its `Debug` shows only `kid` and `alg`.
pub struct SigningKey {
    kid: String,
    alg: Alg,
    key: KeyKind,
    rng: SystemRandom,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("kid", &self.kid)
            .field("alg", &self.alg)
            .finish_non_exhaustive()
    }
}

impl SigningKey {
    pub fn generate(alg: Alg, kid: impl Into<String>) -> Result<Self> {
        let key = match alg {
            Alg::ES256 => KeyKind::Ec(
                EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING)
                    .map_err(|_| JoseError::Crypto)?,
            ),
            Alg::PS256 => KeyKind::Rsa(
                RsaKeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048)
                    .map_err(|_| JoseError::Crypto)?,
            ),
            Alg::EdDSA => KeyKind::Ed(Ed25519KeyPair::generate().map_err(|_| JoseError::Crypto)?),
        };
        Ok(Self {
            kid: kid.into(),
            alg,
            key,
            rng: SystemRandom::new(),
        })
    }

    /// Load from PKCS#8 DER (how the server keeps its own keys on disk).
    pub fn from_pkcs8(alg: Alg, kid: impl Into<String>, der: &[u8]) -> Result<Self> {
        let key = match alg {
            Alg::ES256 => KeyKind::Ec(
                EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, der)
                    .map_err(|_| JoseError::BadKey("not a P-256 PKCS#8 key"))?,
            ),
            Alg::PS256 => {
                let k = RsaKeyPair::from_pkcs8(der)
                    .map_err(|_| JoseError::BadKey("not an RSA PKCS#8 key"))?;
                if k.public_modulus_len() < 256 {
                    return Err(JoseError::BadKey("RSA key shorter than 2048 bits"));
                }
                KeyKind::Rsa(k)
            }
            Alg::EdDSA => KeyKind::Ed(
                Ed25519KeyPair::from_pkcs8(der)
                    .map_err(|_| JoseError::BadKey("not an Ed25519 PKCS#8 key"))?,
            ),
        };
        Ok(Self {
            kid: kid.into(),
            alg,
            key,
            rng: SystemRandom::new(),
        })
    }

    pub fn to_pkcs8(&self) -> Result<Vec<u8>> {
        let doc = match &self.key {
            KeyKind::Ec(k) => k
                .to_pkcs8v1()
                .map_err(|_| JoseError::Crypto)?
                .as_ref()
                .to_vec(),
            KeyKind::Ed(k) => k
                .to_pkcs8()
                .map_err(|_| JoseError::Crypto)?
                .as_ref()
                .to_vec(),
            KeyKind::Rsa(k) => AsDer::<aws_lc_rs::encoding::Pkcs8V1Der>::as_der(k)
                .map_err(|_| JoseError::Crypto)?
                .as_ref()
                .to_vec(),
        };
        Ok(doc)
    }

    /// Load a private JWK (EC P-256 or OKP Ed25519): the format TPP kits carry.
    pub fn from_private_jwk(jwk: &serde_json::Value) -> Result<Self> {
        let s = |k: &str| -> Result<Vec<u8>> {
            b64_decode(
                jwk.get(k)
                    .and_then(|v| v.as_str())
                    .ok_or(JoseError::BadKey("missing member"))?,
            )
        };
        let kid = jwk
            .get("kid")
            .and_then(|v| v.as_str())
            .unwrap_or_default()
            .to_owned();
        match (
            jwk.get("kty").and_then(|v| v.as_str()),
            jwk.get("crv").and_then(|v| v.as_str()),
        ) {
            (Some("EC"), Some("P-256")) => {
                let mut point = vec![4u8];
                point.extend(s("x")?);
                point.extend(s("y")?);
                let k = EcdsaKeyPair::from_private_key_and_public_key(
                    &ECDSA_P256_SHA256_FIXED_SIGNING,
                    &s("d")?,
                    &point,
                )
                .map_err(|_| JoseError::BadKey("inconsistent EC key"))?;
                Ok(Self {
                    kid,
                    alg: Alg::ES256,
                    key: KeyKind::Ec(k),
                    rng: SystemRandom::new(),
                })
            }
            (Some("OKP"), Some("Ed25519")) => {
                let k = Ed25519KeyPair::from_seed_and_public_key(&s("d")?, &s("x")?)
                    .map_err(|_| JoseError::BadKey("inconsistent Ed25519 key"))?;
                Ok(Self {
                    kid,
                    alg: Alg::EdDSA,
                    key: KeyKind::Ed(k),
                    rng: SystemRandom::new(),
                })
            }
            // RSA: the sandbox kit's own form (see `to_private_jwk`).
            (Some("RSA"), _) => Self::from_pkcs8(Alg::PS256, kid, &s(RSA_PKCS8_MEMBER)?),
            _ => Err(JoseError::BadKey(
                "only EC P-256, Ed25519 and kit RSA private JWKs are supported",
            )),
        }
    }

    /// Private JWK export (EC and Ed25519 only), for the sandbox TPP kit.
    pub fn to_private_jwk(&self) -> Result<serde_json::Value> {
        let mut v = serde_json::to_value(self.public_jwk()).map_err(|_| JoseError::Crypto)?;
        let d = match &self.key {
            KeyKind::Ec(k) => {
                use aws_lc_rs::encoding::{AsBigEndian, EcPrivateKeyBin};
                let bin: EcPrivateKeyBin = k
                    .private_key()
                    .as_be_bytes()
                    .map_err(|_| JoseError::Crypto)?;
                b64(bin.as_ref())
            }
            KeyKind::Ed(k) => {
                use aws_lc_rs::encoding::{AsBigEndian, Curve25519SeedBin};
                let seed = k.seed().map_err(|_| JoseError::Crypto)?;
                let bin: Curve25519SeedBin = seed.as_be_bytes().map_err(|_| JoseError::Crypto)?;
                b64(bin.as_ref())
            }
            KeyKind::Rsa(_) => {
                // aws-lc-rs does not expose the CRT parameters a standard RSA private
                // JWK needs, so the kit file carries the PKCS#8 DER instead of `d`.
                let der = self.to_pkcs8()?;
                if let Some(o) = v.as_object_mut() {
                    o.insert(RSA_PKCS8_MEMBER.into(), b64(&der).into());
                }
                return Ok(v);
            }
        };
        if let Some(o) = v.as_object_mut() {
            o.insert("d".into(), serde_json::Value::String(d));
        }
        Ok(v)
    }

    pub fn kid(&self) -> &str {
        &self.kid
    }

    pub fn alg(&self) -> Alg {
        self.alg
    }

    pub fn public_jwk(&self) -> Jwk {
        let mut jwk = Jwk {
            kty: self.alg.kty().into(),
            kid: Some(self.kid.clone()),
            use_: Some("sig".into()),
            alg: Some(self.alg.as_str().into()),
            ..Jwk::default()
        };
        match &self.key {
            KeyKind::Ec(k) => {
                let p = k.public_key().as_ref();
                jwk.crv = Some("P-256".into());
                jwk.x = Some(b64(&p[1..33]));
                jwk.y = Some(b64(&p[33..65]));
            }
            KeyKind::Rsa(k) => {
                let p = k.public_key();
                jwk.n = Some(b64(p.modulus().big_endian_without_leading_zero()));
                jwk.e = Some(b64(p.exponent().big_endian_without_leading_zero()));
            }
            KeyKind::Ed(k) => {
                jwk.crv = Some("Ed25519".into());
                jwk.x = Some(b64(k.public_key().as_ref()));
            }
        }
        jwk
    }

    pub fn sign(&self, msg: &[u8]) -> Result<Vec<u8>> {
        match &self.key {
            KeyKind::Ec(k) => Ok(k
                .sign(&self.rng, msg)
                .map_err(|_| JoseError::Crypto)?
                .as_ref()
                .to_vec()),
            KeyKind::Ed(k) => Ok(k.sign(msg).as_ref().to_vec()),
            KeyKind::Rsa(k) => {
                let mut sig = vec![0u8; k.public_modulus_len()];
                k.sign(&RSA_PSS_SHA256, &self.rng, msg, &mut sig)
                    .map_err(|_| JoseError::Crypto)?;
                Ok(sig)
            }
        }
    }

    /// Sign `claims` as a compact JWS with `alg`, `kid` and optional `typ`.
    pub fn sign_jwt<T: Serialize>(&self, typ: Option<&str>, claims: &T) -> Result<String> {
        let mut header = serde_json::Map::new();
        header.insert("alg".into(), self.alg.as_str().into());
        header.insert("kid".into(), self.kid.clone().into());
        if let Some(t) = typ {
            header.insert("typ".into(), t.into());
        }
        self.sign_with_header(&header, claims)
    }

    /// Sign with a caller-built header; `alg` is forced to this key's algorithm.
    pub fn sign_with_header<T: Serialize>(
        &self,
        header: &serde_json::Map<String, serde_json::Value>,
        claims: &T,
    ) -> Result<String> {
        let mut header = header.clone();
        header.insert("alg".into(), self.alg.as_str().into());
        let h = serde_json::to_vec(&header).map_err(|_| JoseError::Crypto)?;
        let c = serde_json::to_vec(claims).map_err(|_| JoseError::Crypto)?;
        let mut out = String::with_capacity((h.len() + c.len()) * 4 / 3 + 100);
        out.push_str(&b64(&h));
        out.push('.');
        out.push_str(&b64(&c));
        let sig = self.sign(out.as_bytes())?;
        out.push('.');
        out.push_str(&b64(&sig));
        Ok(out)
    }
}

/// The protected header members the platform looks at.
#[derive(Debug, Clone, Deserialize)]
pub struct Header {
    pub alg: String,
    #[serde(default)]
    pub kid: Option<String>,
    #[serde(default)]
    pub typ: Option<String>,
    #[serde(default)]
    pub jwk: Option<Jwk>,
    #[serde(default)]
    pub crit: Option<Vec<String>>,
}

/// A parsed but not yet verified compact JWS.
#[derive(Debug, Clone)]
pub struct Unverified {
    pub header: Header,
    pub claims: serde_json::Value,
    signing_input_len: usize,
    token: String,
    signature: Vec<u8>,
}

/// Member of a kit RSA private JWK holding the key as base64url PKCS#8 DER.
const RSA_PKCS8_MEMBER: &str = "x_pkcs8";

/// Upper bound on token size, so a hostile input cannot make us decode megabytes.
pub const MAX_JWS_LEN: usize = 16 * 1024;

impl Unverified {
    pub fn parse(token: &str) -> Result<Self> {
        if token.len() > MAX_JWS_LEN {
            return Err(JoseError::Malformed("too long"));
        }
        let mut parts = token.split('.');
        let (Some(h), Some(c), Some(s), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(JoseError::Malformed("not three segments"));
        };
        let header: Header = serde_json::from_slice(&b64_decode(h)?)
            .map_err(|_| JoseError::Malformed("header is not a JSON object with alg"))?;
        let claims: serde_json::Value = serde_json::from_slice(&b64_decode(c)?)
            .map_err(|_| JoseError::Malformed("payload is not JSON"))?;
        if !claims.is_object() {
            return Err(JoseError::Malformed("payload is not a JSON object"));
        }
        // RFC 7515 §4.1.11: we understand no critical extensions here.
        if header.crit.is_some() {
            return Err(JoseError::Malformed("unsupported crit header"));
        }
        let signature = b64_decode(s)?;
        Ok(Self {
            header,
            claims,
            signing_input_len: h.len() + 1 + c.len(),
            token: token.to_owned(),
            signature,
        })
    }

    pub fn alg(&self) -> Result<Alg> {
        Alg::parse(&self.header.alg)
    }

    pub fn signing_input(&self) -> &[u8] {
        &self.token.as_bytes()[..self.signing_input_len]
    }

    /// Verify against one key.
    pub fn verify_with(&self, key: &Jwk) -> Result<()> {
        key.verify(self.alg()?, self.signing_input(), &self.signature)
    }

    /// Verify against a key set: candidates are chosen by `kid` (when given) and by
    /// `kty`/`crv`/`alg`/`use`, and any candidate that verifies wins.
    pub fn verify_with_set(&self, keys: &[Jwk]) -> Result<&Self> {
        let alg = self.alg()?;
        let mut tried = false;
        for k in keys
            .iter()
            .filter(|k| k.matches(alg) && !k.has_private_material())
        {
            if let (Some(want), Some(have)) = (&self.header.kid, &k.kid)
                && want != have
            {
                continue;
            }
            tried = true;
            if self.verify_with(k).is_ok() {
                return Ok(self);
            }
        }
        if tried {
            Err(JoseError::BadSignature)
        } else {
            Err(JoseError::BadKey("no matching key"))
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn every_alg_round_trips_and_rejects_tampering() {
        for alg in Alg::ALL {
            let k = SigningKey::generate(alg, format!("k-{}", alg.as_str())).unwrap();
            let t = k
                .sign_jwt(Some("at+jwt"), &serde_json::json!({"sub": "a"}))
                .unwrap();
            let u = Unverified::parse(&t).unwrap();
            assert_eq!(u.header.typ.as_deref(), Some("at+jwt"));
            u.verify_with_set(&[k.public_jwk()]).unwrap();
            // Flip one payload character: signature must fail.
            let mut parts: Vec<String> = t.split('.').map(str::to_owned).collect();
            parts[1] = b64(br#"{"sub":"b"}"#);
            let bad = Unverified::parse(&parts.join(".")).unwrap();
            assert_eq!(
                bad.verify_with_set(&[k.public_jwk()]).unwrap_err(),
                JoseError::BadSignature
            );
            // PKCS#8 round trip keeps the same public key.
            let k2 = SigningKey::from_pkcs8(alg, k.kid(), &k.to_pkcs8().unwrap()).unwrap();
            assert_eq!(k2.public_jwk(), k.public_jwk());
        }
    }

    #[test]
    fn refuses_algorithms_outside_fapi() {
        for bad in ["none", "RS256", "HS256", "ES384"] {
            assert!(Alg::parse(bad).is_err());
        }
        let k = SigningKey::generate(Alg::ES256, "k").unwrap();
        let t = k.sign_jwt(None, &serde_json::json!({})).unwrap();
        let forged = format!(
            "{}.{}",
            b64(br#"{"alg":"none"}"#),
            t.split('.').nth(1).unwrap()
        ) + ".";
        let u = Unverified::parse(&forged).unwrap();
        assert!(u.verify_with_set(&[k.public_jwk()]).is_err());
    }

    #[test]
    fn private_jwk_round_trip_and_thumbprint() {
        for alg in Alg::ALL {
            let k = SigningKey::generate(alg, "tpp").unwrap();
            let jwk = k.to_private_jwk().unwrap();
            let k2 = SigningKey::from_private_jwk(&jwk).unwrap();
            let t = k2.sign_jwt(None, &serde_json::json!({"a": 1})).unwrap();
            Unverified::parse(&t)
                .unwrap()
                .verify_with(&k.public_jwk())
                .unwrap();
        }
        // RFC 7638 §3.1 example.
        let jwk: Jwk = serde_json::from_str(r#"{"kty":"RSA","e":"AQAB","n":"0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw","alg":"RS256","kid":"2011-04-29"}"#).unwrap();
        assert_eq!(
            jwk.thumbprint_s256().unwrap(),
            "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"
        );
    }

    #[test]
    fn short_rsa_and_private_keys_are_not_used_for_verification() {
        let k = SigningKey::generate(Alg::ES256, "k").unwrap();
        let t = k.sign_jwt(None, &serde_json::json!({})).unwrap();
        let mut with_d = k.public_jwk();
        with_d.d = Some("AAAA".into());
        assert!(
            Unverified::parse(&t)
                .unwrap()
                .verify_with_set(&[with_d])
                .is_err()
        );
    }
}
