//! The server's signing keys: one active key per algorithm (ES256 signs access tokens
//! and, by default, ID tokens; PS256 and EdDSA serve clients that ask for them).
//! Keys are PKCS#8 files under `keys/signing/`, created at first start. Rotation retires
//! the active key and creates a new one; a retired key stays in the JWKS until every
//! token it signed has expired, then is deleted from disk.

use anyhow::Context;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use fapi_jose::{Alg, Jwk, Jwks, SigningKey};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

#[derive(Serialize, Deserialize)]
struct KeyFile {
    kid: String,
    alg: Alg,
    created_at: i64,
    #[serde(default)]
    retired_at: Option<i64>,
    /// base64 PKCS#8 DER. The file is private (mode 0600) and git-ignored.
    pkcs8: String,
}

pub struct KeyRing {
    active: HashMap<Alg, Arc<SigningKey>>,
    /// The token-signing keys' public halves.
    own: Jwks,
    /// `own` plus keys published for others to verify (the events key), which this
    /// server never accepts on its own tokens.
    jwks: Jwks,
}

impl KeyRing {
    pub fn signer(&self, alg: Alg) -> Option<&Arc<SigningKey>> {
        self.active.get(&alg)
    }

    /// Public keys to publish: ours and [`Self::publish_also`]'s.
    pub fn jwks(&self) -> &Jwks {
        &self.jwks
    }

    /// Publish `jwk` in the JWKS without accepting it for our own tokens.
    pub fn publish_also(mut self, jwk: Jwk) -> Self {
        self.jwks.keys.push(jwk);
        self
    }

    /// The token-signing keys' public halves: what our own tokens verify against.
    pub fn verification_keys(&self) -> &[Jwk] {
        &self.own.keys
    }

    /// Load every key file, create missing active keys, drop retired keys older than
    /// `retention` seconds.
    pub fn load_or_create(dir: &Path, now: i64, retention: i64) -> anyhow::Result<Self> {
        let dir = dir.join("signing");
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let mut files = read_all(&dir)?;
        for alg in Alg::ALL {
            if !files
                .iter()
                .any(|(_, f)| f.alg == alg && f.retired_at.is_none())
            {
                let (path, f) = create(&dir, alg, now)?;
                files.push((path, f));
            }
        }
        let mut active = HashMap::new();
        let mut jwks = Jwks::default();
        for (path, f) in files {
            if let Some(r) = f.retired_at
                && r + retention < now
            {
                std::fs::remove_file(&path)
                    .with_context(|| format!("removing expired key {}", path.display()))?;
                continue;
            }
            let der = STANDARD
                .decode(&f.pkcs8)
                .context("key file is not base64")?;
            let key = SigningKey::from_pkcs8(f.alg, f.kid.clone(), &der)
                .map_err(|e| anyhow::anyhow!("key {}: {e}", path.display()))?;
            jwks.keys.push(key.public_jwk());
            if f.retired_at.is_none() {
                active.insert(f.alg, Arc::new(key));
            }
        }
        Ok(Self {
            active,
            own: jwks.clone(),
            jwks,
        })
    }

    /// Retire the active key of `alg` and create its successor. Takes effect at the next start.
    pub fn rotate(dir: &Path, alg: Alg, now: i64) -> anyhow::Result<String> {
        let dir = dir.join("signing");
        std::fs::create_dir_all(&dir)?;
        for (path, mut f) in read_all(&dir)? {
            if f.alg == alg && f.retired_at.is_none() {
                f.retired_at = Some(now);
                write_private(&path, &serde_json::to_vec_pretty(&f)?)?;
            }
        }
        let (_, f) = create(&dir, alg, now)?;
        Ok(f.kid)
    }
}

fn read_all(dir: &Path) -> anyhow::Result<Vec<(PathBuf, KeyFile)>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.extension().and_then(|e| e.to_str()) != Some("json") {
            continue;
        }
        let f: KeyFile = serde_json::from_slice(&std::fs::read(&path)?)
            .with_context(|| format!("reading key file {}", path.display()))?;
        out.push((path, f));
    }
    // Newest last, so the newest active key wins if two ever are.
    out.sort_by_key(|(_, f)| f.created_at);
    Ok(out)
}

fn create(dir: &Path, alg: Alg, now: i64) -> anyhow::Result<(PathBuf, KeyFile)> {
    let kid = format!(
        "{}-{}",
        alg.as_str().to_lowercase(),
        &crate::random_token(6)
    );
    let key = SigningKey::generate(alg, kid.clone()).map_err(|e| anyhow::anyhow!("{e}"))?;
    let der = key.to_pkcs8().map_err(|e| anyhow::anyhow!("{e}"))?;
    let f = KeyFile {
        kid: kid.clone(),
        alg,
        created_at: now,
        retired_at: None,
        pkcs8: STANDARD.encode(der),
    };
    let path = dir.join(format!("{kid}.json"));
    write_private(&path, &serde_json::to_vec_pretty(&f)?)?;
    Ok((path, f))
}

/// Write a file readable only by its owner.
pub fn write_private(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    use std::io::Write;
    #[cfg(unix)]
    use std::os::unix::fs::OpenOptionsExt;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    opts.mode(0o600);
    let mut f = opts
        .open(path)
        .with_context(|| format!("writing {}", path.display()))?;
    f.write_all(bytes)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_published_extra_key_never_verifies_our_tokens() {
        let dir = std::env::temp_dir().join(format!("wkz-keys-{}", crate::random_token(8)));
        let extra = SigningKey::generate(Alg::PS256, "events-x").unwrap();
        let ring = KeyRing::load_or_create(&dir, 1000, 600)
            .unwrap()
            .publish_also(extra.public_jwk());
        assert!(ring.jwks().keys.contains(&extra.public_jwk()));
        assert_eq!(ring.jwks().keys.len(), 4);
        assert!(!ring.verification_keys().contains(&extra.public_jwk()));
        assert_eq!(ring.verification_keys().len(), 3);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn rotation_keeps_old_key_published_until_retention_passes() {
        let dir = std::env::temp_dir().join(format!("wkz-keys-{}", crate::random_token(8)));
        let r1 = KeyRing::load_or_create(&dir, 1000, 600).unwrap();
        let old = r1.signer(Alg::ES256).unwrap().kid().to_owned();
        assert_eq!(r1.jwks().keys.len(), 3);
        let new = KeyRing::rotate(&dir, Alg::ES256, 2000).unwrap();
        let r2 = KeyRing::load_or_create(&dir, 2100, 600).unwrap();
        assert_eq!(r2.signer(Alg::ES256).unwrap().kid(), new);
        assert!(
            r2.jwks()
                .keys
                .iter()
                .any(|k| k.kid.as_deref() == Some(old.as_str()))
        );
        let r3 = KeyRing::load_or_create(&dir, 2700, 600).unwrap();
        assert!(
            !r3.jwks()
                .keys
                .iter()
                .any(|k| k.kid.as_deref() == Some(old.as_str()))
        );
        assert_eq!(r3.jwks().keys.len(), 3);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
