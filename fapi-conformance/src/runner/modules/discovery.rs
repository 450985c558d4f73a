//! discovery-end-point-verification (plus the server-JWKS checks every suite module does).

use crate::runner::ctx::Ctx;
use crate::runner::log::Log;
use serde_json::Value;

const FAPI_ALGS: [&str; 3] = ["PS256", "ES256", "EdDSA"];

pub async fn discovery(ctx: &Ctx, log: &mut Log) -> anyhow::Result<()> {
    let well_known = if ctx.openid() {
        "/.well-known/openid-configuration"
    } else {
        "/.well-known/oauth-authorization-server"
    };
    let url = format!("{}{well_known}", ctx.issuer().trim_end_matches('/'));
    let resp = ctx.c1.http_no_cert.get(&url).send().await?;
    let status = resp.status().as_u16();
    let ctype = resp
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let d: Value = resp.json().await.unwrap_or(Value::Null);
    log.evidence(
        "discovery",
        format!("GET {url}"),
        Some(status),
        None,
        Some(ctype.clone()),
    );
    let req = if ctx.openid() {
        "OIDCD-4"
    } else {
        "RFC8414-3.2"
    };
    log.check(
        status == 200,
        req,
        format!("discovery answers 200 (got {status})"),
    );
    log.check(
        ctype.starts_with("application/json"),
        req,
        "discovery is JSON",
    );
    if !d.is_object() {
        anyhow::bail!("discovery document is not a JSON object");
    }
    let s = |k: &str| d.get(k).and_then(|v| v.as_str());
    let arr = |k: &str| -> Vec<String> {
        d.get(k)
            .and_then(|v| v.as_array())
            .map(|a| {
                a.iter()
                    .filter_map(|x| x.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    };
    let https = |k: &str| s(k).is_some_and(|u| u.starts_with("https://"));

    log.check(
        s("issuer") == Some(ctx.issuer()),
        if ctx.openid() {
            "OIDCD-4.3"
        } else {
            "RFC8414-3.3"
        },
        format!("issuer equals the configured issuer ({:?})", s("issuer")),
    );
    log.check(
        arr("response_types_supported").iter().any(|r| r == "code"),
        "FAPI2-SP-FINAL-5.3.2.2-1",
        format!(
            "response_types_supported contains code ({:?})",
            arr("response_types_supported")
        ),
    );
    log.check(
        d["authorization_response_iss_parameter_supported"] == Value::Bool(true),
        "FAPI2-SP-FINAL-5.3.2.2-7",
        "authorization_response_iss_parameter_supported is true",
    );
    log.check(
        https("pushed_authorization_request_endpoint"),
        "FAPI2-SP-FINAL-5.3.2.2-2",
        "pushed_authorization_request_endpoint is published (https)",
    );
    if ctx.variant.sender_constrain == crate::runner::variant::SenderConstrain::Mtls {
        log.check(
            d["tls_client_certificate_bound_access_tokens"] == Value::Bool(true),
            "FAPI2-SP-FINAL-5.3.2.1-5",
            "tls_client_certificate_bound_access_tokens is true (RFC 8705 §3.3)",
        );
    }
    let only_fapi = |k: &str, req: &str, log: &mut Log, required: bool| {
        let v = arr(k);
        if v.is_empty() && !required {
            return;
        }
        log.check(
            !v.is_empty() && v.iter().all(|a| FAPI_ALGS.contains(&a.as_str())),
            req,
            format!("{k} lists only PS256/ES256/EdDSA ({v:?})"),
        );
    };
    only_fapi(
        "id_token_signing_alg_values_supported",
        "FAPI2-SP-FINAL-5.4.1-1",
        log,
        ctx.openid(),
    );
    only_fapi(
        "userinfo_signing_alg_values_supported",
        "FAPI2-SP-FINAL-5.4.1-1",
        log,
        false,
    );
    let methods = arr("token_endpoint_auth_methods_supported");
    log.check(
        methods.iter().any(|m| m == "private_key_jwt" || m == "tls_client_auth" || m == "self_signed_tls_client_auth"),
        "FAPI2-SP-FINAL-5.3.2.1-6",
        format!("token_endpoint_auth_methods_supported has private_key_jwt or tls_client_auth ({methods:?})"),
    );
    log.check(
        !methods
            .iter()
            .any(|m| m.starts_with("client_secret") || m == "none"),
        "FAPI2-SP-FINAL-5.3.2.1-6",
        "no shared-secret or public-client methods are offered",
    );
    if ctx.variant.pkjwt() {
        log.check(
            methods.iter().any(|m| m == "private_key_jwt"),
            "FAPI2-SP-FINAL-5.3.2.1-6",
            "private_key_jwt is supported",
        );
        only_fapi(
            "token_endpoint_auth_signing_alg_values_supported",
            "FAPI2-SP-FINAL-5.4.1-1",
            log,
            true,
        );
    } else {
        log.check(
            methods
                .iter()
                .any(|m| m == "tls_client_auth" || m == "self_signed_tls_client_auth"),
            "FAPI2-SP-FINAL-5.3.3.1-5",
            "tls_client_auth is supported",
        );
        only_fapi(
            "token_endpoint_auth_signing_alg_values_supported",
            "FAPI2-SP-FINAL-5.4.1-1",
            log,
            false,
        );
    }
    log.check(
        https("token_endpoint"),
        "OIDCD-3",
        "token_endpoint is published (https)",
    );
    log.check(
        https("authorization_endpoint"),
        "OIDCD-3",
        "authorization_endpoint is published (https)",
    );
    if d.get("registration_endpoint").is_some() {
        log.check(
            https("registration_endpoint"),
            "OIDCD-3",
            "registration_endpoint is https",
        );
    }
    log.check(
        arr("code_challenge_methods_supported")
            .iter()
            .any(|m| m == "S256"),
        "FAPI2-SP-FINAL-5.3.2.2-5",
        "code_challenge_methods_supported contains S256",
    );
    log.check(
        !arr("code_challenge_methods_supported")
            .iter()
            .any(|m| m == "plain"),
        "FAPI2-SP-FINAL-5.3.2.2-5",
        "plain PKCE is not offered",
    );
    if let Some(v) = d.get("require_pushed_authorization_requests") {
        log.check(
            v.is_boolean(),
            "PAR-5",
            "require_pushed_authorization_requests is a boolean",
        );
    }
    let grants = arr("grant_types_supported");
    log.check(
        !grants.iter().any(|g| g == "password" || g == "implicit"),
        "FAPI2-SP-FINAL-5.3.2.1-2",
        format!("no password or implicit grant ({grants:?})"),
    );
    if ctx.openid() {
        log.check(
            arr("scopes_supported").iter().any(|x| x == "openid"),
            "OIDCD-3",
            "scopes_supported contains openid",
        );
        log.check(
            !arr("subject_types_supported").is_empty(),
            "OIDCD-3",
            "subject_types_supported is published",
        );
    }
    // Every published endpoint is TLS-only.
    let mut plain = Vec::new();
    let mut all = d.as_object().cloned().unwrap_or_default();
    if let Some(Value::Object(a)) = d.get("mtls_endpoint_aliases") {
        for (k, v) in a {
            all.insert(format!("mtls_endpoint_aliases.{k}"), v.clone());
        }
    }
    for (k, v) in &all {
        if (k.ends_with("_endpoint")
            || k.ends_with("_uri")
            || k.starts_with("mtls_endpoint_aliases."))
            && let Some(u) = v.as_str()
            && !u.starts_with("https://")
        {
            plain.push(k.clone());
        }
    }
    log.check(
        plain.is_empty(),
        "FAPI2-SP-FINAL-5.2.1-1",
        format!("every published endpoint uses https ({plain:?} do not)"),
    );

    // Server keys: TLS-only jwks_uri, kids present and distinct, public only, big enough.
    if ctx.openid() || d.get("jwks_uri").is_some() {
        log.check(
            https("jwks_uri"),
            "FAPI2-SP-FINAL-5.4.2-1",
            "jwks_uri is https",
        );
        let keys = ctx.server_keys().await?;
        let mut kids: Vec<&str> = keys.iter().filter_map(|k| k.kid.as_deref()).collect();
        log.check(
            kids.len() == keys.len(),
            "OIDCC-10.1",
            "every server key has a kid",
        );
        kids.sort_unstable();
        let n = kids.len();
        kids.dedup();
        log.should(
            kids.len() == n,
            "FAPI2-SP-FINAL-5.4.2-3",
            "server key ids are distinct",
        );
        log.check(
            keys.iter().all(|k| !k.has_private_material()),
            "RFC7518-6.3.2.1",
            "JWKS holds no private keys",
        );
        let small: Vec<String> = keys
            .iter()
            .filter(|k| match k.kty.as_str() {
                "RSA" => {
                    k.n.as_deref()
                        .and_then(|n| fapi_jose::b64_decode(n).ok())
                        .is_none_or(|b| b.len() * 8 < 2048)
                }
                "EC" => !matches!(k.crv.as_deref(), Some("P-256" | "P-384" | "P-521")),
                _ => false,
            })
            .filter_map(|k| k.kid.clone())
            .collect();
        log.check(
            small.is_empty(),
            "FAPI2-SP-FINAL-5.4.1-2",
            format!("RSA keys >= 2048 bits, EC keys >= 224 bits ({small:?} are not)"),
        );
    }
    Ok(())
}
