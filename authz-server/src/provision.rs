//! Sandbox provisioning at start: the dev CA, the `localhost` server certificate, the
//! sandbox TPPs (`private_key_jwt` and `tls_client_auth` ones with certificate-bound
//! tokens, `private_key_jwt` ones with DPoP-bound tokens, Message Signing ones with signed
//! request objects and JARM; each with its own client
//! certificate), a sandbox customer, and the TPP kit at `certs/sandbox/kit.json`.
//! Existing material is reused, so restarts keep the same credentials; the kit is
//! rewritten each start because it carries the current URLs. Sandbox mode only.

use crate::keys::write_private;
use anyhow::Context;
use authz_core::client::{Client, ClientAuthMethod, GrantType};
use devpki::DevCa;
use fapi_jose::{Alg, Jwks, SigningKey};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

pub const PKJWT_CLIENT: &str = "sandbox-tpp-pkjwt";
pub const MTLS_CLIENT: &str = "sandbox-tpp-mtls";
/// Second client per method: the OpenID Foundation suite always needs two clients with
/// two certificates and the same authentication method.
pub const PKJWT_CLIENT_2: &str = "sandbox-tpp-pkjwt-2";
pub const MTLS_CLIENT_2: &str = "sandbox-tpp-mtls-2";
/// DPoP-bound clients (RFC 9449): `private_key_jwt`, no certificate needed on requests
/// (they get one anyway, like every sandbox TPP). Two of each kind, for the suite.
pub const DPOP_CLIENT: &str = "sandbox-tpp-dpop";
pub const DPOP_CLIENT_2: &str = "sandbox-tpp-dpop-2";
/// DPoP-bound clients that authenticate with `tls_client_auth` (the suite's
/// "MTLS + DPoP" profile): certificate for authentication, DPoP key for the tokens.
pub const DPOP_MTLS_CLIENT: &str = "sandbox-tpp-dpop-mtls";
pub const DPOP_MTLS_CLIENT_2: &str = "sandbox-tpp-dpop-mtls-2";

/// Message Signing clients (FAPI 2.0 MS): `private_key_jwt`, certificate-bound tokens,
/// signed request objects required and JWT-secured (JARM) authorization responses.
pub const MS_CLIENT: &str = "sandbox-tpp-ms";
pub const MS_CLIENT_2: &str = "sandbox-tpp-ms-2";

struct SandboxClient {
    id: &'static str,
    method: ClientAuthMethod,
    name: &'static str,
    dpop: bool,
    /// Signed request objects and JARM (FAPI 2.0 Message Signing).
    ms: bool,
}

const SANDBOX_CLIENTS: [SandboxClient; 10] = [
    SandboxClient {
        id: PKJWT_CLIENT,
        method: ClientAuthMethod::PrivateKeyJwt,
        name: "Sandbox Budgeting App",
        dpop: false,
        ms: false,
    },
    SandboxClient {
        id: MTLS_CLIENT,
        method: ClientAuthMethod::TlsClientAuth,
        name: "Sandbox Payments App",
        dpop: false,
        ms: false,
    },
    SandboxClient {
        id: PKJWT_CLIENT_2,
        method: ClientAuthMethod::PrivateKeyJwt,
        name: "Sandbox Lending App",
        dpop: false,
        ms: false,
    },
    SandboxClient {
        id: MTLS_CLIENT_2,
        method: ClientAuthMethod::TlsClientAuth,
        name: "Sandbox Accounting App",
        dpop: false,
        ms: false,
    },
    SandboxClient {
        id: DPOP_CLIENT,
        method: ClientAuthMethod::PrivateKeyJwt,
        name: "Sandbox Mobile Wallet",
        dpop: true,
        ms: false,
    },
    SandboxClient {
        id: DPOP_CLIENT_2,
        method: ClientAuthMethod::PrivateKeyJwt,
        name: "Sandbox Savings App",
        dpop: true,
        ms: false,
    },
    SandboxClient {
        id: DPOP_MTLS_CLIENT,
        method: ClientAuthMethod::TlsClientAuth,
        name: "Sandbox Invoicing App",
        dpop: true,
        ms: false,
    },
    SandboxClient {
        id: DPOP_MTLS_CLIENT_2,
        method: ClientAuthMethod::TlsClientAuth,
        name: "Sandbox Payroll App",
        dpop: true,
        ms: false,
    },
    SandboxClient {
        id: MS_CLIENT,
        method: ClientAuthMethod::PrivateKeyJwt,
        name: "Sandbox Treasury App",
        dpop: false,
        ms: true,
    },
    SandboxClient {
        id: MS_CLIENT_2,
        method: ClientAuthMethod::PrivateKeyJwt,
        name: "Sandbox Trade Finance App",
        dpop: false,
        ms: true,
    },
];
pub const SANDBOX_USERNAME: &str = "alice";
pub const POOL_PREFIX: &str = "loadtest-";
pub const KIT_SCOPE: &str = "openid accounts payments";
const REGISTERED_SCOPE: &str = "openid profile accounts payments offline_access";
/// The OpenID Foundation suite's callbacks for a plan aliased `wekeza`: a locally run
/// suite and the hosted one.
const CONFORMANCE_CALLBACKS: [&str; 2] = [
    "https://localhost.emobix.co.uk:8443/test/a/wekeza/callback",
    "https://www.certification.openid.net/test/a/wekeza/callback",
];

