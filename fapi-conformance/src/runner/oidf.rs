//! `oidf-config`: the OpenID Foundation suite's plan configuration, generated from a kit.
//! One JSON file per variant plus `plans.txt` with the plan selection strings.

use super::variant::Variant;
use crate::kit::{Kit, KitClient};
use anyhow::Context;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};

/// The local suite's callback for alias `wekeza`, which sandbox clients register.
const SANDBOX_CALLBACK: &str = "https://localhost.emobix.co.uk:8443/test/a/wekeza/callback";

pub struct OidfOptions {
    pub kit: PathBuf,
    pub variants: Vec<Variant>,
    pub out_dir: PathBuf,
    pub alias: String,
    /// Base URL of the suite (its callback is `{base}/test/a/{alias}/callback`).
    pub suite_base_url: String,
    /// Value typed into the second-factor field by the suite's scripted browser.
    pub otp: Option<String>,
    pub browser: bool,
    pub resource_url: Option<String>,
    pub client2_id: Option<String>,
    pub client2_jwk: Option<PathBuf>,
    pub client2_cert: Option<PathBuf>,
    pub client2_key: Option<PathBuf>,
}

pub struct Generated {
    pub files: Vec<PathBuf>,
    pub warnings: Vec<String>,
}

fn read(p: &Path) -> anyhow::Result<String> {
    std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))
}

/// A private JWKS for a client: its kit JWK, or (for clients without one, e.g. the
/// sandbox `tls_client_auth` client) a fresh ES256 key the AS never sees.
fn jwks(
    c: &KitClient,
    override_jwk: Option<&Path>,
    generated: &mut std::collections::HashMap<String, Value>,
    warnings: &mut Vec<String>,
) -> anyhow::Result<Value> {
    let path = override_jwk.or(c.private_jwk.as_deref());
    if path.is_none()
        && let Some(v) = generated.get(&c.client_id)
    {
        return Ok(v.clone());
    }
    let jwk: Value = match path {
        Some(p) => serde_json::from_str(&read(p)?)?,
        None => {
            let k = fapi_jose::SigningKey::generate(
                fapi_jose::Alg::ES256,
                format!("{}-suite-only-es256", c.client_id),
            )
            .map_err(|e| anyhow::anyhow!("{e}"))?;
            warnings.push(format!(
                "{} has no JWK in the kit (tls_client_auth): generated an unregistered ES256 key for its jwks; the suite requires one, and the unsigned SP plan never sends anything signed with it",
                c.client_id
            ));
            k.to_private_jwk().map_err(|e| anyhow::anyhow!("{e}"))?
        }
    };
    let set = json!({ "keys": [jwk] });
    if path.is_none() {
        generated.insert(c.client_id.clone(), set.clone());
    }
    Ok(set)
}

/// The configs hold private keys and the customer's password: owner-only.
fn write_private(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    use std::io::Write;
    let mut o = std::fs::OpenOptions::new();
    o.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut o, 0o600);
    o.open(path)
        .and_then(|mut f| f.write_all(bytes))
        .with_context(|| format!("writing {}", path.display()))
}

fn mtls(cert: &Path, key: &Path, ca: &str) -> anyhow::Result<Value> {
    Ok(json!({ "cert": read(cert)?, "key": read(key)?, "ca": ca }))
}

fn scope(s: &str, openid: bool) -> String {
    let rest: Vec<&str> = s
        .split(' ')
        .filter(|x| !x.is_empty() && *x != "openid")
        .collect();
    if openid {
        format!("openid {}", rest.join(" "))
    } else {
        rest.join(" ")
    }
}

async fn discovered_resource(kit: &Kit) -> anyhow::Result<String> {
    let ca = std::fs::read(&kit.ca_cert)?;
    let http = crate::tpp::https_client(&ca, None)?;
    let d: Value = http
        .get(format!("{}/.well-known/openid-configuration", kit.issuer))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    d.pointer("/mtls_endpoint_aliases/userinfo_endpoint")
        .or_else(|| d.get("userinfo_endpoint"))
        .and_then(|v| v.as_str())
        .map(str::to_owned)
        .context("discovery has no userinfo_endpoint; pass --resource-url")
}

