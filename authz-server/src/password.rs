//! Customer credentials: argon2id password hashes and RFC 6238 TOTP codes.

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

/// A new random TOTP secret (160 bits), base32.
pub fn new_totp_secret() -> String {
    totp_rs::Secret::generate().to_base32()
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
    }
}