/// The sandbox TPP kit. Field names are an interface: add, never rename.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Kit {
    pub issuer: String,
    pub resource_base_url: String,
    pub ca_cert: PathBuf,
    pub customer: KitCustomer,
    pub clients: Vec<KitClient>,
    /// Added: discovery document URL and the back-channel (mTLS) base URL.
    #[serde(default)]
    pub discovery_url: String,
    #[serde(default)]
    pub mtls_base_url: String,
    /// Added: extra sandbox customers (`<prefix>0001`..) sharing `customer`'s password and
    /// TOTP secret, for tools that need many logins per TOTP time-step.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub customer_pool: Option<CustomerPool>,
    /// Added: a software statement (signed by the sandbox directory) for the sandbox
    /// TPP's organisation, to register a client at `registration_endpoint` (RFC 7591)
    /// with. Renewed at every start; usable once (its `jti` is replay-checked).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub software_statement: Option<String>,
    /// Added: where the sandbox directory's public JWKS (the trust anchor) is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub directory_jwks: Option<PathBuf>,
    /// Added: the trust anchor (`http://openbanking.org.uk/tan`) of `x-jws-signature`s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jws_trust_anchor: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CustomerPool {
    pub prefix: String,
    pub count: u32,
}

#[derive(Clone, Serialize, Deserialize)]
pub struct KitCustomer {
    pub username: String,
    pub password: String,
    pub totp_secret: String,
}

impl std::fmt::Debug for KitCustomer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KitCustomer")
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct KitClient {
    pub client_id: String,
    pub token_endpoint_auth_method: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub private_jwk: Option<PathBuf>,
    pub cert: PathBuf,
    pub key: PathBuf,
    pub redirect_uri: String,
    pub scope: String,
    /// Added: for `tls_client_auth`, the registered certificate subject.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_client_auth_subject_dn: Option<String>,
    /// Added: `"dpop"` for clients whose tokens are DPoP-bound (RFC 9449); absent means
    /// certificate-bound (RFC 8705).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sender_constraint: Option<String>,
    /// Added: the client must send signed request objects (FAPI 2.0 MS §5.3.1).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub request_object_signing: bool,
    /// Added: `"jwt"` for clients whose authorization responses are JARM JWTs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_mode: Option<String>,
    /// Added: the private JWK this client signs `x-jws-signature`s with (its public half
    /// is in the client's registered `jwks`): the `private_jwk` of `private_key_jwt`
    /// clients (ES256), a PS256 key of its own for `tls_client_auth` ones.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signing_jwk: Option<PathBuf>,
}

