//! Customer secrets at rest (TOTP seeds): AES-256-GCM under a data-encryption key (DEK)
//! kept in `keys/secrets/<kid>.json` (mode 0600, git-ignored, created at first start).
//!
//! A sealed value is `wkz1.<kid>.<base64url(nonce ‖ ciphertext ‖ tag)>`: the key id
//! travels with each ciphertext, so after a rotation old values are still readable and
//! are re-sealed under the new key at the next start ([`reseal_all`]). The customer id is
//! the associated data: a ciphertext copied onto another customer's row does not open.
//! A stored value without the prefix is a legacy plaintext secret (databases from before
//! encryption); it is still accepted and sealed at start or at its next use.

use crate::keys::write_private;
use anyhow::Context;
use authz_store::AuthStore;
use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::Path;

const PREFIX: &str = "wkz1";
const KEY_LEN: usize = 32;

#[derive(Serialize, Deserialize)]
struct DekFile {
    kid: String,
    created_at: i64,
    /// Set when a newer key took over; the key stays to open what it sealed.
    #[serde(default)]
    retired_at: Option<i64>,
    /// base64, 32 bytes.
    key: String,
}

/// Why a stored secret could not be opened. Never carries the secret.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("sealed with unknown key {0:?}")]
    UnknownKey(String),
    #[error("sealed value is malformed")]
    Malformed,
    #[error("sealed value does not open (tampered, or not this customer's)")]
    Tampered,
}

/// A secret as read: the plaintext and whether its stored form should be re-sealed
/// (legacy plaintext, or sealed under a retired key).
pub struct Opened {
    pub secret: String,
    pub stale: bool,
}

pub struct SecretBox {
    active: String,
    keys: HashMap<String, LessSafeKey>,
}

fn aad(customer_id: &str) -> String {
    format!("wekeza-totp-secret:{customer_id}")
}

fn new_key_file(now: i64) -> anyhow::Result<DekFile> {
    let mut key = [0u8; KEY_LEN];
    aws_lc_rs::rand::fill(&mut key).map_err(|_| anyhow::anyhow!("random generator failed"))?;
    Ok(DekFile {
        kid: format!("dek-{}", crate::random_token(6)),
        created_at: now,
        retired_at: None,
        key: STANDARD.encode(key),
    })
}

fn read_all(dir: &Path) -> anyhow::Result<Vec<(std::path::PathBuf, DekFile)>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.extension().and_then(|e| e.to_str()) != Some("json") {
            continue;
        }
        let f: DekFile = serde_json::from_slice(&std::fs::read(&path)?)
            .with_context(|| format!("reading key file {}", path.display()))?;
        out.push((path, f));
    }
    out.sort_by_key(|(_, f)| f.created_at);
    Ok(out)
}

impl SecretBox {
    /// Load `<keys_dir>/secrets/*.json`, creating the first key if there is none.
    pub fn load_or_create(keys_dir: &Path, now: i64) -> anyhow::Result<Self> {
        let dir = keys_dir.join("secrets");
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let mut files = read_all(&dir)?;
        if !files.iter().any(|(_, f)| f.retired_at.is_none()) {
            let f = new_key_file(now)?;
            let path = dir.join(format!("{}.json", f.kid));
            write_private(&path, &serde_json::to_vec_pretty(&f)?)?;
            files.push((path, f));
        }
        let mut keys = HashMap::new();
        let mut active = None;
        for (path, f) in files {
            let raw = STANDARD
                .decode(&f.key)
                .with_context(|| format!("{} is not base64", path.display()))?;
            let key = UnboundKey::new(&AES_256_GCM, &raw)
                .map_err(|_| anyhow::anyhow!("{}: not a 256-bit key", path.display()))?;
            if f.retired_at.is_none() {
                // Newest last: the newest unretired key seals.
                active = Some(f.kid.clone());
            }
            keys.insert(f.kid, LessSafeKey::new(key));
        }
        let active = active.context("no active secret key")?;
        Ok(Self { active, keys })
    }

    /// Retire the active key and create its successor (restart to apply; values are
    /// re-sealed under the new key at that start).
    pub fn rotate(keys_dir: &Path, now: i64) -> anyhow::Result<String> {
        let dir = keys_dir.join("secrets");
        std::fs::create_dir_all(&dir)?;
        for (path, mut f) in read_all(&dir)? {
            if f.retired_at.is_none() {
                f.retired_at = Some(now);
                write_private(&path, &serde_json::to_vec_pretty(&f)?)?;
            }
        }
        let f = new_key_file(now)?;
        write_private(
            &dir.join(format!("{}.json", f.kid)),
            &serde_json::to_vec_pretty(&f)?,
        )?;
        Ok(f.kid)
    }

    pub fn active_kid(&self) -> &str {
        &self.active
    }

