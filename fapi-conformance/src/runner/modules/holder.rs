//! ensure-holder-of-key-required: TLS versions and ciphers on every endpoint, then a code
//! exchange without the client certificate (DPoP variants: without a DPoP proof).

use crate::runner::checks::expect_token_error;
use crate::runner::ctx::{ClientAuth, Ctx};
use crate::runner::log::Log;
use crate::runner::tls;

pub async fn holder_of_key(ctx: &Ctx, log: &mut Log) -> anyhow::Result<()> {
    let d = &ctx.c1.discovery;
    let mut endpoints: Vec<(&str, String, bool)> = vec![(
        "authorization endpoint",
        d["authorization_endpoint"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
        false,
    )];
    if d.get("userinfo_endpoint").is_some() {
        endpoints.push((
            "userinfo endpoint",
            ctx.c1.endpoint("userinfo_endpoint"),
            true,
        ));
    }
    endpoints.push(("token endpoint", ctx.token_url(&ctx.c1), true));
    if let Some(u) = d["registration_endpoint"].as_str() {
        endpoints.push(("registration endpoint", u.to_owned(), true));
    }
    tls::check_endpoints(log, &endpoints).await;

    let (p, code) = ctx.authorize(log, &ctx.c1, ctx.req()).await?;
    match ctx
        .exchange(log, &ctx.c1, &code, &p.pkce, &ClientAuth::Normal, false)
        .await
    {
        Err(e) => log.pass(
            "FAPI2-SP-FINAL-5.3.2.1-4",
            format!("the TLS connection without a client certificate was refused ({e})"),
        ),
        Ok(r) => {
            let allowed = no_pop_errors(ctx);
            expect_token_error(
                log,
                &r,
                &allowed,
                "FAPI2-SP-FINAL-5.3.2.1-4",
                "code exchange without a holder-of-key mechanism",
            );
        }
    }
    Ok(())
}

/// Errors acceptable for a token request without proof of possession.
pub fn no_pop_errors(ctx: &Ctx) -> Vec<&'static str> {
    let mut v = vec!["invalid_client", "invalid_request"];
    if ctx.variant.pkjwt() {
        v.push("invalid_grant");
    }
    if ctx.dpop() {
        v.push("invalid_dpop_proof");
    }
    v
}
