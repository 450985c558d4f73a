//! The UK Open Banking profile's own modules (`fapi_profile=openbanking_uk`). Every other
//! module already runs the profile's flow in these variants: the shared code in `ctx.rs`
//! creates an account-access consent before each authorization, names it in `claims`, and
//! uses the resource server's accounts endpoint as the protected resource.

use crate::Pkce;
use crate::runner::checks::expect_par_error;
use crate::runner::ctx::{ACR_SCA, ClientAuth, Ctx, Front, Intent, Mode};
use crate::runner::log::Log;
use serde_json::json;

/// An intent created by client 1, named in client 2's authorization request: refused at
/// PAR (`invalid_request`), or at the authorization endpoint (error page, or a redirect
/// with `invalid_request`, `invalid_request_object` or `access_denied`). Never a code.
pub async fn non_matching_intent(ctx: &Ctx, log: &mut Log) -> anyhow::Result<()> {
    let intent = ctx.create_intent(log, &ctx.c1).await?;
    log.note(format!(
        "consent {intent} was created by {}; client 2 ({}) names it",
        ctx.c1.client_id, ctx.c2.client_id
    ));
    let mut req = ctx.req();
    req.intent = Intent::Id(intent);
    let pkce = Pkce::new();
    let what = "an intent created by another client";
    let r = ctx
        .par(log, &ctx.c2, &pkce, &req, &ClientAuth::Normal)
        .await?;
    if r.status.as_u16() != 201 {
        expect_par_error(
            log,
            &r,
            &[400],
            &["invalid_request", "invalid_request_object"],
            "OIDCC-3.1.2.6",
            what,
        );
        log.note("refused at PAR (RFC 9126 §2.3 lets the PAR endpoint validate the request); the OIDF suite's module expects PAR to accept it and the error at the authorization endpoint, see oidf/README.md");
        return Ok(());
    }
    let url = ctx.authorize_url(&ctx.c2, r.str("request_uri").unwrap_or_default());
    let f = ctx.drive(log, &url, Mode::Approve, &[]).await?;
    ctx.expect_front_error(
        log,
        &f,
        &["invalid_request", "invalid_request_object", "access_denied"],
        req.state.as_deref(),
        "OIDCC-3.1.2.6",
        what,
    );
    Ok(())
}

/// `acr` essential with the value `urn:openbanking:psd2:sca` (next to the intent): the AS
/// refuses with `access_denied`, or performs SCA and says so in the ID token's `acr`.
pub async fn essential_acr_sca(ctx: &Ctx, log: &mut Log) -> anyhow::Result<()> {
    let mut req = ctx.req();
    req.acr = Some(json!({"value": ACR_SCA, "essential": true}));
    let p = ctx.push(log, &ctx.c1, req).await?;
    let f = ctx.drive(log, &p.url, Mode::Approve, &[]).await?;
    if let Front::Callback(u) = &f
        && crate::browser::param(u, "error").is_some()
    {
        ctx.expect_front_error(
            log,
            &f,
            &["access_denied"],
            p.req.state.as_deref(),
            "OIDCC-5.5.1.1",
            "essential acr sca refused",
        );
        return Ok(());
    }
    if let Front::Page { .. } = &f {
        ctx.expect_front_error(
            log,
            &f,
            &["access_denied"],
            p.req.state.as_deref(),
            "OIDCC-5.5.1.1",
            "essential acr sca refused",
        );
        return Ok(());
    }
    let code = ctx.check_success_callback(log, &ctx.c1, &f, p.req.state.as_deref())?;
    let r = ctx
        .exchange(log, &ctx.c1, &code, &p.pkce, &ClientAuth::Normal, true)
        .await?;
    let t = ctx
        .check_tokens(log, &ctx.c1, &r, p.req.nonce.as_deref())
        .await?;
    ctx.check_intent_in_id_token(log, &p.req, &t);
    match &t.id_token {
        Some(idt) => {
            log.check(
                idt["acr"].as_str() == Some(ACR_SCA),
                "OIDCC-5.5.1.1",
                format!(
                    "the ID token's acr is {ACR_SCA}, the essential value asked for (got {})",
                    idt["acr"]
                ),
            );
        }
        None => log.fail("OIDCC-5.5.1.1", "no ID token to carry the acr"),
    }
    ctx.check_resource_ok(log, &ctx.c1, &t.access_token, "Bearer")
        .await?;
    Ok(())
}