pub struct Sandbox {
    pub kit: Kit,
    pub kit_path: PathBuf,
    pub clients: Vec<Client>,
    pub server_chain_pem: String,
    pub server_key_pem: String,
    pub client_ca_pem: String,
}

fn abs(p: &Path) -> anyhow::Result<PathBuf> {
    Ok(if p.is_absolute() {
        p.to_path_buf()
    } else {
        std::env::current_dir()?.join(p)
    })
}

fn read_or<F: FnOnce() -> anyhow::Result<String>>(
    path: &Path,
    make: F,
    private: bool,
) -> anyhow::Result<String> {
    if path.exists() {
        return std::fs::read_to_string(path)
            .with_context(|| format!("reading {}", path.display()));
    }
    let v = make()?;
    if private {
        write_private(path, v.as_bytes())?;
    } else {
        std::fs::write(path, &v).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(v)
}

pub fn ensure_sandbox(
    certs_dir: &Path,
    host: &str,
    issuer: &str,
    mtls_base: &str,
    resource_base: &str,
    pool: u32,
) -> anyhow::Result<Sandbox> {
    let dir = abs(certs_dir)?;
    let sb = dir.join("sandbox");
    std::fs::create_dir_all(&sb).with_context(|| format!("creating {}", sb.display()))?;

    let ca_cert_path = dir.join("ca.pem");
    let ca_key_path = dir.join("ca.key");
    let ca = if ca_cert_path.exists() && ca_key_path.exists() {
        DevCa::load(
            &std::fs::read_to_string(&ca_cert_path)?,
            &std::fs::read_to_string(&ca_key_path)?,
        )?
    } else {
        let ca = DevCa::generate("Wekeza Sandbox Root CA")?;
        std::fs::write(&ca_cert_path, &ca.cert().cert_pem)?;
        write_private(&ca_key_path, ca.cert().key_pem.as_bytes())?;
        // A new CA invalidates everything it signed before.
        for f in ["server.pem", "server.key"] {
            let _ = std::fs::remove_file(dir.join(f));
        }
        for c in &SANDBOX_CLIENTS {
            let _ = std::fs::remove_file(sb.join(format!("{}.pem", c.id)));
        }
        ca
    };

    let server_cert_path = dir.join("server.pem");
    let server_key_path = dir.join("server.key");
    if !server_cert_path.exists() || !server_key_path.exists() {
        let s = ca.issue_server(&[host, "127.0.0.1", "::1"])?;
        std::fs::write(&server_cert_path, &s.cert_pem)?;
        write_private(&server_key_path, s.key_pem.as_bytes())?;
    }
    let server_chain_pem = std::fs::read_to_string(&server_cert_path)?;
    let server_key_pem = std::fs::read_to_string(&server_key_path)?;

    let redirect_uri = format!("{issuer}/sandbox/callback");
    let mut clients = Vec::new();
    let mut kit_clients = Vec::new();
    for SandboxClient {
        id,
        method,
        name,
        dpop,
        ms,
    } in SANDBOX_CLIENTS
    {
        let cert_path = sb.join(format!("{id}.pem"));
        let key_path = sb.join(format!("{id}.key"));
        if !cert_path.exists() || !key_path.exists() {
            let c = ca.issue_client(
                id,
                "Wekeza Sandbox TPP",
                Some(&format!("{id}.sandbox.wekeza.test")),
            )?;
            std::fs::write(&cert_path, &c.cert_pem)?;
            write_private(&key_path, c.key_pem.as_bytes())?;
        }
        let cert_pem = std::fs::read_to_string(&cert_path)?;
        let der = crate::tls::load_chain(cert_pem.as_bytes())?.remove(0);
        let subject = devpki::subject_dn(der.as_ref())?;
        let mut signing_jwk = None;
        let (jwks, jwk_path) = if method == ClientAuthMethod::PrivateKeyJwt {
            let jwk_path = sb.join(format!("{id}.jwk.json"));
            let jwk = read_or(
                &jwk_path,
                || {
                    let k = SigningKey::generate(Alg::ES256, format!("{id}-es256"))
                        .map_err(|e| anyhow::anyhow!("{e}"))?;
                    Ok(serde_json::to_string_pretty(
                        &k.to_private_jwk().map_err(|e| anyhow::anyhow!("{e}"))?,
                    )?)
                },
                true,
            )?;
            let key = SigningKey::from_private_jwk(&serde_json::from_str(&jwk)?)
                .map_err(|e| anyhow::anyhow!("{}: {e}", jwk_path.display()))?;
            (
                Jwks {
                    keys: vec![key.public_jwk()],
                },
                Some(jwk_path),
            )
        } else {
            // No client-authentication key, but payment requests are signed (ADR 0017).
            let sig_path = sb.join(format!("{id}.sig.jwk.json"));
            let jwk = read_or(
                &sig_path,
                || {
                    let k = SigningKey::generate(Alg::PS256, format!("{id}-ps256"))
                        .map_err(|e| anyhow::anyhow!("{e}"))?;
                    Ok(serde_json::to_string_pretty(
                        &k.to_private_jwk().map_err(|e| anyhow::anyhow!("{e}"))?,
                    )?)
                },
                true,
            )?;
            let key = SigningKey::from_private_jwk(&serde_json::from_str(&jwk)?)
                .map_err(|e| anyhow::anyhow!("{}: {e}", sig_path.display()))?;
            signing_jwk = Some(sig_path);
            (
                Jwks {
                    keys: vec![key.public_jwk()],
                },
                None,
            )
        };
        let signing_jwk = signing_jwk.or_else(|| jwk_path.clone());
        let client = Client {
            client_id: id.into(),
            client_name: name.into(),
            client_uri: None,
            token_endpoint_auth_method: method,
            jwks,
            redirect_uris: std::iter::once(redirect_uri.clone())
                .chain(CONFORMANCE_CALLBACKS.iter().map(|s| (*s).to_owned()))
                .collect(),
            grant_types: vec![
                GrantType::AuthorizationCode,
                GrantType::RefreshToken,
                GrantType::ClientCredentials,
            ],
            scope: REGISTERED_SCOPE.into(),
            tls_client_auth_subject_dn: (method == ClientAuthMethod::TlsClientAuth)
                .then(|| subject.clone()),
            tls_client_auth_san_dns: None,
            id_token_signed_response_alg: Alg::ES256,
            introspection_allowed: false,
            dpop_bound_access_tokens: dpop,
            require_signed_request_object: ms,
            authorization_signed_response_alg: ms.then_some(Alg::ES256),
            authorization_details_types: openbanking::RAR_TYPES_SUPPORTED
                .iter()
                .map(|t| (*t).to_owned())
                .collect(),
        };
        client
            .validate()
            .map_err(|e| anyhow::anyhow!("sandbox client {id}: {e}"))?;
        kit_clients.push(KitClient {
            client_id: id.into(),
            token_endpoint_auth_method: method.as_str().into(),
            private_jwk: jwk_path,
            cert: cert_path,
            key: key_path,
            redirect_uri: redirect_uri.clone(),
            scope: KIT_SCOPE.into(),
            tls_client_auth_subject_dn: client.tls_client_auth_subject_dn.clone(),
            sender_constraint: dpop.then(|| "dpop".to_owned()),
            request_object_signing: ms,
            signing_jwk,
            response_mode: ms.then(|| "jwt".to_owned()),
        });
        clients.push(client);
    }

    let kit_path = sb.join("kit.json");
    let previous: Option<Kit> = std::fs::read(&kit_path)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok());
    let customer = match previous {
        Some(k) if !k.customer.password.is_empty() && k.customer.totp_secret.len() >= 32 => {
            k.customer
        }
        _ => KitCustomer {
            username: SANDBOX_USERNAME.into(),
            password: crate::random_password(),
            totp_secret: crate::password::new_totp_secret(),
        },
    };
    let kit = Kit {
        issuer: issuer.into(),
        resource_base_url: resource_base.into(),
        ca_cert: ca_cert_path,
        customer,
        clients: kit_clients,
        discovery_url: format!("{issuer}/.well-known/openid-configuration"),
        mtls_base_url: mtls_base.into(),
        customer_pool: (pool > 0).then(|| CustomerPool {
            prefix: POOL_PREFIX.into(),
            count: pool,
        }),
        software_statement: None,
        directory_jwks: None,
        jws_trust_anchor: Some(SANDBOX_TRUST_ANCHOR.into()),
    };
    write_private(&kit_path, &serde_json::to_vec_pretty(&kit)?)?;
    Ok(Sandbox {
        kit,
        kit_path,
        clients,
        server_chain_pem,
        server_key_pem,
        client_ca_pem: ca.cert().cert_pem.clone(),
    })
}

