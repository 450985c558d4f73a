//! The sandbox TPP kit, read as a TPP reads it (no dependency on the server's types).

use anyhow::Context;
use serde::Deserialize;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Deserialize)]
pub struct Kit {
    pub issuer: String,
    pub resource_base_url: String,
    pub ca_cert: PathBuf,
    pub customer: Customer,
    pub clients: Vec<KitClient>,
    /// Extra customers sharing `customer`'s password and TOTP secret (sandbox, opt-in).
    #[serde(default)]
    pub customer_pool: Option<CustomerPool>,
    /// A software statement from the sandbox directory for dynamic client registration
    /// (RFC 7591); absent in older kits and outside sandbox mode.
    #[serde(default)]
    pub software_statement: Option<String>,
    /// The sandbox directory's public JWKS (the registration trust anchor).
    #[serde(default)]
    pub directory_jwks: Option<PathBuf>,
    /// Files carried inline (a kit downloaded from the developer portal): name → content,
    /// written next to the kit by [`Kit::unpack`]. Paths in such a kit are relative to it.
    #[serde(default)]
    pub files: std::collections::BTreeMap<String, String>,
    /// `http://openbanking.org.uk/tan` of `x-jws-signature`s; absent in older kits.
    #[serde(default)]
    pub jws_trust_anchor: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct CustomerPool {
    pub prefix: String,
    pub count: u32,
}

impl CustomerPool {
    /// The `n`-th pooled username (1-based), e.g. `loadtest-0042`.
    pub fn username(&self, n: u32) -> String {
        format!("{}{n:04}", self.prefix)
    }
}

#[derive(Clone, Deserialize)]
pub struct Customer {
    pub username: String,
    pub password: String,
    pub totp_secret: String,
}

impl std::fmt::Debug for Customer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Customer")
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct KitClient {
    pub client_id: String,
    pub token_endpoint_auth_method: String,
    #[serde(default)]
    pub private_jwk: Option<PathBuf>,
    pub cert: PathBuf,
    pub key: PathBuf,
    pub redirect_uri: String,
    pub scope: String,
    /// `"dpop"`: this client's tokens are DPoP-bound (RFC 9449). Absent (older kits too):
    /// certificate-bound (RFC 8705).
    #[serde(default)]
    pub sender_constraint: Option<String>,
    /// Signed request objects required (FAPI 2.0 Message Signing); absent in old kits.
    #[serde(default)]
    pub request_object_signing: bool,
    /// `"jwt"` for JARM responses; absent means plain query responses.
    #[serde(default)]
    pub response_mode: Option<String>,
    /// The private JWK `x-jws-signature`s are signed with; absent in older kits (then
    /// `private_jwk`, if any).
    #[serde(default)]
    pub signing_jwk: Option<PathBuf>,
}

impl KitClient {
    /// Whether this client's tokens are DPoP-bound.
    pub fn uses_dpop(&self) -> bool {
        self.sender_constraint.as_deref() == Some("dpop")
    }

