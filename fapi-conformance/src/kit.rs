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
}

impl Kit {
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let bytes =
            std::fs::read(path).with_context(|| format!("reading kit {}", path.display()))?;
        serde_json::from_slice(&bytes).with_context(|| format!("parsing kit {}", path.display()))
    }

    pub fn client(&self, method: &str) -> anyhow::Result<&KitClient> {
        self.clients
            .iter()
            .find(|c| c.token_endpoint_auth_method == method)
            .with_context(|| format!("kit has no {method} client"))
    }
}
