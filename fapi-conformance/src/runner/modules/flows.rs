//! Modules whose flows are expected to succeed (possibly with an allowed error).

use crate::runner::checks::expect_par_error;
use crate::runner::ctx::{Ctx, DpopPar, Front, Mode, with_query};
use crate::runner::log::Log;
use crate::tpp::random;

/// Full flow for client 1 and client 2, tokens used at the resource, then each client's
/// token refused with the other's certificate and without any.
pub async fn happy_flow(ctx: &Ctx, log: &mut Log) -> anyhow::Result<()> {
    let (_, t1) = ctx.flow(log, &ctx.c1, ctx.req()).await?;
    ctx.check_resource_ok(log, &ctx.c1, &t1.access_token, "Bearer")
        .await?;
    // Client 2 uses a 128-character state, as the suite does, and (DPoP) binds its code
    // with dpop_jkt alone, no proof at PAR.
    let mut r2 = ctx.req();
    r2.state = Some(random(96));
    r2.dpop_par = DpopPar::Jkt;
    let (_, t2) = ctx.flow(log, &ctx.c2, r2).await?;
    ctx.check_resource_ok(log, &ctx.c2, &t2.access_token, "Bearer")
        .await?;
    ctx.check_resource_refused(
        log,
        &ctx.c1,
        &t2.access_token,
        true,
        "FAPI2-SP-FINAL-5.3.2.1-4",
        "client 2's token presented over client 1's certificate is refused",
    )
    .await?;
    ctx.check_resource_refused(
        log,
        &ctx.c1,
        &t1.access_token,
        false,
        "FAPI2-SP-FINAL-5.3.2.1-4",
        if ctx.dpop() {
            "the token presented without a DPoP proof is refused"
        } else {
            "the token presented without a client certificate is refused"
        },
    )
    .await
}

pub async fn user_rejects(ctx: &Ctx, log: &mut Log) -> anyhow::Result<()> {
    let p = ctx.push(log, &ctx.c1, ctx.req()).await?;
    let f = ctx.drive(log, &p.url, Mode::Deny, &[]).await?;
    let Front::Callback(u) = &f else {
        log.fail(
            "OIDCC-3.1.2.6",
            "denying consent must redirect back to the client",
        );
        return Ok(());
    };
    log.check(
        crate::browser::param(u, "code").is_none(),
        "OIDCC-3.1.2.6",
        "no code after the customer denied",
    );
    ctx.expect_front_error(
        log,
        &f,
        &["access_denied"],
        p.req.state.as_deref(),
        "FAPI2-SP-FINAL-5.3.2.2-13",
        "customer denied consent",
    );
    Ok(())
}

pub async fn without_state(ctx: &Ctx, log: &mut Log) -> anyhow::Result<()> {
    let mut r = ctx.req();
    r.state = None;
    let (_, t) = ctx.flow(log, &ctx.c1, r).await?;
    ctx.check_resource_ok(log, &ctx.c1, &t.access_token, "Bearer")
        .await?;
    Ok(())
}

pub async fn without_nonce(ctx: &Ctx, log: &mut Log) -> anyhow::Result<()> {
    let mut r = ctx.req();
    r.nonce = None;
    ctx.flow(log, &ctx.c1, r).await?;
    Ok(())
}

pub async fn nonce_64(ctx: &Ctx, log: &mut Log) -> anyhow::Result<()> {
    let mut r = ctx.req();
    r.nonce = Some(random(48)); // 64 base64url characters
    ctx.flow(log, &ctx.c1, r).await?;
    Ok(())
}

pub async fn other_scope_order(ctx: &Ctx, log: &mut Log) -> anyhow::Result<()> {
    let mut scopes: Vec<&str> = ctx.c1.scope.split(' ').filter(|s| !s.is_empty()).collect();
    scopes.reverse();
    let reordered = scopes.join(" ");
    log.note(format!("scope sent as {reordered:?}"));
    let (_, t) = ctx
        .flow(log, &ctx.c1, ctx.req().set("scope", &reordered))
        .await?;
    ctx.check_resource_ok(log, &ctx.c1, &t.access_token, "Bearer")
        .await?;
    Ok(())
}