/// `iss` of the sandbox directory's software statements.
pub const SANDBOX_DIRECTORY_ISSUER: &str = "https://directory.sandbox.wekeza.test";
/// The `http://openbanking.org.uk/tan` of sandbox `x-jws-signature`s (ADR 0017): the
/// sandbox directory's domain, where the TPPs' signing keys are registered.
pub const SANDBOX_TRUST_ANCHOR: &str = "directory.sandbox.wekeza.test";
pub const SANDBOX_ORG_ID: &str = "sandbox-tpp-org";
pub const SANDBOX_SOFTWARE_ID: &str = "sandbox-tpp-software";

/// The sandbox directory (trust anchor for dynamic registration): an ES256 key generated
/// once into `keys_dir` (0600), its public JWKS next to the kit, and a fresh software
/// statement for the sandbox TPP's organisation written into the kit. Returns the
/// directory's public keys.
pub fn sandbox_directory(
    keys_dir: &Path,
    sandbox: &mut Sandbox,
    now: i64,
    max_age_secs: i64,
) -> anyhow::Result<Jwks> {
    std::fs::create_dir_all(keys_dir)
        .with_context(|| format!("creating {}", keys_dir.display()))?;
    let key_path = keys_dir.join("sandbox-directory.jwk.json");
    let jwk = read_or(
        &key_path,
        || {
            let k = SigningKey::generate(Alg::ES256, "sandbox-directory-es256")
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            Ok(serde_json::to_string_pretty(
                &k.to_private_jwk().map_err(|e| anyhow::anyhow!("{e}"))?,
            )?)
        },
        true,
    )?;
    let key = SigningKey::from_private_jwk(&serde_json::from_str(&jwk)?)
        .map_err(|e| anyhow::anyhow!("{}: {e}", key_path.display()))?;
    let jwks = Jwks {
        keys: vec![key.public_jwk()],
    };
    let sb_dir = sandbox
        .kit_path
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default();
    let jwks_path = sb_dir.join("directory-jwks.json");
    std::fs::write(&jwks_path, serde_json::to_vec_pretty(&jwks)?)
        .with_context(|| format!("writing {}", jwks_path.display()))?;
    let issuer = &sandbox.kit.issuer;
    let claims = serde_json::json!({
        "iss": SANDBOX_DIRECTORY_ISSUER,
        "iat": now,
        "exp": now + max_age_secs,
        "jti": crate::random_token(16),
        "software_id": SANDBOX_SOFTWARE_ID,
        "software_client_name": "Sandbox Registered App",
        "software_redirect_uris": std::iter::once(format!("{issuer}/sandbox/callback"))
            .chain(CONFORMANCE_CALLBACKS.iter().map(|s| (*s).to_owned()))
            .collect::<Vec<_>>(),
        "org_id": SANDBOX_ORG_ID,
        "org_name": "Wekeza Sandbox TPP",
        "software_roles": ["AISP", "PISP"],
    });
    let statement = key
        .sign_jwt(None, &claims)
        .map_err(|e| anyhow::anyhow!("signing the sandbox software statement: {e}"))?;
    sandbox.kit.software_statement = Some(statement);
    sandbox.kit.directory_jwks = Some(jwks_path);
    write_private(&sandbox.kit_path, &serde_json::to_vec_pretty(&sandbox.kit)?)?;
    Ok(jwks)
}
