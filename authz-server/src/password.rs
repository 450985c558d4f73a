//! Customer credentials: argon2id password hashes, RFC 6238 TOTP codes, the enrolment
//! `otpauth://` URI and its QR code, and recovery codes.

use argon2::Argon2;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};

pub fn hash(password: &str) -> anyhow::Result<String> {
    let h = Argon2::default()
        .hash_password(password.as_bytes())
        .map_err(|e| anyhow::anyhow!("argon2: {e}"))?;
    Ok(h.to_string())
}

pub fn verify(password: &str, phc: &str) -> bool {
    Argon2::default()
        .verify_password(password.as_bytes(), phc)
        .is_ok()
}

/// The TOTP time-step `code` is valid for at `now` (±1 step of skew), if any.
pub fn totp_step(secret_b32: &str, code: &str, now: i64) -> Option<u64> {
    if code.len() != 6 || !code.bytes().all(|b| b.is_ascii_digit()) || now < 0 {
        return None;
    }
    let secret = totp_rs::Secret::try_from_base32(secret_b32).ok()?;
    let totp = totp_rs::Builder::new().with_secret(secret).build().ok()?;
    totp.check(code, now as u64)
}

/// Shortest TOTP secret accepted at enrolment: 160 bits (RFC 4226 §4 recommends it).
pub const MIN_TOTP_SECRET_BYTES: usize = 20;

/// A new random TOTP secret (160 bits), base32.
pub fn new_totp_secret() -> String {
    totp_rs::Secret::generate().to_base32()
}

/// Bytes in a base32 TOTP secret (0 if it does not decode).
pub fn totp_secret_len(secret_b32: &str) -> usize {
    totp_rs::Secret::try_from_base32(secret_b32).map_or(0, |s| s.as_bytes().len())
}

/// The Key Uri Format authenticator apps read from a QR code (SHA-1, 6 digits, 30 s:
/// what `totp_step` checks).
pub fn otpauth_uri(issuer: &str, account: &str, secret_b32: &str) -> String {
    use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode as enc};
    format!(
        "otpauth://totp/{}:{}?secret={secret_b32}&issuer={}&algorithm=SHA1&digits=6&period=30",
        enc(issuer, NON_ALPHANUMERIC),
        enc(account, NON_ALPHANUMERIC),
        enc(issuer, NON_ALPHANUMERIC)
    )
}

/// `text` as a QR code in inline SVG: one path of dark modules on a light square with
/// the 4-module quiet zone, presentation attributes only (no style, so the pages' CSP
/// needs no exception). Built from booleans, so the markup holds nothing of `text`.
pub fn qr_svg(text: &str) -> anyhow::Result<String> {
    let code = qrcode::QrCode::with_error_correction_level(text.as_bytes(), qrcode::EcLevel::M)
        .map_err(|e| anyhow::anyhow!("qr code: {e}"))?;
    let w = code.width();
    let quiet = 4;
    let size = w + 2 * quiet;
    let mut d = String::new();
    for (i, c) in code.to_colors().iter().enumerate() {
        if *c == qrcode::Color::Dark {
            let (x, y) = (i % w + quiet, i / w + quiet);
            d.push_str(&format!("M{x} {y}h1v1h-1z"));
        }
    }
    Ok(format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {size} {size}\" \
         width=\"232\" height=\"232\" shape-rendering=\"crispEdges\" role=\"img\" \
         aria-label=\"QR code for your authenticator app\">\
         <rect width=\"{size}\" height=\"{size}\" fill=\"#ffffff\"/>\
         <path d=\"{d}\" fill=\"#000000\"/></svg>"
    ))
}

/// Recovery codes issued at each enrolment or regeneration.
pub const RECOVERY_CODES: usize = 10;
/// Alphabet of recovery codes: lower-case base32 without 0/1/8/9 look-alikes, so 16
/// characters carry 80 random bits.
const RECOVERY_ALPHABET: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";

/// Ten new recovery codes, `xxxx-xxxx-xxxx-xxxx` (80 bits each).
pub fn new_recovery_codes() -> Vec<String> {
    (0..RECOVERY_CODES)
        .map(|_| {
            let mut b = [0u8; 16];
            if aws_lc_rs::rand::fill(&mut b).is_err() {
                tracing::error!("system random number generator failed");
                std::process::abort();
            }
            let chars: Vec<char> = b
                .iter()
                .map(|x| RECOVERY_ALPHABET[(x & 31) as usize] as char)
                .collect();
            chars
                .chunks(4)
                .map(|c| c.iter().collect::<String>())
                .collect::<Vec<_>>()
                .join("-")
        })
        .collect()
}

/// A recovery code as typed (any case, spaces or dashes anywhere) in canonical form, or
/// `None` if it cannot be one.
pub fn normalize_recovery_code(input: &str) -> Option<String> {
    let c: String = input
        .chars()
        .filter(|c| !c.is_whitespace() && *c != '-')
        .map(|c| c.to_ascii_lowercase())
        .collect();
    (c.len() == 16 && c.bytes().all(|b| RECOVERY_ALPHABET.contains(&b))).then_some(c)
}

/// What is stored for a recovery code: a digest bound to the customer.
pub fn recovery_digest(customer_id: &str, normalized: &str) -> String {
    crate::digest(&format!("wekeza-recovery-code:{customer_id}:{normalized}"))
}

/// The current code for a secret (sandbox tooling and tests).
pub fn totp_code(secret_b32: &str, now: i64) -> Option<String> {
    let secret = totp_rs::Secret::try_from_base32(secret_b32).ok()?;
    let totp = totp_rs::Builder::new().with_secret(secret).build().ok()?;
    Some(totp.generate(now.max(0) as u64).to_string())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn password_and_totp() {
        let h = hash("correct horse").unwrap();
        assert!(h.starts_with("$argon2id$"));
        assert!(verify("correct horse", &h));
        assert!(!verify("wrong", &h));
        let s = new_totp_secret();
        assert!(s.len() >= 32);
        let now = 1_800_000_000;
        let code = totp_code(&s, now).unwrap();
        assert_eq!(totp_step(&s, &code, now), Some(now as u64 / 30));
        assert_eq!(totp_step(&s, &code, now + 300), None);
        assert_eq!(totp_step(&s, "12345", now), None);
        assert_eq!(totp_secret_len(&s), MIN_TOTP_SECRET_BYTES);
    }

    #[test]
    fn recovery_codes_and_qr() {
        let codes = new_recovery_codes();
        assert_eq!(codes.len(), 10);
        let set: std::collections::BTreeSet<_> = codes.iter().collect();
        assert_eq!(set.len(), 10);
        for c in &codes {
            assert_eq!(c.len(), 19);
            let n = normalize_recovery_code(c).unwrap();
            assert_eq!(
                normalize_recovery_code(&c.to_uppercase().replace('-', " ")),
                Some(n.clone())
            );
            assert_ne!(recovery_digest("a", &n), recovery_digest("b", &n));
        }
        assert_eq!(normalize_recovery_code("123456"), None);
        assert_eq!(normalize_recovery_code("abcd-efgh-ijkl-mno1"), None);
        let uri = otpauth_uri("Wekeza Bank", "alice", "JBSWY3DPEHPK3PXP");
        assert!(uri.starts_with(
            "otpauth://totp/Wekeza%20Bank:alice?secret=JBSWY3DPEHPK3PXP&issuer=Wekeza%20Bank"
        ));
        let svg = qr_svg(&uri).unwrap();
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>"));
        assert!(!svg.contains("style") && !svg.contains("JBSWY"));
    }
}