/// We advertise `claims_parameter_supported: false`; the suite then skips. The runner
/// checks the parameter is at least ignored: the flow succeeds.
pub async fn claims_parameter(ctx: &Ctx, log: &mut Log) -> anyhow::Result<()> {
    let supported = ctx.c1.discovery["claims_parameter_supported"] == serde_json::Value::Bool(true);
    let claims = r#"{"id_token":{"name":{"essential":true},"email":null},"userinfo":{"name":null,"x-random-claim":null}}"#;
    let (_, t) = ctx
        .flow(log, &ctx.c1, ctx.req().set("claims", claims))
        .await?;
    let ui = ctx
        .check_resource_ok(log, &ctx.c1, &t.access_token, "Bearer")
        .await?;
    if ctx.uk() {
        // The resource is the accounts endpoint: only the ID token can carry name.
        if supported {
            log.should(
                t.id_token.as_ref().is_some_and(|i| i.get("name").is_some()),
                "OIDCC-5.5",
                "requested claim name is returned in the ID token (merged with the intent claims)",
            );
        }
        return Ok(());
    }
    if let Some(id) = &t.id_token {
        log.check(
            ui.body["sub"] == id["sub"],
            "OIDCC-5.3.2",
            "userinfo and ID token have the same sub",
        );
    }
    if supported {
        let has_name = t.id_token.as_ref().is_some_and(|i| i.get("name").is_some())
            || ui.body.get("name").is_some();
        log.should(has_name, "OIDCC-5.5", "requested claim name is returned");
    } else {
        log.note("claims_parameter_supported is false: the suite skips this module; the runner checks the parameter is ignored and the flow succeeds");
    }
    Ok(())
}

pub async fn token_type_case(ctx: &Ctx, log: &mut Log) -> anyhow::Result<()> {
    let (_, t) = ctx.flow(log, &ctx.c1, ctx.req()).await?;
    ctx.check_resource_ok(log, &ctx.c1, &t.access_token, "bEARER")
        .await?;
    Ok(())
}

/// `nonce` (or `state`) different on the authorization URL from the pushed one: only the
/// pushed value may be used, or the request fails.
/// Signed variants (the suite's signed form): the other value is also sent at PAR outside
/// the request object; only the value inside may be used.
pub async fn different_outside(ctx: &Ctx, log: &mut Log, param: &str) -> anyhow::Result<()> {
    let outside = random(24);
    let mut req = ctx.req();
    if ctx.signed() {
        req.outside.push((param.to_owned(), outside.clone()));
    }
    let p = ctx.push(log, &ctx.c1, req).await?;
    let url = with_query(&p.url, &[(param, &outside)]);
    let f = ctx.drive(log, &url, Mode::Approve, &[]).await?;
    if let Front::Callback(u) = &f
        && crate::browser::param(u, "code").is_some()
    {
        if param == "state" {
            log.check(
                crate::browser::param(u, "state") != Some(outside.clone()),
                "FAPI2-SP-FINAL-5.3.3.2-6",
                "the state sent only on the authorization URL is not used",
            );
        }
        let code = ctx.check_success_callback(log, &ctx.c1, &f, p.req.state.as_deref())?;
        let r = ctx
            .exchange(
                log,
                &ctx.c1,
                &code,
                &p.pkce,
                &crate::runner::ctx::ClientAuth::Normal,
                true,
            )
            .await?;
        ctx.check_tokens(log, &ctx.c1, &r, p.req.nonce.as_deref())
            .await?;
        return Ok(());
    }
    ctx.expect_front_error(
        log,
        &f,
        &["invalid_request", "invalid_request_object", "access_denied"],
        p.req.state.as_deref(),
        "FAPI2-SP-FINAL-5.3.3.2-6",
        &format!("{param} differs outside the pushed request"),
    );
    Ok(())
}