    /// Whether this client is registered for Message Signing (signed requests, JARM).
    pub fn uses_message_signing(&self) -> bool {
        self.request_object_signing || self.response_mode.as_deref() == Some("jwt")
    }
}

impl Kit {
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let bytes =
            std::fs::read(path).with_context(|| format!("reading kit {}", path.display()))?;
        let mut kit: Self = serde_json::from_slice(&bytes)
            .with_context(|| format!("parsing kit {}", path.display()))?;
        // Relative paths (portal kits) are relative to the kit file, not to the caller.
        let dir = path.parent().unwrap_or(Path::new("."));
        let rel = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = dir.join(&*p);
            }
        };
        rel(&mut kit.ca_cert);
        for c in &mut kit.clients {
            rel(&mut c.cert);
            rel(&mut c.key);
            if let Some(j) = c.private_jwk.as_mut() {
                rel(j);
            }
        }
        Ok(kit)
    }

    /// Write the kit's inline `files` next to it (plain names only; private keys 0600),
    /// leaving existing files alone.
    pub fn unpack(path: &Path) -> anyhow::Result<()> {
        let kit = Self::load(path)?;
        let dir = path.parent().unwrap_or(Path::new("."));
        for (name, content) in &kit.files {
            let plain = Path::new(name)
                .file_name()
                .is_some_and(|f| f == std::ffi::OsStr::new(name));
            if !plain {
                anyhow::bail!("kit file name {name} is not a plain file name");
            }
            let target = dir.join(name);
            if target.exists() {
                continue;
            }
            std::fs::write(&target, content)
                .with_context(|| format!("writing {}", target.display()))?;
            #[cfg(unix)]
            if name.ends_with(".key") || name.ends_with(".jwk.json") {
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o600))?;
            }
        }
        Ok(())
    }

    /// The first certificate-bound client with this authentication method (not a
    /// Message Signing one).
    pub fn client(&self, method: &str) -> anyhow::Result<&KitClient> {
        self.clients
            .iter()
            .find(|c| {
                c.token_endpoint_auth_method == method
                    && !c.uses_dpop()
                    && !c.uses_message_signing()
            })
            .with_context(|| format!("kit has no {method} client"))
    }

    /// The Message Signing clients (signed requests and JARM), in kit order.
    pub fn message_signing_clients(&self) -> Vec<&KitClient> {
        self.clients
            .iter()
            .filter(|c| c.uses_message_signing())
            .collect()
    }

    /// The first client with DPoP-bound tokens and this authentication method.
    pub fn dpop_client(&self, method: &str) -> anyhow::Result<&KitClient> {
        self.clients
            .iter()
            .find(|c| c.token_endpoint_auth_method == method && c.uses_dpop())
            .with_context(|| format!("kit has no {method} client with DPoP-bound tokens"))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn kit(clients: serde_json::Value) -> Kit {
        serde_json::from_value(serde_json::json!({
            "issuer": "https://as", "resource_base_url": "https://rs", "ca_cert": "/ca.pem",
            "customer": {"username": "u", "password": "p", "totp_secret": "s"},
            "clients": clients,
        }))
        .unwrap()
    }

    fn client(id: &str, method: &str, sc: Option<&str>) -> serde_json::Value {
        let mut c = serde_json::json!({"client_id": id, "token_endpoint_auth_method": method,
            "cert": "/c.pem", "key": "/c.key", "redirect_uri": "https://cb", "scope": "openid"});
        if let Some(s) = sc {
            c["sender_constraint"] = serde_json::json!(s);
        }
        c
    }

    #[test]
    fn sender_constraint_is_optional_and_selects_clients() {
        // An older kit without the field parses, and its clients are certificate-bound.
        let old = kit(serde_json::json!([client("a", "private_key_jwt", None)]));
        assert!(!old.clients[0].uses_dpop());
        assert!(old.dpop_client("private_key_jwt").is_err());
        let k = kit(serde_json::json!([
            client("d", "private_key_jwt", Some("dpop")),
            client("a", "private_key_jwt", None),
        ]));
        assert_eq!(k.client("private_key_jwt").unwrap().client_id, "a");
        assert_eq!(k.dpop_client("private_key_jwt").unwrap().client_id, "d");
    }

    #[test]
    fn message_signing_fields_are_optional_and_not_picked_as_plain_clients() {
        let old = kit(serde_json::json!([client("a", "private_key_jwt", None)]));
        assert!(!old.clients[0].request_object_signing);
        assert!(old.clients[0].response_mode.is_none());
        assert!(old.message_signing_clients().is_empty());
        let mut ms = client("m", "private_key_jwt", None);
        ms["request_object_signing"] = serde_json::json!(true);
        ms["response_mode"] = serde_json::json!("jwt");
        let k = kit(serde_json::json!([
            ms,
            client("a", "private_key_jwt", None)
        ]));
        assert_eq!(k.client("private_key_jwt").unwrap().client_id, "a");
        assert_eq!(k.message_signing_clients()[0].client_id, "m");
    }
}
