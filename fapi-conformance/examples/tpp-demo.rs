//! A small example TPP: runs the whole FAPI 2.0 flow against a running platform using the
//! sandbox kit, printing each step.
//!
//! cargo run -p fapi-conformance --example tpp-demo -- certs/sandbox/kit.json [private_key_jwt|tls_client_auth|dpop]
//!
//! `dpop` runs the `private_key_jwt` client with DPoP-bound tokens (RFC 9449), sending no
//! client certificate.

use fapi_conformance::browser::{Customer, param, totp};
use fapi_conformance::tpp::{jwt_claims, now};
use fapi_conformance::{Kit, Pkce, Tpp};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let mut args = std::env::args().skip(1);
    let kit_path = args
        .next()
        .unwrap_or_else(|| "certs/sandbox/kit.json".into());
    let method = args.next().unwrap_or_else(|| "private_key_jwt".into());
    let kit = Kit::load(std::path::Path::new(&kit_path))?;
    let dpop = method == "dpop";
    let entry = if dpop {
        kit.dpop_client("private_key_jwt")?
    } else {
        kit.client(&method)?
    };
    let tpp = Tpp::from_kit(&kit, entry).await?;
    println!("client {} ({method}), issuer {}", tpp.client_id, kit.issuer);

    let pkce = Pkce::new();
    let par = if dpop {
        tpp.par_dpop(&pkce, "demo-state", "demo-nonce", &[]).await?
    } else {
        tpp.par(&pkce, "demo-state", "demo-nonce", &[]).await?
    };
    anyhow::ensure!(par.status == 201, "PAR failed: {}", par.body);
    let request_uri = par.str("request_uri").unwrap_or_default();
    println!(
        "1. PAR          -> {request_uri} (expires in {}s)",
        par.body["expires_in"]
    );

    let url = tpp.authorize_url(request_uri);
    println!("2. authorize    -> {url}");
    let customer = Customer::new(&std::fs::read(&kit.ca_cert)?, &kit.issuer)?;
    let c = &kit.customer;
    let back = customer
        .authorize(
            &url,
            &c.username,
            &c.password,
            &totp(&c.totp_secret, now())?,
            true,
        )
        .await?;
    println!(
        "3. login + TOTP + consent as {} -> redirected to {}",
        c.username,
        back.path()
    );
    anyhow::ensure!(
        param(&back, "iss").as_deref() == Some(kit.issuer.as_str()),
        "iss missing or wrong"
    );
    let code = param(&back, "code").ok_or_else(|| anyhow::anyhow!("no code: {back}"))?;

    let t = if dpop {
        tpp.exchange_code_dpop(&code, &pkce).await?
    } else {
        tpp.exchange_code(&code, &pkce).await?
    };
    anyhow::ensure!(t.status == 200, "token exchange failed: {}", t.body);
    let at = t.str("access_token").unwrap_or_default();
    let claims = jwt_claims(at);
    println!(
        "4. token        -> {} access token for {} scope \"{}\" bound to {} (consent {})",
        t.str("token_type").unwrap_or_default(),
        claims["sub"],
        claims["scope"].as_str().unwrap_or(""),
        claims["cnf"],
        claims["consent_id"]
    );
    println!(
        "   id_token     -> acr {} amr {}",
        jwt_claims(t.str("id_token").unwrap_or_default())["acr"],
        jwt_claims(t.str("id_token").unwrap_or_default())["amr"]
    );

    let ui = if dpop {
        tpp.get_with_dpop(&tpp.endpoint("userinfo_endpoint"), at)
            .await?
    } else {
        tpp.get_with_token(&tpp.endpoint("userinfo_endpoint"), at, true)
            .await?
    };
    println!("5. userinfo     -> {} {}", ui.status, ui.body);
    let rt = t.str("refresh_token").unwrap_or_default();
    let r = if dpop {
        tpp.refresh_dpop(rt).await?
    } else {
        tpp.token(&[("grant_type", "refresh_token"), ("refresh_token", rt)])
            .await?
    };
    println!(
        "6. refresh      -> {} (refresh token rotated: {})",
        r.status,
        r.str("refresh_token") != t.str("refresh_token")
    );
    Ok(())
}