/// The scripted browser. `pick_account`: a UK OB consent page, where the customer ticks
/// the first account offered before allowing.
/// `resource`: plain_fapi calls `resourceUrl` (userinfo by default). openbanking_uk: the
/// suite POSTs the account-access consent to `resourceUrlAccountRequests` (with a
/// client-credentials token), and GETs the accounts at `resourceUrlAccountsResource` /
/// `resourceUrl`; it reads the API version (v4) from the URL.
fn resource_block(kit: &Kit, v: &Variant, resource: &str, overridden: bool) -> Value {
    if v.uk() {
        let accounts = if overridden {
            resource.to_owned()
        } else {
            super::uk_accounts_url(kit)
        };
        json!({
            "resourceUrl": accounts,
            "resourceUrlAccountRequests": super::uk_consents_url(kit),
            "resourceUrlAccountsResource": accounts
        })
    } else {
        json!({
            "resourceUrl": resource,
            "resourceMethod": "GET",
            "resourceMediaType": "application/json"
        })
    }
}

fn browser(kit: &Kit, otp: &str, pick_account: bool) -> Value {
    let i = kit.issuer.trim_end_matches('/');
    let mut consent = Vec::new();
    if pick_account {
        consent.push(json!(["click", "xpath", "(//input[@name='account'])[1]"]));
    }
    consent.push(json!(["click", "id", "approve"]));
    json!([{
        "match": format!("{i}/authorize*"),
        "tasks": [
            {
                "task": "Sign in",
                "match": format!("{i}/login*"),
                "commands": [
                    ["text", "id", "username", kit.customer.username],
                    ["text", "id", "password", kit.customer.password],
                    ["click", "xpath", "//button[@type='submit']"]
                ]
            },
            {
                "task": "Second factor",
                "match": format!("{i}/login/otp*"),
                "commands": [
                    ["text", "id", "otp", otp],
                    ["click", "xpath", "//button[@type='submit']"]
                ]
            },
            {
                "task": "Consent",
                "match": format!("{i}/consent*"),
                "commands": consent
            },
            { "task": "Verify Complete", "match": "*/test/*/callback*" }
        ]
    }])
}