    /// Seal `secret` for `customer_id` under the active key.
    pub fn seal(&self, customer_id: &str, secret: &str) -> anyhow::Result<String> {
        let key = self
            .keys
            .get(&self.active)
            .context("active secret key missing")?;
        let mut nonce = [0u8; NONCE_LEN];
        aws_lc_rs::rand::fill(&mut nonce).map_err(|_| anyhow::anyhow!("random failed"))?;
        let mut buf = secret.as_bytes().to_vec();
        key.seal_in_place_append_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(aad(customer_id).as_bytes()),
            &mut buf,
        )
        .map_err(|_| anyhow::anyhow!("sealing failed"))?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&buf);
        Ok(format!(
            "{PREFIX}.{}.{}",
            self.active,
            URL_SAFE_NO_PAD.encode(out)
        ))
    }

    /// Whether a stored value is sealed (by any key) rather than legacy plaintext.
    pub fn is_sealed(stored: &str) -> bool {
        stored.starts_with(&format!("{PREFIX}."))
    }

    /// Open a stored value of `customer_id`.
    pub fn open(&self, customer_id: &str, stored: &str) -> Result<Opened, SecretError> {
        let Some(rest) = stored.strip_prefix(&format!("{PREFIX}.")) else {
            return Ok(Opened {
                secret: stored.to_owned(),
                stale: true,
            });
        };
        let (kid, body) = rest.split_once('.').ok_or(SecretError::Malformed)?;
        let key = self
            .keys
            .get(kid)
            .ok_or_else(|| SecretError::UnknownKey(kid.to_owned()))?;
        let raw = URL_SAFE_NO_PAD
            .decode(body)
            .map_err(|_| SecretError::Malformed)?;
        if raw.len() < NONCE_LEN + 16 {
            return Err(SecretError::Malformed);
        }
        let (nonce, ct) = raw.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| SecretError::Malformed)?;
        let mut buf = ct.to_vec();
        let plain = key
            .open_in_place(nonce, Aad::from(aad(customer_id).as_bytes()), &mut buf)
            .map_err(|_| SecretError::Tampered)?;
        let secret = String::from_utf8(plain.to_vec()).map_err(|_| SecretError::Malformed)?;
        Ok(Opened {
            secret,
            stale: kid != self.active,
        })
    }
}

/// Start-up migration: seal every legacy plaintext secret and re-seal those under a
/// retired key. Idempotent; compare-and-set per row, so it never overwrites a secret
/// changed meanwhile. Returns how many rows it changed.
pub async fn reseal_all(store: &dyn AuthStore, secrets: &SecretBox) -> anyhow::Result<usize> {
    let mut changed = 0;
    for (id, stored) in store
        .list_totp_secrets()
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?
    {
        let opened = match secrets.open(&id, &stored) {
            Ok(o) => o,
            Err(e) => {
                // Left as is: a sign-in with it fails and is logged; start-up goes on.
                tracing::error!(customer_id = %id, error = %e, "stored TOTP secret does not open");
                continue;
            }
        };
        if !opened.stale {
            continue;
        }
        let sealed = secrets.seal(&id, &opened.secret)?;
        if store
            .swap_totp_secret(&id, &stored, &sealed)
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?
        {
            changed += 1;
        }
    }
    Ok(changed)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn seal_open_bind_rotate() {
        let dir = std::env::temp_dir().join(format!("wkz-dek-{}", crate::random_token(8)));
        let b = SecretBox::load_or_create(&dir, 100).unwrap();
        let secret = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP";
        let s = b.seal("cust-1", secret).unwrap();
        assert!(SecretBox::is_sealed(&s));
        assert!(!s.contains(secret));
        assert_ne!(
            s,
            b.seal("cust-1", secret).unwrap(),
            "fresh nonce each time"
        );
        let o = b.open("cust-1", &s).unwrap();
        assert_eq!((o.secret.as_str(), o.stale), (secret, false));
        // bound to the customer, and tamper-evident
        assert!(matches!(b.open("cust-2", &s), Err(SecretError::Tampered)));
        let mut t = s.clone().into_bytes();
        let n = t.len() - 3;
        t[n] = if t[n] == b'A' { b'B' } else { b'A' };
        assert!(b.open("cust-1", &String::from_utf8(t).unwrap()).is_err());
        // legacy plaintext is readable but stale
        assert!(b.open("cust-1", secret).unwrap().stale);
        // the same key file is loaded again
        let again = SecretBox::load_or_create(&dir, 200).unwrap();
        assert_eq!(again.active_kid(), b.active_kid());
        assert!(!again.open("cust-1", &s).unwrap().stale);
        // rotation: old values open (stale), new ones seal under the new key
        let kid = SecretBox::rotate(&dir, 300).unwrap();
        let r = SecretBox::load_or_create(&dir, 300).unwrap();
        assert_eq!(r.active_kid(), kid);
        let o = r.open("cust-1", &s).unwrap();
        assert_eq!((o.secret.as_str(), o.stale), (secret, true));
        assert!(r.seal("cust-1", secret).unwrap().contains(&kid));
        // a key we do not have
        let other = std::env::temp_dir().join(format!("wkz-dek-{}", crate::random_token(8)));
        let x = SecretBox::load_or_create(&other, 100).unwrap();
        assert!(matches!(
            x.open("cust-1", &s),
            Err(SecretError::UnknownKey(_))
        ));
        std::fs::remove_dir_all(&dir).unwrap();
        std::fs::remove_dir_all(&other).unwrap();
    }
}