/// 384-character nonce or 1000-character state: succeed with the value intact, or refuse
/// with invalid_request (an error page or a refused long state is only a warning).
pub async fn long_value(ctx: &Ctx, log: &mut Log, param: &str) -> anyhow::Result<()> {
    let (value, req_id) = if param == "nonce" {
        (random(288), "FAPI2-SP-FINAL-5.3.2.2-14") // 384 characters
    } else {
        (random(750), "FAPI2-SP-FINAL-5.3.2.2") // 1000 characters
    };
    let mut r = ctx.req();
    if param == "nonce" {
        r.nonce = Some(value.clone());
    } else {
        r.state = Some(value.clone());
    }
    let pkce = crate::Pkce::new();
    let par = ctx
        .par(
            log,
            &ctx.c1,
            &pkce,
            &r,
            &crate::runner::ctx::ClientAuth::Normal,
        )
        .await?;
    if par.status.as_u16() != 201 {
        expect_par_error(
            log,
            &par,
            &[400],
            &["invalid_request"],
            "PAR-2.3",
            &format!("long {param} refused at PAR"),
        );
        return Ok(());
    }
    let url = ctx.authorize_url(&ctx.c1, par.str("request_uri").unwrap_or_default());
    let f = ctx.drive(log, &url, Mode::Approve, &[]).await?;
    match &f {
        Front::Callback(u) if crate::browser::param(u, "code").is_some() => {
            let code = ctx.check_success_callback(log, &ctx.c1, &f, r.state.as_deref())?;
            let t = ctx
                .exchange(
                    log,
                    &ctx.c1,
                    &code,
                    &pkce,
                    &crate::runner::ctx::ClientAuth::Normal,
                    true,
                )
                .await?;
            ctx.check_tokens(log, &ctx.c1, &t, r.nonce.as_deref())
                .await?;
            log.pass(
                req_id,
                format!(
                    "{}-character {param} accepted and returned intact",
                    value.len()
                ),
            );
        }
        Front::Callback(u) => {
            let e = crate::browser::param(u, "error").unwrap_or_default();
            log.should(
                e == "invalid_request",
                "OIDCC-3.3.2.6",
                format!("long {param} refused with {e}"),
            );
            log.warn(
                req_id,
                format!("the AS refused a {}-character {param}", value.len()),
            );
        }
        Front::Page { .. } => {
            log.warn(
                req_id,
                format!(
                    "the AS showed an error page for a {}-character {param} (review needed)",
                    value.len()
                ),
            );
        }
        Front::LoginPage => log.fail(req_id, "stopped at the login page"),
    }
    Ok(())
}

/// No state in the pushed request, one on the authorization URL: it must not come back.
pub async fn state_only_outside(ctx: &Ctx, log: &mut Log) -> anyhow::Result<()> {
    let mut r = ctx.req();
    r.state = None;
    let outside = random(24);
    if ctx.signed() {
        // Signed form: also at PAR, outside the request object.
        r.outside.push(("state".into(), outside.clone()));
    }
    let p = ctx.push(log, &ctx.c1, r).await?;
    let url = with_query(&p.url, &[("state", &outside)]);
    let f = ctx.drive(log, &url, Mode::Approve, &[]).await?;
    match &f {
        Front::Callback(u) if crate::browser::param(u, "code").is_some() => {
            // check_success_callback requires no state at all.
            let code = ctx.check_success_callback(log, &ctx.c1, &f, None)?;
            log.check(
                crate::browser::param(u, "state").is_none(),
                "FAPI2-SP-FINAL-5.3.3.2-6",
                "the state passed only outside the pushed request is not returned",
            );
            let t = ctx
                .exchange(
                    log,
                    &ctx.c1,
                    &code,
                    &p.pkce,
                    &crate::runner::ctx::ClientAuth::Normal,
                    true,
                )
                .await?;
            ctx.check_tokens(log, &ctx.c1, &t, p.req.nonce.as_deref())
                .await?;
        }
        _ => {
            ctx.expect_front_error(
                log,
                &f,
                &["invalid_request", "invalid_request_object", "access_denied"],
                None,
                "FAPI2-SP-FINAL-5.3.3.2-6",
                "state only outside the pushed request",
            );
        }
    }
    Ok(())
}

/// The authorization URL carries only client_id and request_uri, and that suffices.
pub async fn without_duplicates(ctx: &Ctx, log: &mut Log) -> anyhow::Result<()> {
    let p = ctx.push(log, &ctx.c1, ctx.req()).await?;
    let u = url::Url::parse(&p.url)?;
    let names: Vec<String> = u.query_pairs().map(|(k, _)| k.into_owned()).collect();
    log.note(format!("authorization URL parameters: {names:?}"));
    let f = ctx.drive(log, &p.url, Mode::Approve, &[]).await?;
    let code = ctx.check_success_callback(log, &ctx.c1, &f, p.req.state.as_deref())?;
    log.pass(
        "PAR-4",
        "authorization with only client_id and request_uri succeeded",
    );
    let t = ctx
        .exchange(
            log,
            &ctx.c1,
            &code,
            &p.pkce,
            &crate::runner::ctx::ClientAuth::Normal,
            true,
        )
        .await?;
    ctx.check_tokens(log, &ctx.c1, &t, p.req.nonce.as_deref())
        .await?;
    Ok(())
}