pub async fn generate(o: &OidfOptions) -> anyhow::Result<Generated> {
    let kit = Kit::load(&o.kit)?;
    let ca = read(&kit.ca_cert)?;
    let mut warnings = Vec::new();
    let mut generated = std::collections::HashMap::new();
    let plain = o.variants.iter().any(|v| !v.uk());
    let resource = match &o.resource_url {
        Some(u) => u.clone(),
        None if plain => discovered_resource(&kit).await?,
        None => String::new(),
    };
    if plain && o.resource_url.is_none() {
        warnings.push(format!(
            "plain_fapi: resource.resourceUrl is the userinfo endpoint ({resource}); plain_oauth plans get 403 insufficient_scope there, which the suite counts as a failure (pass --resource-url for another resource)"
        ));
    }
    let otp = match &o.otp {
        Some(c) => c.clone(),
        None => {
            if o.browser {
                warnings.push("the suite's scripted browser cannot compute TOTP codes: the second-factor task types a placeholder and will fail until the deployment offers a static sandbox code (pass it with --otp) — or use --no-browser and log in by hand".into());
            }
            "REPLACE_WITH_SECOND_FACTOR".to_owned()
        }
    };
    std::fs::create_dir_all(&o.out_dir)?;
    let mut files = Vec::new();
    let mut plans =
        String::from("# plan selection string                                config file\n");
    for v in &o.variants {
        let method = v.auth_method();
        // Clients of the variant's authentication method and sender constraint.
        let same: Vec<&KitClient> = super::ctx::variant_clients(&kit, v);
        let c1 = *same
            .first()
            .with_context(|| super::ctx::kit_gap(&kit, v).unwrap_or_default())?;
        let c2 = match (&o.client2_id, same.get(1)) {
            (Some(id), _) => kit
                .clients
                .iter()
                .find(|c| &c.client_id == id)
                .with_context(|| format!("no client {id} in the kit"))?,
            (None, Some(c)) => *c,
            (None, None) => {
                let other = kit
                    .clients
                    .iter()
                    .find(|c| c.client_id != c1.client_id)
                    .context("the kit has a single client; the suite needs two")?;
                warnings.push(format!(
                    "{}: the kit has one {method} client; client2 is {} ({}), which the suite will authenticate as {method} and the AS will refuse. Register a second {method} client and pass --client2-id/--client2-jwk/--client2-cert/--client2-key",
                    v.label(), other.client_id, other.token_endpoint_auth_method
                ));
                other
            }
        };
        let client2_override = o.client2_jwk.as_deref().filter(|_| o.client2_id.is_some());
        let c2_cert = o.client2_cert.clone().unwrap_or_else(|| c2.cert.clone());
        let c2_key = o.client2_key.clone().unwrap_or_else(|| c2.key.clone());
        // UK OB: account information only (the suite's pre-authorization steps use a
        // client-credentials token with scope accounts, then the intent).
        let client_scope = |s: &str| {
            if v.uk() {
                scope("accounts", v.openid())
            } else {
                scope(s, v.openid())
            }
        };
        let discovery = if v.openid() {
            format!("{}/.well-known/openid-configuration", kit.issuer)
        } else {
            format!("{}/.well-known/oauth-authorization-server", kit.issuer)
        };
        let mut cfg = json!({
            "alias": o.alias,
            "description": format!("Wekeza {} ({})", v.label(), kit.issuer),
            "server": { "discoveryUrl": discovery },
            "client": {
                "client_id": c1.client_id,
                "scope": client_scope(&c1.scope),
                "jwks": jwks(c1, None, &mut generated, &mut warnings)?
            },
            "client2": {
                "client_id": c2.client_id,
                "scope": client_scope(&c2.scope),
                "jwks": jwks(c2, client2_override, &mut generated, &mut warnings)?
            },
            "mtls": mtls(&c1.cert, &c1.key, &ca)?,
            "mtls2": mtls(&c2_cert, &c2_key, &ca)?,
            "resource": resource_block(&kit, v, &resource, o.resource_url.is_some())
        });
        if o.browser
            && let Some(obj) = cfg.as_object_mut()
        {
            obj.insert("browser".into(), browser(&kit, &otp, v.uk()));
        }
        if v.sender_constrain == super::variant::SenderConstrain::Dpop {
            // The suite makes its own DPoP keys with this algorithm.
            cfg["client"]["dpop_signing_alg"] = json!("ES256");
            cfg["client2"]["dpop_signing_alg"] = json!("ES256");
        }
        let file = o.out_dir.join(format!("{}-{}.json", o.alias, v.label()));
        write_private(&file, &serde_json::to_vec_pretty(&cfg)?)?;
        plans.push_str(&format!("{}  {}\n", v.plan_string(), file.display()));
        files.push(file);
    }
    let plans_file = o.out_dir.join("plans.txt");
    std::fs::write(&plans_file, plans)?;
    files.push(plans_file);
    let callback = format!(
        "{}/test/a/{}/callback",
        o.suite_base_url.trim_end_matches('/'),
        o.alias
    );
    if callback != SANDBOX_CALLBACK {
        warnings.push(format!(
            "every client must have {callback} registered as a redirect URI (the sandbox registers {SANDBOX_CALLBACK} only)"
        ));
    }
    warnings.sort();
    warnings.dedup();
    Ok(Generated { files, warnings })
}
