//! The events signing key: signs the Security Event Tokens the resource server's
//! dispatcher sends (ADR 0012). A key of its own, because the resource server must not
//! hold the token-signing keys (ADR 0009) and a notification key must not be able to
//! mint access tokens. Created at first start under `keys/events/` (PKCS#8, 0600); the
//! authorization server publishes its public half in its JWKS under its own `kid`.

use anyhow::Context;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use fapi_jose::{Alg, SigningKey};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// UK OB signs with PS256.
const ALG: Alg = Alg::PS256;
const FILE: &str = "signing.json";

#[derive(Serialize, Deserialize)]
struct KeyFile {
    kid: String,
    alg: Alg,
    created_at: i64,
    /// base64 PKCS#8 DER; the file is private (mode 0600) and git-ignored.
    pkcs8: String,
}

/// Load the events key, creating it if missing. Two processes starting together (the
/// authorization server and `wekeza rs`) agree on one key: creation is exclusive and the
/// loser reads the winner's file.
pub fn load_or_create(keys_dir: &Path, now: i64) -> anyhow::Result<SigningKey> {
    load_or_create_in(keys_dir, "events", now)
}

/// [`load_or_create`] for another platform PS256 key in `keys_dir/sub` (kid `sub-…`):
/// the `x-jws-signature` response key uses `jws` (ADR 0017).
pub fn load_or_create_in(keys_dir: &Path, sub: &str, now: i64) -> anyhow::Result<SigningKey> {
    load_or_create_alg(keys_dir, sub, ALG, now)
}

/// The `x-jws-signature` keys: PS256 in `keys_dir/jws` (ADR 0017), ES256 in
/// `keys_dir/jws-es256` (ADR 0020, kid `jws-es256-…`).
pub fn load_or_create_jws(keys_dir: &Path, now: i64) -> anyhow::Result<(SigningKey, SigningKey)> {
    Ok((
        load_or_create_in(keys_dir, "jws", now)?,
        load_or_create_alg(keys_dir, "jws-es256", Alg::ES256, now)?,
    ))
}

/// [`load_or_create_in`] with the key's algorithm.
pub fn load_or_create_alg(
    keys_dir: &Path,
    sub: &str,
    alg: Alg,
    now: i64,
) -> anyhow::Result<SigningKey> {
    let dir = keys_dir.join(sub);
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let path = dir.join(FILE);
    if !path.exists() {
        let kid = format!("{sub}-{}", crate::random_token(6));
        let key = SigningKey::generate(alg, kid.clone()).map_err(|e| anyhow::anyhow!("{e}"))?;
        let der = key.to_pkcs8().map_err(|e| anyhow::anyhow!("{e}"))?;
        let f = KeyFile {
            kid,
            alg,
            created_at: now,
            pkcs8: STANDARD.encode(der),
        };
        let tmp = dir.join(format!(".{}.tmp", crate::random_token(6)));
        crate::keys::write_private(&tmp, &serde_json::to_vec_pretty(&f)?)?;
        // hard_link fails if the target exists: exactly one creator wins.
        let won = std::fs::hard_link(&tmp, &path).is_ok();
        let _ = std::fs::remove_file(&tmp);
        if won {
            return Ok(key);
        }
    }
    let f: KeyFile = serde_json::from_slice(
        &std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?,
    )
    .with_context(|| format!("parsing {}", path.display()))?;
    let der = STANDARD
        .decode(&f.pkcs8)
        .with_context(|| format!("{sub} key is not base64"))?;
    SigningKey::from_pkcs8(f.alg, f.kid, &der).map_err(|e| anyhow::anyhow!("{sub} key: {e}"))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn created_once_then_reloaded() {
        let dir = std::env::temp_dir().join(format!("wkz-evkeys-{}", crate::random_token(8)));
        let a = load_or_create(&dir, 1).unwrap();
        let b = load_or_create(&dir, 2).unwrap();
        assert_eq!(a.kid(), b.kid());
        assert_eq!(a.public_jwk(), b.public_jwk());
        assert!(a.kid().starts_with("events-"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
